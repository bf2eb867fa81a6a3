/**
 * The contract every `Broker` implementation must meet, run over several nodes of one transport:
 * a publication reaches every other node and never its own, publications of one topic arrive in
 * publish order, every field survives the trip, and a released receiver gets nothing more.
 *
 * Delivery may be asynchronous (Redis), so the suite waits for events instead of sleeping; each
 * wait fails with a clear message after `timeoutMs` of real time. Absence is proven with a marker:
 * a later publication that the transport delivers after the one that must not arrive.
 *
 * Every node joins the suite's topics (`SUITE_TOPICS`) and waits until `settled` before a test
 * publishes, since a transport may deliver only the topics a node has joined.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Result, Scope } from "effect"
import { Broker, type BrokerShape } from "../Broker.ts"
import * as Publication from "../Publication.ts"

/** Builds the brokers of `nodes` nodes that share one transport (a fresh one per call). */
type MakeBrokerLayers<E> = (nodes: number) => ReadonlyArray<Layer.Layer<Broker, E>>

interface BrokerSuiteOptions {
  /** Real-time limit of each wait for a delivery; default 2000 ms. */
  readonly timeoutMs?: number
}

class Inbox {
  readonly received: Array<Publication.Publication> = []
  private readonly waiters = new Set<() => void>()
  private readonly label: string
  private readonly timeoutMs: number

  constructor(label: string, timeoutMs: number) {
    this.label = label
    this.timeoutMs = timeoutMs
  }

  readonly push = (publication: Publication.Publication): void => {
    this.received.push(publication)
    for (const waiter of [...this.waiters]) waiter()
  }

  /** Waits until `predicate` holds for what was received. */
  until(what: string, predicate: (received: ReadonlyArray<Publication.Publication>) => boolean): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      if (predicate(this.received)) return resume(Effect.void)
      const check = () => {
        if (!predicate(this.received)) return
        cleanup()
        resume(Effect.void)
      }
      const timer = setTimeout(() => {
        cleanup()
        const got = this.received.map((p) => `${p.topic}/${p.event}`).join(", ")
        resume(Effect.die(new Error(`${this.label}: timed out waiting for ${what}; received [${got}]`)))
      }, this.timeoutMs)
      const cleanup = () => {
        this.waiters.delete(check)
        clearTimeout(timer)
      }
      this.waiters.add(check)
      return Effect.sync(cleanup)
    })
  }

  topics(): Array<string> {
    return this.received.map((p) => p.topic)
  }
}

interface Node {
  readonly name: string
  readonly broker: BrokerShape
  readonly inbox: Inbox
  /** Closes the scope of this node's receiver. */
  readonly release: Effect.Effect<void>
}

/** The topic keys the suite publishes on; each node joins all of them. */
export const SUITE_TOPICS: ReadonlyArray<Publication.TopicKey> = [
  "realtime:room",
  "realtime:marker",
  "realtime:from-a",
  "realtime:from-b",
  "realtime:x",
  "realtime:y",
  "realtime:before",
  "realtime:after"
].map((topic) => Publication.topicKey(topic, false)).concat([Publication.topicKey("realtime:wedding:42", true)])

const text = (topic: string, n: number): Publication.Publication =>
  Publication.json(topic, false, "broadcast", JSON.stringify({ type: "broadcast", event: "n", payload: { n } }))

const seqOf = (publication: Publication.Publication): number => {
  if (publication.body._tag !== "Json") return -1
  return (JSON.parse(publication.body.json) as { readonly payload: { readonly n: number } }).payload.n
}

/**
 * Registers the suite. `makeBrokerLayers(n)` is called once per test, so every test gets its own
 * transport (a new `MemoryBus`, or a new Redis key prefix).
 */
export const BrokerSuite = <E>(
  name: string,
  makeBrokerLayers: MakeBrokerLayers<E>,
  options: BrokerSuiteOptions = {}
) => {
  const timeoutMs = options.timeoutMs ?? 2000

  const nodes = (count: number) =>
    Effect.gen(function*() {
      const layers = makeBrokerLayers(count)
      assert.strictEqual(layers.length, count, "makeBrokerLayers must return one layer per node")
      const out: Array<Node> = []
      for (const [i, layer] of layers.entries()) {
        const name = String.fromCharCode(65 + i)
        // `fresh` so that nodes never share a memoized broker, whatever the caller's layers share.
        const context = yield* Layer.build(Layer.fresh(layer))
        const broker = Context.get(context, Broker)
        const inbox = new Inbox(`node ${name}`, timeoutMs)
        const scope = yield* Scope.make()
        yield* broker.receive(inbox.push).pipe(Scope.provide(scope))
        for (const key of SUITE_TOPICS) broker.join(key)
        yield* broker.settled
        out.push({ name, broker, inbox, release: Scope.close(scope, Exit.void) })
      }
      return out
    })

  /** `from` publishes a marker on `topic`; returns once every node in `to` has it. */
  const marker = (from: Node, to: ReadonlyArray<Node>, topic: string) =>
    Effect.gen(function*() {
      yield* from.broker.publish(text(topic, -1))
      for (const node of to) yield* node.inbox.until(`marker ${topic}`, (r) => r.some((p) => p.topic === topic))
    })

  describe(`BrokerSuite (${name})`, () => {
    it.effect("a publication reaches every other node, never its own", () =>
      Effect.gen(function*() {
        const [a, b, c] = yield* nodes(3)
        yield* a!.broker.publish(text("realtime:room", 1))
        yield* b!.inbox.until("the publication", (r) => r.length >= 1)
        yield* c!.inbox.until("the publication", (r) => r.length >= 1)
        assert.deepStrictEqual(b!.inbox.topics(), ["realtime:room"])
        assert.deepStrictEqual(c!.inbox.topics(), ["realtime:room"])
        // B publishes after it saw A's message, so A would get A's own message before B's marker.
        yield* marker(b!, [a!, c!], "realtime:marker")
        assert.deepStrictEqual(a!.inbox.topics(), ["realtime:marker"])
        assert.deepStrictEqual(b!.inbox.topics(), ["realtime:room"])
      }))

    it.effect("publications from several nodes reach each other", () =>
      Effect.gen(function*() {
        const [a, b] = yield* nodes(2)
        yield* a!.broker.publish(text("realtime:from-a", 1))
        yield* b!.broker.publish(text("realtime:from-b", 1))
        yield* a!.inbox.until("B's publication", (r) => r.length >= 1)
        yield* b!.inbox.until("A's publication", (r) => r.length >= 1)
        assert.deepStrictEqual(a!.inbox.topics(), ["realtime:from-b"])
        assert.deepStrictEqual(b!.inbox.topics(), ["realtime:from-a"])
      }))

    it.effect("publications of one topic arrive in publish order", () =>
      Effect.gen(function*() {
        const [a, b] = yield* nodes(2)
        const count = 100
        for (let n = 0; n < count; n++) {
          yield* a!.broker.publish(text("realtime:x", n))
          yield* a!.broker.publish(text("realtime:y", n))
        }
        yield* b!.inbox.until(`${2 * count} publications`, (r) => r.length >= 2 * count)
        const sequence = (topic: string) => b!.inbox.received.filter((p) => p.topic === topic).map(seqOf)
        const expected = Array.from({ length: count }, (_, n) => n)
        assert.deepStrictEqual(sequence("realtime:x"), expected)
        assert.deepStrictEqual(sequence("realtime:y"), expected)
      }))

    it.effect("every field of a publication survives the trip", () =>
      Effect.gen(function*() {
        const [a, b] = yield* nodes(2)
        const binary = Publication.userBroadcast(
          "realtime:wedding:42",
          true,
          "photo",
          "binary",
          new Uint8Array([0, 1, 2, 127, 128, 255]),
          '{"id":"m-1"}'
        )
        if (!Result.isSuccess(binary)) return assert.fail("a 6-byte broadcast must be a valid publication")
        const json = Publication.json("realtime:room", false, "presence_diff", '{"joins":{},"leaves":{}}')
        yield* a!.broker.publish(binary.success)
        yield* a!.broker.publish(json)
        yield* b!.inbox.until("both publications", (r) => r.length >= 2)
        const [gotBinary, gotJson] = b!.inbox.received
        assert.strictEqual(gotBinary!.topic, "realtime:wedding:42")
        assert.strictEqual(gotBinary!.isPrivate, true)
        assert.strictEqual(gotBinary!.event, "broadcast")
        const body = gotBinary!.body
        assert.strictEqual(body._tag, "UserBroadcast")
        if (body._tag === "UserBroadcast") {
          assert.strictEqual(body.userEvent, "photo")
          assert.strictEqual(body.encoding, "binary")
          assert.strictEqual(body.meta, '{"id":"m-1"}')
          assert.deepStrictEqual(Array.from(body.payload), [0, 1, 2, 127, 128, 255])
        }
        assert.deepStrictEqual(gotJson, json)
      }))

    it.effect("a released receiver gets nothing more; other nodes still do", () =>
      Effect.gen(function*() {
        const [a, b, c] = yield* nodes(3)
        yield* a!.broker.publish(text("realtime:before", 1))
        yield* b!.inbox.until("the first publication", (r) => r.length >= 1)
        yield* c!.inbox.until("the first publication", (r) => r.length >= 1)
        yield* b!.release
        yield* a!.broker.publish(text("realtime:after", 2))
        yield* marker(a!, [c!], "realtime:marker")
        assert.deepStrictEqual(c!.inbox.topics(), ["realtime:before", "realtime:after", "realtime:marker"])
        assert.deepStrictEqual(b!.inbox.topics(), ["realtime:before"])
      }))
  })
}
