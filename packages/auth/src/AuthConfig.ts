/**
 * Settings for token verification: the HS secret, an optional JWKS URL for asymmetric tokens, and the opaque
 * `sb_…` API keys this gateway accepts.
 *
 * This package never reads `process.env`: `apps/gateway` provides `AuthConfig.layerConfig` (or builds
 * `AuthConfig.layer({...})`). `layer()` alone uses the well-known Supabase local-development secret and is for tests
 * and local runs only.
 */
import { Config, Context, Layer, Option, Redacted } from "effect"

/**
 * The JWT secret of `supabase start` and of Supabase's self-hosting `.env` example. Public knowledge: anyone can
 * mint a `service_role` token with it, so it must never be the secret of a reachable deployment.
 */
export const DEV_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"

/** Development defaults: the dev secret, no JWKS, any publishable key, no secret keys, no tolerance. */
export const defaults: AuthConfig["Service"] = {
  jwtSecret: Redacted.make(DEV_JWT_SECRET),
  jwksUrl: undefined,
  publishableKeys: [],
  secretKeys: [],
  clockToleranceSeconds: 0,
  issuer: undefined,
  audience: undefined
}

/** True when the configured secret is the public development one. The composition root warns about it. */
export const usesDevJwtSecret = (config: AuthConfig["Service"]): boolean =>
  Redacted.value(config.jwtSecret) === DEV_JWT_SECRET

const commaList = (raw: string): ReadonlyArray<string> =>
  raw
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0)

const optionalString = (name: string): Config.Config<string | undefined> =>
  Config.String(name).pipe(Config.option, Config.map(Option.getOrUndefined))

/** The fewest bytes an HS secret may have outside development (HS256's key size; RFC 7518 §3.2). */
export const MIN_SECRET_BYTES = 32

/**
 * Reads `JWT_SECRET` (default: `DEV_JWT_SECRET`, flagged by `usesDevJwtSecret`), `JWT_JWKS_URL` (optional, must be
 * a URL), `SUPABASE_PUBLISHABLE_KEYS` and `SUPABASE_SECRET_KEYS` (comma-separated, default empty), `JWT_ISSUER` and
 * `JWT_AUDIENCE` (optional). The length rule for `JWT_SECRET` is the gateway's start-up check.
 */
export const config: Config.Config<AuthConfig["Service"]> = Config.all({
  jwtSecret: Config.Redacted("JWT_SECRET").pipe(Config.withDefault(defaults.jwtSecret)),
  jwksUrl: Config.URL("JWT_JWKS_URL").pipe(
    Config.option,
    Config.map(Option.match({ onNone: () => undefined, onSome: (url) => url.href }))
  ),
  publishableKeys: Config.String("SUPABASE_PUBLISHABLE_KEYS").pipe(
    Config.withDefault(""),
    Config.map(commaList)
  ),
  secretKeys: Config.Redacted("SUPABASE_SECRET_KEYS").pipe(
    Config.withDefault(Redacted.make("")),
    Config.map((keys) => commaList(Redacted.value(keys)).map((key) => Redacted.make(key)))
  ),
  clockToleranceSeconds: Config.succeed(defaults.clockToleranceSeconds),
  issuer: optionalString("JWT_ISSUER"),
  audience: optionalString("JWT_AUDIENCE")
})

/** The verification settings. */
export class AuthConfig extends Context.Service<
  AuthConfig,
  {
    /** Secret for HS256/384/512 tokens. */
    readonly jwtSecret: Redacted.Redacted<string>
    /** Where to fetch the JWKS for RS*, ES* and EdDSA tokens (matched by `kid`); `undefined` disables them. */
    readonly jwksUrl: string | undefined
    /** Accepted `sb_publishable_…` keys; empty means any `sb_publishable_…` value is accepted as `anon`. */
    readonly publishableKeys: ReadonlyArray<string>
    /** Accepted `sb_secret_…` keys (role `service_role`); empty means none is accepted. */
    readonly secretKeys: ReadonlyArray<Redacted.Redacted<string>>
    /** Seconds a token is still accepted after its `exp` (and before its `nbf`); Supabase uses 0. */
    readonly clockToleranceSeconds: number
    /** When set, a JWT's `iss` must equal it. */
    readonly issuer: string | undefined
    /** When set, a JWT's `aud` (a string or an array) must name it. */
    readonly audience: string | undefined
  }
>()("@wedsync/auth/AuthConfig")
{
  /** `defaults` overridden by `options`; `layer()` is the development defaults (dev JWT secret), for tests and local runs. */
  static readonly layer = (options?: Partial<AuthConfig["Service"]>): Layer.Layer<AuthConfig> =>
    Layer.succeed(AuthConfig, { ...defaults, ...options })

  /** `AuthConfig` loaded from `config` through the current `ConfigProvider`. */
  static readonly layerConfig: Layer.Layer<AuthConfig, Config.ConfigError> = Layer.effect(AuthConfig, config)
}
