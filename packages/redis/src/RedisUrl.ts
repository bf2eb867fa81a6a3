/**
 * `REDIS_URL` parsing: `redis://[[user]:password@]host[:port][/db]` for plain TCP and `rediss://…` for TLS. The URL
 * is parsed once, here, into the connection fields ioredis takes, so a malformed URL is refused with a message that
 * says what is wrong and never repeats the password. Query parameters are refused rather than silently ignored.
 */
import { Effect } from "effect"
import type { ConnectionOptions } from "node:tls"
import { isIP } from "node:net"
import * as RedisError from "./RedisError.ts"

/** Where to connect; the credentials never appear in `display`. */
export interface Endpoint {
  readonly host: string
  readonly port: number
  readonly db: number
  readonly username: string | undefined
  readonly password: string | undefined
  /** Present for `rediss://`: TLS with certificate checks on, SNI set to the host name (not for an IP). */
  readonly tls: ConnectionOptions | undefined
  /** The URL without credentials, for logs and error messages. */
  readonly display: string
}

const expected = "expected redis://[[user]:password@]host[:port][/db] or rediss://… for TLS"

const refuse = (why: string): Effect.Effect<never, RedisError.RedisError> =>
  Effect.fail(RedisError.configInvalid(`REDIS_URL is not a usable Redis URL: ${why} (${expected})`))

/** Parses a Redis URL; fails with `RedisConfigInvalid` naming the problem. */
export const parse = (url: string): Effect.Effect<Endpoint, RedisError.RedisError> =>
  Effect.suspend(() => {
    const trimmed = url.trim()
    if (trimmed === "") return refuse("it is empty")
    let parsed: URL
    try {
      parsed = new URL(trimmed)
    } catch {
      // The input may hold a password: describe it, never echo it.
      return refuse("it cannot be parsed as a URL")
    }
    const secure = parsed.protocol === "rediss:"
    if (!secure && parsed.protocol !== "redis:") {
      return refuse(`the scheme is "${parsed.protocol.replace(/:$/, "")}"`)
    }
    const host = parsed.hostname.replace(/^\[(.*)\]$/, "$1")
    if (host === "") return refuse("the host is missing")
    const port = parsed.port === "" ? 6379 : Number(parsed.port)
    const path = parsed.pathname.replace(/^\//, "")
    if (path !== "" && !/^\d{1,5}$/.test(path)) return refuse(`the database "${path}" is not a number`)
    const db = path === "" ? 0 : Number(path)
    if (parsed.search !== "") return refuse("query parameters are not supported")
    if (parsed.hash !== "") return refuse("a fragment is not allowed")
    let username: string | undefined
    let password: string | undefined
    try {
      username = parsed.username === "" ? undefined : decodeURIComponent(parsed.username)
      password = parsed.password === "" ? undefined : decodeURIComponent(parsed.password)
    } catch {
      return refuse("the user or password is not valid percent-encoding")
    }
    const tls: ConnectionOptions | undefined = secure ? (isIP(host) === 0 ? { servername: host } : {}) : undefined
    const hostPart = isIP(host) === 6 ? `[${host}]` : host
    return Effect.succeed({
      host,
      port,
      db,
      username,
      password,
      tls,
      display: `${secure ? "rediss" : "redis"}://${hostPart}:${port}/${db}`
    })
  })
