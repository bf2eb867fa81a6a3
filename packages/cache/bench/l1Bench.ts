/**
 * L1 microbenchmark of the layered cache (issue #8: L1 get p99 <= 5 µs). A `LayeredCache` (L1 only) is filled with
 * `--keys` membership-like decisions; then `--samples` reads of random present keys are timed one by one with
 * `process.hrtime.bigint()`, both through `get` run as an Effect (how the gateway's join path reads it, inside an
 * already running fiber: `Effect.runSync` of a loop) and through the synchronous `getUnsafe`. Each run reports
 * p50/p99/p99.9/max per path; the report's figure is the worst p99 of the runs. The timer itself costs ~50 ns,
 * included in every sample.
 *
 * It lives beside the package, not in tools/bench, because it times the package's own API in process (tools may
 * import only the protocol: they measure what a client sees).
 *
 * Run: `npm run bench:cache` (defaults: 100,000 keys, 1,000,000 samples per path, 5 runs).
 */
import { Effect, Layer } from "effect"
import { parseArgs } from "node:util"
import { CacheCodec, CacheConfig, CacheKind, LayeredCache } from "../src/index.ts"

const { values } = parseArgs({
  options: {
    keys: { type: "string", default: "100000" },
    samples: { type: "string", default: "1000000" },
    runs: { type: "string", default: "5" }
  }
})
const keys = Number(values.keys)
const samples = Number(values.samples)
const runs = Number(values.runs)

const decisions = CacheKind.make({ name: "user", id: "bench-decision", codec: CacheCodec.boolean })
const keyOf = (i: number) => `user-${i}:wedding-${i % 500}`

const program = Effect.gen(function*() {
  const cache = yield* LayeredCache.LayeredCache
  for (let i = 0; i < keys; i++) yield* cache.get(decisions, keyOf(i), Effect.succeed(i % 3 !== 0))
  // Untimed warm-up of both paths, so the JIT's compilation is not inside the first run's samples.
  const warmup = Effect.die("the bench reads present keys only")
  for (let i = 0; i < 200_000; i++) {
    yield* cache.get(decisions, keyOf(i % keys), warmup)
    cache.getUnsafe(decisions, keyOf(i % keys))
  }
  const lines: Array<string> = []
  const worst = { get: 0, getUnsafe: 0 }
  for (let run = 1; run <= runs; run++) {
    const viaEffect = new Float64Array(samples)
    const viaSync = new Float64Array(samples)
    const order = Array.from({ length: samples }, () => keyOf(Math.floor(Math.random() * keys)))
    // The loader never runs (every key is present); it is there because `get` takes one.
    const never = Effect.die("the bench reads present keys only")
    for (let i = 0; i < samples; i++) {
      const started = process.hrtime.bigint()
      yield* cache.get(decisions, order[i]!, never)
      viaEffect[i] = Number(process.hrtime.bigint() - started) / 1000
    }
    for (let i = 0; i < samples; i++) {
      const started = process.hrtime.bigint()
      cache.getUnsafe(decisions, order[i]!)
      viaSync[i] = Number(process.hrtime.bigint() - started) / 1000
    }
    viaEffect.sort()
    viaSync.sort()
    // Nearest-rank percentile of the sorted microseconds.
    const at = (sorted: Float64Array, q: number) => sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!
    const us = (sorted: Float64Array, q: number) => at(sorted, q).toFixed(2)
    worst.get = Math.max(worst.get, at(viaEffect, 0.99))
    worst.getUnsafe = Math.max(worst.getUnsafe, at(viaSync, 0.99))
    lines.push(
      `run ${run}: get (Effect) p50 ${us(viaEffect, 0.5)} µs, p99 ${us(viaEffect, 0.99)} µs, p99.9 ${
        us(viaEffect, 0.999)
      } µs, ` +
        `max ${viaEffect[samples - 1]!.toFixed(1)} µs; getUnsafe p50 ${us(viaSync, 0.5)} µs, p99 ${
          us(viaSync, 0.99)
        } µs, ` +
        `p99.9 ${us(viaSync, 0.999)} µs`
    )
  }
  return { lines, worst }
})

const { lines, worst } = await Effect.runPromise(
  program.pipe(
    Effect.provide(LayeredCache.LayeredCache.layerMemory.pipe(Layer.provide(CacheConfig.CacheConfig.layer())))
  )
)
console.log(
  `L1 get: ${keys.toLocaleString("en-US")} keys in L1, ${
    samples.toLocaleString("en-US")
  } timed reads per path, ${runs} runs`
)
for (const line of lines) console.log(line)
console.log(
  `worst p99 of ${runs}: get (Effect) ${worst.get.toFixed(2)} µs, getUnsafe ${
    worst.getUnsafe.toFixed(2)
  } µs (target <= 5 µs)`
)
