import { Broker } from "../src/index.ts"
import { BrokerSuite } from "../src/testing/index.ts"

// One bus per test: every node of that test joins it, and nothing leaks between tests.
BrokerSuite("memory", (nodes) => {
  const bus = new Broker.MemoryBus()
  return Array.from({ length: nodes }, () => Broker.Broker.layerMemoryBus(bus))
})
