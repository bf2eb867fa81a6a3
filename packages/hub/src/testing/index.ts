export * from "./BrokerSuite.ts"
export * from "./HistorySuite.ts"
export * as TestSink from "./TestSink.ts"
