/**
 * Where the real services for integration tests live, and names that keep parallel tests apart on them.
 *
 * `npm test` (tools/src/prepareServices.ts) makes sure Redis and Postgres run on loopback; tests read the URLs here
 * rather than from `process.env` directly, so the defaults live in one place. Every key, channel, schema, publication
 * and slot a test creates goes under a fresh `uniquePrefix`/`uniqueSqlName`, so concurrent runs and leftovers from
 * crashed runs never collide (Centrifuge's `getUniquePrefix`). Nothing here connects to anything.
 */
import { randomBytes } from "node:crypto"

/** Redis URL for integration tests: `REDIS_URL`, else the local default. */
export const redisUrl = (): string => process.env["REDIS_URL"] || "redis://127.0.0.1:6379"

/** Postgres URL for integration tests: `DATABASE_URL`, else the local default. */
export const databaseUrl = (): string => process.env["DATABASE_URL"] || "postgres://postgres@127.0.0.1:5432/postgres"

const random = (): string => randomBytes(4).toString("hex")

/** A fresh key prefix, `t:<label>:<pid>:<random>:`, for Redis keys and channels. */
export const uniquePrefix = (label: string): string => `t:${label}:${process.pid}:${random()}:`

/** Postgres identifier limit (NAMEDATALEN - 1); replication slot names have the same limit. */
export const maxSqlNameLength = 63

/**
 * A fresh name safe as an unquoted Postgres identifier and as a replication slot name: lowercase `[a-z0-9_]`, starts
 * with a letter, at most 63 characters. The label is sanitised and shortened; the pid and random suffix are kept whole.
 */
export const uniqueSqlName = (label: string): string => {
  const suffix = `_${process.pid}_${random()}`
  const clean = label.toLowerCase().replace(/[^a-z0-9_]+/g, "_").replace(/_+/g, "_").replace(/^_|_$/g, "")
  const room = maxSqlNameLength - "t_".length - suffix.length
  return `t_${clean.slice(0, room).replace(/_$/, "")}${suffix}`.replace(/^t__/, "t_")
}
