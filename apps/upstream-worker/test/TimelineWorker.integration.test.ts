/**
 * The worker as it runs in production: its own process (`node src/main.ts`, configured by environment) on the pool,
 * against the project's gateway in another process playing hosted Supabase over a throwaway Postgres. A phone on the
 * hosted side listens on its wedding's private channel and receives each timeline change of its wedding once.
 */
import type { SupabaseClient } from "@supabase/supabase-js"
import { TestTokens } from "@wedsync/auth/testing"
import { ChildLines, PostgresCluster, SupabaseClients, waitUntil } from "@wedsync/testkit"
import { assert, describe, it } from "@effect/vitest"
import { type ChildProcess, spawn } from "node:child_process"

import { fileURLToPath } from "node:url"
import pg from "pg"
import { afterAll, afterEach, beforeAll, vi } from "vitest"

const { makeSupabaseClient, subscribe, inbox, closeAll } = SupabaseClients

vi.setConfig({ testTimeout: 45_000, hookTimeout: 45_000 })

const gatewayMain = fileURLToPath(new URL("../../gateway/src/main.ts", import.meta.url))
const workerMain = fileURLToPath(new URL("../src/main.ts", import.meta.url))
const SECRET = "hosted-project-secret-for-worker-0123456789"

interface Child {
  readonly child: ChildProcess
  readonly lines: ReadonlyArray<string>
  readonly line: (match: (line: string) => boolean) => Promise<string>
}

const children: Array<ChildProcess> = []

/** Spawns `file` with `env`, collecting its output lines. */
const run = (file: string, env: Record<string, string>): Child => {
  const child = spawn(process.execPath, [file], {
    env: { PATH: process.env["PATH"] ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  children.push(child)
  const { lines, line } = ChildLines.watch(child, file)
  return { child, lines, line }
}

const exited = (child: ChildProcess) =>
  new Promise<number | null>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode)
    child.once("exit", (code) => resolve(code))
  })

let cluster: PostgresCluster.Cluster
let db: pg.Client
let hostedUrl: string
const clients: Array<SupabaseClient> = []

beforeAll(async () => {
  cluster = await PostgresCluster.start()
  db = new pg.Client({ connectionString: cluster.url })
  await db.connect()
  await db.query("create table public.timeline_items (id serial primary key, wedding_id text not null, title text)")
  await db.query("alter table public.timeline_items replica identity full")
  await db.query("create publication wedsync_worker for table public.timeline_items")
  const hosted = run(gatewayMain, {
    HOST: "127.0.0.1",
    PORT: "0",
    LOG_FORMAT: "json",
    JWT_SECRET: SECRET,
    DATABASE_URL: cluster.url,
    REPLICATION_PUBLICATION: "wedsync_worker",
    REPLICATION_START_DELAY_MS: "0"
  })
  const listening = await hosted.line((l) => l.includes("listening on http://"))
  hostedUrl = `http://127.0.0.1:${/127\.0\.0\.1:(\d+)/.exec(listening)![1]}`
})
afterEach(async () => {
  await closeAll(clients.splice(0))
})
afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill("SIGTERM")
  await Promise.all(children.map(exited))
  await db?.end()
  await cluster?.stop()
})

describe("timeline worker", () => {
  it("publishes each timeline change on its wedding's channel, once, and leaves the upstream on SIGTERM", async () => {
    const worker = run(workerMain, {
      SUPABASE_URL: hostedUrl,
      SUPABASE_SERVICE_ROLE_KEY: await TestTokens.serviceRoleToken({ secret: SECRET }),
      TIMELINE_WEDDINGS: "w-1"
    })
    await worker.line((l) => l.includes("timeline worker ready"))

    const token = await TestTokens.userToken({ weddingIds: ["w-1"], secret: SECRET })
    const phone = makeSupabaseClient(hostedUrl, await TestTokens.anonToken({ secret: SECRET }), { accessToken: token })
    clients.push(phone)
    const updates = inbox<{ readonly payload: { readonly action: string; readonly item: { readonly title: string } } }>(
      "timeline update"
    )
    const channel = phone.channel("wedding:w-1", { config: { private: true } })
      .on("broadcast", { event: "timeline_update" }, updates.push)
    await subscribe(channel)

    await db.query("insert into public.timeline_items (wedding_id, title) values ('w-2', 'other wedding')")
    await db.query("insert into public.timeline_items (wedding_id, title) values ('w-1', 'first dance')")
    await db.query("update public.timeline_items set title = 'first dance, 21:00' where title = 'first dance'")
    await updates.next((m) => m.payload.item.title === "first dance, 21:00")
    assert.deepStrictEqual(updates.received.map((m) => [m.payload.action, m.payload.item.title]), [
      ["INSERT", "first dance"],
      ["UPDATE", "first dance, 21:00"]
    ])

    // SIGTERM closes the worker's upstream sockets: only the phone is left on the hosted side.
    worker.child.kill("SIGTERM")
    await exited(worker.child)
    await waitUntil(
      "the worker's socket gone from the upstream",
      async () => (await (await fetch(`${hostedUrl}/metrics`)).text()).match(/^wedsync_connection_open (\S+)$/m)?.[1],
      (open) => open === "1"
    )
  })
})
