/**
 * A wedding-day timeline with unmodified supabase-js against a running gateway (`npm start`).
 *
 * Two devices of wedding 42 (the planner's laptop and the venue's tablet) join the private channel
 * `wedding:42`, track their presence, and the planner broadcasts a timeline change that the venue
 * receives; then the same change is sent over REST (`httpSend`), as a server or an edge function would.
 *
 *   npm start                      # in one terminal
 *   npm run example                # in another (GATEWAY_URL, JWT_SECRET, WEDDING_ID to change the defaults)
 */
import { createClient, type RealtimeChannel, type SupabaseClient } from "@supabase/supabase-js"
import { SignJWT } from "jose"

const gatewayUrl = process.env["GATEWAY_URL"] ?? "http://127.0.0.1:4000"
// The gateway's development secret, used while its JWT_SECRET is unset. Never a production secret.
const jwtSecret = process.env["JWT_SECRET"] ?? "super-secret-jwt-token-with-at-least-32-characters-long"
const weddingId = process.env["WEDDING_ID"] ?? "42"
const TIMEOUT_MS = 10_000

/** In an app these come from Supabase Auth; here they are signed with the gateway's secret. */
const sign = (claims: Record<string, unknown>, lifetime: string) =>
  new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setIssuedAt()
    .setExpirationTime(lifetime)
    .sign(new TextEncoder().encode(jwtSecret))

const anonKey = await sign({ role: "anon", iss: "supabase" }, "1h")
const userToken = (sub: string) =>
  sign({
    sub,
    role: "authenticated",
    aud: "authenticated",
    iss: "supabase",
    app_metadata: { wedding_ids: [weddingId] }
  }, "1h")

/** Rejects with `what` when `promise` takes longer than TIMEOUT_MS, so a broken setup fails instead of hanging. */
const within = <A>(what: string, promise: Promise<A>): Promise<A> => {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), TIMEOUT_MS)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

interface Device {
  readonly name: string
  readonly client: SupabaseClient
  readonly channel: RealtimeChannel
  readonly timeline: Promise<Record<string, unknown>>
  readonly bothOnline: Promise<void>
}

const device = async (name: string): Promise<Device> => {
  const token = await userToken(`${name}-user`)
  // Private channels are authorized with the user's token. `accessToken` is supabase-js's hook for tokens
  // from an auth provider: realtime sends it on join and with REST broadcasts (`httpSend`).
  const client = createClient(gatewayUrl, anonKey, {
    auth: { persistSession: false, autoRefreshToken: false },
    accessToken: () => Promise.resolve(token),
    // Close the socket as soon as the last channel is removed, so the script ends when it is done.
    realtime: { disconnectOnEmptyChannelsAfterMs: 0 }
  })
  await client.realtime.setAuth(token)
  const channel = client.channel(`wedding:${weddingId}`, { config: { private: true, presence: { key: name } } })
  let onTimeline: (payload: Record<string, unknown>) => void = () => {}
  let onBothOnline: () => void = () => {}
  const timeline = new Promise<Record<string, unknown>>((resolve) => (onTimeline = resolve))
  const bothOnline = new Promise<void>((resolve) => (onBothOnline = resolve))
  channel
    .on("broadcast", { event: "timeline" }, ({ payload }) => onTimeline(payload as Record<string, unknown>))
    .on("presence", { event: "sync" }, () => {
      const online = Object.keys(channel.presenceState()).sort()
      console.log(`[${name}] online: ${online.join(", ")}`)
      if (online.length >= 2) onBothOnline()
    })
  await within(
    `${name} to join wedding:${weddingId}`,
    new Promise<void>((resolve, reject) => {
      channel.subscribe((status, error) => {
        if (status === "SUBSCRIBED") resolve()
        else if (status !== "CLOSED") reject(new Error(`${name}: ${status}${error ? ` (${error.message})` : ""}`))
      })
    })
  )
  await channel.track({ device: name, online_at: new Date().toISOString() })
  console.log(`[${name}] joined wedding:${weddingId} and tracked presence`)
  return { name, client, channel, timeline, bothOnline }
}

const planner = await device("planner")
const venue = await device("venue")
await within("both devices in presence", Promise.all([planner.bothOnline, venue.bothOnline]))

// Over the socket: the venue sees the planner's change (broadcasts do not echo to the sender by default).
const change = { item: "First dance", at: "21:30", by: "planner" }
await planner.channel.send({ type: "broadcast", event: "timeline", payload: change })
console.log(`[venue] received over the socket:`, await within("the socket broadcast", venue.timeline))

// Over REST, as a backend would: the same topic through POST /realtime/v1/api/broadcast.
const rest = await within(
  "the REST broadcast",
  planner.channel.httpSend("timeline", { item: "Cake", at: "22:00", by: "server" })
)
console.log(`REST broadcast answered: ${rest.success ? "accepted" : JSON.stringify(rest)}`)

await Promise.all([planner.client.removeAllChannels(), venue.client.removeAllChannels()])
console.log("done")
// supabase-js leaves its 10 s push timers running after the channels are gone; do not wait for them.
process.exit(0)
