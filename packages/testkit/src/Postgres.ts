/**
 * Clean-up for tests that create logical replication slots. A slot keeps WAL until it is dropped,
 * so a test must always drop its own; right after a stream stops, its walsender may still hold the
 * slot for a moment, so dropping waits for it (and ends it if it lingers).
 */

/** The part of a `pg` client or pool this needs; testkit does not depend on `pg` itself. */
interface Queryable {
  query(text: string, values?: Array<unknown>): Promise<{ readonly rows: Array<Record<string, unknown>> }>
}

export const dropReplicationSlot = async (db: Queryable, slot: string, timeoutMs = 10_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  let terminated = false
  while (Date.now() < deadline) {
    const { rows } = await db.query(`select active, active_pid from pg_replication_slots where slot_name = $1`, [slot])
    const row = rows[0]
    if (row === undefined) return
    if (row["active"] !== true) {
      await db.query(`select pg_drop_replication_slot($1)`, [slot])
      return
    }
    // No event tells when a walsender lets go of its slot; poll briefly, then end it.
    if (!terminated && Date.now() > deadline - timeoutMs / 2) {
      await db.query(`select pg_terminate_backend($1)`, [row["active_pid"]])
      terminated = true
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`replication slot ${slot} is still in use after ${timeoutMs} ms`)
}
