/**
 * Postgres Changes benchmark (issue #3): W weddings × S subscribers, each on its private
 * `wedding:<id>` channel with a `wedding_id=eq.<id>` binding and a token for that wedding only, so
 * every delivery is authorized. Rows are inserted at rising rates (one transaction per 10 ms tick);
 * latency is commit-to-client: receive time − `sent_at`, a timestamp the row carries from the moment
 * the bench issued its insert (one process, one clock). Reports deliveries/s, p50/p99 and loss per
 * rate. Run: `npm run bench:changes -w @wedsync/tools -- --weddings 50 --per-wedding 200`.
 */
import { execFileSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { SignJWT } from "jose"
import pg from "pg"
import WebSocket from "ws"
import { CpuMeter } from "./proc.ts"
import { dropChangesFixture, fixtureNames, startChangesGateway } from "./changesFixture.ts"
import { freePort } from "./serverProcess.ts"
import { LatencyHistogram } from "./stats.ts"
import { JWT_SECRET } from "./targets/gateway.ts"

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback
}
const weddings = Number(arg("weddings", "50"))
const perWedding = Number(arg("per-wedding", "200"))
const rates = arg("rates", "20,50,100,150,200,300").split(",").map(Number)
const stepSeconds = Number(arg("step", "5"))
const databaseUrl = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres"
const root = fileURLToPath(new URL("../../../", import.meta.url))
const fixture = fixtureNames("bench")
const { schema, publication } = fixture
const now = () => performance.timeOrigin + performance.now()

const db = new pg.Client({ connectionString: databaseUrl })
db.on("error", () => undefined)
await db.connect()
await db.query(`create schema ${schema}`)
await db.query(
  `create table ${schema}.timeline_items (id bigint generated always as identity primary key, wedding_id text not null, title text, sent_at float8 not null)`
)
await db.query(`alter table ${schema}.timeline_items replica identity full`)
await db.query(`create publication ${publication} for table ${schema}.timeline_items`)

const cleanup = () => dropChangesFixture(db, fixture)

try {
  const port = await freePort()
  const server = await startChangesGateway({ root, port, databaseUrl, fixture, cpu: 0 })

  try {
    execFileSync("taskset", ["-a", "-p", "-c", "1", String(process.pid)], { stdio: "ignore" })
  } catch {
    // Unpinned: the report says so below.
  }
  const tokens = await Promise.all(
    Array.from(
      { length: weddings },
      (_, w) =>
        new SignJWT({ role: "authenticated", sub: `planner-${w}`, app_metadata: { wedding_ids: [`w${w}`] } })
          .setProtectedHeader({ alg: "HS256", typ: "JWT" })
          .setExpirationTime(Math.floor(Date.now() / 1000) + 3600)
          .sign(new TextEncoder().encode(JWT_SECRET))
    )
  )
  const latency = new LatencyHistogram({ minValue: 0.01, maxValue: 600_000, precision: 0.01 })
  let delivered = 0
  const sockets: Array<WebSocket> = []
  const connectOne = (w: number) =>
    new Promise<void>((resolve, reject) => {
      const token = tokens[w]!
      const ws = new WebSocket(`ws://127.0.0.1:${port}/realtime/v1/websocket?apikey=${token}&vsn=2.0.0`, {
        perMessageDeflate: false
      })
      sockets.push(ws)
      ws.on("error", reject)
      ws.on("open", () => {
        const binding = { event: "INSERT", schema, table: "timeline_items", filter: `wedding_id=eq.w${w}` }
        ws.send(
          JSON.stringify(["1", "1", `realtime:wedding:w${w}`, "phx_join", {
            config: { private: true, postgres_changes: [binding] },
            access_token: token
          }])
        )
      })
      ws.on("message", (data: Buffer, isBinary: boolean) => {
        if (isBinary) return
        const text = data.toString("utf8")
        if (text.includes('"postgres_changes",{"ids"')) {
          const frame = JSON.parse(text) as [null, null, string, string, { data: { record: { sent_at: number } } }]
          latency.record(now() - frame[4].data.record.sent_at)
          delivered++
        } else if (text.includes("Subscribed to PostgreSQL")) {
          resolve()
        } else if (text.includes('"error"') && text.includes("system")) {
          reject(new Error(text))
        }
      })
    })
  const total = weddings * perWedding
  const connectStarted = performance.now()
  for (let i = 0; i < total; i += 200) {
    await Promise.all(Array.from({ length: Math.min(200, total - i) }, (_, k) => connectOne((i + k) % weddings)))
  }
  const connectSeconds = (performance.now() - connectStarted) / 1000
  // Real clients' heartbeats are spread over the 25 s interval; sending 10,000 at the same instant
  // would measure a burst no deployment sees. Each second, one 25th of the sockets beats.
  let beat = 0
  const heartbeat = setInterval(() => {
    const slice = beat++ % 25
    for (let i = slice; i < sockets.length; i += 25) {
      const ws = sockets[i]!
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify([null, "hb", "phoenix", "heartbeat", {}]))
    }
  }, 1_000)
  const rows: Array<string> = []
  const cpu = new CpuMeter(server.pid)
  for (const rate of rates) {
    latency.reset()
    delivered = 0
    let inserted = 0
    let next = 0
    cpu.start()
    const started = performance.now()
    while (performance.now() - started < stepSeconds * 1000) {
      const due = Math.floor(((performance.now() - started) / 1000) * rate) - inserted
      if (due > 0) {
        const values: Array<string> = []
        for (let k = 0; k < due; k++) values.push(`('w${(next++) % weddings}', 'row', ${now()})`)
        await db.query(`insert into ${schema}.timeline_items (wedding_id, title, sent_at) values ${values.join(",")}`)
        inserted += due
      }
      await new Promise((r) => setTimeout(r, 10))
    }
    const expected = inserted * perWedding
    const drainStarted = performance.now()
    while (delivered < expected && performance.now() - drainStarted < 10_000)
      await new Promise((r) => setTimeout(r, 20))
    const seconds = (performance.now() - started) / 1000
    const serverCpu = cpu.read()
    rows.push(
      `| ${rate} | ${(rate * perWedding).toLocaleString("en-US")} | ${
        Math.round(delivered / seconds).toLocaleString("en-US")
      } | ${latency.percentile(0.5).toFixed(1)} | ${latency.percentile(0.99).toFixed(1)} | ${
        (expected - delivered).toLocaleString("en-US")
      } | ${Math.round(serverCpu)}% |`
    )
    console.error(rows.at(-1))
    if (latency.percentile(0.99) > 1000) break
  }
  clearInterval(heartbeat)
  for (const ws of sockets) ws.terminate()
  await server.stop()
  console.log(
    `\n### Postgres Changes: ${weddings} weddings × ${perWedding} subscribers, authorized, ${stepSeconds} s per rate\n`
  )
  console.log(`- command: \`npm run bench:changes -w @wedsync/tools -- ${process.argv.slice(2).join(" ")}\``)
  console.log(
    `- ${total.toLocaleString("en-US")} sockets connected, joined and confirmed ("Subscribed to PostgreSQL") in ${
      connectSeconds.toFixed(1)
    } s; gateway pinned to CPU 0, bench to CPU 1, Postgres unpinned`
  )
  console.log(
    `- latency = client receive time − the row's \`sent_at\` (set when the bench issued the INSERT), so it includes the commit\n`
  )
  console.log("| rows/s | offered deliveries/s | deliveries/s | p50 ms | p99 ms | lost | gateway CPU |")
  console.log("|---:|---:|---:|---:|---:|---:|---:|")
  for (const row of rows) console.log(row)
} finally {
  await cleanup()
}
