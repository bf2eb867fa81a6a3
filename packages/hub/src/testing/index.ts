export * from "./BrokerSuite.ts"
export * from "./PresenceSuite.ts"
export * as TestSink from "./TestSink.ts"
