/**
 * HMAC-SHA256 of stored values and keyed hashes of keys. The MAC covers the store key and the version as well as the
 * body, so a valid value copied under another key, or replayed with another version, fails as a foreign value.
 * Keys are hashed with a key derived from the same secret, so a key (which may hold a token hash, an email or a user
 * id) never reaches the store, the bus or a log in plain text, and cannot be guessed by hashing candidates.
 */
import { createHmac, timingSafeEqual } from "node:crypto"

/** base64url of 32 bytes. */
const MAC_LENGTH = 43

export interface Integrity {
  /** A 22-character (128-bit) keyed hash of `key`. */
  readonly hashKey: (key: string) => string
  /** `mac.body`, to store. */
  readonly seal: (storeKey: string, version: number, body: string) => string
  /** The body of a sealed value, or `undefined` when the MAC does not match. */
  readonly open: (storeKey: string, version: number, sealed: string) => string | undefined
}

export const make = (secret: string): Integrity => {
  const keyHashSecret = createHmac("sha256", secret).update("wedsync-cache-key-hash").digest()
  const macSecret = createHmac("sha256", secret).update("wedsync-cache-value-mac").digest()
  const mac = (storeKey: string, version: number, body: string): string =>
    createHmac("sha256", macSecret).update(`${storeKey}\n${version}\n`).update(body).digest("base64url")
  return {
    hashKey: (key) => createHmac("sha256", keyHashSecret).update(key).digest("base64url").slice(0, 22),
    seal: (storeKey, version, body) => `${mac(storeKey, version, body)}.${body}`,
    open: (storeKey, version, sealed) => {
      if (sealed.length <= MAC_LENGTH || sealed.charCodeAt(MAC_LENGTH) !== 46 /* . */) return undefined
      const body = sealed.slice(MAC_LENGTH + 1)
      const expected = Buffer.from(mac(storeKey, version, body))
      const given = Buffer.from(sealed.slice(0, MAC_LENGTH))
      return given.length === expected.length && timingSafeEqual(given, expected) ? body : undefined
    }
  }
}
