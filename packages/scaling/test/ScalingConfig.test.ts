import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect } from "effect"
import { defaults, problems, ScalingConfig } from "../src/ScalingConfig.ts"

describe("ScalingConfig", () => {
  it("the defaults are consistent", () => {
    assert.deepStrictEqual(problems(defaults), [])
  })

  it("names every inconsistent setting at once; the corrected settings pass", () => {
    const bad = {
      ...defaults,
      minReplicas: 4,
      maxReplicas: 3,
      headroom: 1,
      retryAfterMinSeconds: 10,
      retryAfterMaxSeconds: 5
    }
    assert.deepStrictEqual(problems(bad), [
      "SCALE_MAX_REPLICAS=3 must be at least SCALE_MIN_REPLICAS=4",
      "SCALE_HEADROOM=1 must be at least 0 and below 1",
      "ADMISSION_RETRY_AFTER_MAX_S=5 must be an integer of at least ADMISSION_RETRY_AFTER_MIN_S=10"
    ])
    assert.deepStrictEqual(problems({ ...bad, maxReplicas: 4, headroom: 0.5, retryAfterMaxSeconds: 10 }), [])
  })

  it.effect("layer merges a partial over the defaults", () =>
    Effect.gen(function*() {
      const config = yield* ScalingConfig
      assert.strictEqual(config.maxReplicas, 3)
      assert.strictEqual(config.headroom, 0.2)
    }).pipe(Effect.provide(ScalingConfig.layer({ maxReplicas: 3 }))))

  it.effect("layerConfig reads the environment: durations, numbers, the season mode and the calendar file", () =>
    Effect.gen(function*() {
      const config = yield* ScalingConfig
      assert.strictEqual(config.minReplicas, 2)
      assert.strictEqual(config.leadTimeMs, 45 * 60_000)
      assert.strictEqual(config.scaleDownStabilizationMs, 120_000)
      assert.strictEqual(config.capacity.cpu, 0.75)
      assert.strictEqual(config.capacity.connections, defaults.capacity.connections)
      assert.strictEqual(config.seasonMode, "on")
      assert.strictEqual(config.calendarFile, "/etc/wedsync/calendar.json")
    }).pipe(
      Effect.provide(ScalingConfig.layerConfig),
      Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({
        SCALE_MIN_REPLICAS: "2",
        SCALE_LEAD_TIME: "45 minutes",
        SCALE_DOWN_STABILIZATION: "2 minutes",
        SCALE_TARGET_CPU: "0.75",
        SEASON_MODE: "on",
        WEDDING_CALENDAR_FILE: "/etc/wedsync/calendar.json"
      })))
    ))

  it.effect("layerConfig refuses a season mode outside on, off and auto", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.provide(
        Effect.gen(function*() {
          return yield* ScalingConfig
        }),
        ScalingConfig.layerConfig
      ))
      assert.match(String(error), /SEASON_MODE/)
    }).pipe(Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ SEASON_MODE: "sometimes" })))))
})
