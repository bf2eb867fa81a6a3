/**
 * Target `socketio`: `servers/socketioServer.ts` (Socket.IO 4.8.4, websocket transport, no
 * compression) with either the lean Socket.IO client or the official socket.io-client.
 */
import { fileURLToPath } from "node:url"
import { startServer } from "../serverProcess.ts"
import { connectSocketIo } from "./socketioSession.ts"
import type { Target } from "./Target.ts"
import type { ClientMode } from "./transport.ts"

const entry = fileURLToPath(new URL("../servers/socketioServer.ts", import.meta.url))

export const socketIoTarget = (client: ClientMode): Target => ({
  name: "socketio",
  serverCommand:
    "node tools/bench/src/servers/socketioServer.ts (socket.io 4.8.4, websocket only, perMessageDeflate off)",
  start: ({ repoRoot, port, cpu }) =>
    startServer({
      name: "socketio",
      args: [entry],
      cwd: repoRoot,
      env: { PORT: String(port), HOST: "127.0.0.1" },
      cpu,
      startTimeoutMs: 15_000
    }),
  connect: (port, events, timeoutMs) => connectSocketIo(client, port, events, timeoutMs)
})
