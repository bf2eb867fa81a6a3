export * as ChangeEvent from "./ChangeEvent.ts"
export * as ChangeFilter from "./ChangeFilter.ts"
export * as ChangePayload from "./ChangePayload.ts"
export * as RowPolicy from "./RowPolicy.ts"
