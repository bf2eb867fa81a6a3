/** Target `ws-relay`: the bare `ws` relay in `servers/wsRelayServer.ts`, measured with the gateway's client. */
import { fileURLToPath } from "node:url"
import { startServer } from "../serverProcess.ts"
import { connectPhoenix } from "./phoenixSession.ts"
import type { Target } from "./Target.ts"
import type { ClientMode } from "./transport.ts"

const entry = fileURLToPath(new URL("../servers/wsRelayServer.ts", import.meta.url))

export const wsRelayTarget = (client: ClientMode): Target => ({
  name: "ws-relay",
  serverCommand: "node tools/bench/src/servers/wsRelayServer.ts (ws 8.23.0, ws.send per subscriber)",
  start: ({ repoRoot, port, cpu }) =>
    startServer({
      name: "ws-relay",
      args: [entry],
      cwd: repoRoot,
      env: { PORT: String(port), HOST: "127.0.0.1" },
      cpu,
      startTimeoutMs: 15_000
    }),
  connect: (port, events, timeoutMs) =>
    connectPhoenix(client, { port, path: "/realtime/v1/websocket?vsn=2.0.0" }, events, timeoutMs)
})
