import { assert, describe, it } from "@effect/vitest"
import { parseFrames } from "../src/leanSocket.ts"

const serverFrame = (opcode: number, payload: Buffer, fin = true): Buffer => {
  const len = payload.length
  const head = len < 126
    ? Buffer.from([(fin ? 0x80 : 0) | opcode, len])
    : Buffer.from([(fin ? 0x80 : 0) | opcode, 126, len >> 8, len & 0xff])
  return Buffer.concat([head, payload])
}

const collect = (chunks: ReadonlyArray<Buffer>): Array<string> => {
  const out: Array<string> = []
  let pending: Buffer | undefined
  for (const chunk of chunks) {
    const buf = pending === undefined ? chunk : Buffer.concat([pending, chunk])
    pending = parseFrames(
      buf,
      (opcode, fin, data, start, end) => out.push(`${opcode}:${fin ? 1 : 0}:${data.toString("utf8", start, end)}`)
    )
  }
  return out
}

describe("parseFrames", () => {
  it("yields several frames from one chunk", () => {
    const chunk = Buffer.concat([serverFrame(1, Buffer.from("a")), serverFrame(2, Buffer.from("bc"))])
    assert.deepStrictEqual(collect([chunk]), ["1:1:a", "2:1:bc"])
  })

  it("reassembles frames split at every byte boundary", () => {
    const long = Buffer.from("x".repeat(300))
    const stream = Buffer.concat([
      serverFrame(2, Buffer.from("hello")),
      serverFrame(1, long),
      serverFrame(9, Buffer.alloc(0))
    ])
    for (let cut = 1; cut < stream.length; cut += 7) {
      assert.deepStrictEqual(collect([stream.subarray(0, cut), stream.subarray(cut)]), [
        "2:1:hello",
        `1:1:${long.toString()}`,
        "9:1:"
      ])
    }
  })

  it("unmasks masked frames", () => {
    const mask = [1, 2, 3, 4]
    const payload = Buffer.from("abcdef").map((b, i) => b ^ mask[i % 4]!)
    const frame = Buffer.concat([Buffer.from([0x81, 0x80 | 6, ...mask]), payload])
    assert.deepStrictEqual(collect([frame]), ["1:1:abcdef"])
  })

  it("reports continuation frames with their fin bit", () => {
    const stream = Buffer.concat([serverFrame(1, Buffer.from("ab"), false), serverFrame(0, Buffer.from("cd"))])
    assert.deepStrictEqual(collect([stream]), ["1:0:ab", "0:1:cd"])
  })
})
