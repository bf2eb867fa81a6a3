/**
 * A WebSocket client on raw TCP for what `ws` refuses to send: reserved opcodes, control frames without FIN, stray
 * continuation frames, text frames with invalid UTF-8, RSV bits, unmasked frames. It performs the upgrade, writes the
 * given bytes and reports how the server ended the connection (its close frame's code, or the TCP end).
 */
import { randomBytes } from "node:crypto"
import { connect } from "node:net"

interface RawOutcome {
  /** The upgrade's HTTP status (101 when it succeeded). */
  readonly status: number
  /** The server's close code, if it sent a close frame. */
  readonly closeCode: number | undefined
  /** True when the server ended the TCP connection (after a close frame or without one) within the time. */
  readonly ended: boolean
  /** True when the server answered the heartbeat sent after the frames (the connection survived them). */
  readonly answered: boolean
}

interface FrameSpec {
  readonly opcode: number
  readonly payload: Uint8Array
  readonly fin?: boolean
  readonly rsv?: number
  readonly masked?: boolean
}

/** Encodes one client frame (masked with a random key unless `masked: false`). */
export const encodeFrame = (spec: FrameSpec): Buffer => {
  const masked = spec.masked ?? true
  const length = spec.payload.length
  const extended = length < 126 ? 0 : length < 65536 ? 2 : 8
  const header = Buffer.alloc(2 + extended + (masked ? 4 : 0))
  header[0] = ((spec.fin ?? true) ? 0x80 : 0) | (((spec.rsv ?? 0) & 7) << 4) | (spec.opcode & 0x0f)
  const lengthByte = length < 126 ? length : length < 65536 ? 126 : 127
  header[1] = (masked ? 0x80 : 0) | lengthByte
  if (extended === 2) header.writeUInt16BE(length, 2)
  if (extended === 8) header.writeBigUInt64BE(BigInt(length), 2)
  const body = Buffer.from(spec.payload)
  if (masked) {
    const key = randomBytes(4)
    key.copy(header, 2 + extended)
    for (let i = 0; i < body.length; i++) body[i] = body[i]! ^ key[i & 3]!
  }
  return Buffer.concat([header, body])
}

/**
 * Connects to `port` at `path`, upgrades, writes `frames` and waits up to `timeoutMs` for the server to end the
 * connection or to answer a heartbeat sent after the frames. Resolves, never rejects.
 */
export const sendRaw = (
  port: number,
  path: string,
  frames: ReadonlyArray<Buffer>,
  timeoutMs: number
): Promise<RawOutcome> =>
  new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port })
    let status = 0
    let closeCode: number | undefined
    let buffered = Buffer.alloc(0)
    let upgraded = false
    let done = false
    let answered = false
    const finish = (ended: boolean): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      resolve({ status, closeCode, ended, answered })
    }
    const timer = setTimeout(() => finish(false), timeoutMs)
    socket.on("error", () => finish(true))
    socket.on("close", () => finish(true))
    socket.on("connect", () => {
      const key = randomBytes(16).toString("base64")
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`
      )
    })
    socket.on("data", (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk])
      if (!upgraded) {
        const end = buffered.indexOf("\r\n\r\n")
        if (end < 0) return
        status = Number(/^HTTP\/1\.1 (\d+)/.exec(buffered.subarray(0, end).toString("latin1"))?.[1] ?? 0)
        buffered = buffered.subarray(end + 4)
        if (status !== 101) return finish(true)
        upgraded = true
        for (const frame of frames) socket.write(frame)
        // A heartbeat after the frames: its reply shows the connection survived them, without waiting for a timeout.
        socket.write(encodeFrame({ opcode: 1, payload: Buffer.from('[null,"hb","phoenix","heartbeat",{}]') }))
      }
      // Server frames are unmasked; look for a close frame (opcode 8) and read its code.
      let o = 0
      while (buffered.length - o >= 2) {
        const opcode = buffered[o]! & 0x0f
        let length = buffered[o + 1]! & 0x7f
        let head = 2
        if (length === 126) {
          if (buffered.length - o < 4) break
          length = buffered.readUInt16BE(o + 2)
          head = 4
        } else if (length === 127) {
          if (buffered.length - o < 10) break
          length = Number(buffered.readBigUInt64BE(o + 2))
          head = 10
        }
        if (buffered.length - o < head + length) break
        if (opcode === 8 && length >= 2) closeCode = buffered.readUInt16BE(o + head)
        if (opcode === 1 && buffered.subarray(o + head, o + head + length).includes('"hb"')) answered = true
        o += head + length
      }
      buffered = buffered.subarray(o)
      if (answered) finish(false)
    })
  })
