/**
 * The bytes of a `Publication` between processes, tagged with the sending process's origin.
 *
 * Layout: version byte, flags byte, 8 origin bytes, then length-prefixed strings (topic, event, then
 * user event and meta for a user broadcast) and the body's bytes to the end. Each string carries its
 * own encoding byte: UTF-8 when the string is well-formed, UTF-16LE otherwise, so a lone surrogate
 * (which UTF-8 would replace) comes back exactly as it was sent.
 */
import type { Publication } from "./Publication.ts"

const VERSION = 1
export const ORIGIN_BYTES = 8

const PRIVATE = 1
const USER_BROADCAST = 2
const BINARY = 4
const HAS_META = 8

const UTF8 = 0
const UTF16 = 1

export interface Decoded {
  readonly origin: Uint8Array
  readonly publication: Publication
}

const encodeString = (s: string): Buffer => {
  const wellFormed = s.isWellFormed()
  const bytes = Buffer.from(s, wellFormed ? "utf8" : "utf16le")
  const head = Buffer.allocUnsafe(5)
  head.writeUInt8(wellFormed ? UTF8 : UTF16, 0)
  head.writeUInt32BE(bytes.length, 1)
  return Buffer.concat([head, bytes])
}

export const encode = (origin: Uint8Array, publication: Publication): Buffer => {
  const body = publication.body
  let flags = publication.isPrivate ? PRIVATE : 0
  const parts: Array<Uint8Array> = []
  const head = Buffer.alloc(2 + ORIGIN_BYTES)
  head.writeUInt8(VERSION, 0)
  head.set(origin.subarray(0, ORIGIN_BYTES), 2)
  parts.push(head, encodeString(publication.topic), encodeString(publication.event))
  if (body._tag === "Json") {
    parts.push(encodeString(body.json))
  } else {
    flags |= USER_BROADCAST
    if (body.encoding === "binary") flags |= BINARY
    parts.push(encodeString(body.userEvent))
    if (body.meta !== undefined) {
      flags |= HAS_META
      parts.push(encodeString(body.meta))
    }
    parts.push(body.payload)
  }
  head.writeUInt8(flags, 1)
  return Buffer.concat(parts)
}

class Reader {
  offset: number
  readonly bytes: Buffer
  constructor(bytes: Buffer, offset: number) {
    this.bytes = bytes
    this.offset = offset
  }

  string(): string | undefined {
    if (this.offset + 5 > this.bytes.length) return undefined
    const kind = this.bytes.readUInt8(this.offset)
    const length = this.bytes.readUInt32BE(this.offset + 1)
    const start = this.offset + 5
    const end = start + length
    if (end > this.bytes.length || (kind !== UTF8 && kind !== UTF16) || (kind === UTF16 && length % 2 !== 0)) {
      return undefined
    }
    this.offset = end
    return this.bytes.toString(kind === UTF8 ? "utf8" : "utf16le", start, end)
  }
}

/** The publication and its origin, or `undefined` for bytes this version did not write. */
export const decode = (bytes: Buffer): Decoded | undefined => {
  if (bytes.length < 2 + ORIGIN_BYTES || bytes.readUInt8(0) !== VERSION) return undefined
  const flags = bytes.readUInt8(1)
  const origin = bytes.subarray(2, 2 + ORIGIN_BYTES)
  const reader = new Reader(bytes, 2 + ORIGIN_BYTES)
  const topic = reader.string()
  const event = reader.string()
  if (topic === undefined || event === undefined) return undefined
  const isPrivate = (flags & PRIVATE) !== 0
  if ((flags & USER_BROADCAST) === 0) {
    const json = reader.string()
    if (json === undefined || reader.offset !== bytes.length) return undefined
    return { origin, publication: { topic, isPrivate, event, body: { _tag: "Json", json } } }
  }
  const userEvent = reader.string()
  if (userEvent === undefined) return undefined
  let meta: string | undefined
  if ((flags & HAS_META) !== 0) {
    meta = reader.string()
    if (meta === undefined) return undefined
  }
  // A copy, so the publication does not pin the socket's larger read buffer.
  const payload = new Uint8Array(bytes.subarray(reader.offset))
  return {
    origin,
    publication: {
      topic,
      isPrivate,
      event,
      body: { _tag: "UserBroadcast", userEvent, encoding: (flags & BINARY) !== 0 ? "binary" : "json", payload, meta }
    }
  }
}
