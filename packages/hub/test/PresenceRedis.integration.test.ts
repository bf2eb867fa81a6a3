/**
 * Presence across processes on the real local Redis, every key under this run's own prefix: the one-node contract,
 * then several nodes in this process (each with its own client, so its own connections, as separate processes
 * have) and one node in a child process that is killed outright.
 */
import { assert, describe, it } from "@effect/vitest"
import { RedisClient, RedisConfig } from "@wedsync/redis"
import { RedisServer, redisUrl, uniquePrefix, waitUntil } from "@wedsync/testkit"
import { Context, Effect, Exit, Layer, Metric, Redacted, Scope } from "effect"
import { spawn } from "node:child_process"
import { createInterface } from "node:readline"
import { Broker, Hub, HubMetrics, Presence, PresenceStore, Publication } from "../src/index.ts"
import { PresenceSuite, TestSink } from "../src/testing/index.ts"

const HEARTBEAT_MS = 100
const TTL_MS = 3 * HEARTBEAT_MS

const clientLayer = (prefix: string, options: Partial<RedisConfig.RedisOptions> = {}) =>
  Layer.fresh(RedisClient.RedisClient.layer).pipe(
    Layer.provide(RedisConfig.RedisConfig.layer({ url: Redacted.make(redisUrl()), prefix, ...options })),
    Layer.orDie
  )

/** One node: its own client, broker, hub and presence. */
const nodeLayer = (prefix: string, heartbeatMs = HEARTBEAT_MS, options: Partial<RedisConfig.RedisOptions> = {}) =>
  Layer.fresh(Presence.Presence.layerRedis({ heartbeatMs })).pipe(
    Layer.provideMerge(Layer.fresh(Hub.Hub.layer)),
    Layer.provideMerge(Layer.fresh(Broker.Broker.layerRedis)),
    Layer.provideMerge(clientLayer(prefix, options))
  )

PresenceSuite("redis", () => nodeLayer(uniquePrefix("presence-suite")))

const ROOM = "realtime:room"
const roomKey = Publication.topicKey(ROOM, false)

type Metas = Record<string, { metas: Array<Record<string, unknown>> }>
interface Diff {
  readonly joins: Metas
  readonly leaves: Metas
}

/** A member of the room on one node, replaying its diffs the way realtime-js does (by phx_ref). */
const member = (hub: Hub.HubShape) => {
  const sink = TestSink.make("2.0.0")
  hub.add(roomKey, sink)
  const diffs = (): Array<Diff> =>
    sink.decoded().flatMap((frame) => {
      if (frame._tag !== "Text") return []
      const [, , , event, payload] = frame.json as [null, null, string, string, Diff]
      return event === "presence_diff" ? [payload] : []
    })
  /** Refs present after every diff so far (joins and leaves applied in order) over `initial`, the state. */
  const refs = (initial: Iterable<string> = []): Set<string> => {
    const present = new Set<string>(initial)
    for (const diff of diffs()) {
      for (const group of Object.values(diff.leaves)) for (const m of group.metas) present.delete(String(m["phx_ref"]))
      for (const group of Object.values(diff.joins)) for (const m of group.metas) present.add(String(m["phx_ref"]))
    }
    return present
  }
  const leftRefs = (): Array<string> =>
    diffs().flatMap((diff) =>
      Object.values(diff.leaves).flatMap((group) => group.metas.map((m) => String(m["phx_ref"])))
    )
  return { sink, diffs, refs, leftRefs }
}

interface Node {
  readonly hub: Hub.HubShape
  readonly broker: Broker.BrokerShape
  readonly presence: Presence.PresenceShape
  readonly client: RedisClient.RedisClient["Service"]
  /** Stops the node cleanly (its entries leave). */
  readonly stop: Effect.Effect<void>
}

/**
 * A node whose broker never reports every topic settled, as in a join storm where new topics keep arriving; each
 * topic's own subscription is live as usual.
 */
const busyNodeLayer = (prefix: string) =>
  Layer.fresh(Presence.Presence.layerRedis({ heartbeatMs: HEARTBEAT_MS })).pipe(
    Layer.provideMerge(Layer.fresh(Hub.Hub.layer)),
    Layer.provideMerge(
      Layer.effect(
        Broker.Broker,
        Effect.gen(function*() {
          const broker = yield* Broker.Broker
          return { ...broker, settled: Effect.never }
        })
      )
        .pipe(Layer.provide(Layer.fresh(Broker.Broker.layerRedis)))
    ),
    Layer.provideMerge(clientLayer(prefix))
  )

const startNode = (prefix: string, heartbeatMs = HEARTBEAT_MS, layer = nodeLayer(prefix, heartbeatMs)) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(layer, scope)
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    return {
      hub: Context.get(context, Hub.Hub),
      broker: Context.get(context, Broker.Broker),
      presence: Context.get(context, Presence.Presence),
      client: Context.get(context, RedisClient.RedisClient),
      stop: Scope.close(scope, Exit.void)
    } satisfies Node
  })

const stateOf = (node: Node) => Effect.map(node.presence.state(ROOM, false), (json) => JSON.parse(json) as Metas)

const refsOf = (metas: Metas): Array<string> =>
  Object.values(metas).flatMap((group) => group.metas.map((m) => String(m["phx_ref"])))

const until = <T>(what: string, probe: () => T | Promise<T>, done: (value: T) => boolean, timeoutMs?: number) =>
  Effect.promise(() => waitUntil(what, probe, done, timeoutMs === undefined ? {} : { timeoutMs }))

const sameSet = (a: Iterable<string>, b: Iterable<string>) => {
  const x = [...a].sort()
  const y = [...b].sort()
  return x.length === y.length && x.every((v, i) => v === y[i])
}

/** Stored fields of the room's hash (every node's). */
const storedRefs = (client: RedisClient.RedisClient["Service"]) =>
  client.command("HKEYS", (r) => r.hkeys(client.key(PresenceStore.roomKey(roomKey)))).pipe(Effect.orDie)

describe("Presence.layerRedis across nodes", () => {
  it.live("a joiner on node 3 gets the union of nodes 1 and 2, and every member converges on the same entries", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const prefix = uniquePrefix("presence-union")
        const [n1, n2, n3] = [yield* startNode(prefix), yield* startNode(prefix), yield* startNode(prefix)]
        const m1 = member(n1.hub)
        const m2 = member(n2.hub)
        const alice = {}
        yield* n1.presence.track(ROOM, false, "alice", alice, { on: 1 })
        yield* n2.presence.track(ROOM, false, "bob", {}, { on: 2 })
        yield* n2.presence.track(ROOM, false, "alice", {}, { on: 2, tab: 2 })
        // Node 3 had nobody in the room: its first joiner's state is read from Redis.
        const m3 = member(n3.hub)
        const state = yield* stateOf(n3)
        assert.deepStrictEqual(Object.keys(state).sort(), ["alice", "bob"])
        assert.deepStrictEqual(state["alice"]!.metas.map((m) => m["on"]).sort(), [1, 2])
        assert.deepStrictEqual(state["bob"]!.metas, [{ phx_ref: state["bob"]!.metas[0]!["phx_ref"], on: 2 }])
        const all = refsOf(state)
        assert.strictEqual(new Set(all).size, 3, "no entry twice")
        // Every node's state is the same union, and its members' diffs say the same.
        for (const node of [n1, n2]) assert.isTrue(sameSet(refsOf(yield* stateOf(node)), all))
        yield* until("node 1's member to see all three joins", () => m1.refs(), (r) => sameSet(r, all))
        yield* until("node 2's member to see all three joins", () => m2.refs(), (r) => sameSet(r, all))
        // An update and a leave on node 1 reach node 3's member and state.
        yield* n1.presence.track(ROOM, false, "alice", alice, { on: 1, away: true })
        yield* n1.presence.untrack(ROOM, false, alice)
        const after = refsOf(yield* stateOf(n1))
        assert.strictEqual(after.length, 2)
        yield* until("node 3's member to converge on node 1's state", () => m3.refs(all), (r) => sameSet(r, after))
        assert.isTrue(sameSet(refsOf(yield* stateOf(n3)), after))
        assert.isTrue(sameSet(refsOf(yield* stateOf(n2)), after))
      })
    ))

  it.live("a room's first joiner waits for that room's subscription only, not for every topic of the broker", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const prefix = uniquePrefix("presence-busy")
        const n1 = yield* startNode(prefix)
        const busy = yield* startNode(prefix, HEARTBEAT_MS, busyNodeLayer(prefix))
        member(n1.hub)
        yield* n1.presence.track(ROOM, false, "alice", {}, {})
        member(busy.hub)
        assert.deepStrictEqual(Object.keys(yield* stateOf(busy)), ["alice"])
      })
    ))

  it.live("a clean stop: the node's entries leave on every other node at once, and Redis forgets them", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const prefix = uniquePrefix("presence-stop")
        const [n1, n2] = [yield* startNode(prefix), yield* startNode(prefix)]
        const m1 = member(n1.hub)
        member(n2.hub)
        yield* n1.presence.track(ROOM, false, "stays", {}, {})
        yield* n2.presence.track(ROOM, false, "goes", {}, {})
        yield* until("node 1 to know node 2's entry", () => m1.refs(), (r) => r.size === 2)
        yield* n2.stop
        yield* until("node 1's member to get the leave", () => m1.refs(), (r) => r.size === 1)
        assert.deepStrictEqual(Object.keys(yield* stateOf(n1)), ["stays"])
        assert.strictEqual((yield* storedRefs(n1.client)).length, 1)
      })
    ))

  it.live("room limits count the entries of every node (beside: a track that adds no key is accepted)", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const prefix = uniquePrefix("presence-limits")
        const [n1, n2] = [yield* startNode(prefix), yield* startNode(prefix)]
        member(n1.hub)
        member(n2.hub)
        const limits = { maxKeys: 2, maxBytes: 10_000 }
        yield* n1.presence.track(ROOM, false, "a", {}, {}, limits)
        yield* n1.presence.track(ROOM, false, "b", {}, {}, limits)
        const refused = yield* Effect.flip(n2.presence.track(ROOM, false, "c", {}, {}, limits))
        assert.deepStrictEqual([refused.limit, refused.max], ["keys", 2])
        yield* n2.presence.track(ROOM, false, "a", {}, { second: true }, limits)
        const state = yield* stateOf(n2)
        assert.deepStrictEqual(Object.keys(state).sort(), ["a", "b"])
        assert.strictEqual(state["a"]!.metas.length, 2)
        // Bytes too: node 1 holds most of the room.
        const bytes = { maxKeys: 10, maxBytes: Presence.entryBytes("big", JSON.stringify({ s: "x".repeat(100) })) * 2 }
        yield* n1.presence.track("realtime:bytes", false, "big", {}, { s: "x".repeat(100) }, bytes)
        const sinkOn2 = TestSink.make("2.0.0")
        n2.hub.add(Publication.topicKey("realtime:bytes", false), sinkOn2)
        const tooBig = yield* Effect.flip(
          n2.presence.track("realtime:bytes", false, "big2", {}, { s: "x".repeat(150) }, bytes)
        )
        assert.strictEqual(tooBig.limit, "bytes")
        yield* n2.presence.track("realtime:bytes", false, "small", {}, { s: "x" }, bytes)
      })
    ))

  it.live(
    "a node killed outright (SIGKILL): its entries leave every other node within the bound, live nodes' never",
    () =>
      Effect.scoped(
        Effect.gen(function*() {
          const prefix = uniquePrefix("presence-kill")
          const [n1, n2] = [yield* startNode(prefix), yield* startNode(prefix)]
          const m1 = member(n1.hub)
          const m2 = member(n2.hub)
          yield* n1.presence.track(ROOM, false, "one", {}, {})
          yield* n2.presence.track(ROOM, false, "two", {}, {})
          yield* until("node 1 to know node 2's entry", () => m1.refs(), (r) => r.size === 2)
          const live = refsOf(yield* stateOf(n1))
          assert.strictEqual(live.length, 2)
          const victim = yield* spawnNode(prefix, "doomed", 3)
          yield* until("node 1 to know the doomed entries", () => m1.refs(), (r) => r.size === 5)
          yield* until("node 2 to know the doomed entries", () => m2.refs(), (r) => r.size === 5)
          assert.isTrue(victim.refs.every((ref) => m1.refs().has(ref)))
          const killedAt = Date.now()
          yield* Effect.promise(victim.kill)
          // Dead within ttl, seen at the next check: ttl + one interval, plus time for the machine to be slow.
          const bound = TTL_MS + HEARTBEAT_MS
          yield* until("node 1's member to get the leaves", () => m1.refs(), (r) => sameSet(r, live), bound + 2_000)
          yield* until("node 2's member to get the leaves", () => m2.refs(), (r) => sameSet(r, live), bound + 2_000)
          const took = Date.now() - killedAt
          assert.isAtMost(took, bound + 2_000)
          assert.isAtLeast(took, HEARTBEAT_MS, "not removed before the heartbeat could expire")
          // Each member got each leave exactly once (one node's sweep, never relayed by the other).
          assert.deepStrictEqual(m1.leftRefs().sort(), [...victim.refs].sort())
          assert.deepStrictEqual(m2.leftRefs().sort(), [...victim.refs].sort())
          assert.isTrue(sameSet(refsOf(yield* stateOf(n1)), live))
          assert.isTrue(sameSet(refsOf(yield* stateOf(n2)), live))
          // The sweep removed the dead node's fields from Redis.
          yield* until("Redis to hold only live entries", () => storedNow(n1.client), (stored) => sameSet(stored, live))
          // No flapping: through several more heartbeat lifetimes the live entries are never removed.
          const liveNode = PresenceStore.nodeOfRef(live[0]!)
          yield* heartbeats(n1.client, liveNode, 4)
          assert.deepStrictEqual(m1.leftRefs().sort(), [...victim.refs].sort())
          assert.deepStrictEqual(m2.leftRefs().sort(), [...victim.refs].sort())
          assert.isTrue(sameSet(refsOf(yield* stateOf(n1)), live))
        })
      ),
    20_000
  )

  it.live(
    "a live node taken for dead (its heartbeat lost) announces its entries again: a leave, then the same join",
    () =>
      Effect.scoped(
        Effect.gen(function*() {
          const prefix = uniquePrefix("presence-revive")
          const n1 = yield* startNode(prefix)
          // A slow heartbeat on node 2, so node 1's checks come first after its key is lost.
          const slowMs = 1_500
          const n2 = yield* startNode(prefix, slowMs)
          const m1 = member(n1.hub)
          member(n2.hub)
          yield* n2.presence.track(ROOM, false, "two", {}, { n: 2 })
          yield* until("node 1 to know node 2's entry", () => m1.refs(), (r) => r.size === 1)
          const [ref] = [...m1.refs()]
          const node2 = PresenceStore.nodeOfRef(ref!)
          // Right after one of node 2's heartbeats, so its next one is a whole interval away.
          yield* heartbeats(n1.client, node2, 1, slowMs)
          yield* n1.client.del(PresenceStore.nodeKey(node2)).pipe(Effect.orDie)
          yield* until("node 1's member to get the leave", () => m1.leftRefs(), (left) => left.length === 1, 2_000)
          assert.deepStrictEqual(Object.keys(yield* stateOf(n1)), [])
          yield* until("node 1's member to get the entry again", () => m1.refs(), (r) => r.has(ref!), 3 * slowMs)
          assert.deepStrictEqual(refsOf(yield* stateOf(n1)), [ref])
          yield* until("Redis to hold the entry again", () => storedNow(n1.client), (stored) => sameSet(stored, [ref!]))
        })
      ),
    20_000
  )

  it.live(
    "a late joiner's snapshot leaves out a killed node's entries even before anyone swept them",
    () =>
      Effect.scoped(
        Effect.gen(function*() {
          const prefix = uniquePrefix("presence-snapshot")
          const victim = yield* spawnNode(prefix, "doomed", 2)
          yield* Effect.promise(victim.kill)
          const n1 = yield* startNode(prefix)
          // Its heartbeat expires; nobody held a replica, so only the snapshot can filter the dead entries.
          yield* until("the victim's heartbeat to expire", () => alive(n1.client, victim.refs[0]!), (a) => !a, 5_000)
          member(n1.hub)
          yield* n1.presence.track(ROOM, false, "live", {}, {})
          assert.deepStrictEqual(Object.keys(yield* stateOf(n1)), ["live"])
          yield* until("the dead fields to be deleted", () => storedNow(n1.client), (stored) => stored.length === 1)
        })
      ),
    20_000
  )
})

describe("Presence.layerRedis after a subscriber outage", () => {
  it.live(
    "a node whose subscriber dropped sends its members the net joins and leaves it missed, once the gap is reported " +
      "(beside: an outage with nothing missed sends nothing)",
    () =>
      Effect.scoped(
        Effect.gen(function*() {
          // A private server: cutting connections on the shared one would disturb the other tests.
          const server = yield* Effect.acquireRelease(
            Effect.promise(() => RedisServer.start()),
            (s) => Effect.promise(() => s.stop())
          )
          const prefix = uniquePrefix("presence-gap")
          const url = Redacted.make(server.url)
          const n1 = yield* startNode(prefix, HEARTBEAT_MS, nodeLayer(prefix, HEARTBEAT_MS, { url }))
          // Node 2 reconnects a second after a drop, so what node 1 does right after it is surely missed.
          const slow = { url, reconnectBaseDelayMs: 1_000, reconnectMaxDelayMs: 1_000 }
          const n2 = yield* startNode(prefix, HEARTBEAT_MS, nodeLayer(prefix, HEARTBEAT_MS, slow))
          const m1 = member(n1.hub)
          yield* n1.broker.settled
          // Node 2's subscriber connects after node 1's: the server's newest pubsub client, the one cut below.
          const m2 = member(n2.hub)
          yield* n2.broker.settled
          const leaving = {}
          yield* n1.presence.track(ROOM, false, "stays", {}, { n: 1 })
          yield* n1.presence.track(ROOM, false, "leaving", leaving, { n: 1 })
          yield* n2.presence.track(ROOM, false, "two", {}, { n: 2 })
          yield* until("node 2's member to see the three entries", () => m2.refs(), (r) => r.size === 3)
          yield* until("node 1's member to see them", () => m1.refs(), (r) => r.size === 3)

          const seenBefore = m2.diffs().length
          const readsBefore = yield* resyncedRooms
          yield* cutNewestSubscriber(n1.client)
          yield* until("node 2's subscriber to be down", () =>
            Effect.runPromise(n2.broker.state), (s) =>
            s === "disconnected")
          yield* n1.presence.track(ROOM, false, "joined", {}, { n: 1, late: true })
          yield* n1.presence.untrack(ROOM, false, leaving)
          yield* until("node 2 to read the room again", () =>
            Effect.runPromise(resyncedRooms), (n) =>
            n > readsBefore, 10_000)
          // One diff, from the read: node 1's own two went out while node 2's subscriber was down.
          const missed = m2.diffs().slice(seenBefore)
          assert.strictEqual(missed.length, 1)
          const { joins, leaves } = missed[0]!
          assert.deepStrictEqual(Object.keys(joins), ["joined"])
          assert.deepStrictEqual(Object.keys(leaves), ["leaving"])
          const { phx_ref: joinedRef, ...joinedMeta } = joins["joined"]!.metas[0]!
          assert.deepStrictEqual(joinedMeta, { n: 1, late: true })
          const state = normalized(yield* stateOf(n1))
          assert.deepStrictEqual(Object.keys(state).sort(), ["joined", "stays", "two"])
          assert.deepStrictEqual(normalized(yield* stateOf(n2)), state)
          assert.isTrue(sameSet(m2.refs(), refsOf(state)))
          assert.isTrue(refsOf(state).includes(String(joinedRef)))

          // Beside it: another outage with nothing done meanwhile; the room is read again and nothing is sent.
          const seenAfter = m2.diffs().length
          const readsAfter = yield* resyncedRooms
          yield* cutNewestSubscriber(n1.client)
          yield* until("node 2's subscriber to be down again", () =>
            Effect.runPromise(n2.broker.state), (s) =>
            s === "disconnected")
          yield* until("node 2 to read the room again", () =>
            Effect.runPromise(resyncedRooms), (n) =>
            n > readsAfter, 10_000)
          assert.strictEqual(m2.diffs().length, seenAfter)
          assert.deepStrictEqual(normalized(yield* stateOf(n2)), state)
          // Node 1 kept its subscriber: it read nothing again.
          assert.strictEqual(yield* resyncedRooms, readsAfter + 1)
        })
      ),
    30_000
  )
})

describe("Presence.layerRedis when its own writes fail", () => {
  it.live(
    "a track and an untrack that Redis refused are redone and announced at the next heartbeat " +
      "(their diffs were refused too); before the refusal the same diffs arrive at once",
    () =>
      Effect.scoped(
        Effect.gen(function*() {
          const server = yield* Effect.acquireRelease(
            Effect.promise(() => RedisServer.start()),
            (s) => Effect.promise(() => s.stop())
          )
          const prefix = uniquePrefix("presence-unsent")
          const n2 = yield* startNode(
            prefix,
            HEARTBEAT_MS,
            nodeLayer(prefix, HEARTBEAT_MS, { url: Redacted.make(server.url) })
          )
          // Node 1 logs in as its own user, whose writes the test can refuse while node 2's go on.
          const acl = (...rules: Array<string>) =>
            n2.client.command("ACL", (redis) => redis.call("ACL", "SETUSER", "node1", ...rules)).pipe(Effect.orDie)
          yield* acl("on", ">secret", "~*", "&*", "+@all")
          const n1Url = Redacted.make(`redis://node1:secret@127.0.0.1:${server.port}`)
          const n1 = yield* startNode(prefix, HEARTBEAT_MS, nodeLayer(prefix, HEARTBEAT_MS, { url: n1Url }))
          member(n1.hub)
          const m2 = member(n2.hub)
          yield* n1.broker.settled
          yield* n2.broker.settled
          const owner = {}
          yield* n1.presence.track(ROOM, false, "before", owner, {})
          yield* until("node 2's member to get the join at once", () => m2.refs(), (r) => r.size === 1)
          const [before] = [...m2.refs()]
          const seen = m2.diffs().length

          const lostBefore = yield* lostToRedis
          yield* acl("-hset", "-hdel", "-spublish")
          yield* n1.presence.untrack(ROOM, false, owner)
          yield* n1.presence.track(ROOM, false, "during", {}, { refused: true })
          const state = yield* stateOf(n1)
          const [during] = refsOf(state)
          assert.deepStrictEqual(Object.keys(state), ["during"])
          // Both diffs are sent after `track` returns: refused only if they reach Redis before the grant below.
          yield* until(
            "the broker to lose both diffs",
            () => Effect.runPromise(lostToRedis),
            (n) => n >= lostBefore + 2
          )
          assert.strictEqual(m2.diffs().length, seen)
          yield* acl("+hset", "+hdel", "+spublish")

          yield* until("node 2's member to get the join and the leave", () => m2.refs(), (r) => sameSet(r, [during!]))
          const redone = m2.diffs().slice(seen)
          assert.strictEqual(redone.length, 1)
          assert.deepStrictEqual(refsOf(redone[0]!.joins), [during])
          assert.deepStrictEqual(refsOf(redone[0]!.leaves), [before])
          assert.deepStrictEqual(normalized(yield* stateOf(n2)), normalized(state))
          assert.deepStrictEqual(yield* storedRefs(n2.client), [during])
        })
      ),
    20_000
  )
})

const lostToRedis = Metric.value(Metric.withAttributes(HubMetrics.brokerLost, { reason: "redis" })).pipe(
  Effect.map((state) => state.count)
)

const resyncedRooms = Metric.value(HubMetrics.presenceResyncedRooms).pipe(Effect.map((state) => state.count))

/** A state with each key's metas in ref order, so two nodes' states (each lists its own entries first) compare. */
const normalized = (metas: Metas): Metas => {
  const out: Metas = {}
  for (const key of Object.keys(metas).sort()) {
    out[key] = {
      metas: [...metas[key]!.metas].sort((a, b) => String(a["phx_ref"]).localeCompare(String(b["phx_ref"])))
    }
  }
  return out
}

/** Drops the server's newest pubsub connection (`CLIENT KILL ID`); its client reconnects by itself. */
const cutNewestSubscriber = (admin: RedisClient.RedisClient["Service"]) =>
  admin.command("CLIENT", async (redis) => {
    const list = String(await redis.call("CLIENT", "LIST", "TYPE", "pubsub"))
    const ids = [...list.matchAll(/\bid=(\d+)/g)].map((match) => Number(match[1]))
    assert.strictEqual(ids.length, 2, "one subscriber connection per node")
    return redis.call("CLIENT", "KILL", "ID", String(Math.max(...ids)))
  }).pipe(Effect.orDie)

const storedNow = (client: RedisClient.RedisClient["Service"]) => Effect.runPromise(storedRefs(client))

/** Whether the node of `ref` has a live heartbeat. */
const alive = (client: RedisClient.RedisClient["Service"], ref: string) =>
  Effect.runPromise(
    client.get(PresenceStore.nodeKey(PresenceStore.nodeOfRef(ref))).pipe(
      Effect.map((value) => value._tag === "Some"),
      Effect.orDie
    )
  )

/** Waits until `nodeId` has refreshed its heartbeat `count` more times (its key's PTTL going up). */
const heartbeats = (
  client: RedisClient.RedisClient["Service"],
  nodeId: string,
  count: number,
  heartbeatMs = HEARTBEAT_MS
) =>
  Effect.promise(async () => {
    const key = client.key(PresenceStore.nodeKey(nodeId))
    const pttl = () => Effect.runPromise(client.command("PTTL", (r) => r.pttl(key)).pipe(Effect.orDie))
    let seen = 0
    let last = await pttl()
    await waitUntil(
      `${count} heartbeats of ${nodeId}`,
      async () => {
        const now = await pttl()
        if (now > last) seen++
        last = now
        return seen
      },
      (n) => n >= count,
      { intervalMs: 10, timeoutMs: 10 * count * heartbeatMs }
    )
  })

const nodeScript = new URL("./support/presenceNode.ts", import.meta.url).pathname

/** A node in a child process with `count` entries in the room; `kill` is SIGKILL. */
const spawnNode = (prefix: string, label: string, count: number) =>
  Effect.acquireRelease(
    Effect.promise(() =>
      new Promise<{ readonly refs: Array<string>; readonly kill: () => Promise<void> }>((resolve, reject) => {
        const child = spawn(
          process.execPath,
          [nodeScript, redisUrl(), prefix, String(HEARTBEAT_MS), ROOM, label, String(count)],
          { stdio: ["ignore", "pipe", "pipe"] }
        )
        let output = ""
        child.stderr.on("data", (chunk: Buffer) => void (output += chunk.toString()))
        const exited = new Promise<void>((done) => child.once("exit", () => done()))
        child.once("exit", (code) => reject(new Error(`presence node exited (${code}):\n${output}`)))
        createInterface({ input: child.stdout }).on("line", (line) => {
          if (!line.startsWith("tracked ")) return void (output += `${line}\n`)
          const refs = JSON.parse(line.slice("tracked ".length)) as Array<string>
          resolve({
            refs,
            kill: () => {
              if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
              return exited
            }
          })
        })
      })
    ),
    (node) => Effect.promise(node.kill)
  )
