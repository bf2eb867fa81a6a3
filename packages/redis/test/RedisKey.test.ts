import { assert, describe, it } from "@effect/vitest"
import * as RedisKey from "../src/RedisKey.ts"

describe("RedisKey", () => {
  it("joins a namespace and parts with colons", () => {
    assert.strictEqual(RedisKey.make("cache", "user", 42), "cache:user:42")
  })

  it("puts the shared part of related keys in one hash tag, so they share a Cluster slot", () => {
    const members = RedisKey.tagged("cache", "w-1", "members")
    const plan = RedisKey.tagged("cache", "w-1", "plan", "public.items")
    assert.strictEqual(members, "cache:{w-1}:members")
    assert.strictEqual(RedisKey.hashTag("wedsync:" + members), "w-1")
    assert.strictEqual(RedisKey.hashTag("wedsync:" + plan), "w-1")
    assert.notStrictEqual(RedisKey.hashTag("wedsync:" + RedisKey.tagged("cache", "w-2", "members")), "w-1")
  })

  it("escapes braces, colons and percent signs, so an id can neither open a hash tag nor pose as a segment", () => {
    const key = RedisKey.tagged("cache", "a}b", "x{y}", "c:d", "50%")
    assert.strictEqual(key, "cache:{a%7Db}:x%7By%7D:c%3Ad:50%25")
    assert.strictEqual(RedisKey.hashTag(key), "a%7Db")
    assert.strictEqual(RedisKey.hashTag(RedisKey.make("plain", "{x}")), RedisKey.make("plain", "{x}"))
  })

  it("follows the Cluster rule for keys without a usable tag", () => {
    assert.strictEqual(RedisKey.hashTag("a:b"), "a:b")
    assert.strictEqual(RedisKey.hashTag("a:{}:b"), "a:{}:b")
    assert.strictEqual(RedisKey.hashTag("a:{b"), "a:{b")
    assert.strictEqual(RedisKey.hashTag("{a}{b}"), "a")
  })

  it("builds patterns whose only glob is the trailing star", () => {
    assert.strictEqual(RedisKey.pattern("inval", "kind*"), "inval:kind\\*:*")
    assert.strictEqual(RedisKey.literalPattern("t:[x]?"), "t:\\[x\\]\\?")
  })

  it("refuses a prefix that would capture every key's hash tag", () => {
    assert.match(RedisKey.prefixProblem("app{1}:") ?? "", /hash tag/)
    assert.strictEqual(RedisKey.prefixProblem("wedsync:"), undefined)
  })
})
