/**
 * A presence node in a process of its own, for the test that kills one outright: it tracks `count` entries
 * (`<label>-0`…) in `topic` through Redis, prints `tracked <refs as JSON>` and waits to be killed.
 * Usage: node presenceNode.ts <redis url> <prefix> <heartbeat ms> <topic> <label> <count>
 */
import { RedisClient, RedisConfig } from "@wedsync/redis"
import { Context, Effect, Layer, Redacted } from "effect"
import { Broker, Hub, Presence } from "../../src/index.ts"

const [url = "", prefix = "", heartbeatMs = "", topic = "", label = "", count = ""] = process.argv.slice(2)

const node = Presence.Presence.layerRedis({ heartbeatMs: Number(heartbeatMs) }).pipe(
  Layer.provideMerge(Hub.Hub.layer),
  Layer.provideMerge(Broker.Broker.layerRedis),
  Layer.provide(RedisClient.RedisClient.layer),
  Layer.provide(RedisConfig.RedisConfig.layer({ url: Redacted.make(url), prefix })),
  Layer.orDie
)

const program = Effect.gen(function*() {
  const context = yield* Layer.build(node)
  const presence = Context.get(context, Presence.Presence)
  for (let i = 0; i < Number(count); i++) yield* presence.track(topic, false, `${label}-${i}`, {}, { i })
  const state = JSON.parse(yield* presence.state(topic, false)) as Record<string, { metas: Array<{ phx_ref: string }> }>
  const refs = Object.values(state).flatMap((group) => group.metas.map((meta) => meta.phx_ref))
  console.log(`tracked ${JSON.stringify(refs)}`)
  return yield* Effect.never
})

Effect.runFork(Effect.scoped(program))
