/**
 * The `phx_join` payload, normalised. Like the Supabase server, invalid field types do not fail
 * the join: each bad field falls back to its default and is listed in `invalidFields` so the
 * caller can log `InvalidJoinPayload`.
 */

interface PostgresChangeBinding {
  /** The client's own object, echoed back unchanged (plus `id`) in the join reply. */
  readonly raw: Readonly<Record<string, unknown>>
  readonly event: string
  readonly schema: string
  readonly table: string | undefined
  readonly filter: string | undefined
  /** Column selection (newer clients); only when every entry is a string. */
  readonly select: ReadonlyArray<string> | undefined
}

/** `config.broadcast.replay`: what a private channel asks to be replayed at join. */
export interface ReplayRequest {
  /** Milliseconds since the epoch; messages whose id time is at or after it. */
  readonly since: number
  /** At most this many, the most recent; `DEFAULT_REPLAY_LIMIT` when the client sent none, at most `MAX_REPLAY_LIMIT`. */
  readonly limit: number
}

/** supabase-js's default when `replay.limit` is left out. */
export const DEFAULT_REPLAY_LIMIT = 25
/** A larger `limit` is lowered to this: a replay is pushed in one go, so it must stay a bounded burst. */
export const MAX_REPLAY_LIMIT = 1000

export interface JoinConfig {
  readonly broadcastAck: boolean
  readonly broadcastSelf: boolean
  /** `undefined` when the client left it empty: the server then generates a key per join. */
  readonly presenceKey: string | undefined
  readonly presenceEnabled: boolean
  readonly isPrivate: boolean
  readonly postgresChanges: ReadonlyArray<PostgresChangeBinding>
  /** `access_token` (or the legacy `user_token`) carried by the join, if any. */
  readonly accessToken: string | undefined
  readonly invalidFields: ReadonlyArray<string>
  /**
   * `config.broadcast.replay`: absent (undefined), valid (`since` an integer, `limit` an integer >= 1 or left out),
   * or `"invalid"`, which must refuse the join (Supabase's `Replay params are not valid`).
   */
  readonly replay: ReplayRequest | "invalid" | undefined
  /**
   * `postgres_changes` `event` values that are not `*`, `INSERT`, `UPDATE` or `DELETE` (any case), as JSON
   * text. Such a binding is left out of `postgresChanges` (never widened to `*`); the join must be refused.
   */
  readonly unknownEvents: ReadonlyArray<string>
}

/** The `event` values a `postgres_changes` binding may carry (case-insensitive); a missing `event` means `*`. */
export const EVENTS: ReadonlySet<string> = new Set(["*", "INSERT", "UPDATE", "DELETE"])

type Obj = Readonly<Record<string, unknown>>
const isObj = (u: unknown): u is Obj => typeof u === "object" && u !== null && !Array.isArray(u)

/** JSON text of a structured key; `undefined` for values JSON cannot carry, so `parse` stays total. */
const keyJson = (key: unknown): string | undefined => {
  try {
    return JSON.stringify(key) as string | undefined
  } catch {
    return undefined
  }
}

const replayOf = (raw: unknown): ReplayRequest | "invalid" | undefined => {
  if (raw === undefined || raw === null) return undefined
  if (!isObj(raw)) return "invalid"
  const since = raw["since"]
  const limit = raw["limit"] ?? DEFAULT_REPLAY_LIMIT
  if (typeof since !== "number" || !Number.isSafeInteger(since) || since < 0) return "invalid"
  if (typeof limit !== "number" || !Number.isSafeInteger(limit) || limit < 1) return "invalid"
  return { since, limit: Math.min(limit, MAX_REPLAY_LIMIT) }
}

export const parse = (payload: unknown): JoinConfig => {
  const invalid: Array<string> = []
  const root: Obj = isObj(payload) ? payload : (invalid.push("payload"), {})
  const config: Obj = root["config"] === undefined
    ? {}
    : isObj(root["config"])
    ? root["config"]
    : (invalid.push("config"), {})
  const section = (name: string): Obj => {
    const v = config[name]
    if (v === undefined || v === null) return {}
    if (isObj(v)) return v
    invalid.push(`config.${name}`)
    return {}
  }
  const bool = (o: Obj, key: string, path: string, fallback: boolean): boolean => {
    const v = o[key]
    if (v === undefined || v === null) return fallback
    if (typeof v === "boolean") return v
    if (typeof v === "string" && /^(true|false)$/i.test(v)) return v.toLowerCase() === "true"
    invalid.push(path)
    return fallback
  }
  const broadcast = section("broadcast")
  const presence = section("presence")
  const key = presence["key"]
  const presenceKey = key === undefined || key === null || key === ""
    ? undefined
    : typeof key === "string"
    ? key
    : typeof key === "number" || typeof key === "boolean" || typeof key === "bigint"
    ? String(key)
    : keyJson(key)
  if (presenceKey === undefined && key !== undefined && key !== null && key !== "") invalid.push("config.presence.key")
  const rawChanges = config["postgres_changes"]
  const postgresChanges: Array<PostgresChangeBinding> = []
  const unknownEvents: Array<string> = []
  if (Array.isArray(rawChanges)) {
    for (const entry of rawChanges) {
      if (!isObj(entry)) {
        invalid.push("config.postgres_changes")
        continue
      }
      const event = entry["event"] === undefined || entry["event"] === null ? "*" : entry["event"]
      if (typeof event !== "string" || !EVENTS.has(event.toUpperCase())) {
        unknownEvents.push(keyJson(event) ?? typeof event)
        continue
      }
      postgresChanges.push({
        raw: entry,
        event,
        schema: typeof entry["schema"] === "string" ? entry["schema"] : "public",
        table: typeof entry["table"] === "string" ? entry["table"] : undefined,
        filter: typeof entry["filter"] === "string" ? entry["filter"] : undefined,
        select: Array.isArray(entry["select"]) && entry["select"].every((c) => typeof c === "string")
          ? (entry["select"] as ReadonlyArray<string>)
          : undefined
      })
    }
  } else if (rawChanges !== undefined && rawChanges !== null) {
    invalid.push("config.postgres_changes")
  }
  const token = root["access_token"] ?? root["user_token"]
  if (token !== undefined && token !== null && typeof token !== "string") invalid.push("access_token")
  return {
    broadcastAck: bool(broadcast, "ack", "config.broadcast.ack", false),
    broadcastSelf: bool(broadcast, "self", "config.broadcast.self", false),
    presenceKey,
    presenceEnabled: bool(presence, "enabled", "config.presence.enabled", false),
    isPrivate: bool(config, "private", "config.private", false),
    postgresChanges,
    accessToken: typeof token === "string" && token !== "" ? token : undefined,
    invalidFields: invalid,
    replay: replayOf(broadcast["replay"]),
    unknownEvents
  }
}
