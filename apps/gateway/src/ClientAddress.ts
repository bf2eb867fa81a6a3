/**
 * The client address a socket is counted under (`MAX_CONNECTIONS_PER_IP`). Behind an ingress every
 * peer is the proxy, so with `TRUSTED_PROXIES` set the address comes from `X-Forwarded-For`: the
 * right-most entry that is not itself a trusted proxy, and only when the direct peer is a trusted
 * proxy. A client that is not behind a trusted proxy cannot choose its address: its header is ignored.
 */
import type { Transport } from "@wedsync/connection"
import { BlockList, isIP } from "node:net"

/** `::ffff:10.0.0.1` (an IPv4 peer of a dual-stack server) is `10.0.0.1`. */
const normalize = (address: string): string =>
  address.startsWith("::ffff:") && isIP(address.slice(7)) === 4 ? address.slice(7) : address

/** Why one `TRUSTED_PROXIES` entry is not an IP address or CIDR block, or `undefined` when it is one. */
export const entryProblem = (entry: string): string | undefined => {
  const [address = "", prefix, extra] = entry.split("/")
  const family = isIP(address)
  if (family === 0 || extra !== undefined) return `${JSON.stringify(entry)} is not an IP address or CIDR block`
  if (prefix === undefined) return undefined
  const bits = /^\d{1,3}$/.test(prefix) ? Number(prefix) : -1
  if (bits < 0 || bits > (family === 4 ? 32 : 128)) return `${JSON.stringify(entry)} has an invalid prefix length`
  return undefined
}

/** A comma-separated list, blanks dropped. */
export const parseList = (raw: string): ReadonlyArray<string> =>
  raw.split(",").map((s) => s.trim()).filter((s) => s !== "")

const blockList = (entries: ReadonlyArray<string>): BlockList => {
  const list = new BlockList()
  for (const entry of entries) {
    const [address = "", prefix] = entry.split("/")
    const normalized = normalize(address)
    const type = isIP(normalized) === 6 ? "ipv6" : "ipv4"
    if (prefix === undefined) list.addAddress(normalized, type)
    else list.addSubnet(normalized, Number(prefix), type)
  }
  return list
}

/** The rule for `entries` (already validated); with none, the direct peer's address. */
export const make = (entries: ReadonlyArray<string>): Transport.ClientAddress => {
  if (entries.length === 0) return (request) => normalize(request.socket.remoteAddress ?? "unknown")
  const trusted = blockList(entries)
  const isTrusted = (address: string) => {
    const family = isIP(address)
    return family !== 0 && trusted.check(address, family === 6 ? "ipv6" : "ipv4")
  }
  return (request) => {
    const peer = normalize(request.socket.remoteAddress ?? "unknown")
    if (!isTrusted(peer)) return peer
    const header = request.headers["x-forwarded-for"]
    if (header === undefined || header === "") return peer
    const hops = (Array.isArray(header) ? header.join(",") : header).split(",")
    let leftMost = peer
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = normalize(hops[i]!.trim())
      // The first hop a trusted proxy wrote that is not a proxy itself is the client. A malformed
      // entry means the proxy chain is misconfigured: count the proxy rather than a made-up key.
      if (isIP(hop) === 0) return peer
      if (!isTrusted(hop)) return hop
      leftMost = hop
    }
    return leftMost
  }
}
