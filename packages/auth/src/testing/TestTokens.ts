/**
 * Tokens for tests, signed with jose like Supabase Auth would sign them: HS256 with the development secret unless
 * told otherwise. The plain functions return Promises for async test code (supabase-js clients);
 * `signEffect` reads the Effect `Clock`, so its `iat`/`exp` agree with `TestClock`.
 *
 * Gotcha: the Promise helpers stamp times from `Date.now()`. Under `TestClock` (which starts at epoch 0) such a
 * token looks decades away from expiry, and `expiredToken()` looks valid; pass `nowSeconds` or use `signEffect`.
 */
import { Clock, Effect } from "effect"
import { SignJWT } from "jose"
import type { CryptoKey, JWTPayload, KeyObject } from "jose"
import { DEV_JWT_SECRET } from "../AuthConfig.ts"

/** How to sign. */
export interface SignOptions {
  /** HS secret; default `DEV_JWT_SECRET`. Ignored when `privateKey` is given. */
  readonly secret?: string
  /** Asymmetric signing key (for JWKS tests); pair it with `alg` and `kid`. */
  readonly privateKey?: CryptoKey | KeyObject
  /** Default `HS256`. */
  readonly alg?: string
  /** Header `kid`. */
  readonly kid?: string
  /**
   * Lifetime from `nowSeconds`; default 3600. `null` leaves `exp` out. Ignored when `claims` already has `exp`.
   */
  readonly expiresInSeconds?: number | null
  /** The signing time in epoch seconds; default the wall clock (`signEffect`: the Effect `Clock`). */
  readonly nowSeconds?: number
}

/** Claims of a user session for `userToken`. */
export interface UserTokenOptions extends SignOptions {
  readonly sub?: string
  readonly weddingIds?: ReadonlyArray<string | number>
  readonly supplierIds?: ReadonlyArray<string | number>
}

const DEFAULT_LIFETIME_SECONDS = 3600
// Supabase's project API keys (anon, service_role) are long-lived JWTs; ten years mimics them.
const API_KEY_LIFETIME_SECONDS = 10 * 365 * 24 * 3600

const wallClockSeconds = (): number => Math.floor(Date.now() / 1000)

const signAt = (claims: Readonly<Record<string, unknown>>, options: SignOptions, now: number): Promise<string> => {
  const payload: Record<string, unknown> = { iat: now, ...claims }
  const lifetime = options.expiresInSeconds === undefined ? DEFAULT_LIFETIME_SECONDS : options.expiresInSeconds
  if (!("exp" in claims) && lifetime !== null) payload["exp"] = now + lifetime
  const alg = options.alg ?? "HS256"
  const key = options.privateKey ?? new TextEncoder().encode(options.secret ?? DEV_JWT_SECRET)
  return new SignJWT(payload as JWTPayload)
    .setProtectedHeader({ alg, typ: "JWT", ...(options.kid === undefined ? {} : { kid: options.kid }) })
    .sign(key)
}

/** Signs `claims` (adding `iat`, and `exp` unless present or `expiresInSeconds: null`). */
export const sign = (claims: Readonly<Record<string, unknown>>, options: SignOptions = {}): Promise<string> =>
  signAt(claims, options, options.nowSeconds ?? wallClockSeconds())

/** `sign`, with the signing time taken from the Effect `Clock` unless `nowSeconds` is given. */
export const signEffect = (
  claims: Readonly<Record<string, unknown>>,
  options: SignOptions = {}
): Effect.Effect<string> =>
  Effect.flatMap(
    Clock.currentTimeMillis,
    (ms) => Effect.promise(() => signAt(claims, options, options.nowSeconds ?? Math.floor(ms / 1000)))
  )

/** A project `anon` key as a JWT (role `anon`, ten-year lifetime unless overridden). */
export const anonToken = (options: SignOptions = {}): Promise<string> =>
  sign({ role: "anon", iss: "supabase" }, { expiresInSeconds: API_KEY_LIFETIME_SECONDS, ...options })

/** A project `service_role` key as a JWT (ten-year lifetime unless overridden). */
export const serviceRoleToken = (options: SignOptions = {}): Promise<string> =>
  sign({ role: "service_role", iss: "supabase" }, { expiresInSeconds: API_KEY_LIFETIME_SECONDS, ...options })

/** The claims `userToken` signs: an `authenticated` session with memberships in `app_metadata`. */
export const userClaims = (options: UserTokenOptions = {}): Record<string, unknown> => ({
  sub: options.sub ?? "00000000-0000-4000-8000-000000000001",
  role: "authenticated",
  aud: "authenticated",
  iss: "supabase",
  app_metadata: {
    provider: "email",
    wedding_ids: [...(options.weddingIds ?? [])],
    supplier_ids: [...(options.supplierIds ?? [])]
  },
  user_metadata: {}
})

/** An `authenticated` user session token (default lifetime one hour). */
export const userToken = (options: UserTokenOptions = {}): Promise<string> => {
  const { sub: _sub, weddingIds: _weddingIds, supplierIds: _supplierIds, ...signOptions } = options
  return sign(userClaims(options), signOptions)
}

/** A user token that expired `secondsAgo` seconds before `nowSeconds` (default 60 seconds ago). */
export const expiredToken = (
  options: UserTokenOptions & { readonly secondsAgo?: number } = {}
): Promise<string> => {
  const now = options.nowSeconds ?? wallClockSeconds()
  const { sub: _sub, weddingIds: _weddingIds, supplierIds: _supplierIds, secondsAgo, ...signOptions } = options
  const exp = now - (secondsAgo ?? 60)
  return sign({ ...userClaims(options), iat: exp - DEFAULT_LIFETIME_SECONDS, exp }, signOptions)
}
