/**
 * A minimal RFC 6455 client on a raw TCP socket, so that one bench process on one core can receive
 * more messages per second than the server under test can send. The `ws` client spends several
 * microseconds per message in its stream machinery; this parser walks each TCP chunk in place and
 * hands out frame boundaries without copying. Only what the bench needs: no extensions, no
 * fragmented sends, masked client frames with an all-zero key (valid, and XOR-free).
 */
import { createHash, randomBytes } from "node:crypto"
import { connect, type Socket } from "node:net"

interface FrameHandlers {
  /** A complete text or binary message: `data[start, end)`. Valid only during the call. */
  readonly onMessage: (data: Buffer, start: number, end: number, binary: boolean) => void
  /** The connection ended after the handshake (not called for `close()`). */
  readonly onClose: (reason: string) => void
}

export interface LeanSocket {
  readonly sendText: (text: string) => void
  readonly sendBinary: (data: Buffer) => void
  readonly isOpen: () => boolean
  readonly close: () => void
}

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
const HEADER_END = Buffer.from("\r\n\r\n")

/** Frame header for a masked client frame with a zero masking key. */
const clientHeader = (opcode: number, length: number): Buffer => {
  if (length < 126) {
    const h = Buffer.alloc(6)
    h[0] = 0x80 | opcode
    h[1] = 0x80 | length
    return h
  }
  if (length < 65536) {
    const h = Buffer.alloc(8)
    h[0] = 0x80 | opcode
    h[1] = 0x80 | 126
    h.writeUInt16BE(length, 2)
    return h
  }
  const h = Buffer.alloc(14)
  h[0] = 0x80 | opcode
  h[1] = 0x80 | 127
  h.writeBigUInt64BE(BigInt(length), 2)
  return h
}

/**
 * Incremental parser of server frames in `chunk[0, length)`. Returns the unconsumed tail (or undefined); the tail is
 * a view of `chunk`, so a caller that reuses `chunk` must copy it. Exported for tests.
 */
export const parseFrames = (
  chunk: Buffer,
  onFrame: (opcode: number, fin: boolean, data: Buffer, start: number, end: number) => void,
  length: number = chunk.length
): Buffer | undefined => {
  let o = 0
  const n = length
  while (n - o >= 2) {
    const b0 = chunk[o]!
    const b1 = chunk[o + 1]!
    let len = b1 & 0x7f
    let h = 2
    if (len === 126) {
      if (n - o < 4) break
      len = chunk.readUInt16BE(o + 2)
      h = 4
    } else if (len === 127) {
      if (n - o < 10) break
      len = Number(chunk.readBigUInt64BE(o + 2))
      h = 10
    }
    const masked = (b1 & 0x80) !== 0
    if (masked) h += 4
    if (n - o < h + len) break
    const start = o + h
    if (masked) { for (let i = 0; i < len; i++) chunk[start + i]! ^= chunk[o + h - 4 + (i & 3)]! }
    onFrame(b0 & 0x0f, (b0 & 0x80) !== 0, chunk, start, start + len)
    o = start + len
  }
  return o < n ? chunk.subarray(o, n) : undefined
}

/**
 * Every socket reads into this one buffer (`net.connect`'s `onread`): no Buffer per read and no stream machinery per
 * chunk, which halved the bench's receive cost at 60,000 messages/s. Safe because every read is parsed before the next.
 */
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024)

export const openLeanSocket = (
  target: { readonly host: string; readonly port: number; readonly path: string },
  handlers: FrameHandlers,
  timeoutMs: number
): Promise<LeanSocket> =>
  new Promise((resolve, reject) => {
    const key = randomBytes(16).toString("base64")
    const accept = createHash("sha1").update(key + GUID).digest("base64")
    const onRead = (nread: number, buffer: Buffer): boolean => {
      if (open) onData(buffer, nread)
      else onHandshake(Buffer.from(buffer.subarray(0, nread)))
      return true
    }
    const socket: Socket = connect({
      host: target.host,
      port: target.port,
      noDelay: true,
      onread: { buffer: READ_BUFFER, callback: onRead }
    }, () => {
      socket.write(
        `GET ${target.path} HTTP/1.1\r\nHost: ${target.host}:${target.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`
      )
    })
    let open = false
    let closing = false
    let head: Buffer | undefined = Buffer.alloc(0)
    let pending: Buffer | undefined
    let fragments: Array<Buffer> = []
    let fragmentBinary = false

    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`websocket handshake timed out after ${timeoutMs} ms`))
    }, timeoutMs)

    const writeFrame = (opcode: number, payload: Buffer): void => {
      if (socket.destroyed || !socket.writable) return
      socket.write(Buffer.concat([clientHeader(opcode, payload.length), payload]))
    }

    const onFrame = (opcode: number, fin: boolean, data: Buffer, start: number, end: number): void => {
      if (opcode === 1 || opcode === 2) {
        if (fin) handlers.onMessage(data, start, end, opcode === 2)
        else {
          fragmentBinary = opcode === 2
          fragments = [Buffer.from(data.subarray(start, end))]
        }
      } else if (opcode === 0) {
        fragments.push(Buffer.from(data.subarray(start, end)))
        if (fin) {
          const whole = Buffer.concat(fragments)
          fragments = []
          handlers.onMessage(whole, 0, whole.length, fragmentBinary)
        }
      } else if (opcode === 9) {
        writeFrame(10, Buffer.from(data.subarray(start, end)))
      } else if (opcode === 8) {
        const code = end - start >= 2 ? data.readUInt16BE(start) : 1005
        if (!closing) {
          closing = true
          writeFrame(8, Buffer.from(data.subarray(start, Math.min(end, start + 2))))
          handlers.onClose(`close frame ${code} ${data.toString("utf8", Math.min(end, start + 2), end)}`)
        }
        socket.end()
      }
    }

    // `chunk` may be the shared read buffer: a partial frame left at its end is copied before the next read.
    const onData = (chunk: Buffer, length: number): void => {
      if (pending === undefined) {
        const tail = parseFrames(chunk, onFrame, length)
        pending = tail === undefined ? undefined : Buffer.from(tail)
      } else {
        const joined = Buffer.concat([pending, chunk.subarray(0, length)])
        pending = parseFrames(joined, onFrame)
      }
    }

    const onHandshake = (chunk: Buffer): void => {
      head = Buffer.concat([head ?? Buffer.alloc(0), chunk])
      const end = head.indexOf(HEADER_END)
      if (end < 0) return
      const lines = head.toString("latin1", 0, end).split("\r\n")
      const rest = head.subarray(end + 4)
      head = undefined
      clearTimeout(timer)
      const status = lines[0] ?? ""
      const acceptLine = lines.find((l) => l.toLowerCase().startsWith("sec-websocket-accept:"))
      if (!status.startsWith("HTTP/1.1 101") || acceptLine?.slice(21).trim() !== accept) {
        socket.destroy()
        reject(new Error(`websocket upgrade refused: ${status}`))
        return
      }
      open = true
      resolve({
        sendText: (text) => writeFrame(1, Buffer.from(text)),
        sendBinary: (data) => writeFrame(2, data),
        isOpen: () => open && !closing && !socket.destroyed,
        close: () => {
          closing = true
          socket.destroy()
        }
      })
      // Frames that arrived with the handshake wait until the caller holds the socket, so that a
      // protocol that must answer them (Engine.IO's open packet) can.
      if (rest.length > 0) {
        pending = rest
        setImmediate(() => onData(Buffer.alloc(0), 0))
      }
    }
    socket.on("error", (error) => {
      clearTimeout(timer)
      if (!open) reject(error)
    })
    socket.once("close", () => {
      clearTimeout(timer)
      if (!open) reject(new Error("connection closed during websocket handshake"))
      else if (!closing) {
        closing = true
        handlers.onClose("tcp connection closed")
      }
    })
  })
