import { Layer } from "effect"
import { Hub, Presence } from "../src/index.ts"
import { PresenceSuite } from "../src/testing/index.ts"

PresenceSuite("memory", () => Presence.Presence.layerMemory.pipe(Layer.provideMerge(Hub.Hub.layerMemory)))
