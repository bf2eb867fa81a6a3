/**
 * The replay storm's figures, what they print as, whether the run passed, and if not the plainest reason why (a
 * gateway that does not replay yet, or one that replays wrong).
 */
import type { RedisCost } from "./redisStats.ts"
import { perMessage } from "./redisStats.ts"
import type { ClientTrack } from "./replayTracker.ts"
import type { LatencyHistogram } from "./stats.ts"

/** What every client's track adds up to, checked to the last message published on its topic. */
export interface TrackTotals {
  /** Messages published after each client's last one before the drop. */
  readonly needed: number
  /** Of those, the ones published before the client's rejoin: what replay had to bring. */
  readonly missed: number
  readonly replayed: number
  readonly live: number
  readonly gaps: number
  /** Gaps of clients that were not told their replay is incomplete: loss. */
  readonly silentGaps: number
  readonly clientsWithGaps: number
  readonly duplicates: number
  readonly resent: number
  readonly unaskedReplays: number
}

export const sumTracks = (tracks: ReadonlyArray<ClientTrack>, lastSeqOf: (client: number) => number): TrackTotals => {
  const totals = {
    needed: 0,
    missed: 0,
    replayed: 0,
    live: 0,
    gaps: 0,
    silentGaps: 0,
    clientsWithGaps: 0,
    duplicates: 0,
    resent: 0,
    unaskedReplays: 0
  }
  tracks.forEach((track, client) => {
    const last = lastSeqOf(client)
    const gaps = track.gaps(last)
    totals.gaps += gaps
    if (track.toldIncompleteAt === undefined) totals.silentGaps += gaps
    if (gaps > 0) totals.clientsWithGaps++
    totals.needed += track.needed(last)
    totals.missed += track.missedWhileAway()
    totals.replayed += track.replayed
    totals.live += track.live
    totals.duplicates += track.duplicates
    totals.resent += track.resent
    totals.unaskedReplays += track.unaskedReplays
  })
  return totals
}

export interface ReplaySummary extends TrackTotals {
  readonly clients: number
  readonly processes: number
  readonly limit: number
  /** The most messages one client can miss while away, from the options. */
  readonly mostMissed: number
  readonly caught: number
  /** Caught up, or told that the replay is incomplete. */
  readonly settled: number
  readonly told: number
  /** When the last client caught up, if all did: seconds after the drop, the first and the last rejoin. */
  readonly allCaughtUp:
    | { readonly afterDropS: number; readonly afterFirstRejoinS: number; readonly afterLastRejoinS: number }
    | undefined
  readonly joinLatency: LatencyHistogram
  readonly catchUp: LatencyHistogram
  readonly conflicts: number
  readonly sinceFromIds: number
  readonly neverReceived: number
  readonly neverReceivedByProcess: ReadonlyArray<number>
  readonly missingId: number
  readonly missingBeforeDrop: number
  readonly cpuPct: number
  readonly cpuSeconds: number
  readonly redis: RedisCost | undefined
  readonly rejoinFailures: number
  readonly refusals: number
  readonly firstRefusal: string | undefined
  readonly systemMessages: number
  readonly systemTexts: ReadonlyArray<string>
  readonly channelClosed: number
  readonly unexpectedCloses: number
}

const fmt = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : "n/a")

const latencies = (h: LatencyHistogram) =>
  `p50 ${fmt(h.percentile(0.5))} ms, p99 ${fmt(h.percentile(0.99))} ms, max ${fmt(h.max)} ms`

export const renderReplay = (s: ReplaySummary): string => {
  const all = s.allCaughtUp === undefined
    ? "never"
    : `${fmt(s.allCaughtUp.afterDropS, 2)} s after the drop, ${
      fmt(s.allCaughtUp.afterFirstRejoinS, 2)
    } s after the first rejoin (${fmt(s.allCaughtUp.afterLastRejoinS, 2)} s after the last)`
  const told = s.told > 0
    ? `; told the replay is incomplete (system message): ${s.told} clients, settled ${s.settled} of ${s.clients}`
    : ""
  const byProcess = s.neverReceived > 0 && s.processes > 1
    ? ` (by process they were on: ${s.neverReceivedByProcess.join(" / ")})`
    : ""
  const redis = s.redis === undefined
    ? ""
    : `; Redis: ${s.redis.totalCalls} commands, ${perMessage(s.redis, s.clients)} per rejoining client, CPU ${
      fmt(s.redis.cpuSeconds, 2)
    } s`
  const texts = s.systemTexts.length > 0 ? ` (${s.systemTexts.join(" | ")})` : ""
  const lines = [
    `  caught up: ${s.caught} of ${s.clients} clients; all caught up ${all}${told}`,
    `  rejoin join latency ${latencies(s.joinLatency)}; rejoin to caught up ${latencies(s.catchUp)}`,
    `  messages published after each client's last one before the drop, summed over clients: ${s.needed}, of which ` +
    `${s.missed} before the client's rejoin (the replay's share; at most ${s.mostMissed} per client); received ` +
    `replayed ${s.replayed}, live ${s.live}; gaps ${s.gaps} in ${s.clientsWithGaps} clients, of which silent ` +
    `(no incomplete-replay notice: lost) ${s.silentGaps}; duplicates ${s.duplicates}, re-sent from before the drop ` +
    `${s.resent}, id conflicts ${s.conflicts}`,
    `  since: from meta.id (UUIDv7) for ${s.sinceFromIds} clients, from the publisher's clock for ${
      s.clients - s.sinceFromIds - s.neverReceived
    }, none (nothing received before the drop) for ${s.neverReceived}${byProcess}; broadcasts without meta.id ` +
    `${s.missingId}; live losses before the drop ${s.missingBeforeDrop}`,
    `  gateway CPU over the storm ${fmt(s.cpuPct)}% of one core (${fmt(s.cpuSeconds, 2)} CPU s, all processes)${redis}`,
    `  refused joins ${s.refusals}, failed rejoins ${s.rejoinFailures}, system messages ${s.systemMessages}${texts}, ` +
    `channel errors/closes ${s.channelClosed}, unexpected socket closes ${s.unexpectedCloses}`
  ]
  if (s.unaskedReplays > 0) {
    lines.push(`  note: ${s.unaskedReplays} replayed messages arrived before the drop, without replay asked`)
  }
  if (s.mostMissed > s.limit) {
    lines.push(
      `  note: a client may miss up to ${s.mostMissed} messages but asks for at most ${s.limit}: ` +
        "expect an explicit incomplete-replay message and gaps, or raise --limit"
    )
  }
  return lines.join("\n")
}

/** Every client caught up or told, no silent gap, no duplicate, every id naming one message, every rejoin made. */
export const passed = (s: ReplaySummary): boolean =>
  s.settled === s.clients && s.silentGaps === 0 && s.duplicates === 0 && s.conflicts === 0 && s.rejoinFailures === 0

/** The plainest reason a run failed, most fundamental first. */
export const verdict = (
  s: Pick<
    ReplaySummary,
    | "firstRefusal"
    | "neverReceived"
    | "processes"
    | "rejoinFailures"
    | "missed"
    | "replayed"
    | "missingId"
    | "silentGaps"
    | "clients"
    | "settled"
  >
): string => {
  if (s.firstRefusal !== undefined) return `the gateway refused joins: ${s.firstRefusal}`
  if (s.neverReceived > 0) {
    return `${s.neverReceived} clients received nothing before the drop${
      s.processes > 1 ? " (broadcasts from process 1 do not reach the other processes: is the Redis broker wired?)" : ""
    }`
  }
  if (s.rejoinFailures > 0) return `${s.rejoinFailures} rejoins failed (socket closed or not upgraded)`
  if (s.missed > 0 && s.replayed === 0) {
    return `no replayed message arrived (no broadcast with meta.replayed = true) although clients missed ${s.missed} ` +
      `messages while away: the gateway does not replay yet${
        s.missingId > 0 ? ", and live broadcasts carry no meta.id" : ""
      }`
  }
  if (s.silentGaps > 0) {
    return `${s.silentGaps} messages never arrived and no incomplete-replay notice said so (silent loss: replay ` +
      "incomplete or the seam lost them)"
  }
  if (s.settled < s.clients) return `${s.clients - s.settled} clients had not caught up when the wait ended (too slow)`
  return "duplicates or id conflicts (see above)"
}
