/**
 * docs/error-codes.md is a catalogue enforced by this test: every reason in `ErrorReply.catalogue` (connection, auth,
 * REST and Postgres Changes reasons; `ErrorReply`'s own test checks that list covers every area's union), every close
 * code and every upgrade or REST status `ErrorReply` can produce has a row of its own, and every text is quoted.
 */
import { assert, describe, it } from "@effect/vitest"
import { AuthError } from "@wedsync/auth"
import { readFileSync } from "node:fs"
import * as ConnectionError from "../src/ConnectionError.ts"
import { catalogue, CloseCode, restRefusal, upgradeRefusal } from "../src/ErrorReply.ts"

const doc = readFileSync(new URL("../../../docs/error-codes.md", import.meta.url), "utf8")

/** The first cell of every table row, without its backticks. */
const rowKeys = new Set(
  doc
    .split("\n")
    .filter((line) => line.startsWith("| ") && !line.startsWith("| ---"))
    .map((line) => line.split("|")[1]!.trim().replace(/^`|`$/g, ""))
)

const row = (key: string) => rowKeys.has(key)

describe("docs/error-codes.md", () => {
  it("has a row for every reason a client can be sent (ErrorReply's catalogue: connection, auth, REST, Postgres Changes)", () => {
    assert.isAbove(catalogue.length, 0)
    assert.deepStrictEqual(catalogue.map((reason) => reason._tag).filter((tag) => !row(tag)), [])
  })

  it("has a row for every close code", () => {
    assert.deepStrictEqual(Object.values(CloseCode).map(String).filter((code) => !row(code)), [])
  })

  it("has a row for every upgrade and REST status ErrorReply produces", () => {
    const statuses = new Set(
      catalogue.flatMap((reason) => [upgradeRefusal(reason).status, restRefusal(reason).status].map(String))
    )
    assert.deepStrictEqual([...statuses].filter((status) => !row(status)), [])
  })

  it("quotes every reason's message as the client sees it", () => {
    const variants = [
      AuthError.InvalidJWTToken.notYetValid(),
      AuthError.InvalidJWTToken.wrongIssuer(),
      AuthError.InvalidJWTToken.wrongAudience(),
      AuthError.InvalidJWTToken.missingClaims(),
      AuthError.InvalidJWTToken.invalidExpiration(),
      ConnectionError.replayParamsInvalid(),
      ConnectionError.replayFailed()
    ]
    const missing = [...catalogue, ...variants]
      .map((reason) => reason.message)
      // Messages with a variable part are catalogued in their template form.
      .filter((message) => !/\d|wedding:42|key-1|public\.guests|\["wedding_id"/.test(message))
      .filter((message) => !doc.includes(message))
    assert.deepStrictEqual(missing, [])
  })
})
