/**
 * Reconnect-storm benchmark (issue #8): W weddings × D devices, each device on its private `wedding:<id>` channel
 * with a `wedding_id=eq.<id>` Postgres Changes binding, U users per wedding (each user holds D/U devices). Every
 * socket connects and subscribes; then all are dropped at once and reconnect spread over `--spread` seconds, as a
 * venue's devices do after its Wi-Fi comes back. Measured from the drop: time until every socket is rejoined and
 * subscribed, time until every socket has received a row inserted after that, join latency (join sent → reply)
 * p50/p99, the queries the storm cost Postgres on the membership table (index + sequential scans, from
 * `pg_stat_user_tables`), the gateway's cache reads per kind and tier (from `/metrics`), and the gateway's CPU.
 *
 * `--memberships` grants through `MEMBERSHIP_TABLE` (tokens carry no wedding claim); without it the tokens'
 * `app_metadata.wedding_ids` grant. `--env KEY=VALUE` passes gateway settings (e.g. a cache turned off, to compare).
 *
 * Run: `npm run bench:storm -w @wedsync/tools -- --memberships` (defaults: 50 weddings × 200 devices, 40 users per
 * wedding, 5 s spread).
 */
import { SignJWT } from "jose"
import { parseArgs } from "node:util"
import { fileURLToPath } from "node:url"
import pg from "pg"
import WebSocket from "ws"
import { pinSelf, tasksetAvailable } from "./machine.ts"
import { CpuMeter } from "./proc.ts"
import { dropChangesFixture, fixtureNames, startChangesGateway } from "./changesFixture.ts"
import { freePort, sleep } from "./serverProcess.ts"
import { LatencyHistogram } from "./stats.ts"
import { JWT_SECRET } from "./targets/gateway.ts"
import { sumSeries } from "./exposition.ts"

const { values } = parseArgs({
  options: {
    weddings: { type: "string", default: "50" },
    devices: { type: "string", default: "200" },
    users: { type: "string", default: "40" },
    spread: { type: "string", default: "5" },
    memberships: { type: "boolean", default: false },
    env: { type: "string", multiple: true, default: [] }
  }
})
const weddings = Number(values.weddings)
const devices = Number(values.devices)
const usersPerWedding = Number(values.users)
const spreadMs = Number(values.spread) * 1000
const memberships = values.memberships
const extraEnv = Object.fromEntries(
  values.env.map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)])
)
const databaseUrl = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres"
const root = fileURLToPath(new URL("../../../", import.meta.url))
const fixture = fixtureNames("storm")
const { schema, publication } = fixture
const total = weddings * devices

const userOf = (socket: number) => {
  const w = socket % weddings
  return { w, user: `u${w}-${Math.floor(socket / weddings) % usersPerWedding}` }
}

const db = new pg.Client({ connectionString: databaseUrl })
db.on("error", () => undefined)
await db.connect()
await db.query(`create schema ${schema}`)
await db.query(
  `create table ${schema}.timeline_items (id bigint generated always as identity primary key, wedding_id text not null, title text)`
)
await db.query(`alter table ${schema}.timeline_items replica identity full`)
await db.query(
  `create table ${schema}.wedding_members (user_id text not null, wedding_id text not null, primary key (user_id, wedding_id))`
)
await db.query(`alter table ${schema}.wedding_members replica identity full`)
const members: Array<string> = []
for (let w = 0; w < weddings; w++) for (let u = 0; u < usersPerWedding; u++) members.push(`('u${w}-${u}', 'w${w}')`)
await db.query(`insert into ${schema}.wedding_members (user_id, wedding_id) values ${members.join(",")}`)
await db.query(`create publication ${publication} for table ${schema}.timeline_items, ${schema}.wedding_members`)

const membershipScans = async (): Promise<number> => {
  const { rows } = await db.query(
    `select coalesce(idx_scan, 0) + coalesce(seq_scan, 0) as scans from pg_stat_user_tables where schemaname = $1 and relname = 'wedding_members'`,
    [schema]
  )
  return Number(rows[0]?.scans ?? 0)
}

const cleanup = () => dropChangesFixture(db, fixture)

try {
  const port = await freePort()
  const server = await startChangesGateway({
    root,
    port,
    databaseUrl,
    fixture,
    cpu: tasksetAvailable() ? 0 : undefined,
    env: {
      REPLICATION_START_DELAY_MS: "0",
      ...(memberships ? { MEMBERSHIP_TABLE: `${schema}.wedding_members` } : {}),
      ...extraEnv
    }
  })

  const pinned = tasksetAvailable() && pinSelf(1)
  const tokenOf = new Map<string, string>()
  for (let s = 0; s < weddings * usersPerWedding; s++) {
    const { w, user } = userOf(s)
    if (tokenOf.has(user)) continue
    const claims = memberships ? {} : { app_metadata: { wedding_ids: [`w${w}`] } }
    tokenOf.set(
      user,
      await new SignJWT({ role: "authenticated", sub: user, ...claims })
        .setProtectedHeader({ alg: "HS256", typ: "JWT" })
        .setExpirationTime(Math.floor(Date.now() / 1000) + 3600)
        .sign(new TextEncoder().encode(JWT_SECRET))
    )
  }

  const joinLatency = new LatencyHistogram({ minValue: 0.01 })
  const sockets: Array<WebSocket | undefined> = Array.from({ length: total }, () => undefined)
  let received = 0
  let expectRows = false
  const receivedBy = new Uint8Array(total)

  /** Connects socket `s`, joins, and resolves once Postgres Changes confirmed the subscription. */
  const connect = (s: number) =>
    new Promise<void>((resolve, reject) => {
      const { w, user } = userOf(s)
      const token = tokenOf.get(user)!
      const ws = new WebSocket(`ws://127.0.0.1:${port}/realtime/v1/websocket?apikey=${token}&vsn=2.0.0`, {
        perMessageDeflate: false
      })
      sockets[s] = ws
      let joinSent = 0
      ws.on("error", reject)
      ws.on("open", () => {
        const binding = { event: "*", schema, table: "timeline_items", filter: `wedding_id=eq.w${w}` }
        joinSent = performance.now()
        ws.send(JSON.stringify(["1", "1", `realtime:wedding:w${w}`, "phx_join", {
          config: { private: true, postgres_changes: [binding] },
          access_token: token
        }]))
      })
      ws.on("message", (data: Buffer, isBinary: boolean) => {
        if (isBinary) return
        const text = data.toString("utf8")
        if (text.startsWith('["1","1"') && text.includes('"phx_reply"')) {
          if (text.includes('"status":"ok"')) joinLatency.record(performance.now() - joinSent)
          else reject(new Error(`join refused: ${text}`))
        } else if (text.includes("Subscribed to PostgreSQL")) {
          resolve()
        } else if (expectRows && text.includes('"postgres_changes",{"ids"') && receivedBy[s] === 0) {
          receivedBy[s] = 1
          received++
        } else if (text.includes('"status":"error"')) {
          reject(new Error(text))
        }
      })
    })

  const connectAll = async (spread: number) => {
    const started = performance.now()
    const pending: Array<Promise<void>> = []
    for (let s = 0; s < total; s++) {
      const due = started + (spread * s) / total
      const wait = due - performance.now()
      if (wait > 1) await sleep(wait)
      pending.push(connect(s))
    }
    await Promise.all(pending)
  }

  /** Inserts one row per wedding and waits until every socket has received its wedding's row. */
  const everyoneReceives = async () => {
    received = 0
    receivedBy.fill(0)
    expectRows = true
    const values = Array.from({ length: weddings }, (_, w) => `('w${w}', 'after the storm')`)
    await db.query(`insert into ${schema}.timeline_items (wedding_id, title) values ${values.join(",")}`)
    const started = performance.now()
    while (received < total && performance.now() - started < 30_000) await sleep(10)
    expectRows = false
    return received
  }

  // Before the storm: everyone in, once (this fills the caches the storm will hit).
  await connectAll(0)
  if ((await everyoneReceives()) !== total) throw new Error(`before the storm only ${received} of ${total} received`)
  joinLatency.reset()

  const metricsBefore = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  const scansBefore = await membershipScans()
  const cpu = new CpuMeter(server.pid)
  cpu.start()
  const dropped = performance.now()
  for (const ws of sockets) ws?.terminate()
  await connectAll(spreadMs)
  const rejoinedS = (performance.now() - dropped) / 1000
  const got = await everyoneReceives()
  const receivingS = (performance.now() - dropped) / 1000
  const serverCpu = cpu.read()
  const scans = (await membershipScans()) - scansBefore
  const metricsAfter = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  const delta = (name: string, match: string) =>
    (sumSeries(metricsAfter, name, match) ?? 0) - (sumSeries(metricsBefore, name, match) ?? 0)
  const ratio = (kind: string) => {
    const hits = delta("wedsync_cache_hits_total", `kind="${kind}"`) +
      delta("wedsync_cache_stale_served_total", `kind="${kind}"`)
    const misses = delta("wedsync_cache_misses_total", `kind="${kind}"`) -
      delta("wedsync_cache_misses_total", `tier="l1",kind="${kind}"`)
    return hits + misses === 0 ? "no reads" : `${((100 * hits) / (hits + misses)).toFixed(2)}% of ${hits + misses}`
  }
  console.log(
    `storm: ${weddings} weddings × ${devices} devices (${usersPerWedding} users each), ${
      memberships ? "MEMBERSHIP_TABLE" : "token claims"
    }, ` +
      `${values.spread} s spread, ${pinned ? "server CPU 0 / bench CPU 1" : "unpinned"}${
        values.env.length > 0 ? `, env ${values.env.join(" ")}` : ""
      }`
  )
  console.log(
    `  all rejoined and subscribed after ${rejoinedS.toFixed(2)} s; all receiving after ${
      receivingS.toFixed(2)
    } s (${got} of ${total})`
  )
  console.log(
    `  join latency p50 ${joinLatency.percentile(0.5).toFixed(1)} ms, p99 ${
      joinLatency.percentile(0.99).toFixed(1)
    } ms, max ${joinLatency.max.toFixed(1)} ms`
  )
  console.log(
    `  membership table scans during the storm: ${scans} (user × wedding pairs: ${weddings * usersPerWedding})`
  )
  console.log(`  cache hit ratio: user ${ratio("user")}; subscription ${ratio("subscription")}`)
  console.log(`  gateway CPU ${serverCpu.toFixed(1)}% of one core over the storm`)
} finally {
  await cleanup()
}
