/**
 * The scaling settings at start (`checkEnvironment`, exit 78 in `main.ts`): invalid `ADMISSION_*` values and a bad or
 * unreadable `WEDDING_CALENDAR_FILE` are refused with the other problems, beside the accepted cases.
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Exit } from "effect"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { checkEnvironment } from "../src/GatewayConfig.ts"

const withEnv = (env: Record<string, string>) => Effect.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env })))

const problemsOf = (env: Record<string, string>) =>
  checkEnvironment.pipe(
    withEnv(env),
    Effect.exit,
    Effect.map((exit) => (Exit.isSuccess(exit) ? "" : String(exit.cause)))
  )

const dir = mkdtempSync(join(tmpdir(), "wedsync-calendar-"))
const file = (name: string, text: string) => {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}

describe("scaling settings at start", () => {
  it.effect("refuses admission guards that cannot work and accepts valid ones", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* problemsOf({ ADMISSION_MAX_CONNECTIONS: "500", ADMISSION_RETRY_AFTER_MIN_S: "2" }), "")
      const refused = yield* problemsOf({ ADMISSION_MAX_CONNECTIONS: "0", ADMISSION_RETRY_AFTER_MAX_S: "1" })
      assert.include(refused, "ADMISSION_MAX_CONNECTIONS=0 must be a number above 0")
      assert.include(
        refused,
        "ADMISSION_RETRY_AFTER_MAX_S=1 must be an integer of at least ADMISSION_RETRY_AFTER_MIN_S=5"
      )
      assert.include(yield* problemsOf({ ADMISSION_MAX_CONNECTIONS: "many" }), "ADMISSION_MAX_CONNECTIONS")
    }))

  it.effect("refuses a bad or missing WEDDING_CALENDAR_FILE with its problems; a valid one passes", () =>
    Effect.gen(function*() {
      const good = file(
        "good.json",
        JSON.stringify({ weddings: [{ id: "w1", start: "2027-06-05T14:00:00Z", suppliers: 12, guests: 120 }] })
      )
      assert.strictEqual(yield* problemsOf({ WEDDING_CALENDAR_FILE: good }), "")
      const bad = file(
        "bad.json",
        JSON.stringify({ weddings: [{ id: "w1", start: "2027-06-05 14:00", suppliers: -1 }] })
      )
      const refused = yield* problemsOf({ WEDDING_CALENDAR_FILE: bad })
      assert.include(refused, "Invalid configuration")
      assert.include(refused, "is not a valid wedding calendar")
      assert.include(refused, `["weddings"][0]`)
      const missing = yield* problemsOf({ WEDDING_CALENDAR_FILE: join(dir, "absent.json") })
      assert.include(missing, "cannot be read")
      assert.include(missing, "ENOENT")
    }))
})
