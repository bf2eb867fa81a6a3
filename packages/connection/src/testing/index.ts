export * as TestSocket from "./TestSocket.ts"
