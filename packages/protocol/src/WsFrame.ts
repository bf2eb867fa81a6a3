/**
 * RFC 6455 framing for server-to-client data frames (never masked). The fan-out path frames a
 * publication once and writes the same bytes to every subscriber's socket.
 */

export const OPCODE_TEXT = 1
export const OPCODE_BINARY = 2

const encoder = new TextEncoder()

/** A complete, unmasked, final WebSocket frame: header followed by the payload. */
export const frame = (opcode: typeof OPCODE_TEXT | typeof OPCODE_BINARY, payload: Uint8Array): Uint8Array => {
  const length = payload.length
  const headerLength = length < 126 ? 2 : length < 65536 ? 4 : 10
  const out = new Uint8Array(headerLength + length)
  out[0] = 0x80 | opcode
  if (length < 126) {
    out[1] = length
  } else if (length < 65536) {
    out[1] = 126
    out[2] = length >>> 8
    out[3] = length & 0xff
  } else {
    out[1] = 127
    // Payloads are far below 2^53, so the high 32 bits come from a division, not a shift.
    const high = Math.floor(length / 0x100000000)
    new DataView(out.buffer).setUint32(2, high)
    new DataView(out.buffer).setUint32(6, length >>> 0)
  }
  out.set(payload, headerLength)
  return out
}

export const text = (s: string): Uint8Array => frame(OPCODE_TEXT, encoder.encode(s))
export const binary = (bytes: Uint8Array): Uint8Array => frame(OPCODE_BINARY, bytes)

/** Parses frames written by `frame` (tests and in-memory transports read them back). */
export const parseAll = (bytes: Uint8Array): Array<{ readonly opcode: number; readonly payload: Uint8Array }> => {
  const frames: Array<{ opcode: number; payload: Uint8Array }> = []
  let offset = 0
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  while (offset + 2 <= bytes.length) {
    const opcode = bytes[offset]! & 0x0f
    let length = bytes[offset + 1]! & 0x7f
    let header = 2
    if (length === 126) {
      length = view.getUint16(offset + 2)
      header = 4
    } else if (length === 127) {
      length = view.getUint32(offset + 2) * 0x100000000 + view.getUint32(offset + 6)
      header = 10
    }
    frames.push({ opcode, payload: bytes.subarray(offset + header, offset + header + length) })
    offset += header + length
  }
  return frames
}
