import { CacheStore, InvalidationBus } from "../src/index.ts"
import { CacheStoreSuite, InvalidationBusSuite } from "../src/testing/index.ts"

CacheStoreSuite("memory", () => CacheStore.CacheStore.layerMemory)

// One bus per test: every member of that test joins it.
InvalidationBusSuite("memory", (members) => {
  const bus = new InvalidationBus.MemoryBus()
  return Array.from({ length: members }, () => InvalidationBus.InvalidationBus.layerMemoryShared(bus))
})
