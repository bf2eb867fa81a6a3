/**
 * The Postgres side of the benches that run the gateway with Postgres Changes (`changesBench`, `stormBench`): a
 * schema, publication and slot of the run's own, a gateway started on them with its limits lifted, and the cleanup
 * that drops all three (the slot once the gateway has let it go, terminating its walsender if it lingers).
 */
import type pg from "pg"
import { killAllServers, type ServerHandle, sleep, startServer } from "./serverProcess.ts"
import { GATEWAY_ENTRY, startFlags } from "./targets/gateway.ts"

export interface ChangesFixture {
  readonly schema: string
  readonly slot: string
  readonly publication: string
}

/** Names no other run uses, under `prefix`. */
export const fixtureNames = (prefix: string): ChangesFixture => {
  const id = `${process.pid}_${Math.floor(Math.random() * 1e6)}`
  return { schema: `${prefix}_${id}`, slot: `${prefix}_slot_${id}`, publication: `${prefix}_pub_${id}` }
}

/** The gateway over `fixture`, its connection and rate limits lifted, error backoffs off; extra settings in `env`. */
export const startChangesGateway = (options: {
  readonly root: string
  readonly port: number
  readonly databaseUrl: string
  readonly fixture: ChangesFixture
  readonly cpu: number | undefined
  readonly env?: Readonly<Record<string, string>>
}): Promise<ServerHandle> =>
  startServer({
    name: "gateway",
    args: [...startFlags(options.root), GATEWAY_ENTRY],
    cwd: options.root,
    env: {
      PORT: String(options.port),
      HOST: "127.0.0.1",
      DATABASE_URL: options.databaseUrl,
      REPLICATION_SLOT: options.fixture.slot,
      REPLICATION_PUBLICATION: options.fixture.publication,
      MAX_CONNECTIONS: "100000",
      MAX_CONNECTIONS_PER_USER: "100000",
      MAX_CONNECTIONS_PER_IP: "100000",
      MAX_JOINS_PER_SECOND: "100000",
      CHANNEL_ERROR_BACKOFF_MS: "0",
      CONNECT_ERROR_BACKOFF_MS: "0",
      ...options.env
    },
    cpu: options.cpu,
    startTimeoutMs: 30_000
  })

/** Stops every server, then drops the slot, the publication and the schema, and closes `db`. */
export const dropChangesFixture = async (db: pg.Client, fixture: ChangesFixture): Promise<void> => {
  killAllServers()
  for (let i = 0; i < 100; i++) {
    const { rows } = await db.query(`select active, active_pid from pg_replication_slots where slot_name = $1`, [
      fixture.slot
    ])
    if (rows.length === 0) break
    if (!rows[0].active) {
      await db.query(`select pg_drop_replication_slot($1)`, [fixture.slot])
      break
    }
    if (i === 30) await db.query(`select pg_terminate_backend($1)`, [rows[0].active_pid])
    await sleep(100)
  }
  await db.query(`drop publication if exists ${fixture.publication}`)
  await db.query(`drop schema if exists ${fixture.schema} cascade`)
  await db.end()
}
