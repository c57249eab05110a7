/**
 * The process latch: a sticky flag with at most one waiter (its owner).
 *
 * Protocol (from PostgreSQL's storage/latch.h, kept exactly):
 * - `setUnsafe` makes the flag true and wakes the waiter. Setting a set latch costs one comparison, so
 *   many sets before a wait coalesce into one wake-up, and a set that happens before the wait is never lost:
 *   the wait sees the flag and returns at once.
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

/** @internal */
export class LatchImpl implements ProcLatch {
  readonly [TypeId] = TypeId
  /** The sticky flag. */
  isSet = false
  /** Postmaster death has been signalled. */
  dead = false
  /** What the current waiter does on postmaster death; `undefined` when nobody waits. */
  waitMode: "exit" | "return" | undefined = undefined
  private resume: (() => void) | undefined = undefined

  setUnsafe(): void {
    if (this.isSet) return
    this.isSet = true
    this.wake()
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
    const resume = this.resume
    if (resume !== undefined) {
      this.resume = undefined
      this.waitMode = undefined
      resume()
    }
  }

  readonly set: Effect.Effect<void> = Effect.sync(() => this.setUnsafe())
  readonly reset: Effect.Effect<void> = Effect.sync(() => {
    this.isSet = false
  })

  private readonly suspend = (mode: "exit" | "return"): Effect.Effect<void> =>
    Effect.callback<void>((resume) => {
      if (this.resume !== undefined) {
        resume(Effect.die(new Error("a process latch can only be waited on by its owner, one wait at a time")))
        return
      }
      // Resume through the scheduler, never inside the setter's call: the setter's synchronous block
      // finishes first (so the supervisor is never re-entered), and sets that arrive before the waiter
      // runs coalesce into this one wake-up.
      this.resume = () => resume(Effect.yieldNow)
      this.waitMode = mode
      return Effect.sync(() => {
        this.resume = undefined
        this.waitMode = undefined
      })
    })

  private readonly afterWake = (mode: "exit" | "return"): Effect.Effect<WaitResult> => {
    if (this.dead) {
      return mode === "exit"
        ? Effect.interrupt
        : Effect.succeed({ latchSet: this.isSet, timeout: false, postmasterDeath: true })
    }
    return Effect.succeed(this.isSet ? resultLatch : { latchSet: false, timeout: false, postmasterDeath: false })
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
        (woken) => Option.isNone(woken) ? Effect.succeed(resultTimeout) : this.afterWake(mode)
      )
    })
  }
}
