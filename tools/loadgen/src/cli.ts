/** The loadgen's arguments: parsed and checked before anything starts, every problem named. */
import { parseArgs } from "node:util"

export interface LoadgenOptions {
  readonly calendar: string
  readonly minutes: number
  readonly devices: number
  readonly rate: number
  readonly sampleS: number
  readonly url: string | undefined
  readonly adminToken: string | undefined
  readonly databaseUrl: string | undefined
  /** Rows inserted per second per wedding at the start (rising 10x like the broadcasts), with `databaseUrl`. */
  readonly changesRate: number
  readonly out: string
  readonly jwtSecret: string | undefined
}

export const USAGE = `npm run loadgen -- --calendar <file> [options]
  --calendar <file>       wedding calendar, the WEDDING_CALENDAR_FILE JSON format (required)
  --minutes <m>           the day compressed into m minutes                  (default 3, 0.1-120)
  --devices <n>           at most n devices in the run (calendar scaled down) (default 10000)
  --rate <r>              broadcasts/s per wedding at the start, rising to 10x (default 1)
  --sample <s>            seconds between samples of /metrics, /admin/scaling (default 5)
  --url <http://…>        a running gateway (default: start one, pinned to CPU 0)
  --admin-token <t>       ADMIN_TOKEN of --url (for /admin/scaling)
  --jwt-secret <s>        JWT_SECRET of --url (default: the benches' secret)
  --database-url <url>    Postgres Changes too: the loadgen's gateway streams a table of the run's own
                          schema, every device binds INSERT on its wedding's rows
  --changes-rate <r>      rows/s per wedding at the start, rising to 10x     (default 0.2)
  --out <dir>             where report.html and summary.json go           (default loadgen-report)`

const numberIn = (raw: string, name: string, min: number, max: number, problems: Array<string>): number => {
  const n = Number(raw)
  if (raw.trim() === "" || !Number.isFinite(n) || n < min || n > max) problems.push(`--${name} must be ${min}-${max}`)
  return n
}

export const parseLoadgenArgs = (
  argv: ReadonlyArray<string>
): { readonly options: LoadgenOptions } | { readonly error: string } => {
  let values
  try {
    values = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        calendar: { type: "string" },
        minutes: { type: "string", default: "3" },
        devices: { type: "string", default: "10000" },
        rate: { type: "string", default: "1" },
        sample: { type: "string", default: "5" },
        url: { type: "string" },
        "admin-token": { type: "string" },
        "jwt-secret": { type: "string" },
        "database-url": { type: "string" },
        "changes-rate": { type: "string", default: "0.2" },
        out: { type: "string", default: "loadgen-report" }
      }
    }).values
  } catch (error) {
    return { error: error instanceof Error ? error.message : String(error) }
  }
  const problems: Array<string> = []
  if (values.calendar === undefined || values.calendar === "") problems.push("--calendar <file> is required")
  const minutes = numberIn(values.minutes, "minutes", 0.1, 120, problems)
  const devices = numberIn(values.devices, "devices", 1, 200_000, problems)
  if (!Number.isInteger(devices)) problems.push("--devices must be an integer")
  const rate = numberIn(values.rate, "rate", 0, 1000, problems)
  const sampleS = numberIn(values.sample, "sample", 0.5, 600, problems)
  if (values.url !== undefined) {
    let url: URL | undefined
    try {
      url = new URL(values.url)
    } catch {
      url = undefined
    }
    // The lean client speaks plain TCP: no TLS.
    if (url?.protocol !== "http:") problems.push("--url must be an http:// URL of the gateway (no TLS)")
  }
  if (values["admin-token"] !== undefined && values.url === undefined) {
    problems.push("--admin-token goes with --url (a gateway the loadgen starts gets its own)")
  }
  const changesRate = numberIn(values["changes-rate"], "changes-rate", 0, 100, problems)
  // The run's table, publication and slot are made for the gateway the loadgen starts; a given gateway streams
  // whatever its operator configured.
  if (values["database-url"] !== undefined && values.url !== undefined) {
    problems.push("--database-url goes without --url (the loadgen starts the gateway that streams its table)")
  }
  if (problems.length > 0) return { error: problems.join("; ") }
  return {
    options: {
      calendar: values.calendar ?? "",
      minutes,
      devices,
      rate,
      sampleS,
      url: values.url,
      adminToken: values["admin-token"],
      databaseUrl: values["database-url"],
      changesRate,
      out: values.out,
      jwtSecret: values["jwt-secret"]
    }
  }
}
