export * as Exposition from "./Exposition.ts"
export * as HotMetric from "./HotMetric.ts"
export * as MetricNames from "./MetricNames.ts"
export * as ProcessMetrics from "./ProcessMetrics.ts"
