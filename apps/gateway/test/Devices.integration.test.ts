/**
 * Issue 8, item 5 against running gateways: two gateways on one Redis (the local one, under a prefix of the test's
 * own) each count the devices joined to private wedding and supplier channels, publish them, and `/admin/devices` on
 * either answers the sum; a client that disconnects stops being counted everywhere. The admin token is required
 * (missing and wrong refused beside the accepted case), and without `ADMIN_TOKEN` the endpoint does not exist.
 * Clients are unmodified supabase-js.
 */
import { TestTokens } from "@wedsync/auth/testing"
import { RedisClient, RedisConfig } from "@wedsync/redis"
import { redisUrl, SupabaseClients, uniquePrefix, waitUntil } from "@wedsync/testkit"
import type { SupabaseClient } from "@supabase/supabase-js"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, ManagedRuntime, Redacted } from "effect"
import * as ClusterDevices from "../src/ClusterDevices.ts"
import { afterAll, afterEach, beforeAll } from "vitest"
import { type RunningGateway, startGateway } from "./support/Gateway.ts"

const { makeSupabaseClient, subscribe, closeAll } = SupabaseClients

const ADMIN_TOKEN = "admin-token-for-the-devices-test"

interface Devices {
  readonly scope: "cluster" | "process"
  readonly processes: number
  readonly totals: { readonly wedding: number; readonly supplier: number }
  readonly top: {
    readonly wedding: ReadonlyArray<{ id: string; devices: number }>
    readonly supplier: ReadonlyArray<{ id: string; devices: number }>
  }
  readonly wedding?: ReadonlyArray<{ id: string; devices: number }>
  readonly supplier?: ReadonlyArray<{ id: string; devices: number }>
}

let a: RunningGateway
let b: RunningGateway
let local: RunningGateway
let closed: RunningGateway
let anonKey: string
const redisOptions = { url: Redacted.make(redisUrl()), prefix: uniquePrefix("devices") }
const clients: Array<SupabaseClient> = []
let seq = 0
const unique = (name: string) => `${name}-${++seq}-${Date.now()}`

/** `token` null: no `Authorization` header. */
const admin = async (gateway: RunningGateway, query = "", token: string | null = ADMIN_TOKEN) => {
  const response = await fetch(`${gateway.url}/admin/devices${query}`, {
    headers: token === null ? {} : { authorization: `Bearer ${token}` }
  })
  return { status: response.status, body: (await response.json().catch(() => undefined)) as unknown }
}

const devices = async (gateway: RunningGateway, query = "") => {
  const { status, body } = await admin(gateway, query)
  assert.strictEqual(status, 200, JSON.stringify(body))
  return body as Devices
}

/** A supabase-js client on `gateway` with a member token, subscribed to the private channels of `topics`. */
const member = async (
  gateway: RunningGateway,
  topics: ReadonlyArray<string>,
  grants: { readonly weddingIds?: ReadonlyArray<string>; readonly supplierIds?: ReadonlyArray<string> }
) => {
  const token = await TestTokens.userToken(grants)
  const c = makeSupabaseClient(gateway.url, anonKey, { accessToken: token })
  clients.push(c)
  for (const topic of topics) await subscribe(c.channel(topic, { config: { private: true } }))
  return c
}

const countOf = (list: ReadonlyArray<{ id: string; devices: number }> | undefined, id: string) =>
  list?.find((entry) => entry.id === id)?.devices

beforeAll(async () => {
  const redis = redisOptions
  const gateway = { adminToken: Redacted.make(ADMIN_TOKEN), devicesPublishMs: 100 }
  ;[a, b, local, closed] = await Promise.all([
    startGateway({ redis, gateway }),
    startGateway({ redis, gateway }),
    startGateway({ gateway }),
    startGateway()
  ])
  anonKey = await TestTokens.anonToken()
})
afterEach(async () => {
  await closeAll(clients.splice(0))
})
afterAll(async () => {
  await Promise.all([a, b, local, closed].map((g) => g?.stop()))
})

describe("GET /admin/devices", () => {
  it("sums the devices joined on two gateways, on either, and forgets a client that disconnects", async () => {
    const wedding = unique("w")
    const supplier = unique("s")
    const grants = { weddingIds: [wedding], supplierIds: [supplier] }
    await member(a, [`wedding:${wedding}`, `supplier:${supplier}`], grants)
    const leaving = await member(a, [`wedding:${wedding}`], grants)
    await member(b, [`wedding:${wedding}`, `supplier:${supplier}`], grants)
    // A public channel of the same name is no device of the wedding.
    const open = makeSupabaseClient(b.url, anonKey)
    clients.push(open)
    await subscribe(open.channel(`wedding:${wedding}`))

    const query = `?wedding=${encodeURIComponent(wedding)}&supplier=${encodeURIComponent(supplier)}`
    for (const gateway of [a, b]) {
      const summed = await waitUntil(
        "both gateways' devices summed",
        () => devices(gateway, query),
        (d) => countOf(d.wedding, wedding) === 3 && countOf(d.supplier, supplier) === 2
      )
      assert.strictEqual(summed.scope, "cluster")
      assert.isAtLeast(summed.processes, 2)
    }
    const overview = await devices(a, "?top=100")
    assert.strictEqual(countOf(overview.top.wedding, wedding), 3)
    assert.strictEqual(countOf(overview.top.supplier, supplier), 2)
    assert.isAtLeast(overview.totals.wedding, 3)

    await closeAll([leaving])
    clients.splice(clients.indexOf(leaving), 1)
    for (const gateway of [b, a]) {
      await waitUntil(
        "the disconnected client no longer counted",
        () => devices(gateway, query),
        (d) => countOf(d.wedding, wedding) === 2 && countOf(d.supplier, supplier) === 2
      )
    }
  })

  it("drops a process whose publication expired (it died) or that stopped", async () => {
    const wedding = unique("w")
    const query = `?wedding=${encodeURIComponent(wedding)}`
    // A process that died: its last publication, written as a gateway writes it, with a short TTL.
    const redis = ManagedRuntime.make(RedisClient.RedisClient.layer.pipe(
      Layer.provide(RedisConfig.RedisConfig.layer(redisOptions))
    ))
    const dead = "dead-process"
    await redis.runPromise(Effect.gen(function*() {
      const client = yield* RedisClient.RedisClient
      const value = JSON.stringify({ process: dead, at: 0, wedding: [[wedding, 5]], supplier: [] })
      yield* client.set(ClusterDevices.processKey(dead), value, { ttlMs: 500 })
      yield* client.command("SADD", (r) => r.sadd(client.key(ClusterDevices.processesKey), dead))
    }))
    const stopping = await startGateway({
      redis: redisOptions,
      gateway: { adminToken: Redacted.make(ADMIN_TOKEN), devicesPublishMs: 100 }
    })
    await member(stopping, [`wedding:${wedding}`], { weddingIds: [wedding] })
    await waitUntil(
      "the dead and the stopping process counted",
      () => devices(a, query),
      (d) => countOf(d.wedding, wedding) === 6
    )
    await stopping.stop()
    await waitUntil(
      "the dead and the stopped process dropped",
      () => devices(a, query),
      (d) => countOf(d.wedding, wedding) === 0
    )
    const members = await redis.runPromise(
      RedisClient.RedisClient.use((client) =>
        client.command("SMEMBERS", (r) => r.smembers(client.key(ClusterDevices.processesKey)))
      )
    )
    await redis.dispose()
    // The dead one was dropped by a reader, the stopped one removed itself: only `a` and `b` are left.
    assert.strictEqual(members.length, 2, JSON.stringify(members))
    assert.notInclude(members, dead)
  })

  it("answers this process's counts without Redis", async () => {
    const wedding = unique("w")
    await member(local, [`wedding:${wedding}`], { weddingIds: [wedding] })
    const d = await devices(local, `?wedding=${encodeURIComponent(wedding)}`)
    assert.strictEqual(d.scope, "process")
    assert.strictEqual(d.processes, 1)
    assert.deepStrictEqual(d.wedding, [{ id: wedding, devices: 1 }])
  })

  it("refuses a missing or wrong token with 401 and its reason, and accepts the admin token", async () => {
    const missing = await admin(a, "", null)
    assert.strictEqual(missing.status, 401)
    assert.deepStrictEqual(missing.body, { message: "Authorization: Bearer <ADMIN_TOKEN> is required" })
    const wrong = await admin(a, "", `${ADMIN_TOKEN}x`)
    assert.strictEqual(wrong.status, 401)
    assert.deepStrictEqual(wrong.body, { message: "The bearer token is not the admin token" })
    const anon = await admin(a, "", anonKey)
    assert.strictEqual(anon.status, 401)
    assert.strictEqual((await admin(a)).status, 200)
  })

  it("does not exist without ADMIN_TOKEN", async () => {
    assert.strictEqual((await admin(closed)).status, 404)
    assert.strictEqual((await admin(closed, "", null)).status, 404)
  })
})
