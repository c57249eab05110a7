/**
 * What every example shares: the `EXAMPLE_EXIT_AFTER_MS` switch CI uses to let an example stop by itself.
 * Not part of the library. Logging is the library's: `NodeSupervisor.runMain` installs `NodeLogger`.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { NodeLogger } from "../src/node/index.ts"
import * as Supervisor from "../src/Supervisor.ts"

/**
 * The library's text logger (`NodeLogger.text`), which `NodeSupervisor.runMain` installs by itself: kept for
 * examples that still provide it in their own layer.
 */
export const logger = NodeLogger.text

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
