/**
 * The dashboard's session cookie: an expiry and its HMAC, never the admin token.
 *
 * The signing key is derived from `ADMIN_TOKEN`, so every worker of a deployment accepts the sessions of the others
 * (the kernel spreads requests over them) and changing the token ends every session. A session lasts `ttlMs`; the
 * operator logs in again after it.
 */
import { Redacted } from "effect"
import { createHmac, timingSafeEqual } from "node:crypto"

export const cookieName = "wedsync_dashboard"

/** How long a session lasts. */
export const ttlMs = 30 * 60_000

export interface Sessions {
  /** A cookie value valid until `now + ttlMs`. */
  readonly issue: (now: number) => string
  /** Whether a cookie value is a session this key signed that has not expired. */
  readonly verify: (value: string | undefined, now: number) => boolean
}

export const make = (adminToken: Redacted.Redacted<string>): Sessions => {
  const key = createHmac("sha256", Redacted.value(adminToken)).update("wedsync dashboard session v1").digest()
  const sign = (expires: string) => createHmac("sha256", key).update(expires).digest()
  return {
    issue: (now) => {
      const expires = String(now + ttlMs)
      return `${expires}.${sign(expires).toString("base64url")}`
    },
    verify: (value, now) => {
      // Bounded before any work: a cookie is client input.
      if (value === undefined || value.length > 128) return false
      const match = /^(\d{1,16})\.([A-Za-z0-9_-]{43})$/.exec(value)
      if (match === null) return false
      const [, expires = "", mac = ""] = match
      if (Number(expires) <= now) return false
      return timingSafeEqual(Buffer.from(mac, "base64url"), sign(expires))
    }
  }
}
