/**
 * Presence in upstream mode: this process's own entries (`Presence.layerMemory`) plus the upstream channel's, so a
 * local client that joins a room gets in its `presence_state` the people connected to the hosted project too, and
 * those of the other gateway processes relaying to it (their aggregates unpacked, `RelayPresence`); their later joins
 * and leaves arrive as `presence_diff`s through the relay (`UpstreamBroker`), which also sends this process's entries
 * upstream as one aggregate per topic.
 */
import { Hub, Presence, Publication } from "@wedsync/hub"
import { Effect, Layer } from "effect"
import { UpstreamTopics } from "./UpstreamBroker.ts"
import type { PresenceEntries } from "./UpstreamPool.ts"

/** `presence_state` JSON with the upstream entries added (a key present on both sides keeps every meta). */
export const merge = (localJson: string, upstream: PresenceEntries): string => {
  const keys = Object.keys(upstream)
  if (keys.length === 0) return localJson
  const state = JSON.parse(localJson) as Record<string, { metas: Array<unknown> }>
  const out: Record<string, { metas: Array<unknown> }> = Object.create(null)
  for (const key of Object.keys(state)) out[key] = { metas: [...state[key]!.metas] }
  for (const key of keys) (out[key] ??= { metas: [] }).metas.push(...upstream[key]!.metas)
  return JSON.stringify(out)
}

export const layer: Layer.Layer<Presence.Presence, never, Hub.Hub | UpstreamTopics> = Layer.effect(
  Presence.Presence,
  Effect.gen(function*() {
    const local = yield* Presence.Presence
    const topics = yield* UpstreamTopics
    return {
      ...local,
      state: (topic, isPrivate) =>
        Effect.map(
          local.state(topic, isPrivate),
          (json) => merge(json, topics.presence(Publication.topicKey(topic, isPrivate)))
        )
    }
  })
).pipe(Layer.provide(Presence.Presence.layerMemory))
