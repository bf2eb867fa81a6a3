import { assert, describe, it } from "@effect/vitest"
import { RedisKey } from "@wedsync/redis"
import { Broker, PresenceStore, Publication } from "../src/index.ts"

describe("PresenceStore", () => {
  it("a ref starts with its node's id and has the 16 characters presence_state is budgeted for", () => {
    const node = PresenceStore.newNodeId()
    const ref = PresenceStore.newRef(node)
    assert.strictEqual(node.length, PresenceStore.NODE_ID_CHARS)
    assert.match(ref, /^[A-Za-z0-9+/]{16}$/)
    assert.strictEqual(PresenceStore.nodeOfRef(ref), node)
    assert.notStrictEqual(PresenceStore.newRef(node), ref)
  })

  it("a room's hash and the topic's shard channel share one hash tag (one Cluster slot), per topic", () => {
    for (const topic of ["realtime:room", "realtime:{a}:b", "realtime:%7B"]) {
      const key = Publication.topicKey(topic, true)
      const tag = RedisKey.hashTag(PresenceStore.roomKey(key))
      assert.strictEqual(RedisKey.hashTag(Broker.channelOf(key)), tag)
      assert.notStrictEqual(RedisKey.hashTag(PresenceStore.roomKey(Publication.topicKey(topic, false))), tag)
    }
  })

  it("values round-trip, hostile keys included; anything else stored under the key is ignored", () => {
    for (const key of ["user-1", "__proto__", "constructor", 'a"],{"x', ""]) {
      const value = PresenceStore.encodeValue(key, JSON.stringify({ __proto__: null, name: key }))
      const entry = PresenceStore.decodeValue("ref", value)
      assert.strictEqual(entry?.key, key)
      assert.strictEqual(entry?.meta["name"], key)
    }
    for (const value of ["", "{", "[]", '["k"]', "[1,{}]", '["k",[]]', '["k",null]', '{"k":1}', '["k",{},1]']) {
      assert.isUndefined(PresenceStore.decodeValue("ref", value), value)
    }
  })
})
