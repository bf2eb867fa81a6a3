export * as ChildLines from "./ChildLines.ts"
export * as PartialLayer from "./PartialLayer.ts"
export * as Postgres from "./Postgres.ts"
export * as PostgresCluster from "./PostgresCluster.ts"
export * as RawClient from "./RawClient.ts"
export * as RedisServer from "./RedisServer.ts"
export * as Services from "./Services.ts"
export * as SupabaseClients from "./SupabaseClients.ts"
export * as WaitUntil from "./WaitUntil.ts"

// Flat aliases for the helpers nearly every test uses (`testkit.partialLayer(...)`, `testkit.uniquePrefix(...)`, `testkit.waitUntil(...)`).
export { partialLayer } from "./PartialLayer.ts"
export { databaseUrl, redisUrl, uniquePrefix, uniqueSqlName } from "./Services.ts"
export { waitUntil } from "./WaitUntil.ts"
