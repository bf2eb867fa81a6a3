/**
 * Presence across gateway processes that share one Redis (under this run's own prefix), seen by unmodified supabase-js
 * clients: two gateways in this process and one real process (`node src/main.ts`) that is killed outright.
 */
import { TestTokens } from "@wedsync/auth/testing"
import { redisUrl, SupabaseClients, uniquePrefix } from "@wedsync/testkit"
import type { RealtimeChannel, SupabaseClient } from "@supabase/supabase-js"
import { assert, describe, it } from "@effect/vitest"
import { Redacted } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { afterAll, afterEach, beforeAll, vi } from "vitest"
import { type RunningGateway, startGateway } from "./support/Gateway.ts"

const { makeSupabaseClient, subscribe, inbox, waitFor, closeAll } = SupabaseClients

// Starting a gateway process alone can take seconds on a loaded machine.
vi.setConfig({ testTimeout: 30_000 })

const HEARTBEAT_MS = 200
/** A dead process's entries are gone within its heartbeat's life (3 intervals) plus one interval. */
const REMOVAL_BOUND_MS = 4 * HEARTBEAT_MS
/** Room for a slow machine on top of the bound. */
const SLACK_MS = 3_000

const main = fileURLToPath(new URL("../src/main.ts", import.meta.url))

const prefix = uniquePrefix("gw-presence")
const children: Array<ChildProcess> = []
const clients: Array<SupabaseClient> = []
let first: RunningGateway
let second: RunningGateway
let anonKey: string

const startOptions = {
  redis: { url: Redacted.make(redisUrl()), prefix },
  gateway: { presenceHeartbeatMs: HEARTBEAT_MS }
}

beforeAll(async () => {
  first = await startGateway(startOptions)
  second = await startGateway(startOptions)
  anonKey = await TestTokens.anonToken()
})
afterEach(async () => {
  await closeAll(clients.splice(0))
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill("SIGKILL")
})
afterAll(async () => {
  await first.stop()
  await second.stop()
})

/** A gateway process on the same Redis; resolves with its port once it listens. */
const startProcess = () =>
  new Promise<{ readonly child: ChildProcess; readonly url: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [main], {
      env: {
        PATH: process.env["PATH"] ?? "",
        HOST: "127.0.0.1",
        PORT: "0",
        REDIS_URL: redisUrl(),
        REDIS_PREFIX: prefix,
        PRESENCE_HEARTBEAT_MS: String(HEARTBEAT_MS)
      },
      stdio: ["ignore", "pipe", "pipe"]
    })
    children.push(child)
    let output = ""
    const onData = (chunk: Buffer) => {
      output += chunk.toString("utf8")
      const match = output.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/)
      if (match) resolve({ child, url: `http://127.0.0.1:${match[1]}` })
    }
    child.stdout!.on("data", onData)
    child.stderr!.on("data", onData)
    child.once("exit", (code) => reject(new Error(`gateway exited with ${code} before listening:\n${output}`)))
  })

const client = (url: string) => {
  const c = makeSupabaseClient(url, anonKey)
  clients.push(c)
  return c
}

type Presence = { readonly key: string }

const keysOf = (channel: RealtimeChannel) => Object.keys(channel.presenceState()).sort().join(",")

/** A channel with presence key `key` on the gateway at `url`, recording joins and leaves; not yet subscribed. */
const watched = (url: string, room: string, key: string) => {
  const joins = inbox<Presence>(`presence joins at ${key}`)
  const leaves = inbox<Presence>(`presence leaves at ${key}`)
  const onSync = new Set<() => void>()
  // realtime-js takes presence callbacks only before `subscribe`.
  const channel = client(url).channel(room, { config: { presence: { key } } })
    .on("presence", { event: "join" }, joins.push)
    .on("presence", { event: "leave" }, leaves.push)
    .on("presence", { event: "sync" }, () => {
      for (const check of [...onSync]) check()
    })
  /** Resolves once the channel's presence state has exactly `keys` (comma-separated, sorted). */
  const sees = (keys: string, timeoutMs = 5_000) =>
    waitFor<void>(
      (resolve) => {
        const check = () => {
          if (keysOf(channel) !== keys) return
          onSync.delete(check)
          resolve()
        }
        onSync.add(check)
        check()
      },
      timeoutMs,
      `${key} to see ${keys}`
    )
  return { channel, joins, leaves, sees }
}

/** `watched`, subscribed, with `meta` tracked. */
const member = async (url: string, room: string, key: string, meta: Record<string, unknown>) => {
  const m = watched(url, room, key)
  await subscribe(m.channel)
  assert.strictEqual(await m.channel.track(meta), "ok")
  return m
}

describe("presence across gateways sharing Redis", () => {
  it("a joiner on one gateway sees users tracked on the others, with their metas", async () => {
    const room = "union"
    const alice = await member(first.url, room, "alice", { device: "phone" })
    const bob = await member(second.url, room, "bob", { device: "laptop" })
    await alice.sees("alice,bob")
    await bob.sees("alice,bob")
    // A late joiner on the first gateway: its presence_state is the union.
    const carol = watched(first.url, room, "carol")
    await subscribe(carol.channel)
    await carol.sees("alice,bob")
    const state = carol.channel.presenceState() as Record<string, Array<Record<string, unknown>>>
    assert.containSubset(state["bob"], [{ device: "laptop" }])
    assert.containSubset(state["alice"], [{ device: "phone" }])
    assert.strictEqual(state["bob"]!.length, 1)
    // Bob leaves on the second gateway: the others see it once.
    await bob.channel.untrack()
    assert.strictEqual((await alice.leaves.next((l) => l.key === "bob")).key, "bob")
    await carol.sees("alice")
    assert.strictEqual(alice.leaves.received.length, 1)
  })

  it("a gateway process killed outright: its users leave the other gateways' clients within the bound, once", async () => {
    const room = "killed"
    const doomed = await startProcess()
    const alice = await member(first.url, room, "alice", {})
    const bob = await member(second.url, room, "bob", {})
    await member(doomed.url, room, "carol", {})
    await alice.sees("alice,bob,carol")
    await bob.sees("alice,bob,carol")
    const killedAt = Date.now()
    doomed.child.kill("SIGKILL")
    const bound = REMOVAL_BOUND_MS + SLACK_MS
    await Promise.all([
      alice.leaves.next((l) => l.key === "carol", bound),
      bob.leaves.next((l) => l.key === "carol", bound)
    ])
    assert.isAtMost(Date.now() - killedAt, bound)
    assert.strictEqual(keysOf(alice.channel), "alice,bob")
    assert.strictEqual(keysOf(bob.channel), "alice,bob")
    // The living were never dropped, and the dead left once. A newcomer sees the same.
    const dave = watched(second.url, room, "dave")
    await subscribe(dave.channel)
    await dave.sees("alice,bob")
    assert.deepStrictEqual(alice.leaves.received.map((l) => l.key), ["carol"])
    assert.deepStrictEqual(bob.leaves.received.map((l) => l.key), ["carol"])
  })
})
