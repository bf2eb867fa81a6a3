/**
 * Reads `WEDDING_CALENDAR_FILE` and decodes it (`Calendar.parse`). Used twice: by `checkEnvironment`, so a bad file
 * stops the start with the other configuration problems (exit 78), and by `ScalingController` for the forecast.
 */
import { Calendar } from "@wedsync/scaling"
import { Effect } from "effect"
import { readFile } from "node:fs/promises"

export const load = (path: string): Effect.Effect<ReadonlyArray<Calendar.Wedding>, Calendar.CalendarError> =>
  Effect.tryPromise({
    try: () => readFile(path, "utf8"),
    catch: (error) =>
      new Calendar.CalendarError({
        message: `WEDDING_CALENDAR_FILE=${JSON.stringify(path)} cannot be read: ${
          error instanceof Error ? error.message : String(error)
        }`
      })
  }).pipe(Effect.flatMap((text) => Calendar.parse(text, `WEDDING_CALENDAR_FILE=${JSON.stringify(path)}`)))
