/**
 * Requests delivered to a worker: reload and terminate, each a flag plus a latch set.
 *
 * PostgreSQL: `SignalHandlerForConfigReload` (sets `ConfigReloadPending`), `die` (sets `ProcDiePending`),
 * `CHECK_FOR_INTERRUPTS()` and `HOLD_INTERRUPTS()` (src/include/miscadmin.h, src/backend/tcop/postgres.c).
 *
 * A worker sees a request at its next `ProcLatch.wait` or at {@link check}: a terminate request ends the
 * worker there (as failed, so its restart policy applies unless it was terminated through its handle); a
 * reload request only sets a flag that the worker consumes with {@link reloadPending}, at the top of its
 * loop, as worker_spi calls `ProcessConfigFile(PGC_SIGHUP)`.
 *
 * A worker that never waits and never checks cannot see a terminate request. Unlike PostgreSQL, such a
 * worker is not orphaned: the supervisor interrupts it (Effect interruption, finalizers run) once the
 * terminate timeout has passed.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import { CurrentWorker } from "./internal/context.ts"
import * as proc from "./internal/proc.ts"

/**
 * `CHECK_FOR_INTERRUPTS()`: ends the worker if a terminate request is pending (or the supervisor died).
 *
 * @category interrupts
 * @since 0.1.0
 */
export const check: Effect.Effect<void, never, CurrentWorker> = CurrentWorker.use((worker) =>
  proc.checkInterrupts(proc.procOf(worker))
)

/**
 * Whether a reload was requested since the last call; clears the flag (`ConfigReloadPending`).
 *
 * @see {@link Guc.snapshot}
 * @category interrupts
 * @since 0.1.0
 */
export const reloadPending: Effect.Effect<boolean, never, CurrentWorker> = CurrentWorker.useSync((worker) => {
  const p = proc.procOf(worker)
  const pending = p.reloadPending
  p.reloadPending = false
  return pending
})

/**
 * Whether a terminate request is pending, without acting on it.
 *
 * @category interrupts
 * @since 0.1.0
 */
export const terminatePending: Effect.Effect<boolean, never, CurrentWorker> = CurrentWorker.useSync((worker) =>
  proc.procOf(worker).terminatePending
)

/**
 * A critical section (`HOLD_INTERRUPTS()` ... `RESUME_INTERRUPTS()`): `effect` runs uninterruptibly, a
 * terminate request that arrives meanwhile is acted on when it ends.
 *
 * @category interrupts
 * @since 0.1.0
 */
export const holdInterrupts = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R | CurrentWorker> =>
  CurrentWorker.use((worker) => proc.holdInterrupts(proc.procOf(worker), effect))
