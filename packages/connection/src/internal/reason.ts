import { Schema } from "effect"

/** A reason class: a tagged error whose only field is the text a client may be shown. */
export const reason = <Tag extends string>(tag: Tag) =>
  Schema.TaggedError<{ readonly _tag: Tag; readonly message: string }>()(tag, { message: Schema.String })
