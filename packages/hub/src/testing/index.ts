export * from "./BrokerSuite.ts"
export * as TestSink from "./TestSink.ts"
