/**
 * The Socket.IO 4 reference: websocket transport only, no compression, `join` puts the socket in one
 * room and each `pub` is re-emitted to the rest of the room, the idiomatic Socket.IO fan-out.
 */
import { createServer } from "node:http"
import { Server } from "socket.io"
import { type ClientToServerEvents, ROOM, type ServerToClientEvents } from "./socketioEvents.ts"

const host = process.env["HOST"] ?? "127.0.0.1"
const port = Number(process.env["PORT"] ?? "4200")

const http = createServer()
const io = new Server<ClientToServerEvents, ServerToClientEvents>(http, {
  transports: ["websocket"],
  perMessageDeflate: false,
  serveClient: false
})

io.on("connection", (socket) => {
  socket.on("join", (ack) => {
    void socket.join(ROOM)
    ack("ok")
  })
  socket.on("pub", (message) => {
    socket.to(ROOM).emit("msg", message)
  })
})

http.listen(port, host, () => console.log(`socketio listening on http://${host}:${port}`))

const shutdown = (): void => {
  void io.close(() => process.exit(0))
}
process.on("SIGTERM", shutdown)
process.on("SIGINT", shutdown)
