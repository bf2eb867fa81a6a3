import { NodeRuntime } from "@effect/platform-node"
import { Layer } from "effect"
import * as GatewayLayer from "./GatewayLayer.ts"

GatewayLayer.fromEnv.pipe(Layer.launch, NodeRuntime.runMain)
