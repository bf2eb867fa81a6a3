/**
 * Decides whether a principal may join a channel. This is WedSync's stand-in for Supabase's RLS read policies on
 * `realtime.messages`: a rule over the token's claims instead of a database query.
 *
 * Public channels are open to any verified principal, as in Supabase. Private channels admit `service_role`
 * everywhere, `wedding:<id>` to members of that wedding, `supplier:<id>` to that supplier's staff, and refuse
 * every other topic. The `<id>` is the whole rest of the subtopic, so `wedding:42:chat` is not `wedding:42`.
 * Membership is the token's `app_metadata` first; when it does not grant, the membership table (`Memberships`,
 * cached) is asked with the token's `sub`. Token verification happens before, in `TokenVerifier`.
 */
import { Clock, Context, Effect, Layer } from "effect"
import * as AuthError from "./AuthError.ts"
import { type Grant, Memberships, type ScopeKind } from "./Memberships.ts"
import * as Principal from "./Principal.ts"

/** The policy's interface. */
export interface Service {
  /**
   * Succeeds when `principal` may read `subtopic` (the topic without its `realtime:` prefix), else fails with
   * `Unauthorized`. Called on every private join and again when a joined channel receives a new token.
   */
  readonly authorizeJoin: (
    principal: Principal.Principal,
    subtopic: string,
    isPrivate: boolean
  ) => Effect.Effect<void, AuthError.AuthError>
}

const WEDDING_PREFIX = "wedding:"
const SUPPLIER_PREFIX = "supplier:"

const memberOf = (ids: ReadonlySet<string>, subtopic: string, prefix: string): boolean => {
  const id = subtopic.slice(prefix.length)
  return id.length > 0 && ids.has(id)
}

/** The wedding or supplier a `wedding:<id>` / `supplier:<id>` subtopic names, or `undefined`. */
export const scopeOf = (subtopic: string): { readonly scope: ScopeKind; readonly id: string } | undefined => {
  const scope = subtopic.startsWith(WEDDING_PREFIX)
    ? "wedding"
    : subtopic.startsWith(SUPPLIER_PREFIX)
    ? "supplier"
    : undefined
  if (scope === undefined) return undefined
  const id = subtopic.slice(scope === "wedding" ? WEDDING_PREFIX.length : SUPPLIER_PREFIX.length)
  return id.length > 0 ? { scope, id } : undefined
}

/** The subtopic of a grant's channel (`wedding:<id>`, `supplier:<id>`). */
export const subtopicOf = (grant: Pick<Grant, "scope" | "id">): string =>
  (grant.scope === "wedding" ? WEDDING_PREFIX : SUPPLIER_PREFIX) + grant.id

/** The claims rule, pure: `true` when `principal`'s token alone lets it join `subtopic`. */
export const decide = (principal: Principal.Principal, subtopic: string, isPrivate: boolean): boolean => {
  if (!isPrivate) return true
  if (Principal.isServiceRole(principal)) return true
  if (subtopic.startsWith(WEDDING_PREFIX)) return memberOf(principal.weddingIds, subtopic, WEDDING_PREFIX)
  if (subtopic.startsWith(SUPPLIER_PREFIX)) return memberOf(principal.supplierIds, subtopic, SUPPLIER_PREFIX)
  return false
}

export const make = Effect.gen(function*() {
  const memberships = yield* Memberships
  const authorizeJoin: Service["authorizeJoin"] = (principal, subtopic, isPrivate) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      // Every decision re-checks the expiry of the principal it is given: a socket's connect token may have
      // expired since it was verified.
      const expired = Principal.expiredSecondsAgo(principal, now)
      if (expired !== undefined) return Effect.fail(AuthError.make(AuthError.InvalidJWTToken.expired(expired)))
      if (decide(principal, subtopic, isPrivate)) return Effect.void
      const unauthorized = Effect.fail(AuthError.make(new AuthError.Unauthorized({ subtopic })))
      const scope = memberships.enabled && principal.sub !== undefined ? scopeOf(subtopic) : undefined
      if (scope === undefined) return unauthorized
      const grant: Grant = { userId: principal.sub!, scope: scope.scope, id: scope.id }
      return Effect.flatMap(memberships.isMember(grant), (member) => {
        if (!member) return unauthorized
        // Held so that a revocation seen by another process reaches this channel (see `Memberships`).
        memberships.hold(grant)
        return Effect.void
      })
    })
  return { authorizeJoin } satisfies Service
})

/** Decides channel access. */
export class ChannelPolicy extends Context.Service<ChannelPolicy, Service>()("@wedsync/auth/ChannelPolicy") {
  /** The WedSync rule: token claims (`decide`), then the membership table (`Memberships.layerNoop`: claims only). */
  static readonly layer: Layer.Layer<ChannelPolicy, never, Memberships> = Layer.effect(this, make)
}
