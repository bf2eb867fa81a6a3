/**
 * Rate-limited log lines for refused upgrades, joins and REST calls, so an operator sees why clients are
 * turned away (a wrong `JWT_SECRET` shows as a stream of signature failures) without a flood turning into
 * a log flood. At most `linesPerSecond` lines per (where, reason) key per second; what was held back is
 * reported as `suppressed` on the next line of that key.
 *
 * Privacy policy: a line carries the place (`upgrade` / `join` / `rest`), the reason tag and the
 * reason's text only: never a token, an IP address, a user id (`sub`) or an email. Reason texts are
 * Supabase's fixed texts; the only client-chosen part (a topic name in `Unauthorized`) is cut at
 * `MAX_TEXT` characters.
 */
import { Clock, Context, Effect } from "effect"

export type Where = "upgrade" | "join" | "rest" | "socket"

const MAX_TEXT = 200

/** Reasons that point at the gateway's own configuration rather than at the client: logged as warnings. */
const CONFIGURATION_HINTS: ReadonlyMap<string, string> = new Map([
  [
    "JwtSignatureError",
    "tokens are signed with another key than JWT_SECRET (or an unknown sb_ key was sent): check JWT_SECRET"
  ],
  ["JwtSignerError", "no key can verify these tokens: check JWT_SECRET / JWT_JWKS_URL"]
])

interface Window {
  start: number
  lines: number
  suppressed: number
}

/** The per-process state: one window per key. */
export class RefusalLogState {
  readonly linesPerSecond: number
  private readonly windows = new Map<string, Window>()

  constructor(linesPerSecond = 5) {
    this.linesPerSecond = linesPerSecond
  }

  /** `undefined`: hold this line back; a number: log it, reporting that many held back before it. */
  admit(key: string, now: number): number | undefined {
    let window = this.windows.get(key)
    if (window === undefined) {
      // Keys are bounded: (3 places) x (the closed set of reason tags).
      window = { start: now, lines: 0, suppressed: 0 }
      this.windows.set(key, window)
    }
    if (now - window.start >= 1000) {
      window.start = now
      window.lines = 0
    }
    if (window.lines >= this.linesPerSecond) {
      window.suppressed++
      return undefined
    }
    window.lines++
    const suppressed = window.suppressed
    window.suppressed = 0
    return suppressed
  }
}

/** The process-wide state (a reference with a default, so no layer has to provide it). */
export const RefusalLog = Context.Reference<RefusalLogState>("@wedsync/connection/RefusalLog", {
  defaultValue: () => new RefusalLogState()
})

/** A refusal's code (a `WireReason` tag, or a REST-only one such as `PayloadTooDeep`) and its text. */
interface Refusal {
  readonly _tag: string
  readonly message: string
}

/** Logs one refusal, unless its key already had its lines this second. */
export const log = (where: Where, reason: Refusal): Effect.Effect<void> =>
  Effect.gen(function*() {
    const state = yield* RefusalLog
    const suppressed = state.admit(`${where}:${reason._tag}`, yield* Clock.currentTimeMillis)
    if (suppressed === undefined) return
    const text = reason.message.length > MAX_TEXT ? `${reason.message.slice(0, MAX_TEXT)}…` : reason.message
    const hint = CONFIGURATION_HINTS.get(reason._tag)
    const annotations: Record<string, string | number> = { where, reason: reason._tag, detail: text }
    if (suppressed > 0) annotations["suppressed"] = suppressed
    if (hint !== undefined) {
      annotations["hint"] = hint
      return yield* Effect.logWarning(`${where} refused: ${reason._tag}`).pipe(Effect.annotateLogs(annotations))
    }
    return yield* Effect.logInfo(`${where} refused: ${reason._tag}`).pipe(Effect.annotateLogs(annotations))
  })

/**
 * `log` as a single line in every `LOG_FORMAT` (no annotations, which the pretty logger prints one per line):
 * `<where> refused: <Code>: <text>`, with `(<n> suppressed)` when lines were held back. Used for sockets closed
 * for what they sent, where a hostile client decides how often it happens; the same rate limit applies.
 */
export const logLine = (where: Where, reason: Refusal): Effect.Effect<void> =>
  Effect.gen(function*() {
    const state = yield* RefusalLog
    const suppressed = state.admit(`${where}:${reason._tag}`, yield* Clock.currentTimeMillis)
    if (suppressed === undefined) return
    const text = reason.message.length > MAX_TEXT ? `${reason.message.slice(0, MAX_TEXT)}…` : reason.message
    yield* Effect.logInfo(
      `${where} refused: ${reason._tag}: ${text}${suppressed > 0 ? ` (${suppressed} suppressed)` : ""}`
    )
  })
