/**
 * A network boundary between the bench and the gateway on one machine: the gateway runs in a network namespace of its
 * own, joined to the bench by a veth pair, and each end's receive work is steered (RPS) to the core of the process
 * that reads it.
 *
 * Why: over loopback the kernel does a packet's whole receive path (TCP receive, waking the reader) in the sender's
 * softirq, on the sender's core. At 60,000 deliveries/s that puts the bench's receive work for 10,000 sockets on the
 * gateway's pinned core, work that in a deployment happens on the clients' machines. With the veth pair and RPS, a
 * packet from the gateway is received on the bench's core and a packet to the gateway (publishes, heartbeats, the
 * ACKs of its own sends) on the gateway's core, as with two machines on one link. Needs root (CAP_NET_ADMIN and
 * CAP_SYS_ADMIN, for `ip netns`); without it the bench stops with the reason `ip` gave.
 */
import { execFileSync } from "node:child_process"
import { randomBytes, randomInt } from "node:crypto"
import { readdirSync, writeFileSync } from "node:fs"

export interface SplitNetwork {
  /** The gateway's address inside its namespace: bind to it, and connect to it from the bench. */
  readonly serverHost: string
  /** The command prefix that runs a program inside the gateway's namespace. */
  readonly prefix: ReadonlyArray<string>
  readonly namespace: string
  /** The veth ends: the bench's in this namespace, the gateway's in its own. */
  readonly benchDevice: string
  readonly serverDevice: string
  /** One line for the report. */
  readonly description: string
  /** Deletes the namespace (and with it both ends of the veth pair). Call after the gateway has exited. */
  readonly close: () => void
}

const ip = (...args: ReadonlyArray<string>): void => {
  execFileSync("ip", [...args], { stdio: ["ignore", "ignore", "pipe"] })
}

/** The RPS mask that steers a queue's receive work to one CPU. */
const cpuMask = (cpu: number): string => (1 << cpu).toString(16)

/** Writes `mask` to every receive queue's `rps_cpus` of `device`, as seen from the current namespace's /sys. */
const steerQueues = (device: string, mask: string): void => {
  const queues = `/sys/class/net/${device}/queues`
  for (const queue of readdirSync(queues).filter((name) => name.startsWith("rx-"))) {
    writeFileSync(`${queues}/${queue}/rps_cpus`, mask)
  }
}

/** Whether an interface or namespace name is taken already (another bench's, or a leftover of a killed one). */
const taken = (namespace: string, link: string, subnet: string): boolean => {
  const namespaces = execFileSync("ip", ["netns", "list"], { encoding: "utf8" })
  const links = execFileSync("ip", ["-o", "link", "show"], { encoding: "utf8" })
  const addresses = execFileSync("ip", ["-o", "-4", "addr", "show"], { encoding: "utf8" })
  return namespaces.split("\n").some((line) => line.split(" ")[0] === namespace) ||
    links.includes(` ${link}:`) || links.includes(` ${link}@`) || addresses.includes(` ${subnet}.`)
}

/**
 * Creates the namespace and the veth pair (10.231.N.1 on the bench's side, 10.231.N.2 on the gateway's), under names
 * and a subnet no other bench on the machine holds, steers each end's receive work to its reader's core, and removes
 * what it made again if a later step fails.
 */
export const openSplitNetwork = (serverCpu: number, benchCpu: number): SplitNetwork => {
  let namespace = ""
  let benchEnd = ""
  let serverEnd = ""
  let subnet = ""
  for (let attempt = 0;; attempt++) {
    const n = randomInt(0, 250)
    const id = randomBytes(3).toString("hex")
    namespace = `wedsync-bench-${id}`
    benchEnd = `wsb${id}`
    serverEnd = `wsg${id}`
    subnet = `10.231.${n}`
    if (!taken(namespace, benchEnd, subnet)) break
    if (attempt === 20) throw new Error("--network veth: found no free namespace name and subnet in 20 tries")
  }
  const serverHost = `${subnet}.2`
  const inNamespace = ["ip", "netns", "exec", namespace]
  let madeNamespace = false
  let madeLink = false
  const close = () => {
    // Deleting one end removes the pair at once; the namespace's own teardown would remove it later, in the background.
    const steps = [
      ...(madeLink ? [["link", "del", benchEnd]] : []),
      ...(madeNamespace ? [["netns", "del", namespace]] : [])
    ]
    for (const args of steps) {
      try {
        ip(...args)
      } catch {
        // Gone already.
      }
    }
    madeLink = false
    madeNamespace = false
  }
  try {
    ip("netns", "add", namespace)
    madeNamespace = true
    ip("link", "add", benchEnd, "type", "veth", "peer", "name", serverEnd)
    madeLink = true
    ip("link", "set", serverEnd, "netns", namespace)
    ip("addr", "add", `${subnet}.1/24`, "dev", benchEnd)
    ip("link", "set", benchEnd, "up")
    ip("netns", "exec", namespace, "ip", "addr", "add", `${serverHost}/24`, "dev", serverEnd)
    ip("netns", "exec", namespace, "ip", "link", "set", serverEnd, "up")
    ip("netns", "exec", namespace, "ip", "link", "set", "lo", "up")
    steerQueues(benchEnd, cpuMask(benchCpu))
    // `ip netns exec` mounts the namespace's own /sys, where the gateway's end is visible.
    execFileSync(
      inNamespace[0]!,
      [
        ...inNamespace.slice(1),
        "sh",
        "-c",
        `for q in /sys/class/net/${serverEnd}/queues/rx-*; do echo ${cpuMask(serverCpu)} > "$q/rps_cpus"; done`
      ],
      { stdio: ["ignore", "ignore", "pipe"] }
    )
  } catch (error) {
    close()
    const detail = error instanceof Error && "stderr" in error && String(error.stderr).trim() !== ""
      ? String(error.stderr).trim()
      : error instanceof Error
      ? error.message
      : String(error)
    const hint = /permission|not permitted|EACCES|EPERM/i.test(detail)
      ? " (it needs root: CAP_NET_ADMIN, CAP_SYS_ADMIN)"
      : ""
    throw new Error(`--network veth could not set up the namespace and veth pair${hint}: ${detail}`)
  }
  return {
    serverHost,
    prefix: inNamespace,
    namespace,
    benchDevice: benchEnd,
    serverDevice: serverEnd,
    description: `veth pair into namespace ${namespace} (gateway ${serverHost}), receive work steered: ` +
      `gateway end to CPU ${serverCpu}, bench end to CPU ${benchCpu}`,
    close
  }
}
