export * as ChangeEvent from "./ChangeEvent.ts"
export * as RowPolicy from "./RowPolicy.ts"
