/**
 * How a cached value becomes the text kept in the shared store and back. Only the L2 path encodes or decodes: L1
 * holds the decoded value itself. Decoding is total: text that does not decode (an older release's layout, a value
 * of another type) is a miss, never a defect.
 */
import { Result, Schema } from "effect"

export interface CacheCodec<A> {
  readonly encode: (value: A) => string
  /** `Result.fail` with a message when the text is not a value of this codec. */
  readonly decode: (text: string) => Result.Result<A, string>
}

/** Strings kept as they are. */
export const string: CacheCodec<string> = {
  encode: (value) => value,
  decode: (text) => Result.succeed(text)
}

/** `true` / `false` as `1` / `0`. */
export const boolean: CacheCodec<boolean> = {
  encode: (value) => (value ? "1" : "0"),
  decode: (
    text
  ) => (text === "1" ? Result.succeed(true) : text === "0" ? Result.succeed(false) : Result.fail("not 0 or 1"))
}

/** JSON text of any Schema whose encoded side is JSON (use `Schema.OptionFromNullOr` and the like for absence). */
export const schema = <S extends Schema.Codec<unknown, unknown, never, never>>(schema: S): CacheCodec<S["Type"]> => {
  const json = Schema.fromJsonString(schema)
  const encode = Schema.encodeSync(json)
  const decode = Schema.decodeUnknownResult(json)
  return {
    encode: (value) => encode(value) as string,
    decode: (text) => Result.mapError(decode(text), (error) => error.message)
  }
}
