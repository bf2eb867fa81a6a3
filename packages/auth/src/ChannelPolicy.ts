/**
 * Decides whether a principal may join a channel. This is WedSync's stand-in for Supabase's RLS read policies on
 * `realtime.messages`: a rule over the token's claims instead of a database query.
 *
 * Public channels are open to any verified principal, as in Supabase. Private channels admit `service_role`
 * everywhere, `wedding:<id>` to members of that wedding, `supplier:<id>` to that supplier's staff, and refuse
 * every other topic. The `<id>` is the whole rest of the subtopic, so `wedding:42:chat` is not `wedding:42`.
 * Token verification happens before, in `TokenVerifier`.
 */
import { Clock, Context, Effect, Layer } from "effect"
import * as AuthError from "./AuthError.ts"
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

/** The rule itself, pure: `true` when `principal` may join `subtopic`. */
export const decide = (principal: Principal.Principal, subtopic: string, isPrivate: boolean): boolean => {
  if (!isPrivate) return true
  if (Principal.isServiceRole(principal)) return true
  if (subtopic.startsWith(WEDDING_PREFIX)) return memberOf(principal.weddingIds, subtopic, WEDDING_PREFIX)
  if (subtopic.startsWith(SUPPLIER_PREFIX)) return memberOf(principal.supplierIds, subtopic, SUPPLIER_PREFIX)
  return false
}

/** Decides channel access. */
export class ChannelPolicy extends Context.Service<ChannelPolicy, Service>()("@wedsync/auth/ChannelPolicy") {
  /**
   * The WedSync rule (`decide`). Decisions are pure functions of the claims, so nothing is cached yet; a later
   * issue caches them once policies read from the database.
   */
  static readonly layer: Layer.Layer<ChannelPolicy> = Layer.succeed(this, {
    authorizeJoin: (principal, subtopic, isPrivate) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        // Every decision re-checks the expiry of the principal it is given: a socket's connect token may have
        // expired since it was verified.
        const expired = Principal.expiredSecondsAgo(principal, now)
        if (expired !== undefined) return Effect.fail(AuthError.make(AuthError.InvalidJWTToken.expired(expired)))
        return decide(principal, subtopic, isPrivate)
          ? Effect.void
          : Effect.fail(AuthError.make(new AuthError.Unauthorized({ subtopic })))
      })
  })
}
