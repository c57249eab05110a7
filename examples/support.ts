/**
 * What every example shares: a compact log line, and the `EXAMPLE_EXIT_AFTER_MS` switch CI uses to let an
 * example stop by itself. Not part of the library.
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as References from "effect/References"
import * as Supervisor from "../src/Supervisor.ts"

/**
 * `12:00:01.234 INFO  [ticker 1] message`: who logged it in brackets (the `worker` log annotation, or the
 * library's own module).
 */
export const logger = Logger.make(({ cause, date, fiber, logLevel, message }) => {
  const annotations = fiber.getRef(References.CurrentLogAnnotations)
  const source = typeof annotations["module"] === "string"
    ? annotations["module"].replace(/^effect-bgworker\//, "")
    : String(annotations["worker"] ?? "main")
  const text = (Array.isArray(message) ? message : [message]).map(String).join(" ")
  const time = date.toISOString().slice(11, 23)
  const detail = cause.reasons.length > 0 ? `\n${Cause.pretty(cause)}` : ""
  console.log(`${time} ${logLevel.toUpperCase().padEnd(5)} [${source}] ${text}${detail}`)
})

/** The milliseconds in `EXAMPLE_EXIT_AFTER_MS`, if it holds a positive number. */
export const exitAfterMs = (): number | undefined => {
  const ms = Number(process.env["EXAMPLE_EXIT_AFTER_MS"] ?? "")
  return Number.isFinite(ms) && ms > 0 ? ms : undefined
}

/** `EXAMPLE_EXIT_AFTER_MS`: shut the supervisor down after that long (the process then exits with code 0). */
export const exitAfter: Effect.Effect<void, never, Supervisor.Supervisor> = Effect.gen(function*() {
  const ms = exitAfterMs()
  if (ms === undefined) return
  yield* Effect.sleep(Duration.millis(ms))
  yield* Effect.logInfo(`EXAMPLE_EXIT_AFTER_MS=${ms} reached: shutting down`)
  yield* Supervisor.shutdown("fast")
}).pipe(Effect.annotateLogs({ worker: "main" }))
