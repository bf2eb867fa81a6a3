/**
 * What the scenarios need from a benchmark target: a way to start its server and a client
 * connection speaking its wire protocol. Everything else (pools, publishing, metrics) is shared.
 */
import type { ServerHandle } from "../serverProcess.ts"

export const TARGET_NAMES = ["gateway", "ws-relay", "socketio"] as const
export type TargetName = (typeof TARGET_NAMES)[number]

export const isTargetName = (value: string): value is TargetName =>
  (TARGET_NAMES as ReadonlyArray<string>).includes(value)

export interface ConnectionEvents {
  /** One received broadcast: its send timestamp (ms, shared clock) and sequence number. */
  readonly onDelivery: (sentAt: number, seq: number) => void
  /** A delivery whose sequence number is not above the previous one on the same connection. */
  readonly onReorder: (seq: number) => void
  /** The connection closed without the bench asking for it. */
  readonly onUnexpectedClose: (reason: string) => void
}

export interface Connection {
  /** Joins the bench topic and resolves on the server's acknowledgement. */
  readonly join: () => Promise<void>
  /** Publishes one ~`payloadBytes` broadcast stamped with the current time and `seq`. */
  readonly publish: (seq: number, payloadBytes: number) => void
  /** Application-level keepalive the real client would send (no-op where the library does it). */
  readonly heartbeat: () => void
  readonly close: () => void
}

export interface StartOptions {
  readonly repoRoot: string
  readonly port: number
  readonly cpu: number | undefined
  /** Extra environment of the server process (the gateway's Redis settings in a scale-out run). */
  readonly env?: Readonly<Record<string, string>>
}

export interface Target {
  readonly name: TargetName
  /** How the server is started, for the report. */
  readonly serverCommand: string
  readonly start: (options: StartOptions) => Promise<ServerHandle>
  readonly connect: (port: number, events: ConnectionEvents, timeoutMs: number) => Promise<Connection>
}

/**
 * Per-connection delivery callback that also checks ordering: one publisher means every subscriber
 * must see strictly increasing sequence numbers, so anything else is a duplicate or a reorder.
 */
export const orderedDelivery = (events: ConnectionEvents): (sentAt: number, seq: number) => void => {
  let last = Number.NEGATIVE_INFINITY
  return (sentAt, seq) => {
    if (seq <= last) events.onReorder(seq)
    else last = seq
    events.onDelivery(sentAt, seq)
  }
}
