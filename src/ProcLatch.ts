/**
 * The process latch: how a worker sleeps without missing a wake-up.
 *
 * PostgreSQL: `SetLatch`, `ResetLatch`, `WaitLatch` and the `WL_*` flags (src/include/storage/latch.h),
 * and `WaitEventExtensionNew` for named wait events.
 *
 * Every worker owns one latch, `MyLatch`. Anyone may set it: a registrant through `Supervisor.setLatch`,
 * another fiber through {@link myLatch}, a plain callback through `latch.setUnsafe()`. Only the owner
 * resets it and waits on it. The latch is sticky: a set before the wait is not lost, and several sets
 * coalesce into one wake-up.
 *
 * The loop PostgreSQL recommends, and which this module keeps:
 *
 * ```ts
 * Effect.gen(function*() {
 *   while (true) {
 *     const woke = yield* ProcLatch.wait({ timeout: "10 seconds", onPostmasterDeath: "exit", waitEvent: "MyMain" })
 *     yield* ProcLatch.reset
 *     yield* Interrupts.check          // a terminate request ends the worker here
 *     // ... do the work; woke.latchSet / woke.timeout say why we woke
 *   }
 * })
 * ```
 *
 * Every wait must say what postmaster death does (PostgreSQL asserts `WL_EXIT_ON_PM_DEATH` or
 * `WL_POSTMASTER_DEATH`; here the option is required by the type): `"exit"` ends the worker inside the
 * wait, running its finalizers; `"return"` returns a result with `postmasterDeath: true`, and the worker
 * must then end on its own within the supervisor's shutdown timeout, after which it is interrupted.
 *
 * A wait inside a worker also sees the worker's interrupts: a pending terminate request ends the worker
 * (as `die()` does at `CHECK_FOR_INTERRUPTS()`), and a reload request sets the latch so the wait returns.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { CurrentWorker } from "./internal/context.ts"
import * as internal from "./internal/latch.ts"
import * as proc from "./internal/proc.ts"

/**
 * What a wait does when the supervisor dies while it waits: end the worker (`"exit"`, PostgreSQL's
 * `WL_EXIT_ON_PM_DEATH`) or return a result saying so (`"return"`, `WL_POSTMASTER_DEATH`).
 *
 * @category models
 * @since 0.1.0
 */
export type OnPostmasterDeath = "exit" | "return"

/**
 * @category models
 * @since 0.1.0
 */
export interface WaitOptions {
  /** Wake after this long even if nothing is set (`WL_TIMEOUT`). No timeout: wait for the latch. */
  readonly timeout?: Duration.Input | undefined
  /** Required: what postmaster death does to this wait. */
  readonly onPostmasterDeath: OnPostmasterDeath
  /**
   * The wait event shown in the activity view while the worker waits (type `Extension`), like a name from
   * `WaitEventExtensionNew`. At most 63 characters. Ignored for latches that belong to no worker.
   */
  readonly waitEvent?: string | undefined
}

/**
 * Which events fired. At least one is true.
 *
 * @category models
 * @since 0.1.0
 */
export interface WaitResult {
  readonly latchSet: boolean
  readonly timeout: boolean
  readonly postmasterDeath: boolean
}

/**
 * A process latch.
 *
 * @category models
 * @since 0.1.0
 */
export interface ProcLatch {
  /**
   * Sets the latch from synchronous code (a callback, an event handler). Cheap when already set. The waiter
   * resumes later, through the scheduler, never inside the caller.
   */
  setUnsafe(): void
  /** Whether the latch is set now. */
  isSetUnsafe(): boolean
  /** Sets the latch; the waiter may resume at once, as a `Deferred`'s waiters do. */
  readonly set: Effect.Effect<void>
  /** Clears the flag. Only the owner should reset. */
  readonly reset: Effect.Effect<void>
  /**
   * Waits until the latch is set, the timeout passes, or postmaster death. Returns at once if the latch is
   * already set. Does not reset the latch. Waiting on a worker's latch this way skips the worker's
   * interrupts and wait events: inside a worker use {@link wait}.
   */
  wait(options: WaitOptions): Effect.Effect<WaitResult>
}

/**
 * A latch that belongs to no worker, for coordinating plain fibers the same way.
 *
 * @category constructors
 * @since 0.1.0
 */
export const make: Effect.Effect<ProcLatch> = Effect.sync(() => new internal.LatchImpl())

/**
 * @category unsafe
 * @since 0.1.0
 */
export const makeUnsafe = (): ProcLatch => new internal.LatchImpl()

/**
 * The current worker's latch (`MyLatch`): hand it to a callback that must wake the worker.
 *
 * @category accessors
 * @since 0.1.0
 */
export const myLatch: Effect.Effect<ProcLatch, never, CurrentWorker> = CurrentWorker.useSync((w) => w.latch)

/**
 * Waits on the current worker's latch (`WaitLatch(MyLatch, ...)`), showing `waitEvent` in the activity
 * view meanwhile.
 *
 * **Details**
 *
 * Ends the worker, as failed, when a terminate request is pending before or after the wait (unless inside
 * `Interrupts.holdInterrupts`). With `onPostmasterDeath: "exit"` it ends the worker on postmaster death.
 *
 * **Gotchas**
 *
 * Does not reset the latch: call {@link reset} before looking for work. A wait event name longer than 63
 * characters is a programming error and ends the worker with a defect.
 *
 * @see {@link reset}
 * @see {@link Interrupts.check}
 * @category waiting
 * @since 0.1.0
 */
export const wait = (options: WaitOptions): Effect.Effect<WaitResult, never, CurrentWorker> =>
  CurrentWorker.use((worker) => proc.waitLatch(proc.procOf(worker), options))

/**
 * Resets the current worker's latch (`ResetLatch(MyLatch)`).
 *
 * @category waiting
 * @since 0.1.0
 */
export const reset: Effect.Effect<void, never, CurrentWorker> = Effect.flatMap(myLatch, (latch) => latch.reset)

/**
 * Sets the current worker's own latch (`SetLatch(MyLatch)`).
 *
 * @category waiting
 * @since 0.1.0
 */
export const setMine: Effect.Effect<void, never, CurrentWorker> = Effect.flatMap(myLatch, (latch) => latch.set)
