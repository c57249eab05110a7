/**
 * The process latch: a sticky flag with at most one waiter (its owner).
 *
 * Protocol (from PostgreSQL's storage/latch.h, kept exactly):
 * - A set makes the flag true and wakes the waiter. Setting a set latch costs one comparison, so
 *   sets that arrive while the owner is not waiting, or before it has run, coalesce into one wake-up, and a
 *   set that happens before the wait is never lost: the wait sees the flag and returns at once.
 * - Only the owner resets the flag. The correct loop resets, then checks for work, then waits; a set that
 *   races with the check is still seen by the wait.
 * - `postmasterDiedUnsafe` is postmaster death (`WL_POSTMASTER_DEATH`): it wakes the waiter, and every later
 *   wait sees it at once. What the wait then does depends on the waiter's `onPostmasterDeath`.
 * - `wake` (a request with its own flag, such as terminate) that finds nobody waiting is kept for the next
 *   wait, until a reset: the owner checks the request's flag before it waits, and a request that lands after
 *   that check must still end the wait.
 *
 * JavaScript runs one fiber at a time and no fiber is preempted inside a synchronous block, so the flag
 * needs no memory barrier. But a fiber is preempted between two steps of an effect: the run loop yields to
 * the scheduler after a budget of operations (`References.MaxOpsBeforeYield`), at any step. So the wait
 * checks the flag, and registers itself, in one synchronous block (the registration callback of
 * `Effect.callback`): a set lands either before that block, and the wait sees the flag, or after it, and
 * the set finds the waiter. A check in an earlier step, followed by a registration in a later one, would
 * leave a gap where a set finds no waiter, and every later set would return early on the set flag.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { ProcLatch, WaitOptions, WaitResult } from "../ProcLatch.ts"

/** @internal */
export const TypeId = "~effect-bgworker/ProcLatch"

const resultLatch: WaitResult = { latchSet: true, timeout: false, postmasterDeath: false }
const resultTimeout: WaitResult = { latchSet: false, timeout: true, postmasterDeath: false }
/** Woken by a request (reload, terminate) that has its own flag. */
const resultNothing: WaitResult = { latchSet: false, timeout: false, postmasterDeath: false }

/** @internal */
export class LatchImpl implements ProcLatch {
  readonly [TypeId] = TypeId
  /** The sticky flag. */
  isSet = false
  /** Postmaster death has been signalled (`!PostmasterIsAlive()`): set once, never cleared. */
  postmasterDead = false
  /** What the current waiter does on postmaster death; `undefined` when nobody waits. */
  waitMode: "exit" | "return" | undefined = undefined
  /** A `wake` found nobody waiting: the next wait returns at once (a reset drops it, as it clears the flag). */
  private wakePending = false
  private resume: ((effect: Effect.Effect<void>) => void) | undefined = undefined

  /**
   * From synchronous code (a callback, the supervisor's loops): the waiter resumes through the scheduler,
   * never inside the caller's block, so the caller is never re-entered and sets that arrive before the waiter
   * runs coalesce into one wake-up.
   */
  setUnsafe(): void {
    if (this.isSet) return
    this.isSet = true
    this.wake()
  }

  /**
   * From an effect whose last act is the set: the waiter resumes at once, as `Deferred.succeed` resumes its
   * waiters (nothing is left for the setter to do, so nothing can be re-entered).
   */
  setDirectUnsafe(): void {
    if (this.isSet) return
    this.isSet = true
    this.wakeDirect()
  }

  isSetUnsafe(): boolean {
    return this.isSet
  }

  /**
   * Postmaster death: wakes the waiter; every wait from now on returns (or exits) at once. Only the
   * supervisor calls it, once, when it dies; calling it again changes nothing.
   */
  postmasterDiedUnsafe(): void {
    this.postmasterDead = true
    this.wake()
  }

  /**
   * Wakes the waiter without setting the flag (used to deliver requests that have their own flags). With
   * nobody waiting, the next wait returns at once unless a reset comes first: the owner may have checked the
   * request's flag and be on its way into the wait.
   */
  wake(): void {
    const resume = this.take()
    if (resume !== undefined) resume(Effect.yieldNow)
    else this.wakePending = true
  }

  wakeDirect(): void {
    const resume = this.take()
    if (resume !== undefined) resume(Effect.void)
    else this.wakePending = true
  }

  private take(): ((effect: Effect.Effect<void>) => void) | undefined {
    const resume = this.resume
    if (resume !== undefined) {
      this.resume = undefined
      this.waitMode = undefined
    }
    return resume
  }

  get set(): Effect.Effect<void> {
    return Effect.sync(() => this.setDirectUnsafe())
  }

  get reset(): Effect.Effect<void> {
    return Effect.sync(() => {
      this.isSet = false
      this.wakePending = false
    })
  }

  /** Whether a wait must return at once; consumes a pending wake-up. */
  private ready(): boolean {
    if (this.isSet || this.postmasterDead) return true
    if (!this.wakePending) return false
    this.wakePending = false
    return true
  }

  /**
   * Suspends until woken. The check and the registration run in one synchronous block, the callback's: the
   * scheduler may have yielded anywhere since `wait` first looked at the flag, and a set made meanwhile found
   * no waiter to wake.
   */
  private suspend(mode: "exit" | "return"): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      if (this.ready()) return resume(Effect.void)
      if (this.resume !== undefined) {
        resume(Effect.die(new Error("a process latch can only be waited on by its owner, one wait at a time")))
        return
      }
      this.resume = resume
      this.waitMode = mode
      return Effect.sync(() => {
        if (this.resume !== resume) return // already woken
        this.resume = undefined
        this.waitMode = undefined
      })
    })
  }

  private afterWake(mode: "exit" | "return"): Effect.Effect<WaitResult> {
    if (this.postmasterDead) {
      return mode === "exit"
        ? Effect.interrupt
        : Effect.succeed({ latchSet: this.isSet, timeout: false, postmasterDeath: true })
    }
    return Effect.succeed(this.isSet ? resultLatch : resultNothing)
  }

  wait(options: WaitOptions): Effect.Effect<WaitResult> {
    return Effect.suspend(() => {
      const mode = options.onPostmasterDeath
      // Fast path only: the check that counts is the one in `suspend`, made as the waiter registers.
      if (this.ready()) return this.afterWake(mode)
      if (options.timeout === undefined) {
        return Effect.flatMap(this.suspend(mode), () => this.afterWake(mode))
      }
      const timeout = Duration.fromInputUnsafe(options.timeout)
      if (Duration.toMillis(timeout) <= 0) return Effect.succeed(resultTimeout)
      return Effect.flatMap(
        Effect.timeoutOption(this.suspend(mode), timeout),
        // A set (or death) that lands as the timer fires is a wake-up, not a timeout: the flag decides.
        (woken) =>
          Option.isNone(woken) && !this.isSet && !this.postmasterDead
            ? Effect.succeed(resultTimeout)
            : this.afterWake(mode)
      )
    })
  }
}
