/**
 * Running a bench against several gateway processes joined by Redis (`--processes <n> --redis <url|spawn>`), the
 * shape of issue 9's scale-out: every process gets the same `REDIS_URL`, a `REDIS_PREFIX` of the run's own (so runs
 * and other work on a shared Redis never see each other's topics, while the run's processes share theirs) and one
 * `CACHE_HMAC_KEY`. `--processes 1 --redis …` is the single process with the Redis broker, which isolates the
 * broker's cost from the second process's. Subscribers are spread over the processes, publishers use process 1, and
 * deliveries are counted per process, so a gateway that does not relay through Redis shows as the other processes'
 * loss instead of a hang.
 */
import { randomBytes } from "node:crypto"
import { int } from "./format.ts"
import { type RedisServer, startRedisServer } from "./redisServer.ts"
import { freePort, type ServerHandle } from "./serverProcess.ts"

export interface ScaleOut {
  readonly processes: number
  /** A Redis URL, `spawn` for a private redis-server, or undefined (no Redis: the memory broker). */
  readonly redis: string | undefined
}

export const SCALE_OUT_USAGE = `  --processes <n>          gateway processes; subscribers are spread over them,
                           publishers use process 1                          (default 1)
  --redis <url|spawn>      REDIS_URL of every gateway process (one prefix per run), or
                           spawn: a private redis-server for the run, so that
                           INFO commandstats counts the gateways alone       (default: no Redis)
`

/** Checks `--processes` and `--redis`: several processes need Redis, or nothing could cross between them. */
export const parseScaleOut = (processesRaw: string, redisRaw: string | undefined): ScaleOut => {
  const processes = Number(processesRaw)
  if (!Number.isInteger(processes) || processes < 1) {
    throw new Error(`--processes must be a whole number >= 1, got "${processesRaw}"`)
  }
  const redis = redisRaw === undefined || redisRaw === "" ? undefined : redisRaw
  if (redis !== undefined && redis !== "spawn" && !/^rediss?:\/\//.test(redis)) {
    throw new Error(`--redis must be a redis:// or rediss:// URL or "spawn", got "${redis}"`)
  }
  if (processes > 1 && redis === undefined) {
    throw new Error(`--processes ${processes} needs --redis: without Redis the processes cannot reach each other`)
  }
  return { processes, redis }
}

export interface Gateways {
  readonly servers: ReadonlyArray<ServerHandle>
  readonly pids: ReadonlyArray<number>
  /** The Redis the processes use, if any. */
  readonly redisUrl: string | undefined
  /** The private redis-server of `--redis spawn`: part of the server side, so not "other processes" on its core. */
  readonly redisPid: number | undefined
  /** For the report: how many processes, which Redis, which prefix. */
  readonly description: string
  /** Throws with the process's log tail when one of them has exited. */
  readonly alive: () => void
  readonly stop: () => Promise<void>
}

/** The Redis settings shared by every process of one run. */
export const redisEnv = (redisUrl: string): Readonly<Record<string, string>> => ({
  REDIS_URL: redisUrl,
  REDIS_PREFIX: `bench-${process.pid}-${randomBytes(4).toString("hex")}:`,
  CACHE_HMAC_KEY: randomBytes(32).toString("hex")
})

/**
 * Starts `scale.processes` gateways (one after another, each on a free port) with `start`, after the private Redis
 * when `scale.redis` is `spawn` (pinned to `serverCpu`, the gateways' CPU, when given). On a failure, whatever was
 * started is stopped again.
 */
export const startGateways = async (
  scale: ScaleOut,
  start: (port: number, env: Readonly<Record<string, string>>) => Promise<ServerHandle>,
  serverCpu?: number
): Promise<Gateways> => {
  let privateRedis: RedisServer | undefined
  const servers: Array<ServerHandle> = []
  const stop = async () => {
    await Promise.all(servers.map((server) => server.stop()))
    await privateRedis?.stop()
  }
  try {
    if (scale.redis === "spawn") privateRedis = await startRedisServer(serverCpu)
    const redisUrl = privateRedis?.url ?? scale.redis
    const env = redisUrl === undefined ? {} : redisEnv(redisUrl)
    for (let i = 0; i < scale.processes; i++) servers.push(await start(await freePort(), env))
    const where = redisUrl === undefined
      ? "no Redis (memory broker)"
      : `REDIS_URL=${
        privateRedis === undefined
          ? redacted(redisUrl)
          : `${redisUrl} (private redis-server${serverCpu === undefined ? "" : ` on CPU ${serverCpu}`})`
      } ` +
        `REDIS_PREFIX=${env["REDIS_PREFIX"]}`
    return {
      servers,
      pids: servers.map((server) => server.pid),
      redisUrl,
      redisPid: privateRedis?.pid,
      description: `${scale.processes} gateway process${scale.processes === 1 ? "" : "es"}, ${where}`,
      alive: () => {
        servers.forEach((server, i) => {
          const status = server.exitStatus()
          if (status !== undefined) throw new Error(`gateway process ${i + 1} ${status}\n${server.logTail()}`)
        })
      },
      stop
    }
  } catch (error) {
    await stop()
    throw error
  }
}

/** The URL without its password, for reports. */
export const redacted = (url: string): string => url.replace(/\/\/([^:@/]*):[^@/]*@/, "//$1:***@")

/**
 * One line on where deliveries landed, per process: `process 1: 5,000 of 5,000; process 2: 0 of 5,000`, and a plain
 * diagnosis when a process other than the publishers' received nothing at all.
 */
export const perProcessLine = (received: ReadonlyArray<number>, expected: ReadonlyArray<number>): string => {
  const parts = expected.map((e, i) => `process ${i + 1}: ${int(received[i] ?? 0)} of ${int(e)}`)
  const silent = expected
    .map((e, i) => ({ e, got: received[i] ?? 0, process: i + 1 }))
    .filter(({ e, got, process }) => process > 1 && e > 0 && got === 0)
  const note = silent.length === 0
    ? ""
    : ` — process ${
      silent.map((s) => s.process).join(", ")
    } received nothing: broadcasts do not cross Redis (is the gateway's Redis broker wired?)`
  return `${parts.join("; ")}${note}`
}
