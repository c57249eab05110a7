/**
 * The process latch: a sticky flag with at most one waiter (its owner).
 *
 * Protocol (from PostgreSQL's storage/latch.h, kept exactly):
 * - A set makes the flag true and wakes the waiter. Setting a set latch costs one comparison, so
 *   sets that arrive while the owner is not waiting, or before it has run, coalesce into one wake-up, and a
 *   set that happens before the wait is never lost: the wait sees the flag and returns at once.
 * - Only the owner resets the flag. The correct loop resets, then checks for work, then waits; a set that
 *   races with the check is still seen by the wait.
 * - `killUnsafe` is postmaster death: it wakes the waiter, and every later wait sees it at once. What the
 *   wait then does depends on the waiter's `onPostmasterDeath`.
 *
 * JavaScript runs one fiber at a time and no fiber is preempted inside a synchronous block, so the flag
 * needs no memory barrier: the ordering argument of latch.h holds by construction.
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
  /** Postmaster death has been signalled. */
  dead = false
  /** What the current waiter does on postmaster death; `undefined` when nobody waits. */
  waitMode: "exit" | "return" | undefined = undefined
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

  /** Postmaster death: wakes the waiter; every wait from now on returns (or exits) at once. */
  killUnsafe(): void {
    this.dead = true
    this.wake()
  }

  /** Wakes the waiter without setting the flag (used to deliver requests that have their own flags). */
  wake(): void {
    const resume = this.take()
    if (resume !== undefined) resume(Effect.yieldNow)
  }

  wakeDirect(): void {
    const resume = this.take()
    if (resume !== undefined) resume(Effect.void)
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
    })
  }

  private suspend(mode: "exit" | "return"): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      if (this.resume !== undefined) {
        resume(Effect.die(new Error("a process latch can only be waited on by its owner, one wait at a time")))
        return
      }
      this.resume = resume
      this.waitMode = mode
      return Effect.sync(() => {
        this.resume = undefined
        this.waitMode = undefined
      })
    })
  }

  private afterWake(mode: "exit" | "return"): Effect.Effect<WaitResult> {
    if (this.dead) {
      return mode === "exit"
        ? Effect.interrupt
        : Effect.succeed({ latchSet: this.isSet, timeout: false, postmasterDeath: true })
    }
    return Effect.succeed(this.isSet ? resultLatch : resultNothing)
  }

  wait(options: WaitOptions): Effect.Effect<WaitResult> {
    return Effect.suspend(() => {
      const mode = options.onPostmasterDeath
      if (this.dead || this.isSet) return this.afterWake(mode)
      if (options.timeout === undefined) {
        return Effect.flatMap(this.suspend(mode), () => this.afterWake(mode))
      }
      const timeout = Duration.fromInputUnsafe(options.timeout)
      if (Duration.toMillis(timeout) <= 0) return Effect.succeed(resultTimeout)
      return Effect.flatMap(
        Effect.timeoutOption(this.suspend(mode), timeout),
        // A set (or death) that lands as the timer fires is a wake-up, not a timeout: the flag decides.
        (woken) => Option.isNone(woken) && !this.isSet && !this.dead ? Effect.succeed(resultTimeout) : this.afterWake(mode)
      )
    })
  }
}
