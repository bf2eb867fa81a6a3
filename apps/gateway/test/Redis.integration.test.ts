/**
 * The gateway with `REDIS_URL`: `/ready` reports Redis's health without making the node unready (it serves from its
 * own cache and sockets while Redis is away), `/metrics` carries the Redis series, and the client comes back by itself
 * when Redis does. A Redis of the test's own, so it can be stopped.
 */
import { assert, describe, it } from "@effect/vitest"
import { RedisServer, uniquePrefix, waitUntil } from "@wedsync/testkit"
import { Redacted } from "effect"
import { afterAll, beforeAll } from "vitest"
import { type RunningGateway, startGateway } from "./support/Gateway.ts"

interface Ready {
  readonly ready: boolean
  readonly redis?: { readonly ok: boolean; readonly latencyMs?: number; readonly error?: string }
}

const readyOf = async (gateway: RunningGateway): Promise<{ readonly status: number; readonly body: Ready }> => {
  const response = await fetch(`${gateway.url}/ready`)
  return { status: response.status, body: (await response.json()) as Ready }
}

describe("gateway with REDIS_URL", () => {
  let redis: RedisServer.Server
  let gateway: RunningGateway
  let without: RunningGateway
  beforeAll(async () => {
    redis = await RedisServer.start()
    gateway = await startGateway({
      redis: { url: Redacted.make(redis.url), prefix: uniquePrefix("gw-redis"), commandTimeoutMs: 300 }
    })
    without = await startGateway()
  })
  afterAll(async () => {
    await Promise.all([gateway.stop(), without.stop()])
    await redis.stop()
  })

  it("reports Redis in /ready, and without REDIS_URL says nothing of it", async () => {
    const up = await readyOf(gateway)
    assert.strictEqual(up.status, 200)
    assert.strictEqual(up.body.redis?.ok, true)
    assert.isNumber(up.body.redis?.latencyMs)
    const plain = await readyOf(without)
    assert.strictEqual(plain.status, 200)
    assert.isUndefined(plain.body.redis)
  })

  it("stays ready while Redis is down, saying so, and recovers when it returns", async () => {
    await redis.kill()
    const down = await waitUntil("Redis reported down", () => readyOf(gateway), (r) => r.body.redis?.ok === false)
    assert.strictEqual(down.status, 200)
    assert.strictEqual(down.body.ready, true)
    assert.isString(down.body.redis?.error)
    await redis.restart()
    const back = await waitUntil("Redis reported up again", () => readyOf(gateway), (r) => r.body.redis?.ok === true, {
      timeoutMs: 10_000
    })
    assert.strictEqual(back.status, 200)
    const metrics = await (await fetch(`${gateway.url}/metrics`)).text()
    assert.match(metrics, /^wedsync_redis_connected\{kind="command"\} 1$/m)
    assert.match(metrics, /^wedsync_redis_reconnects_total\{kind="command"\} [1-9]/m)
  })
})
