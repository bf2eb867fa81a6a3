/**
 * Target `gateway`: our server, `node apps/gateway/src/main.ts`, with its limits lifted so the bench
 * measures throughput rather than rate limiting. Clients authenticate with an anon JWT like supabase-js.
 */
import { SignJWT } from "jose"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import type { GatewaySource } from "../gatewaySource.ts"
import { type ServerHandle, startServer } from "../serverProcess.ts"
import { connectPhoenix } from "./phoenixSession.ts"
import type { Target } from "./Target.ts"
import type { ClientMode } from "./transport.ts"

export const JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"

export const GATEWAY_ENTRY = "apps/gateway/src/main.ts"

export const LIMIT_OVERRIDES = {
  MAX_CONNECTIONS: "100000",
  MAX_CONNECTIONS_PER_USER: "100000",
  MAX_CONNECTIONS_PER_IP: "100000",
  MAX_EVENTS_PER_SECOND: "100000000",
  MAX_JOINS_PER_SECOND: "100000",
  // Benchmarks measure the process past its safe capacity: admission control (issue 10) would shed what they measure.
  ADMISSION_MAX_CONNECTIONS: "100000",
  ADMISSION_MAX_EVENT_LOOP_P99_MS: "1000000",
  ADMISSION_MAX_DELIVERY_P99_MS: "1000000"
} as const

/** An HS256 token with `claims`, valid for `ttlSeconds`, signed with `secret` (the bench gateway's by default). */
export const signToken = (
  claims: Record<string, unknown>,
  ttlSeconds = 3600,
  secret: string = JWT_SECRET
): Promise<string> =>
  new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
    .sign(new TextEncoder().encode(secret))

export const anonToken = (): Promise<string> => signToken({ role: "anon" })

/**
 * The Node flags of the gateway's own `npm start` (`node <flags> src/main.ts` in apps/gateway/package.json), so the
 * bench runs the server exactly as production starts it.
 */
export const startFlags = (dir: string): ReadonlyArray<string> => {
  const manifest = JSON.parse(readFileSync(join(dir, "apps/gateway/package.json"), "utf8")) as {
    scripts?: { start?: string }
  }
  // `exec node …`: the script replaces its shell so that signals reach the gateway.
  const words = (manifest.scripts?.start ?? "").split(/\s+/).filter((w) => w !== "exec")
  return words[0] === "node" ? words.slice(1).filter((w) => w.startsWith("--")) : []
}

interface GatewayStart {
  readonly name?: string
  /** `0` (the default) lets the gateway pick a free port; the handle reports it. */
  readonly port?: number
  readonly cpu?: number | undefined
  readonly env?: Readonly<Record<string, string>> | undefined
}

/** Starts the gateway of `source` as `npm start` does (its Node flags), on loopback with the bench's limits. */
export const startGateway = (source: GatewaySource, options: GatewayStart = {}): Promise<ServerHandle> =>
  startServer({
    name: options.name ?? "gateway",
    args: [...startFlags(source.dir), GATEWAY_ENTRY],
    cwd: source.dir,
    env: { PORT: String(options.port ?? 0), HOST: "127.0.0.1", ...LIMIT_OVERRIDES, ...options.env },
    cpu: options.cpu,
    startTimeoutMs: 30_000
  })

/** `source` is the directory holding the gateway's sources and node_modules (see gatewaySource.ts). */
export const makeGatewayTarget = async (client: ClientMode, source: GatewaySource): Promise<Target> => {
  const token = await anonToken()
  const flags = startFlags(source.dir)
  return {
    name: "gateway",
    serverCommand: `node ${[...flags, GATEWAY_ENTRY].join(" ")} from the ${source.description}, env ${
      Object.entries(LIMIT_OVERRIDES)
        .map(([k, v]) => `${k}=${v}`)
        .join(" ")
    }`,
    start: ({ port, cpu, env }) => startGateway(source, { port, cpu, env }),
    connect: (port, events, timeoutMs) =>
      connectPhoenix(client, { port, path: `/realtime/v1/websocket?apikey=${token}&vsn=2.0.0` }, events, timeoutMs)
  }
}
