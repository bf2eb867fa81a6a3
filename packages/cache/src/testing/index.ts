export * from "./CacheStoreSuite.ts"
