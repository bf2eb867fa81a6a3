/**
 * Turns the token of a connect (`apikey`), a join (`access_token`) or an `access_token` event into a `Principal`,
 * with Supabase Realtime's rules and error texts.
 *
 * Accepted: HS256/384/512 JWTs signed with `AuthConfig.jwtSecret`; RS*, ES* and EdDSA JWTs whose `kid` is in the
 * JWKS at `AuthConfig.jwksUrl`; and the opaque `sb_publishable_…` (role `anon`) and `sb_secret_…` (role
 * `service_role`) keys, which Supabase's API gateway would otherwise translate before Realtime sees them. A JWT
 * must carry a string `role` and a numeric `exp` in the future, and any `nbf` in the past, judged by the Effect
 * `Clock` (so `TestClock` drives expiry in tests); with `issuer` / `audience` configured, its `iss` must equal the one
 * and its `aud` name the other. `alg: none` and algorithms outside the lists below have no signer and are refused. `verify` never dies: every input either succeeds or fails with an `AuthError`.
 *
 * It does not decide channel access (`ChannelPolicy`) or watch expiry while a channel is joined (`connection`
 * schedules that from `Principal.exp`).
 */
import { Clock, Context, Effect, Layer, Redacted } from "effect"
import { compactVerify, createRemoteJWKSet, decodeJwt, decodeProtectedHeader, errors } from "jose"
import type { ProtectedHeaderParameters } from "jose"
import { createHash, createSecretKey, timingSafeEqual } from "node:crypto"
import type { KeyObject } from "node:crypto"
import { AuthConfig, usesDevJwtSecret } from "./AuthConfig.ts"
import * as AuthError from "./AuthError.ts"
import * as Principal from "./Principal.ts"

/** The verifier's interface. */
export interface Service {
  /**
   * Verifies a token as received on the wire: it is URL-decoded and stripped of whitespace first, like Supabase's
   * `clean_token`. A blank token fails with `ApiKeyMissing`.
   */
  readonly verify: (token: string) => Effect.Effect<Principal.Principal, AuthError.AuthError>
}

/** Most verified tokens kept in memory; see `make`. */
const CACHE_MAX_ENTRIES = 10_000

const PUBLISHABLE_PREFIX = "sb_publishable_"
const SECRET_PREFIX = "sb_secret_"

const HS_ALGORITHMS: ReadonlySet<string> = new Set(["HS256", "HS384", "HS512"])
// Supabase's list (`jwt_verification.ex`); PS* is absent there too. Ed448 is not implemented by jose 6.
const ASYMMETRIC_ALGORITHMS: ReadonlySet<string> = new Set([
  "RS256",
  "RS384",
  "RS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "Ed25519"
])

const fail = (reason: AuthError.AuthErrorReason) => Effect.fail(AuthError.make(reason))

/** URL-decode (keeping the raw text when it is not valid percent-encoding), then drop every whitespace character. */
const cleanToken = (raw: string): string => {
  let decoded = raw
  if (raw.includes("%")) {
    try {
      decoded = decodeURIComponent(raw)
    } catch {
      // Malformed percent-encoding: verify the raw text, which then fails as a malformed JWT.
    }
  }
  return decoded.replace(/\s/g, "")
}

interface Peeked {
  readonly header: ProtectedHeaderParameters
  readonly claims: Record<string, unknown>
}

// Reads header and claims without trusting them, so a non-JWT is told apart from a bad signature.
const peek = (token: string): Peeked | undefined => {
  try {
    const claims = decodeJwt(token)
    const header = decodeProtectedHeader(token)
    return { header, claims }
  } catch {
    return undefined
  }
}

const namesAudience = (aud: unknown, audience: string): boolean =>
  aud === audience || (Array.isArray(aud) && aud.includes(audience))

const sha256 = (value: string): Buffer => createHash("sha256").update(value).digest()

const nowSeconds = Effect.map(Clock.currentTimeMillis, (ms) => Math.floor(ms / 1000))

/**
 * Builds the verifier from `AuthConfig`. Verified JWTs are cached by token string (at most `CACHE_MAX_ENTRIES`,
 * least recently used evicted first) because a client sends the same token with every channel join and again as an
 * `access_token` event after each join, and a signature check (RS/ES above all) costs far more than a map lookup. Each hit re-checks `exp`
 * against the clock, so caching never extends a token's life. Failures are not cached (a JWKS outage must not
 * stick). A key removed from the JWKS keeps its cached tokens valid until they expire.
 */
export const make: Effect.Effect<Service, never, AuthConfig> = Effect.gen(function*() {
  const config = yield* AuthConfig
  const tolerance = Math.max(0, Math.floor(config.clockToleranceSeconds))
  const secretKey: KeyObject = createSecretKey(Buffer.from(Redacted.value(config.jwtSecret), "utf8"))
  // With a JWKS configured and no secret of its own, the public development secret must not sign anything: anyone
  // could mint a service_role token with it. HS tokens are then refused (no signer).
  const hsDisabled = config.jwksUrl !== undefined && usesDevJwtSecret(config)
  const publishableKeys: ReadonlySet<string> = new Set(config.publishableKeys)
  // Hashing first gives equal-length buffers, so timingSafeEqual can compare keys of any length.
  const secretKeyDigests = config.secretKeys.map((key) => sha256(Redacted.value(key)))

  let jwks: ReturnType<typeof createRemoteJWKSet> | undefined
  if (config.jwksUrl !== undefined) {
    const url = URL.parse(config.jwksUrl)
    if (url === null) {
      yield* Effect.logError("AuthConfig.jwksUrl is not a URL; RS/ES/EdDSA tokens will fail with JwtSignerError")
    } else {
      jwks = createRemoteJWKSet(url)
    }
  }

  const cache = new Map<string, Principal.Principal>()
  const remember = (principal: Principal.Principal): void => {
    if (cache.size >= CACHE_MAX_ENTRIES) {
      const oldest = cache.keys().next()
      if (!oldest.done) cache.delete(oldest.value)
    }
    cache.set(principal.token, principal)
  }

  const isExpired = (exp: number, now: number): boolean => exp + tolerance <= now

  const verifyApiKey = (token: string): Effect.Effect<Principal.Principal, AuthError.AuthError> | undefined => {
    if (token.startsWith(PUBLISHABLE_PREFIX)) {
      return publishableKeys.size === 0 || publishableKeys.has(token)
        ? Effect.succeed(Principal.fromApiKey("anon", token))
        : fail(new AuthError.JwtSignatureError())
    }
    if (token.startsWith(SECRET_PREFIX)) {
      const digest = sha256(token)
      return secretKeyDigests.some((known) => timingSafeEqual(known, digest))
        ? Effect.succeed(Principal.fromApiKey(Principal.SERVICE_ROLE, token))
        : fail(new AuthError.JwtSignatureError())
    }
    return undefined
  }

  const verifyJwt = Effect.fnUntraced(function*(token: string, now: number) {
    const peeked = peek(token)
    if (peeked === undefined) return yield* fail(new AuthError.MalformedJWT())
    const { claims, header } = peeked
    const alg = typeof header.alg === "string" ? header.alg : undefined
    const kid = typeof header.kid === "string" ? header.kid : undefined

    let key: KeyObject | NonNullable<typeof jwks>
    if (alg !== undefined && HS_ALGORITHMS.has(alg) && !hsDisabled) {
      // Like Supabase, an HS token uses the secret even when it names a kid: Supabase Auth tokens do.
      key = secretKey
    } else if (alg !== undefined && ASYMMETRIC_ALGORITHMS.has(alg) && kid !== undefined && jwks !== undefined) {
      key = jwks
    } else {
      // Supabase gives the kid-less text when no signer applies at all (unknown alg, no kid, no JWKS).
      return yield* fail(new AuthError.JwtSignerError({}))
    }

    yield* Effect.tryPromise({
      try: () => compactVerify(token, key, { algorithms: [alg] }),
      catch: (error): AuthError.AuthErrorReason => {
        if (error instanceof errors.JWSSignatureVerificationFailed) return new AuthError.JwtSignatureError()
        if (error instanceof errors.JWSInvalid) return new AuthError.MalformedJWT()
        // No matching JWK, several matches, JWKS unreachable or invalid, unusable key: no signer for this token.
        return new AuthError.JwtSignerError(kid === undefined ? {} : { kid })
      }
    }).pipe(Effect.mapError(AuthError.make))

    if ("iat" in claims && typeof claims["iat"] !== "number") return yield* fail(new AuthError.MalformedJWT())
    if ("nbf" in claims) {
      const nbf = claims["nbf"]
      if (typeof nbf !== "number" || !Number.isFinite(nbf) || nbf - tolerance > now) {
        return yield* fail(AuthError.InvalidJWTToken.notYetValid())
      }
    }
    if (config.issuer !== undefined && claims["iss"] !== config.issuer)
      return yield* fail(AuthError.InvalidJWTToken.wrongIssuer())
    if (config.audience !== undefined && !namesAudience(claims["aud"], config.audience)) {
      return yield* fail(AuthError.InvalidJWTToken.wrongAudience())
    }
    // Supabase validates `exp` before it checks that `role` and `exp` exist, so an expired token without a role
    // reports the expiry.
    if ("exp" in claims) {
      const exp = claims["exp"]
      if (typeof exp !== "number" || !Number.isFinite(exp)) {
        return yield* fail(AuthError.InvalidJWTToken.invalidExpiration())
      }
      const rounded = Math.round(exp)
      if (isExpired(rounded, now)) return yield* fail(AuthError.InvalidJWTToken.expired(now - rounded))
    }
    const role = claims["role"]
    if (typeof role !== "string" || role.length === 0 || !("exp" in claims)) {
      return yield* fail(AuthError.InvalidJWTToken.missingClaims())
    }
    return Principal.make({ claims, token })
  })

  const verify = Effect.fn("TokenVerifier.verify")(function*(raw: string) {
    const token = cleanToken(raw)
    if (token.length === 0) return yield* fail(new AuthError.ApiKeyMissing())
    const apiKey = verifyApiKey(token)
    if (apiKey !== undefined) return yield* apiKey

    const now = yield* nowSeconds
    const cached = cache.get(token)
    if (cached !== undefined) {
      cache.delete(token)
      if (cached.exp !== undefined && isExpired(cached.exp, now)) {
        return yield* fail(AuthError.InvalidJWTToken.expired(now - cached.exp))
      }
      cache.set(token, cached)
      return cached
    }

    const principal = yield* verifyJwt(token, now)
    remember(principal)
    return principal
  })

  return { verify } satisfies Service
})

/** Verifies tokens as Supabase Realtime does. */
export class TokenVerifier extends Context.Service<TokenVerifier, Service>()("@wedsync/auth/TokenVerifier") {
  /** The live verifier; needs `AuthConfig`. */
  static readonly layer: Layer.Layer<TokenVerifier, never, AuthConfig> = Layer.effect(this, make)
}
