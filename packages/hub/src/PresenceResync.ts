/**
 * How a presence replica catches up after the broker's subscription had an outage: the snapshot read from Redis
 * since, with the diffs received while it was read replayed over it, is what the replica should hold; the
 * difference with what it holds is the net change, sent once to the node's own subscribers.
 *
 * Entries are told apart by ref alone: a ref names one entry, with one meta, for its whole life (a changed meta
 * is a new ref), so two entries of one ref are the same entry.
 */

export interface RefEntry {
  readonly ref: string
}

/** A `presence_diff` as refs: the entries joining, and the refs leaving. */
export interface RefDiff<E extends RefEntry> {
  readonly joins: ReadonlyArray<E>
  readonly leaves: ReadonlyArray<string>
}

/** What turns one set of entries into another. */
export interface Change<E extends RefEntry> {
  readonly joins: ReadonlyArray<E>
  readonly leaves: ReadonlyArray<E>
}

/**
 * The entries of `snapshot`, by ref, with `diffs` applied in order. A diff may already be in the snapshot (it was
 * written to Redis before the read) or not: a join or leave of a ref applies once, so either way the result is the
 * same.
 */
export const replay = <E extends RefEntry>(
  snapshot: Iterable<E>,
  diffs: Iterable<RefDiff<E>>
): Map<string, E> => {
  const out = new Map<string, E>()
  for (const entry of snapshot) out.set(entry.ref, entry)
  for (const diff of diffs) {
    for (const ref of diff.leaves) out.delete(ref)
    for (const entry of diff.joins) out.set(entry.ref, entry)
  }
  return out
}

/** The entries of `target` that `current` lacks (joins) and those of `current` that `target` lacks (leaves). */
export const difference = <E extends RefEntry>(
  current: ReadonlyMap<string, E>,
  target: ReadonlyMap<string, E>
): Change<E> => {
  const joins: Array<E> = []
  const leaves: Array<E> = []
  for (const [ref, entry] of target) if (!current.has(ref)) joins.push(entry)
  for (const [ref, entry] of current) if (!target.has(ref)) leaves.push(entry)
  return { joins, leaves }
}
