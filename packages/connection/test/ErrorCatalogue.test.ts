/**
 * docs/error-codes.md is a catalogue enforced by this test: every reason tag of `ConnectionError` and `AuthError`,
 * every close code and every upgrade status `ErrorReply` can produce has a row of its own.
 */
import { assert, describe, it } from "@effect/vitest"
import { AuthError } from "@wedsync/auth"
import { readFileSync } from "node:fs"
import * as ConnectionError from "../src/ConnectionError.ts"
import { CloseCode, upgradeRefusal } from "../src/ErrorReply.ts"
import { authReasons, connectionReasons } from "./Reasons.ts"

const catalogue = readFileSync(new URL("../../../docs/error-codes.md", import.meta.url), "utf8")

/** The first cell of every table row, without its backticks. */
const rowKeys = new Set(
  catalogue
    .split("\n")
    .filter((line) => line.startsWith("| ") && !line.startsWith("| ---"))
    .map((line) => line.split("|")[1]!.trim().replace(/^`|`$/g, ""))
)

const row = (key: string) => rowKeys.has(key)

describe("docs/error-codes.md", () => {
  it("has a row for every ConnectionError reason", () => {
    const tags = ConnectionError.ConnectionError.fields.reason.members.map((m) => m.identifier)
    assert.isAbove(tags.length, 0)
    assert.deepStrictEqual(tags.filter((tag) => !row(tag)), [])
  })

  it("has a row for every AuthError reason", () => {
    const tags = AuthError.AuthErrorReason.members.map((m) => m.identifier)
    assert.isAbove(tags.length, 0)
    assert.deepStrictEqual(tags.filter((tag) => !row(tag)), [])
  })

  it("has a row for every close code", () => {
    assert.deepStrictEqual(Object.values(CloseCode).map(String).filter((code) => !row(code)), [])
  })

  it("has a row for every upgrade status ErrorReply produces", () => {
    const statuses = new Set([...connectionReasons, ...authReasons].map((reason) => String(upgradeRefusal(reason).status)))
    assert.deepStrictEqual([...statuses].filter((status) => !row(status)), [])
  })

  it("quotes every reason's message as the client sees it", () => {
    const variants = [
      AuthError.InvalidJWTToken.notYetValid(),
      AuthError.InvalidJWTToken.wrongIssuer(),
      AuthError.InvalidJWTToken.wrongAudience(),
      AuthError.InvalidJWTToken.missingClaims(),
      AuthError.InvalidJWTToken.invalidExpiration()
    ]
    const missing = [...connectionReasons, ...authReasons, ...variants]
      .map((reason) => reason.message)
      // Messages with a variable part are catalogued in their template form.
      .filter((message) => !/\d|wedding:42|key-1/.test(message))
      .filter((message) => !catalogue.includes(message))
    assert.deepStrictEqual(missing, [])
  })
})
