import { describe, expect, it } from "vitest"
import { parseLoadgenArgs } from "../src/cli.ts"

const refusal = (argv: ReadonlyArray<string>): string => {
  const parsed = parseLoadgenArgs(argv)
  return "error" in parsed ? parsed.error : "accepted"
}

describe("parseLoadgenArgs", () => {
  it("accepts a calendar alone with the defaults (3 minutes, 10,000 devices)", () => {
    const parsed = parseLoadgenArgs(["--calendar", "c.json"])
    expect("options" in parsed && parsed.options).toMatchObject({ minutes: 3, devices: 10_000, rate: 1, sampleS: 5 })
  })

  it("accepts a given gateway with its admin token", () => {
    const parsed = parseLoadgenArgs([
      "--calendar",
      "c.json",
      "--minutes",
      "1",
      "--devices",
      "500",
      "--url",
      "http://127.0.0.1:4000",
      "--admin-token",
      "t"
    ])
    expect("options" in parsed && parsed.options).toMatchObject({ minutes: 1, devices: 500, adminToken: "t" })
  })

  it("accepts Postgres Changes on the gateway it starts", () => {
    const parsed = parseLoadgenArgs(["--calendar", "c.json", "--database-url", "postgres://x", "--changes-rate", "0.5"])
    expect("options" in parsed && parsed.options).toMatchObject({ databaseUrl: "postgres://x", changesRate: 0.5 })
  })

  it("refuses what it cannot run, naming the argument", () => {
    expect(refusal([])).toMatch(/--calendar <file> is required/)
    expect(refusal(["--calendar", "c.json", "--minutes", "0"])).toMatch(/--minutes must be/)
    expect(refusal(["--calendar", "c.json", "--minutes", "soon"])).toMatch(/--minutes must be/)
    expect(refusal(["--calendar", "c.json", "--devices", "2.5"])).toMatch(/--devices must be an integer/)
    expect(refusal(["--calendar", "c.json", "--url", "ws://x"])).toMatch(/--url must be an http/)
    expect(refusal(["--calendar", "c.json", "--url", "https://x"])).toMatch(/no TLS/)
    expect(refusal(["--calendar", "c.json", "--admin-token", "t"])).toMatch(/--admin-token goes with --url/)
    expect(refusal(["--calendar", "c.json", "--changes-rate", "101"])).toMatch(/--changes-rate must be 0-100/)
    expect(refusal(["--calendar", "c.json", "--database-url", "postgres://x", "--url", "http://127.0.0.1:4000"]))
      .toMatch(/--database-url goes without --url/)
    expect(refusal(["--calendar", "c.json", "--bogus"])).toMatch(/bogus/)
    expect(refusal(["--calendar", "c.json", "extra"])).toMatch(/extra|positional/i)
  })
})
