/** One row change decoded from pgoutput. Values are JSON-ready (see PgValue for the typing rules). */
export interface Column {
  readonly name: string
  readonly type: string
} // Postgres type name: int8, text, uuid, timestamptz, jsonb, _text, bool, numeric...
export type Action = "INSERT" | "UPDATE" | "DELETE" | "TRUNCATE"
export interface ChangeEvent {
  readonly schema: string
  readonly table: string
  readonly action: Action
  /** Commit time, UTC, millisecond precision: "YYYY-MM-DDTHH:MM:SS.mmmZ". */
  readonly commitTimestamp: string
  /** All columns of the relation, in table order. */
  readonly columns: ReadonlyArray<Column>
  /** Names of the replica-identity / primary-key columns. */
  readonly primaryKey: ReadonlyArray<string>
  /** New row (INSERT, UPDATE); undefined for DELETE/TRUNCATE. */
  readonly record: Readonly<Record<string, unknown>> | undefined
  /** Old row as the replica identity provides it (PK only with DEFAULT, whole row with FULL); undefined when absent. */
  readonly oldRecord: Readonly<Record<string, unknown>> | undefined
  /**
   * The table has `wedding_id` (or `supplier_id`) but the publication's column list leaves it out, so no image
   * carries the row's scope: only `service_role` may receive it. Absent otherwise.
   */
  readonly scopeHidden?: true
}
export interface Transaction {
  /** Commit end LSN as Postgres prints it ("0/16B3748"); acknowledged after fan-out. */
  readonly lsn: string
  readonly commitTimestamp: string
  readonly changes: ReadonlyArray<ChangeEvent>
}
