export * as UpstreamConfig from "./UpstreamConfig.ts"
export * as UpstreamError from "./UpstreamError.ts"
export * as UpstreamMetrics from "./UpstreamMetrics.ts"
export * as UpstreamPool from "./UpstreamPool.ts"
