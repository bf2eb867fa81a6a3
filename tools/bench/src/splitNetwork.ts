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
 * CAP_SYS_ADMIN, for `ip netns`); without it the bench stops with a message saying so.
 */
import { execFileSync } from "node:child_process"
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

/**
 * Creates the namespace and the veth pair (10.231.N.1 on the bench's side, 10.231.N.2 on the gateway's, N from this
 * process's pid so two benches do not collide), steers each end's receive work to its reader's core, and removes it
 * all again if any step fails.
 */
export const openSplitNetwork = (serverCpu: number, benchCpu: number): SplitNetwork => {
  const id = process.pid % 100_000
  const namespace = `wedsync-bench-${id}`
  const benchEnd = `wsb${id}`
  const serverEnd = `wsg${id}`
  const subnet = `10.231.${id % 250}`
  const serverHost = `${subnet}.2`
  const inNamespace = ["ip", "netns", "exec", namespace]
  const close = () => {
    // Deleting one end removes the pair at once; the namespace's own teardown would remove it later, in the background.
    for (const args of [["link", "del", benchEnd], ["netns", "del", namespace]]) {
      try {
        ip(...args)
      } catch {
        // Not created, or gone already.
      }
    }
  }
  try {
    ip("netns", "add", namespace)
    ip("link", "add", benchEnd, "type", "veth", "peer", "name", serverEnd)
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
    const detail = error instanceof Error && "stderr" in error ? String(error.stderr).trim() : String(error)
    throw new Error(
      `--network veth needs root (ip netns, veth, rps_cpus): ${detail}. Run as root, or without --network veth.`
    )
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
