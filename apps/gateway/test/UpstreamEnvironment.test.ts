/** Upstream mode's variables: both or neither of the project and its key, and each value checked, beside the accepted case. */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Exit } from "effect"
import { checkEnvironment, upstreamFromEnv } from "../src/GatewayConfig.ts"

const withEnv = (env: Record<string, string>) => Effect.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env })))

const problemsOf = (env: Record<string, string>) =>
  checkEnvironment.pipe(
    withEnv(env),
    Effect.exit,
    Effect.map((exit) => (Exit.isSuccess(exit) ? "" : String(exit.cause)))
  )

const project = { SUPABASE_URL: "https://abc.supabase.co", SUPABASE_SERVICE_ROLE_KEY: "service-role-key" }

describe("upstream environment", () => {
  it.effect("accepts the project with its key and the UPSTREAM_* settings", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* problemsOf(project), "")
      assert.strictEqual(
        yield* problemsOf({
          ...project,
          UPSTREAM_CHANNELS_PER_SOCKET: "100",
          UPSTREAM_MAX_SOCKETS: "4",
          UPSTREAM_IDLE_GRACE: "30 seconds",
          UPSTREAM_HEARTBEAT_INTERVAL: "25 seconds",
          UPSTREAM_JOIN_TIMEOUT: "10 seconds",
          UPSTREAM_JOINS_PER_SECOND: "100"
        }),
        ""
      )
      assert.isDefined(yield* upstreamFromEnv.pipe(withEnv(project)))
      assert.isUndefined(yield* upstreamFromEnv.pipe(withEnv({})))
    }))

  it.effect("refuses one without the other, a bad URL and bad settings, never echoing the key", () =>
    Effect.gen(function*() {
      assert.include(
        yield* problemsOf({ SUPABASE_URL: project.SUPABASE_URL }),
        "SUPABASE_URL: needs SUPABASE_SERVICE_ROLE_KEY"
      )
      const keyOnly = yield* problemsOf({ SUPABASE_SERVICE_ROLE_KEY: "service-role-key" })
      assert.include(keyOnly, "SUPABASE_SERVICE_ROLE_KEY: needs SUPABASE_URL")
      assert.notInclude(keyOnly, "service-role-key")
      assert.include(yield* problemsOf({ ...project, SUPABASE_URL: "ftp://x" }), "SUPABASE_URL=")
      assert.include(
        yield* problemsOf({ ...project, UPSTREAM_CHANNELS_PER_SOCKET: "0" }),
        "UPSTREAM_CHANNELS_PER_SOCKET"
      )
      assert.include(yield* problemsOf({ ...project, UPSTREAM_IDLE_GRACE: "soon" }), "UPSTREAM_IDLE_GRACE")
      assert.include(yield* problemsOf({ ...project, UPSTREAM_JOINS_PER_SECOND: "-1" }), "UPSTREAM_JOINS_PER_SECOND")
    }))
})
