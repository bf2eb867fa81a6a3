export * as TestTokens from "./TestTokens.ts"
