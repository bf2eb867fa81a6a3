/**
 * What a measured window cost Redis: `INFO cpu commandstats` read before and after, as calls per command and Redis CPU
 * seconds. The bench has no Redis client library (tools depend only on the protocol package), and one command needs
 * only RESP's simplest replies, so this speaks it over a plain socket: a fresh connection per reading, outside the
 * measured traffic's hot path.
 *
 * `INFO` is server-wide: on a Redis other work uses at the same time, its commands are counted too. `--redis spawn`
 * gives the run a private redis-server (`redisServer.ts`) so the counts are the gateways' alone.
 */
import { connect as connectTcp, type Socket } from "node:net"
import { connect as connectTls } from "node:tls"

export interface RedisStats {
  /** Calls per command name (lower case: `spublish`, `xadd`, …) since the server started. */
  readonly calls: ReadonlyMap<string, number>
  /** used_cpu_sys + used_cpu_user of the server, in seconds. */
  readonly cpuSeconds: number
  /** The reading's own commands (AUTH, SELECT, INFO), to leave out of the difference of two readings. */
  readonly own: ReadonlyArray<string>
}

export interface RedisCost {
  /** Calls per command during the window, only commands that were called, most called first. */
  readonly calls: ReadonlyArray<readonly [string, number]>
  readonly totalCalls: number
  readonly cpuSeconds: number
}

/** Encodes one command as a RESP array of bulk strings. */
export const encodeCommand = (args: ReadonlyArray<string>): Buffer =>
  Buffer.concat([
    Buffer.from(`*${args.length}\r\n`),
    ...args.flatMap((arg) => [Buffer.from(`$${Buffer.byteLength(arg)}\r\n`), Buffer.from(arg), Buffer.from("\r\n")])
  ])

type Reply =
  | { readonly done: true; readonly value: string; readonly error: boolean }
  | { readonly done: false }

/** One complete reply (simple string, error, integer or bulk string) at the start of `buf`, or not yet complete. */
export const parseReply = (buf: Buffer): Reply => {
  const eol = buf.indexOf("\r\n")
  if (eol < 0) return { done: false }
  const head = buf.toString("utf8", 1, eol)
  switch (buf[0]) {
    case 0x2b: // +
    case 0x3a: // :
      return { done: true, value: head, error: false }
    case 0x2d: // -
      return { done: true, value: head, error: true }
    case 0x24: { // $
      const length = Number(head)
      if (length < 0) return { done: true, value: "", error: false }
      if (buf.length < eol + 2 + length + 2) return { done: false }
      return { done: true, value: buf.toString("utf8", eol + 2, eol + 2 + length), error: false }
    }
    default:
      return { done: true, value: `unexpected reply type ${String.fromCharCode(buf[0] ?? 0)}`, error: true }
  }
}

const TIMEOUT_MS = 5_000

/** Opens a connection to `url` (`redis://` or `rediss://`, optional user, password and db). */
const open = (url: URL): Promise<Socket> =>
  new Promise((resolve, reject) => {
    const port = Number(url.port || 6379)
    const host = url.hostname || "127.0.0.1"
    const socket = url.protocol === "rediss:"
      ? connectTls({ host, port, servername: host }, () => resolve(socket))
      : connectTcp({ host, port }, () => resolve(socket))
    socket.once("error", reject)
  })

/** The commands that open a connection to `url`: AUTH and SELECT when the URL asks for them. */
const setupOf = (url: URL): ReadonlyArray<ReadonlyArray<string>> => {
  const setup: Array<ReadonlyArray<string>> = []
  if (url.password !== "") {
    setup.push(
      url.username === ""
        ? ["AUTH", decodeURIComponent(url.password)]
        : ["AUTH", decodeURIComponent(url.username), decodeURIComponent(url.password)]
    )
  }
  const db = url.pathname.replace(/^\//, "")
  if (db !== "") setup.push(["SELECT", db])
  return setup
}

/** Sends `commands` after the setup ones and returns the last reply; fails on an error reply or a timeout. */
export const sendCommands = async (rawUrl: string, commands: ReadonlyArray<ReadonlyArray<string>>): Promise<string> => {
  const url = new URL(rawUrl)
  const all = [...setupOf(url), ...commands]
  const socket = await open(url)
  try {
    return await new Promise<string>((resolve, reject) => {
      let buffered = Buffer.alloc(0)
      let index = 0
      const timer = setTimeout(
        () => reject(new Error(`Redis ${url.host}: no reply within ${TIMEOUT_MS} ms`)),
        TIMEOUT_MS
      )
      socket.on("error", (error) => (clearTimeout(timer), reject(error)))
      socket.on("data", (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk])
        const reply = parseReply(buffered)
        if (!reply.done) return
        buffered = Buffer.alloc(0)
        if (reply.error) {
          clearTimeout(timer)
          reject(new Error(`Redis ${url.host} refused ${all[index]?.[0]}: ${reply.value}`))
          return
        }
        if (++index < all.length) {
          socket.write(encodeCommand(all[index]!))
          return
        }
        clearTimeout(timer)
        resolve(reply.value)
      })
      socket.write(encodeCommand(all[0]!))
    })
  } finally {
    socket.destroy()
  }
}

/** Parses the text of `INFO cpu commandstats`; `own` names the commands the reading itself sent. */
export const parseInfo = (text: string, own: ReadonlyArray<string> = ["info"]): RedisStats => {
  const calls = new Map<string, number>()
  let cpuSeconds = 0
  for (const line of text.split("\r\n")) {
    const command = /^cmdstat_([^:]+):calls=(\d+)/.exec(line)
    if (command !== null) calls.set(command[1]!.toLowerCase(), Number(command[2]))
    const cpu = /^used_cpu_(sys|user):([\d.]+)$/.exec(line)
    if (cpu !== null) cpuSeconds += Number(cpu[2])
  }
  return { calls, cpuSeconds, own }
}

/** Reads the server's command counts and CPU. */
export const readRedisStats = async (url: string): Promise<RedisStats> => {
  const own = [...setupOf(new URL(url)).map((command) => command[0]!.toLowerCase()), "info"]
  return parseInfo(await sendCommands(url, [["INFO", "cpu", "commandstats"]]), own)
}

/**
 * What happened between two readings. The readings' own commands are left out: all of the first reading's, and the
 * second's except its INFO, which Redis counts only after answering it.
 */
export const redisCost = (before: RedisStats, after: RedisStats): RedisCost => {
  const ownCalls = new Map<string, number>()
  for (const name of [...before.own, ...after.own.filter((name) => name !== "info")]) {
    ownCalls.set(name, (ownCalls.get(name) ?? 0) + 1)
  }
  const calls = [...after.calls]
    .map(([name, n]): readonly [string, number] => [
      name,
      n - (before.calls.get(name) ?? 0) - (ownCalls.get(name) ?? 0)
    ])
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1])
  return {
    calls,
    totalCalls: calls.reduce((sum, [, n]) => sum + n, 0),
    cpuSeconds: after.cpuSeconds - before.cpuSeconds
  }
}

/** `2.00 (spublish 1.00, xadd 1.00)`: commands per published message, in total and per command. */
export const perMessage = (cost: RedisCost, published: number, digits = 2): string => {
  if (published <= 0) return "—"
  const each = cost.calls.map(([name, n]) => `${name} ${(n / published).toFixed(digits)}`)
  return `${(cost.totalCalls / published).toFixed(digits)}${each.length > 0 ? ` (${each.join(", ")})` : ""}`
}
