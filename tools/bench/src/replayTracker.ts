/**
 * The client side of the replay bench's verdict: what one client received on its topic before it dropped and after
 * it came back with `replay`, by the publisher's per-topic sequence number. A message counts once, however many
 * copies arrive: copies are recognised by `meta.id` (and `TopicIds` checks that an id always names one sequence
 * number, so that de-duplicating by sequence is de-duplicating by id). After the drop it tells duplicates (a second
 * copy of a message it already had after coming back: the seam let a live copy of a replayed message through),
 * re-sent messages (ones it had before dropping, replayed again: the overlap at `since`, harmless) and gaps (missing
 * messages between the last one before the drop and the end).
 */

/** The millisecond timestamp in the first 48 bits of a UUIDv7, or undefined for anything else. */
export const uuidV7Ms = (id: string): number | undefined => {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i.test(id)) return undefined
  return Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16)
}

/** `meta` of a broadcast: its id and whether it is replayed, from the metadata JSON or the decoded object. */
export interface BroadcastMeta {
  readonly id: string | undefined
  readonly replayed: boolean
}

const NO_META: BroadcastMeta = { id: undefined, replayed: false }

export const metaOf = (value: unknown): BroadcastMeta => {
  if (typeof value !== "object" || value === null) return NO_META
  const id = "id" in value && typeof value.id === "string" ? value.id : undefined
  const replayed = "replayed" in value && value.replayed === true
  return { id, replayed }
}

export const parseMeta = (json: string | undefined): BroadcastMeta => {
  if (json === undefined) return NO_META
  try {
    return metaOf(JSON.parse(json))
  } catch {
    return NO_META
  }
}

/** One topic's ids: each must name one sequence number and each sequence number one id. */
export class TopicIds {
  readonly #seqOf = new Map<string, number>()
  readonly #idOf = new Map<number, string>()
  conflicts = 0

  /** False (and counted) when `id` was seen with another sequence number or `seq` with another id. */
  check(id: string, seq: number): boolean {
    const knownSeq = this.#seqOf.get(id)
    const knownId = this.#idOf.get(seq)
    if ((knownSeq !== undefined && knownSeq !== seq) || (knownId !== undefined && knownId !== id)) {
      this.conflicts++
      return false
    }
    this.#seqOf.set(id, seq)
    this.#idOf.set(seq, id)
    return true
  }
}

export class ClientTrack {
  #got = new Uint8Array(64)
  /** The lowest sequence number not received yet (messages start at 1). */
  #next = 1
  #highest = 0
  #sinceMs: number | undefined
  #sinceFromId = false
  #dropped = false
  /** The first sequence number the client needs after the drop. */
  #resumeFrom = 1
  /** Sequence number published on the topic when the client sent its rejoin; caught up once it has all up to it. */
  #target: number | undefined
  caughtUpAt: number | undefined
  /** When the gateway told this client, after its rejoin, that the replay is incomplete (beyond retention). */
  toldIncompleteAt: number | undefined
  duplicates = 0
  resent = 0
  replayed = 0
  live = 0
  /** Replayed messages that arrived before the drop (the gateway replayed without being asked). */
  unaskedReplays = 0

  /**
   * One received broadcast: its sequence number, meta, and the publisher's send time (ms, the bench's clock), the
   * fallback for `since` when the gateway gives no UUIDv7 id.
   */
  receive(seq: number, meta: BroadcastMeta, sentAtMs: number, now: number): void {
    if (!Number.isInteger(seq) || seq < 1) return
    this.#grow(seq)
    if (!this.#dropped) {
      if (meta.replayed) this.unaskedReplays++
      if (this.#got[seq] === 1) this.duplicates++
      this.#got[seq] = 1
      if (seq >= this.#highest) {
        this.#highest = seq
        const idMs = meta.id === undefined ? undefined : uuidV7Ms(meta.id)
        this.#sinceMs = idMs ?? Math.floor(sentAtMs)
        this.#sinceFromId = idMs !== undefined
      }
      this.#advance()
      return
    }
    if (seq < this.#resumeFrom) {
      this.resent++
      return
    }
    if (this.#got[seq] === 1) {
      this.duplicates++
      return
    }
    this.#got[seq] = 1
    if (meta.replayed) this.replayed++
    else this.live++
    this.#advance()
    this.checkCaughtUp(now)
  }

  /** Messages missing below the highest one received before the drop (live loss, not the replay's). */
  missingBeforeDrop(): number {
    let missing = 0
    for (let seq = 1; seq <= this.#highest; seq++) if (this.#got[seq] !== 1) missing++
    return missing
  }

  /** Drops the client: from now on it needs everything after its last contiguous message. Returns `since`. */
  drop(): { readonly sinceMs: number | undefined; readonly fromId: boolean } {
    this.#dropped = true
    this.#resumeFrom = this.#next
    return { sinceMs: this.#sinceMs, fromId: this.#sinceFromId }
  }

  /** The rejoin was sent while the topic's last published message was `publishedSeq`. */
  rejoining(publishedSeq: number): void {
    this.#target = publishedSeq
    this.caughtUpAt = undefined
    this.toldIncompleteAt = undefined
  }

  /** The gateway's explicit notice that the replay could not bring everything (counted after the drop only). */
  toldIncomplete(now: number): void {
    if (this.#dropped) this.toldIncompleteAt ??= now
  }

  /** Caught up, or told plainly that it cannot be: the two ends a client may reach without silent loss. */
  get settled(): boolean {
    return this.caughtUpAt !== undefined || this.toldIncompleteAt !== undefined
  }

  /** Records the catch-up time once every message up to the target is in. */
  checkCaughtUp(now: number): void {
    if (this.caughtUpAt === undefined && this.#target !== undefined && this.#next > this.#target) {
      this.caughtUpAt = now
    }
  }

  /** Messages published on its topic between its last one before the drop and its rejoin: what replay must bring. */
  missedWhileAway(): number {
    return this.#target === undefined ? 0 : Math.max(0, this.#target - this.#resumeFrom + 1)
  }

  /** Messages the client needed after the drop, up to `lastSeq`. */
  needed(lastSeq: number): number {
    return Math.max(0, lastSeq - this.#resumeFrom + 1)
  }

  /** Messages missing between the drop and `lastSeq` (the last one published on the topic). */
  gaps(lastSeq: number): number {
    let missing = 0
    for (let seq = this.#resumeFrom; seq <= lastSeq; seq++) if (this.#got[seq] !== 1) missing++
    return missing
  }

  #advance(): void {
    while (this.#got[this.#next] === 1) this.#next++
  }

  #grow(seq: number): void {
    if (seq < this.#got.length - 1) return
    let length = this.#got.length
    while (length <= seq + 1) length *= 2
    const bigger = new Uint8Array(length)
    bigger.set(this.#got)
    this.#got = bigger
  }
}
