/**
 * The contract between channels and a source of database row changes (Postgres Changes).
 *
 * A channel that joins with `postgres_changes` bindings registers one `ChangeSubscriber`; the feed
 * validates each binding, then delivers `postgres_changes` frames to the subscriber's sink for the
 * rows its bindings match and its access allows, with the ids of the matching bindings. The
 * contract lives here, below both the connection (which subscribes) and the changes package (which
 * implements it), so neither imports the other. `layerNoop` is the feed of a gateway without a
 * database: every binding is refused with a clear reason.
 */
import { Context, Effect, Layer, Schema } from "effect"
import type { Sink } from "./Sink.ts"

/** One `postgres_changes` entry of a join, with the id the join reply gave it. */
export interface Binding {
  readonly id: number
  readonly event: string
  readonly schema: string
  readonly table: string | undefined
  readonly filter: string | undefined
  readonly select: ReadonlyArray<string> | undefined
}

/** What a subscriber may see: the role and memberships of its token (an auth `Principal` fits). */
export interface Access {
  readonly role: string
  /** Expiry of the token in epoch seconds; no row reaches an expired access. `undefined`: never expires. */
  readonly exp?: number | undefined
  /** The token's `sub`: memberships granted by the membership table are looked up with it. */
  readonly sub?: string | undefined
  readonly weddingIds: ReadonlySet<string>
  readonly supplierIds: ReadonlySet<string>
}

export interface ChangeSubscriber {
  /** Frames go here; its identity is the subscription's identity. */
  readonly sink: Sink
  /** The channel topic frames carry (`realtime:…`). */
  readonly topic: string
  readonly bindings: ReadonlyArray<Binding>
  readonly access: Access
}

/**
 * A binding the feed cannot serve. The message is the text of Supabase's `system` error for it
 * (`Unable to subscribe to changes with given parameters. <why>: <binding>`, or the filter parser's own text).
 */
export class UnableToSubscribe
  extends Schema.TaggedError<UnableToSubscribe>()("UnableToSubscribe", { message: Schema.String }) {}
/** A binding whose `filter` does not parse (`eq.`, `in.(…)`…): the parser's text, as Supabase sends it. */
export class InvalidFilter extends Schema.TaggedError<InvalidFilter>()("InvalidFilter", { message: Schema.String }) {}

export type RefusalReason = UnableToSubscribe | InvalidFilter

/** `UnableToSubscribe` for `binding`, saying why. */
export const unableToSubscribe = (binding: Binding, why: string): UnableToSubscribe =>
  new UnableToSubscribe({
    message: `Unable to subscribe to changes with given parameters. ${why}: ${describe(binding)}`
  })

/** Per binding: subscribed, or refused with a reason (`ErrorReply` renders it). */
export type BindingResult = { readonly _tag: "Subscribed" } | {
  readonly _tag: "Refused"
  readonly reason: RefusalReason
}

export interface ChangeFeedShape {
  /**
   * Registers (or replaces, for the same sink) a subscriber and answers per binding. Completes only
   * once the feed really delivers for the subscribed bindings, so "Subscribed to PostgreSQL" is
   * never sent early.
   */
  readonly subscribe: (subscriber: ChangeSubscriber) => Effect.Effect<ReadonlyArray<BindingResult>>
  readonly unsubscribe: (sink: Sink) => void
}

export class ChangeFeed extends Context.Service<ChangeFeed, ChangeFeedShape>()("@wedsync/hub/ChangeFeed") {
  /** No database configured: every binding is refused, saying why. */
  static readonly layerNoop: Layer.Layer<ChangeFeed> = Layer.succeed(ChangeFeed, {
    subscribe: (subscriber) =>
      Effect.succeed(
        subscriber.bindings.map((binding) => ({
          _tag: "Refused",
          reason: unableToSubscribe(
            binding,
            "Postgres Changes are not enabled on this gateway (DATABASE_URL is not set)"
          )
        }))
      ),
    unsubscribe: () => undefined
  })
}

/** Supabase's rendering of a binding in its error messages. */
export const describe = (binding: Binding): string =>
  `[event: ${binding.event}, schema: ${binding.schema}, table: ${binding.table ?? "*"}, filters: [${
    binding.filter ?? ""
  }]]`
