/**
 * One function per check of expectations.ts. Each plays the attacker over the wire against a running gateway and
 * returns what it observed on both sides: the hostile case (the refusal a fixed gateway gives) and the accepted case
 * beside it. Every wait is bounded; every socket a check opens is closed before it returns.
 */
import { createClient, REALTIME_SUBSCRIBE_STATES, type SupabaseClient } from "@supabase/supabase-js"
import { EXPECTED } from "./expectations.ts"
import type { Gateway } from "./gateway.ts"
import { BATCH_PATH, closedTotal, post, postJson, singlePath } from "./http.ts"
import type { PgFixture } from "./postgres.ts"
import * as Tokens from "./tokens.ts"
import {
  type Client,
  connect,
  heartbeat,
  isEvent,
  isReplyTo,
  isShutdownOf,
  join,
  joinPayload,
  parse,
  replyStatus,
  replyText,
  tryConnect
} from "./wsClient.ts"

export interface Side {
  readonly ok: boolean
  readonly observed: string
}

interface Observation {
  readonly hostile: Side
  readonly accepted: Side
}

export interface Keys {
  readonly anon: string
  readonly service: string
}

export interface Ctx {
  readonly gw: Gateway
  readonly root: string
  readonly keys: Keys
  readonly pg: PgFixture
  readonly full: boolean
  /** MAX_CONNECTIONS_PER_IP of `gw`. */
  readonly perIpCap: number
  /** Sockets the victims and their publisher hold on `gw` (they count against the per-IP cap too). */
  readonly reservedConnections: number
  /** MAX_CONNECTIONS_PER_USER of `gw`. */
  readonly perUserCap: number
  /** A second gateway: TRUSTED_PROXIES=127.0.0.1, JWT_ISSUER/JWT_AUDIENCE, MAX_CONNECTIONS_PER_IP=3. */
  readonly gwB: Gateway
  readonly startRefusal: (
    env: Readonly<Record<string, string>>
  ) => Promise<{ listened: boolean; exitCode: number | null; log: string }>
}

export type Check = (ctx: Ctx) => Promise<Observation>

const side = (ok: boolean, observed: string): Side => ({ ok, observed })
const within = (codes: ReadonlyArray<number>, value: number | undefined): boolean =>
  value !== undefined && codes.includes(value)
const closeText = (client: Client): string => {
  const info = client.closeInfo()
  return info === undefined ? "open" : `closed ${info.code}${info.reason === "" ? "" : ` "${info.reason}"`}`
}
const isCrash = (client: Client): boolean => within(EXPECTED.crashCloseCodes, client.closeInfo()?.code)
const isSenderClose = (code: number | undefined): boolean =>
  code !== undefined && code >= EXPECTED.senderCloseCodes.min && code <= EXPECTED.senderCloseCodes.max &&
  !(EXPECTED.senderCloseCodes.not as ReadonlyArray<number>).includes(code)

const topicOf = (name: string): string => `realtime:${name}`
const unique = (name: string): string => `${name}-${Math.random().toString(36).slice(2, 8)}`

/** Opens clients, runs `body`, and closes every one of them whatever happens. */
const withClients = async <A>(
  body: (open: (key?: string, vsn?: "1.0.0" | "2.0.0") => Promise<Client>) => Promise<A>,
  ctx: Ctx,
  gw = ctx.gw
): Promise<A> => {
  const opened: Array<Client> = []
  try {
    return await body(async (key = ctx.keys.anon, vsn = "2.0.0") => {
      const client = await connect(gw.wsUrl, key, { vsn })
      opened.push(client)
      return client
    })
  } finally {
    await Promise.allSettled(opened.map((c) => c.close()))
  }
}

const broadcast = (
  client: Client,
  joinRef: string,
  topic: string,
  event: string,
  payload: unknown,
  ref: string | null = null
) => client.push(joinRef, ref, topic, "broadcast", { type: "broadcast", event, payload })

const isBroadcast = (event: string) => (frame: unknown): boolean => {
  const p = parse(frame)
  if (p === undefined || p.event !== "broadcast") return false
  const payload = p.payload as Record<string, unknown> | null
  return typeof payload === "object" && payload !== null && payload["event"] === event
}

const track = (client: Client, joinRef: string, topic: string, payload: Record<string, unknown>): Promise<unknown> => {
  const ref = client.makeRef()
  client.push(joinRef, ref, topic, "presence", { type: "presence", event: "track", payload })
  return client.next((f) => isReplyTo(ref)(f) || isShutdownOf(topic)(f), 10_000)
}

// --- 1: prototype names ------------------------------------------------------------------------------------------

const PROTO_NAMES = ["constructor", "__proto__", "toString", "hasOwnProperty"] as const

export const protoPresenceKeys: Check = (ctx) =>
  withClients(async (open) => {
    const topic = topicOf(unique("proto-presence"))
    const hostile: Array<string> = []
    for (const key of PROTO_NAMES) {
      const c = await open()
      const { joinRef, reply } = await join(c, topic, joinPayload({ presenceKey: key }), 5000)
      const tracked = await track(c, joinRef, topic, { device: key })
      hostile.push(`${key}: join ${replyStatus(reply)}, track ${replyStatus(tracked)}, ${closeText(c)}`)
    }
    const late = await open()
    const { joinRef, reply } = await join(late, topic, joinPayload({ presenceKey: "venue-1" }), 5000)
    const tracked = await track(late, joinRef, topic, { device: "venue-1" })
    const state = await late.next(isEvent("presence_state", topic), 3000)
    const keys = state === undefined ? [] : Object.keys((parse(state)?.payload ?? {}) as object)
    const acceptedOk = replyStatus(reply) === "ok" && replyStatus(tracked) === "ok" && !isCrash(late) &&
      late.isOpen() &&
      PROTO_NAMES.filter((k) => k !== "__proto__").every((k) => keys.includes(k))
    return {
      hostile: side(!hostile.some((h) => h.includes("1011")), hostile.join("; ")),
      accepted: side(
        acceptedOk,
        `late joiner: join ${replyStatus(reply)}, track ${replyStatus(tracked)}, ${
          closeText(late)
        }, presence_state keys [${keys.join(",")}]`
      )
    }
  }, ctx)

export const protoEventsTopics: Check = (ctx) =>
  withClients(async (open) => {
    const observed: Array<string> = []
    let ok = true
    for (const name of ["__proto__", "constructor"]) {
      const sender = await open()
      const receiver = await open(undefined, "1.0.0")
      const topic = topicOf(name)
      const s = await join(sender, topic, joinPayload(), 5000)
      const r = await join(receiver, topic, joinPayload(), 5000)
      for (const event of ["__proto__", "constructor", "valueOf"])
        broadcast(sender, s.joinRef, topic, event, { n: event })
      const got: Array<string> = []
      for (const event of ["__proto__", "constructor", "valueOf"]) {
        if ((await receiver.next(isBroadcast(event), 3000)) !== undefined)
          got.push(event)
      }
      const fine = replyStatus(s.reply) === "ok" && replyStatus(r.reply) === "ok" && got.length === 3 &&
        !isCrash(sender) && !isCrash(receiver)
      ok &&= fine
      observed.push(
        `${topic}: joins ${replyStatus(s.reply)}/${replyStatus(r.reply)}, received [${got.join(",")}], sender ${
          closeText(sender)
        }`
      )
    }
    const c = await open()
    const topic = topicOf(unique("after-proto"))
    const j = await join(c, topic, joinPayload({ self: true }), 5000)
    broadcast(c, j.joinRef, topic, "hello", { n: 1 })
    const echoed = await c.next(isBroadcast("hello"), 3000)
    return {
      hostile: side(ok, observed.join("; ")),
      accepted: side(
        replyStatus(j.reply) === "ok" && echoed !== undefined,
        `normal topic: join ${replyStatus(j.reply)}, self broadcast ${echoed === undefined ? "missing" : "received"}`
      )
    }
  }, ctx)

// --- 2: max-size messages ----------------------------------------------------------------------------------------

export const maxBroadcast: Check = (ctx) =>
  withClients(async (open) => {
    const topic = topicOf(unique("max-broadcast"))
    const sender = await open()
    const receivers = [await open(), await open(undefined, "1.0.0")]
    const s = await join(sender, topic, joinPayload({ ack: true }), 5000)
    for (const r of receivers) await join(r, topic, joinPayload(), 5000)
    const small = "x".repeat(100_000)
    const smallRef = sender.makeRef()
    broadcast(sender, s.joinRef, topic, "small", { p: small }, smallRef)
    const smallGot = await Promise.all(receivers.map((r) => r.next(isBroadcast("small"), 5000)))
    const bigRef = sender.makeRef()
    broadcast(sender, s.joinRef, topic, "big", { p: "y".repeat(EXPECTED.maxPayloadProbeBytes) }, bigRef)
    const ack = await sender.next(isReplyTo(bigRef), 15_000)
    const accepted = replyStatus(ack) === "ok"
    const bigGot = accepted ? await Promise.all(receivers.map((r) => r.next(isBroadcast("big"), 10_000))) : []
    // A heartbeat round trip per receiver shows it is still served after the big message.
    const alive = await Promise.all(receivers.map(async (r) => (await heartbeat(r, 5000)) !== undefined && r.isOpen()))
    const receiversOk = alive.every(Boolean) && (!accepted || bigGot.every((g) => g !== undefined))
    return {
      hostile: side(
        receiversOk,
        `2.9 MB broadcast ack ${replyStatus(ack) ?? "none"} ${replyText(ack)}; receivers ${
          receivers.map(closeText).join(", ")
        }${accepted ? `, delivered ${bigGot.filter((g) => g !== undefined).length}/2` : ""}`
      ),
      accepted: side(
        smallGot.every((g) => g !== undefined),
        `100 KB broadcast delivered to ${smallGot.filter((g) => g !== undefined).length}/2`
      )
    }
  }, ctx)

export const maxPresence: Check = (ctx) =>
  withClients(async (open) => {
    const topic = topicOf(unique("max-presence"))
    const receivers = [await open(), await open(undefined, "1.0.0")]
    for (const [i, r] of receivers.entries()) await join(r, topic, joinPayload({ presenceKey: `recv-${i}` }), 5000)
    const small = await open()
    const sj = await join(small, topic, joinPayload({ presenceKey: "small" }), 5000)
    const smallTrack = await track(small, sj.joinRef, topic, { note: "hello" })
    const big = await open()
    const bj = await join(big, topic, joinPayload({ presenceKey: "big" }), 5000)
    const bigTrack = await track(big, bj.joinRef, topic, { blob: "z".repeat(EXPECTED.maxPayloadProbeBytes) })
    const mid: Array<string> = []
    for (let i = 0; i < 3; i++) {
      const c = await open()
      const j = await join(c, topic, joinPayload({ presenceKey: `mid-${i}` }), 5000)
      mid.push(String(replyStatus(await track(c, j.joinRef, topic, { blob: "m".repeat(600_000) })) ?? "shutdown"))
    }
    const alive = await Promise.all(receivers.map(async (r) => (await heartbeat(r, 5000)) !== undefined && r.isOpen()))
    const late = await open()
    const lj = await join(late, topic, joinPayload({ presenceKey: "late" }), 10_000)
    const lateAlive = (await heartbeat(late, 5000)) !== undefined && late.isOpen()
    const ok = alive.every(Boolean) && lateAlive && replyStatus(lj.reply) === "ok"
    return {
      hostile: side(
        ok,
        `2.9 MB track ${replyStatus(bigTrack) ?? "none"}, 3×600 KB tracks [${mid.join(",")}]; receivers ${
          receivers.map(closeText).join(", ")
        }; late joiner join ${replyStatus(lj.reply)}, ${closeText(late)}`
      ),
      accepted: side(replyStatus(smallTrack) === "ok", `small track ${replyStatus(smallTrack)}`)
    }
  }, ctx)

// --- 3: expired connect token ------------------------------------------------------------------------------------

export const expiredConnectToken: Check = (ctx) =>
  withClients(async (open) => {
    const token = await Tokens.userToken("u-expiring", ["901", "902"], { expiresIn: 2 })
    const c = await open(token)
    const before = await join(c, "realtime:wedding:901", joinPayload({ private: true }), 5000)
    // The token's lifetime is whole seconds: wait until it is certainly past `exp` (no event announces it).
    await new Promise((r) => setTimeout(r, 3200))
    const after = c.isOpen() ? await join(c, "realtime:wedding:902", joinPayload({ private: true }), 5000) : undefined
    const refused = after === undefined || replyStatus(after.reply) !== "ok"
    return {
      hostile: side(
        refused,
        after === undefined
          ? `socket ${closeText(c)} at expiry`
          : `join after expiry: ${replyStatus(after.reply) ?? "no reply"} ${replyText(after.reply)}, ${closeText(c)}`
      ),
      accepted: side(replyStatus(before.reply) === "ok", `join before expiry: ${replyStatus(before.reply)}`)
    }
  }, ctx)

// --- 4: row moves ------------------------------------------------------------------------------------------------

export const rowMove: Check = (ctx) =>
  withClients(async (open) => {
    const { schema, table } = ctx.pg
    const subscribe = async (wedding: string) => {
      const c = await open(await Tokens.userToken(`u-${wedding}`, [wedding]))
      const topic = topicOf(unique(`rows-${wedding}`))
      const j = await join(c, topic, joinPayload({ postgresChanges: [{ event: "*", schema, table }] }), 5000)
      const system = await c.next((f) => {
        const p = parse(f)
        return p?.event === "system" && (p.payload as Record<string, unknown>)?.["extension"] === "postgres_changes"
      }, 20_000)
      return {
        c,
        j,
        ok: (system === undefined
          ? undefined
          : (parse(system)?.payload as Record<string, unknown> | undefined)?.["status"]) === "ok"
      }
    }
    const wA = `A${Date.now()}`
    const wB = `B${Date.now()}`
    const a = await subscribe(wA)
    const b = await subscribe(wB)
    if (!a.ok || !b.ok)
      return { hostile: side(false, "subscription not confirmed"), accepted: side(false, `A ${a.ok}, B ${b.ok}`) }
    const [row] = await ctx.pg.query(
      `insert into ${schema}.${table} (wedding_id, title) values ($1, 'B-secret-title') returning id`,
      [wB]
    )
    await ctx.pg.query(`update ${schema}.${table} set wedding_id = $1, title = 'A-new-title' where id = $2`, [
      wA,
      row!["id"]
    ])
    await ctx.pg.query(`insert into ${schema}.${table} (wedding_id, title) values ($1, 'marker-A'), ($2, 'marker-B')`, [
      wA,
      wB
    ])
    const text = (f: unknown) => JSON.stringify(f)
    const aUpdate = await a.c.next((f) => isEvent("postgres_changes")(f) && text(f).includes("A-new-title"), 10_000)
    const aMarker = await a.c.next((f) => text(f).includes("marker-A"), 10_000)
    const bMarker = await b.c.next((f) => text(f).includes("marker-B"), 10_000)
    const aLeak = a.c.received().some((f) => text(f).includes("B-secret-title") && text(f).includes("A-new-title"))
    const bLeak = b.c.received().some((f) => text(f).includes("A-new-title"))
    return {
      hostile: side(
        !aLeak && !bLeak && aMarker !== undefined && bMarker !== undefined,
        `A's UPDATE ${aLeak ? "carries B's old title in old_record" : "carries no B content"}; B ${
          bLeak ? "received A's new title" : "received no A content"
        }`
      ),
      accepted: side(
        aUpdate !== undefined && bMarker !== undefined,
        `A got the UPDATE: ${aUpdate !== undefined}; B got its marker: ${bMarker !== undefined}`
      )
    }
  }, ctx)

// --- 5: REST bodies ----------------------------------------------------------------------------------------------

export const restOversized: Check = async (ctx) => {
  const bytes = ctx.full ? EXPECTED.fullRestBytes : EXPECTED.shortRestBytes
  const headers = { apikey: ctx.keys.anon, authorization: `Bearer ${ctx.keys.anon}` }
  const results: Array<string> = []
  let ok = true
  for (const path of [BATCH_PATH, singlePath("big", "big")]) {
    for (const chunked of [false, true]) {
      const r = await post({ port: ctx.gw.port, path, headers, bytes, chunked, timeoutMs: 30_000 })
      ok &&= within(EXPECTED.restTooLarge, r.status)
      results.push(
        `${path.includes("events") ? "single" : "batch"} ${chunked ? "chunked" : "content-length"}: ${
          r.status ?? r.error
        } after ${(r.bytesSent / 1048576).toFixed(1)} MiB sent`
      )
    }
  }
  const small = await postJson(ctx.gw.port, BATCH_PATH, ctx.keys.anon, {
    messages: [{ topic: "small", event: "e", payload: { n: 1 } }]
  })
  return {
    hostile: side(ok, results.join("; ")),
    accepted: side(within(EXPECTED.restAccepted, small.status), `small batch: ${small.status}`)
  }
}

// --- 6: per-user cap via supabase-js ----------------------------------------------------------------------------

export const perUserCap: Check = async (ctx) => {
  const token = await Tokens.userToken(`u-cap-${Date.now()}`, ["903"])
  const clients: Array<SupabaseClient> = []
  const statuses: Array<string> = []
  try {
    for (let i = 0; i <= ctx.perUserCap; i++) {
      const client = createClient(ctx.gw.url, ctx.keys.anon, {
        auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
        realtime: { params: { vsn: "2.0.0" }, vsn: "2.0.0", timeout: 5000 },
        accessToken: () => Promise.resolve(token)
      })
      void client.realtime.setAuth(token)
      clients.push(client)
      const channel = client.channel("wedding:903", { config: { private: true } })
      statuses.push(
        await new Promise<string>((resolve) => {
          const timer = setTimeout(() => resolve("no status in 8 s"), 8000)
          channel.subscribe((status) => {
            clearTimeout(timer)
            resolve(status)
          })
        })
      )
    }
  } finally {
    await Promise.allSettled(clients.map(async (c) => {
      await c.removeAllChannels()
      await c.realtime.disconnect()
    }))
  }
  const firsts = statuses.slice(0, ctx.perUserCap)
  const extra = statuses[ctx.perUserCap]
  return {
    hostile: side(extra !== REALTIME_SUBSCRIBE_STATES.SUBSCRIBED, `client ${ctx.perUserCap + 1}: ${extra}`),
    accepted: side(
      firsts.every((s) => s === REALTIME_SUBSCRIBE_STATES.SUBSCRIBED),
      `first ${ctx.perUserCap}: ${firsts.join(",")}`
    )
  }
}

// --- 7: refresh with the anon key --------------------------------------------------------------------------------

export const refreshAnon: Check = (ctx) =>
  withClients(async (open) => {
    const user = await Tokens.userToken("u-refresh", ["904"])
    const c = await open()
    const topic = "realtime:wedding:904"
    const j = await join(c, topic, joinPayload({ private: true, accessToken: user }), 5000)
    c.push(j.joinRef, c.makeRef(), topic, "access_token", { access_token: ctx.keys.anon })
    const shutdown = await c.next(isShutdownOf(topic), 3000)
    const keeper = await open()
    const kj = await join(keeper, topic, joinPayload({ private: true, accessToken: user }), 5000)
    keeper.push(kj.joinRef, keeper.makeRef(), topic, "access_token", {
      access_token: await Tokens.userToken("u-refresh", ["904"], { expiresIn: 7200 })
    })
    const keeperShutdown = await keeper.next(isShutdownOf(topic), 1500)
    return {
      hostile: side(
        replyStatus(j.reply) === "ok" && shutdown !== undefined,
        `join ${replyStatus(j.reply)}; after anon-key refresh: ${
          shutdown === undefined
            ? "channel kept the user's rights"
            : JSON.stringify(parse(shutdown)?.payload).slice(0, 120)
        }`
      ),
      accepted: side(
        replyStatus(kj.reply) === "ok" && keeperShutdown === undefined && keeper.isOpen(),
        `user-token refresh: ${keeperShutdown === undefined ? "channel kept" : "channel shut down"}`
      )
    }
  }, ctx)

// --- 8 and tokens: JWT checks ------------------------------------------------------------------------------------

/** Upgrade with `bad` must be refused with 401; a join with `bad` as access_token must get an error reply. */
const tokenRefused = async (ctx: Ctx, bad: string, good: string, label: string): Promise<Observation> =>
  withClients(async (open) => {
    const upgrade = await tryConnect(ctx.gw.wsUrl, bad)
    if (upgrade.ok) await upgrade.client.close()
    const c = await open()
    const topic = "realtime:wedding:905"
    const j = await join(c, topic, joinPayload({ private: true, accessToken: bad }), 5000)
    const goodUpgrade = await tryConnect(ctx.gw.wsUrl, good)
    if (goodUpgrade.ok) await goodUpgrade.client.close()
    const g = await open()
    const gj = await join(g, topic, joinPayload({ private: true, accessToken: good }), 5000)
    const upgradeRefused = !upgrade.ok && within(EXPECTED.upgradeAuthStatus, upgrade.status)
    const joinRefused = replyStatus(j.reply) === "error" && EXPECTED.joinErrorPattern.test(replyText(j.reply))
    return {
      hostile: side(
        upgradeRefused && joinRefused,
        `${label}: upgrade ${upgrade.ok ? "101 (accepted)" : `${upgrade.status} ${upgrade.body}`}; join ${
          replyStatus(j.reply) ?? "no reply"
        } ${replyText(j.reply)}`
      ),
      accepted: side(
        goodUpgrade.ok && replyStatus(gj.reply) === "ok",
        `valid token: upgrade ${goodUpgrade.ok ? 101 : goodUpgrade.status}, join ${replyStatus(gj.reply)}`
      )
    }
  }, ctx)

const goodToken = () => Tokens.userToken("u-good", ["905"])

export const jwtNbf: Check = async (ctx) =>
  tokenRefused(ctx, await Tokens.userToken("u-good", ["905"], { notBefore: 3600 }), await goodToken(), "nbf +1 h")

export const jwtAlgNone: Check = async (ctx) => tokenRefused(ctx, Tokens.algNone(), await goodToken(), "alg none")

export const jwtForged: Check = async (ctx) => tokenRefused(ctx, await Tokens.forged(), await goodToken(), "forged")

export const jwtExpired: Check = async (ctx) =>
  tokenRefused(
    ctx,
    await Tokens.userToken("u-good", ["905"], { expiresIn: -60 }),
    await goodToken(),
    "expired 60 s ago"
  )

export const jwtIssAud: Check = async (ctx) => {
  const bad = [
    ["no iss/aud", await Tokens.anonKey()],
    ["wrong iss", await Tokens.anonKey({ issuer: "https://evil.example/auth/v1", audience: Tokens.JWT_AUDIENCE })],
    ["wrong aud", await Tokens.anonKey({ issuer: Tokens.JWT_ISSUER, audience: "somebody-else" })]
  ] as const
  const observed: Array<string> = []
  let ok = true
  for (const [label, token] of bad) {
    const r = await tryConnect(ctx.gwB.wsUrl, token)
    if (r.ok) await r.client.close()
    ok &&= !r.ok && within(EXPECTED.upgradeAuthStatus, r.status)
    observed.push(`${label}: ${r.ok ? "101 (accepted)" : r.status}`)
  }
  const good = await tryConnect(
    ctx.gwB.wsUrl,
    await Tokens.anonKey({ issuer: Tokens.JWT_ISSUER, audience: Tokens.JWT_AUDIENCE })
  )
  if (good.ok) await good.client.close()
  return {
    hostile: side(ok, observed.join("; ")),
    accepted: side(good.ok, `configured iss and aud: ${good.ok ? 101 : good.status}`)
  }
}

export const jwtShortSecret: Check = async (ctx) => {
  const refused = await ctx.startRefusal({ JWT_SECRET: "too-short" })
  return {
    hostile: side(
      !refused.listened && refused.exitCode !== 0 && refused.exitCode !== null,
      refused.listened
        ? "started and listened with a 9-byte secret"
        : `exited with code ${refused.exitCode}: ${refused.log.split("\n").slice(-2).join(" ").slice(0, 200)}`
    ),
    accepted: side(ctx.gw.alive(), `gateway with a ${Tokens.JWT_SECRET.length}-byte secret is up`)
  }
}

export const crossWeddingJoin: Check = (ctx) =>
  withClients(async (open) => {
    const c = await open(await Tokens.userToken("u-a", ["906"]))
    const bad = await join(c, "realtime:wedding:907", joinPayload({ private: true }), 5000)
    const good = await join(c, "realtime:wedding:906", joinPayload({ private: true }), 5000)
    return {
      hostile: side(
        replyStatus(bad.reply) === "error",
        `wedding:907: ${replyStatus(bad.reply)} ${replyText(bad.reply)}`
      ),
      accepted: side(replyStatus(good.reply) === "ok", `wedding:906: ${replyStatus(good.reply)}`)
    }
  }, ctx)

// --- 9: postgres_changes bindings, heartbeats --------------------------------------------------------------------

const systemOf = (c: Client, timeoutMs: number) =>
  c.next((f) => {
    const p = parse(f)
    return p?.event === "system" && (p.payload as Record<string, unknown>)?.["extension"] === "postgres_changes"
  }, timeoutMs)

const systemStatus = (frame: unknown): string =>
  frame === undefined
    ? "no system message"
    : String((parse(frame)?.payload as Record<string, unknown> | undefined)?.["status"])

export const pgcUnknownEvent: Check = (ctx) =>
  withClients(async (open) => {
    const { schema, table } = ctx.pg
    const c = await open(ctx.keys.service)
    const bad = await join(
      c,
      topicOf(unique("pgc-bad")),
      joinPayload({ postgresChanges: [{ event: "UPSERT", schema, table }] }),
      5000
    )
    const badSystem = replyStatus(bad.reply) === "ok" ? await systemOf(c, 20_000) : undefined
    const g = await open(ctx.keys.service)
    const good = await join(
      g,
      topicOf(unique("pgc-good")),
      joinPayload({ postgresChanges: [{ event: "INSERT", schema, table }] }),
      5000
    )
    const goodSystem = await systemOf(g, 20_000)
    return {
      hostile: side(
        replyStatus(bad.reply) === "error" || systemStatus(badSystem) === "error",
        `join ${replyStatus(bad.reply)} ${replyText(bad.reply)}; system ${systemStatus(badSystem)}`
      ),
      accepted: side(
        replyStatus(good.reply) === "ok" && systemStatus(goodSystem) === "ok",
        `INSERT binding: join ${replyStatus(good.reply)}, system ${systemStatus(goodSystem)}`
      )
    }
  }, ctx)

export const pgcTooManyBindings: Check = (ctx) =>
  withClients(async (open) => {
    const { schema, table } = ctx.pg
    const c = await open(ctx.keys.service)
    const bindings = Array.from(
      { length: EXPECTED.tooManyBindings },
      (_, i) => ({ event: "INSERT", schema, table, filter: `id=eq.${i}` })
    )
    const bad = await join(c, topicOf(unique("pgc-many")), joinPayload({ postgresChanges: bindings }), 10_000)
    const badSystem = replyStatus(bad.reply) === "ok" ? await systemOf(c, 20_000) : undefined
    const g = await open(ctx.keys.service)
    const good = await join(g, topicOf(unique("pgc-two")), joinPayload({ postgresChanges: bindings.slice(0, 2) }), 5000)
    const goodSystem = await systemOf(g, 20_000)
    return {
      hostile: side(
        replyStatus(bad.reply) === "error" || systemStatus(badSystem) === "error",
        `${EXPECTED.tooManyBindings} bindings: join ${replyStatus(bad.reply)} ${replyText(bad.reply)}; system ${
          systemStatus(badSystem)
        }`
      ),
      accepted: side(
        replyStatus(good.reply) === "ok" && systemStatus(goodSystem) === "ok",
        `2 bindings: join ${replyStatus(good.reply)}, system ${systemStatus(goodSystem)}`
      )
    }
  }, ctx)

export const heartbeatFlood: Check = (ctx) =>
  withClients(async (open) => {
    const flooder = await open()
    const count = 2000
    const first = flooder.makeRef()
    for (let i = 0; i < count; i++) flooder.push(null, i === 0 ? first : flooder.makeRef(), "phoenix", "heartbeat", {})
    const lastRef = String(Number(first) + count - 1)
    await Promise.race([flooder.next(isReplyTo(lastRef), 10_000), flooder.waitClosed(10_000)])
    const replies = flooder.received().filter(isEvent("phx_reply", "phoenix"))
    const oks = replies.filter((f) => replyStatus(f) === "ok").length
    const errors = replies.length - oks
    const code = flooder.closeInfo()?.code
    const limited = (isSenderClose(code) || errors > 0) && oks < count && !within(EXPECTED.crashCloseCodes, code)
    const calm = await open()
    const calmReplies: Array<string> = []
    for (let i = 0; i < 3; i++) {
      calmReplies.push(String(replyStatus(await heartbeat(calm, 3000))))
      if (i < 2) await new Promise((r) => setTimeout(r, 1000))
    }
    return {
      hostile: side(limited, `${count} heartbeats: ${oks} ok, ${errors} error replies, ${closeText(flooder)}`),
      accepted: side(calmReplies.every((s) => s === "ok") && calm.isOpen(), `1 heartbeat/s: ${calmReplies.join(",")}`)
    }
  }, ctx)

// --- 10: deep nesting --------------------------------------------------------------------------------------------

const nested = (depth: number): string => `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`
const STACK_LINE = /^\s+at\s/

export const deepNestingRest: Check = async (ctx) => {
  const mark = ctx.gw.lineCount()
  const deep = nested(EXPECTED.nestingDepth)
  const batch = await postJson(
    ctx.gw.port,
    BATCH_PATH,
    ctx.keys.anon,
    `{"messages":[{"topic":"deep","event":"e","payload":${deep}}]}`
  )
  const single = await postJson(ctx.gw.port, singlePath("deep", "e"), ctx.keys.anon, deep)
  const logged = ctx.gw.linesSince(mark)
  const stack = logged.filter((l) => STACK_LINE.test(l)).length
  const flat = await postJson(ctx.gw.port, singlePath("deep", "e"), ctx.keys.anon, { a: 1 })
  return {
    hostile: side(
      within(EXPECTED.restTooDeep, batch.status) && within(EXPECTED.restTooDeepSingle, single.status) &&
        logged.length <= 2,
      `batch ${batch.status ?? batch.error}, single ${
        single.status ?? single.error
      }; ${logged.length} log lines (${stack} stack frames)`
    ),
    accepted: side(within(EXPECTED.restAccepted, flat.status), `flat payload: ${flat.status}`)
  }
}

export const deepNestingWs: Check = (ctx) =>
  withClients(async (open) => {
    const topic = topicOf(unique("deep"))
    const receiver = await open()
    await join(receiver, topic, joinPayload(), 5000)
    const mark = ctx.gw.lineCount()
    const senders: Array<Client> = []
    for (let i = 0; i < 3; i++) {
      const s = await open(undefined, i === 1 ? "1.0.0" : "2.0.0")
      const j = await join(s, topic, joinPayload(), 5000)
      const payload = nested(EXPECTED.nestingDepth)
      for (let k = 0; k < 3; k++) {
        s.send(
          s.vsn === "2.0.0"
            ? `["${j.joinRef}",null,"${topic}","broadcast",{"type":"broadcast","event":"deep","payload":${payload}}]`
            : `{"join_ref":"${j.joinRef}","ref":null,"topic":"${topic}","event":"broadcast","payload":{"type":"broadcast","event":"deep","payload":${payload}}}`
        )
      }
      await s.waitClosed(5000)
      senders.push(s)
    }
    const logged = ctx.gw.linesSince(mark)
    const stack = logged.filter((l) => STACK_LINE.test(l)).length
    const closedOk = senders.every((s) => isSenderClose(s.closeInfo()?.code))
    const probe = await open()
    const pj = await join(probe, topic, joinPayload(), 5000)
    broadcast(probe, pj.joinRef, topic, "after", { n: 1 })
    const got = await receiver.next(isBroadcast("after"), 5000)
    return {
      hostile: side(
        closedOk && stack === 0 && logged.length <= senders.length,
        `senders ${
          senders.map(closeText).join(", ")
        }; ${logged.length} log lines for ${senders.length} sockets × 3 frames (${stack} stack frames)`
      ),
      accepted: side(
        receiver.isOpen() && got !== undefined,
        `receiver ${closeText(receiver)}, next broadcast ${got === undefined ? "missing" : "received"}`
      )
    }
  }, ctx)

// --- 17 and floods: addresses and connections --------------------------------------------------------------------

const openUntilRefused = async (
  wsUrl: string,
  key: string,
  max: number,
  headers: (i: number) => Record<string, string>
) => {
  const opened: Array<Client> = []
  let refusal: { status: number | undefined; body: string } | undefined
  for (let i = 0; i < max && refusal === undefined; i++) {
    const r = await tryConnect(wsUrl, key, { headers: headers(i), keep: 10 })
    if (r.ok) opened.push(r.client)
    else refusal = { status: r.status, body: r.body }
  }
  return { opened, refusal, closeAll: () => Promise.allSettled(opened.map((c) => c.close())) }
}

export const xffSpoof: Check = async (ctx) => {
  // Untrusted peer (gateway A has no TRUSTED_PROXIES): a fresh X-Forwarded-For per upgrade must not escape the cap.
  const spoof = await openUntilRefused(
    ctx.gw.wsUrl,
    ctx.keys.anon,
    ctx.perIpCap + 20,
    (i) => ({ "x-forwarded-for": `198.51.100.${i % 250}` })
  )
  await spoof.closeAll()
  // Trusted proxy (gateway B: TRUSTED_PROXIES=127.0.0.1, MAX_CONNECTIONS_PER_IP=3): caps follow the forwarded address.
  const key = await Tokens.anonKey({ issuer: Tokens.JWT_ISSUER, audience: Tokens.JWT_AUDIENCE })
  const first = await openUntilRefused(ctx.gwB.wsUrl, key, 5, () => ({ "x-forwarded-for": "203.0.113.7" }))
  const other = await tryConnect(ctx.gwB.wsUrl, key, { headers: { "x-forwarded-for": "203.0.113.8" } })
  if (other.ok) await other.client.close()
  await first.closeAll()
  const spoofRefused = spoof.refusal !== undefined && within(EXPECTED.capStatus, spoof.refusal.status)
  const capped = first.refusal !== undefined && within(EXPECTED.capStatus, first.refusal.status) &&
    first.opened.length === 3
  return {
    hostile: side(
      spoofRefused && capped,
      `spoofer: ${spoof.opened.length} opened then ${
        spoof.refusal?.status ?? "never refused"
      }; forwarded 203.0.113.7: ${first.opened.length} opened then ${first.refusal?.status ?? "never refused"}`
    ),
    accepted: side(
      other.ok,
      `forwarded 203.0.113.8 behind the trusted proxy: ${other.ok ? 101 : `${other.status} ${other.body}`}`
    )
  }
}

export const floodConnections: Check = async (ctx) => {
  const flood = await openUntilRefused(ctx.gw.wsUrl, ctx.keys.anon, ctx.perIpCap + 20, () => ({}))
  const opened = flood.opened.length
  await flood.closeAll()
  return {
    hostile: side(
      flood.refusal !== undefined && within(EXPECTED.capStatus, flood.refusal.status),
      `${opened} opened, then ${
        flood.refusal === undefined ? "never refused" : `${flood.refusal.status} ${flood.refusal.body}`
      }`
    ),
    accepted: side(
      opened >= ctx.perIpCap - ctx.reservedConnections - 10,
      `${opened} connections below the cap of ${ctx.perIpCap} opened (victims and probes hold the rest)`
    )
  }
}

export const floodJoins: Check = (ctx) =>
  withClients(async (open) => {
    const flooder = await open()
    for (let i = 0; i < 150; i++) {
      const ref = flooder.makeRef()
      flooder.push(ref, ref, topicOf(`join-flood-${i}`), "phx_join", joinPayload())
    }
    const closed = await flooder.waitClosed(10_000)
    const calm = await open()
    const oks: Array<string> = []
    for (let i = 0; i < 10; i++)
      oks.push(String(replyStatus((await join(calm, topicOf(`calm-${i}`), joinPayload(), 5000)).reply)))
    return {
      hostile: side(
        within(EXPECTED.joinFloodClose, closed?.code),
        `150 joins: ${closed === undefined ? "socket still open" : `closed ${closed.code} ${closed.reason}`}`
      ),
      accepted: side(
        oks.every((s) => s === "ok"),
        `10 joins: ${oks.filter((s) => s === "ok").length} ok`
      )
    }
  }, ctx)

export const floodBroadcasts: Check = (ctx) =>
  withClients(async (open) => {
    const topic = "realtime:victims"
    const probe = await open()
    await join(probe, topic, joinPayload(), 5000)
    const flooder = await open()
    const j = await join(flooder, topic, joinPayload(), 5000)
    for (let i = 0; i < 400; i++) broadcast(flooder, j.joinRef, topic, "flood", { i })
    const shutdown = await flooder.next(isShutdownOf(topic), 5000)
    const first = await probe.next(isBroadcast("flood"), 5000)
    return {
      hostile: side(
        shutdown !== undefined || isSenderClose(flooder.closeInfo()?.code),
        `400 broadcasts: ${
          shutdown === undefined ? closeText(flooder) : JSON.stringify(parse(shutdown)?.payload).slice(0, 120)
        }`
      ),
      accepted: side(first !== undefined, `probe received the first broadcast: ${first !== undefined}`)
    }
  }, ctx)

export const floodPresence: Check = (ctx) =>
  withClients(async (open) => {
    const topic = topicOf(unique("presence-flood"))
    const flooder = await open()
    const j = await join(flooder, topic, joinPayload({ presenceKey: "flood" }), 5000)
    const refs: Array<string> = []
    for (let i = 0; i < 20; i++) {
      const ref = flooder.makeRef()
      refs.push(ref)
      flooder.push(j.joinRef, ref, topic, "presence", { type: "presence", event: "track", payload: { i } })
    }
    const shutdown = await flooder.next(isShutdownOf(topic), 5000)
    const firstReply = await flooder.next(isReplyTo(refs[0]!), 1000)
    return {
      hostile: side(
        shutdown !== undefined,
        `20 tracks: ${shutdown === undefined ? "no shutdown" : JSON.stringify(parse(shutdown)?.payload).slice(0, 120)}`
      ),
      accepted: side(replyStatus(firstReply) === "ok", `first track: ${replyStatus(firstReply)}`)
    }
  }, ctx)

// --- slow readers ------------------------------------------------------------------------------------------------

export const slowReader: Check = (ctx) =>
  withClients(async (open) => {
    const topic = topicOf(unique("slow"))
    const slow = await open()
    const reader = await open()
    const sender = await open()
    await join(slow, topic, joinPayload(), 5000)
    await join(reader, topic, joinPayload(), 5000)
    const s = await join(sender, topic, joinPayload(), 5000)
    const overflowsBefore = await closedTotal(ctx.gw.port, EXPECTED.slowReaderClose[0])
    slow.pause()
    // Paced at about 100 × 100 KB per second: a reading member keeps up; the paused one falls 30 MB behind, more than
    // the 8 MiB outbox bound plus what the kernel's socket buffers hold, so only it can be over the bound.
    const count = 300
    let got = 0
    for (let i = 0; i < count; i++) {
      broadcast(sender, s.joinRef, topic, "bulk", { i, p: "b".repeat(100_000) })
      if ((await reader.next(isBroadcast("bulk"), 5000)) !== undefined) got++
      await new Promise((r) => setTimeout(r, 10))
    }
    // The paused client may never read the close frame (the server drops the connection after it), so the server's
    // own count of slow-consumer closes says which code it used: exactly one, the slow reader.
    const overflows = (await closedTotal(ctx.gw.port, EXPECTED.slowReaderClose[0])) - overflowsBefore
    slow.resume()
    const closed = await slow.waitClosed(10_000)
    return {
      hostile: side(
        closed !== undefined && overflows === 1,
        `slow reader: ${
          closed === undefined ? "still open" : `closed (client saw ${closed.code})`
        }; server counted ${overflows} slow-consumer close(s) (${EXPECTED.slowReaderClose.join("/")})`
      ),
      accepted: side(got === count && reader.isOpen(), `reading member got ${got}/${count}, ${closeText(reader)}`)
    }
  }, ctx)

// --- after the fuzzer --------------------------------------------------------------------------------------------

/** The accepted case beside the fuzzer: a fresh pair of clients joins a room and a broadcast gets through. */
export const fuzzAfter = (ctx: Ctx): Promise<Side> =>
  withClients(async (open) => {
    const topic = topicOf(unique("after-fuzz"))
    const a = await open()
    const b = await open(undefined, "1.0.0")
    const ja = await join(a, topic, joinPayload(), 5000)
    await join(b, topic, joinPayload(), 5000)
    broadcast(a, ja.joinRef, topic, "after", { ok: true })
    const got = await b.next(isBroadcast("after"), 5000)
    return side(
      got !== undefined,
      `fresh clients after the fuzz: join ${replyStatus(ja.reply)}, broadcast ${
        got === undefined ? "missing" : "received"
      }`
    )
  }, ctx)
