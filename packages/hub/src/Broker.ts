/**
 * The `Broker` carries publications between gateway nodes. The hub delivers to its own local
 * subscribers first and then hands the publication to the broker, which delivers it to every
 * other node's hub, never back to the node it came from.
 *
 * Guarantee: at most once, in publish order per topic from one node. Loss is possible when a
 * node or the transport fails; history and resume are a separate concern.
 */
import { Context, Effect, Layer, type Scope } from "effect"
import type { Publication } from "./Publication.ts"

export interface BrokerShape {
  /** Sends to every other node. */
  readonly publish: (publication: Publication) => Effect.Effect<void>
  /** Registers this node's receiver of publications from other nodes, for the life of the scope. */
  readonly receive: (handler: (publication: Publication) => void) => Effect.Effect<void, never, Scope.Scope>
}

/**
 * An in-process bus that joins several brokers, one per simulated node; with a single member it
 * is the single-node broker.
 */
export class MemoryBus {
  private readonly nodes = new Set<(publication: Publication) => void>()

  join(handler: (publication: Publication) => void): () => void {
    this.nodes.add(handler)
    return () => this.nodes.delete(handler)
  }

  send(from: ((publication: Publication) => void) | undefined, publication: Publication): void {
    for (const node of this.nodes) if (node !== from) node(publication)
  }
}

const makeMemory = (bus: MemoryBus): BrokerShape => {
  let self: ((publication: Publication) => void) | undefined
  return {
    publish: (publication) => Effect.sync(() => bus.send(self, publication)),
    receive: (handler) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          self = handler
          return bus.join(handler)
        }),
        (leave) => Effect.sync(leave)
      ).pipe(Effect.asVoid)
  }
}

export class Broker extends Context.Service<Broker, BrokerShape>()("@wedsync/hub/Broker") {
  /** Single node: nothing leaves the process. */
  static readonly layerMemory: Layer.Layer<Broker> = Layer.sync(Broker, () => makeMemory(new MemoryBus()))

  /** One node on a shared in-process bus, for tests that run several hubs in one process. */
  static readonly layerMemoryBus = (bus: MemoryBus): Layer.Layer<Broker> => Layer.sync(Broker, () => makeMemory(bus))
}
