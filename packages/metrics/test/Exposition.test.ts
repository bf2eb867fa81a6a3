import { assert, describe, it } from "@effect/vitest"
import { Effect, Metric } from "effect"
import { Exposition } from "../src/index.ts"

describe("Exposition", () => {
  it.effect("renders HELP and TYPE lines with the values, ending in a newline", () =>
    Effect.gen(function*() {
      yield* Metric.update(Metric.gauge("wedsync_test_rooms", { description: "Rooms open." }), 3)
      const text = yield* Exposition.render
      assert.strictEqual(
        text,
        "# HELP wedsync_test_rooms Rooms open.\n# TYPE wedsync_test_rooms gauge\nwedsync_test_rooms 3\n"
      )
    }).pipe(Effect.provideService(Metric.MetricRegistry, new Map())))

  it.effect("renders nothing for an empty registry", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* Exposition.render, "")
    }).pipe(Effect.provideService(Metric.MetricRegistry, new Map())))

  it("declares the Prometheus text content type", () => {
    assert.strictEqual(Exposition.contentType, "text/plain; version=0.0.4; charset=utf-8")
  })
})
