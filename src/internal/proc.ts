/**
 * One incarnation of a worker, as the worker sees it (PostgreSQL's `PGPROC` plus the interrupt flags
 * of miscadmin.h and the backend's `PgBackendStatus`).
 *
 * A `Proc` is created when the supervisor starts a worker and dropped when that incarnation ends; a restart
 * makes a new one with a new pid. It is the `CurrentWorker` service of that incarnation.
 *
 * Two numbers: `incarnation`, the supervisor's own counter, and `pid`, which is the incarnation until a
 * database worker's session opens and the backend pid of that session from then on (a PostgreSQL
 * background worker's pid is its backend's). A database worker does not count as started before that.
 *
 * Interrupt protocol (as `die()` and `SignalHandlerForConfigReload` do): a requester sets a flag, then sets
 * the latch. The worker acts on the flag at its next wait or `Interrupts.check`. `holdCount > 0` (inside
 * `Interrupts.holdInterrupts`) defers a terminate request until the region ends.
 *
 * @internal
 */
import type * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import type { BackendState } from "../Activity.ts"
import type * as BackgroundWorker from "../BackgroundWorker.ts"
import type { WaitOptions, WaitResult } from "../ProcLatch.ts"
import type { WorkerHandle } from "../WorkerHandle.ts"
import { LatchImpl } from "./latch.ts"

/** Why the supervisor ended an incarnation; `undefined` when it ended on its own. */
export type EndReason = "terminate" | "crash" | "shutdown" | "death"

/** What a `Proc` needs from its supervisor. */
export interface ProcHost {
  readonly clock: Clock.Clock
  /** Called after any change of a column of the activity view. */
  activityChanged(proc: Proc): void
  /** Registers a wait event name (idempotent); returns an error message when the name is not acceptable. */
  registerWaitEvent(name: string): string | undefined
}

const maxWaitEventLength = 63

export class Proc implements BackgroundWorker.WorkerInfo {
  readonly latch = new LatchImpl()
  state: BackendState = "starting"
  query = ""
  readonly backendStart: number
  stateChange: number
  waitEventType: string | null = null
  waitEvent: string | null = null
  /** Depth of `Spi.transaction` brackets: decides between `idle` and `idle in transaction`. */
  transactionDepth = 0
  reloadPending = false
  terminatePending = false
  holdCount = 0
  endReason: EndReason | undefined = undefined
  fiber: Fiber.Fiber<void, unknown> | undefined = undefined
  /** Interrupts the fiber if a terminate request is not honoured in time. */
  forceTimer: Fiber.Fiber<void> | undefined = undefined

  readonly host: ProcHost
  readonly name: string
  readonly type: string
  /** The supervisor's number for this incarnation: never reused, never changes. */
  readonly incarnation: number
  /** The server's pid of the worker's own session, once it is open. */
  backendPid: number | undefined = undefined
  /** A database worker whose session is not open yet: not started, as its status and view say. */
  awaitingSession = false
  readonly handle: WorkerHandle
  readonly origin: "static" | "dynamic"
  readonly extra: Uint8Array | undefined
  readonly encodedArgument: unknown
  readonly definition: BackgroundWorker.Any
  constructor(
    host: ProcHost,
    name: string,
    type: string,
    incarnation: number,
    handle: WorkerHandle,
    origin: "static" | "dynamic",
    extra: Uint8Array | undefined,
    encodedArgument: unknown,
    definition: BackgroundWorker.Any
  ) {
    this.host = host
    this.name = name
    this.type = type
    this.incarnation = incarnation
    this.handle = handle
    this.origin = origin
    this.extra = extra
    this.encodedArgument = encodedArgument
    this.definition = definition
    this.backendStart = host.clock.currentTimeMillisUnsafe()
    this.stateChange = this.backendStart
  }

  /** The worker's pid: its session's backend pid once it has one, else its incarnation number. */
  get pid(): number {
    return this.backendPid ?? this.incarnation
  }

  report(state: BackendState, query: string | undefined): void {
    if (state !== this.state) {
      this.state = state
      this.stateChange = this.host.clock.currentTimeMillisUnsafe()
    }
    if (query !== undefined) this.query = query
    this.host.activityChanged(this)
  }

  setWaitEvent(type: string | null, name: string | null): void {
    this.waitEventType = type
    this.waitEvent = name
    this.host.activityChanged(this)
  }

  /**
   * Waits other than the latch's (a blocked `Mq` operation, for instance) register here to be woken by a
   * terminate request or by postmaster death, so they can end the worker at once.
   */
  interruptListeners: Set<() => void> | undefined = undefined

  /**
   * A terminate request (`die()`): flag first, then the latch and every other wait. `direct` resumes a
   * latch waiter at once; only for callers whose last act this is (see `LatchImpl.setDirectUnsafe`).
   */
  requestTerminate(direct = false): void {
    this.terminatePending = true
    if (direct) this.latch.wakeDirect()
    else this.latch.wake()
    this.notifyInterrupt()
  }

  /** Postmaster death, as this incarnation sees it. */
  kill(): void {
    this.latch.killUnsafe()
    this.notifyInterrupt()
  }

  notifyInterrupt(): void {
    if (this.interruptListeners === undefined) return
    for (const listener of Array.from(this.interruptListeners)) listener()
  }

  addInterruptListener(listener: () => void): void {
    ;(this.interruptListeners ??= new Set()).add(listener)
  }

  /** A reload request (`SignalHandlerForConfigReload`): flag first, then the latch. */
  requestReload(): void {
    this.reloadPending = true
    this.latch.setUnsafe()
  }

  get terminateDue(): boolean {
    return this.terminatePending && this.holdCount === 0
  }
}

/** @internal */
export const procOf = (worker: BackgroundWorker.WorkerInfo): Proc => {
  if (worker instanceof Proc) return worker
  throw new Error("CurrentWorker was not provided by a supervisor")
}

/** Ends the current incarnation as the supervisor asked (the worker's finalizers run). */
export const endNow = (proc: Proc, reason: EndReason): Effect.Effect<never> =>
  Effect.suspend(() => {
    proc.endReason ??= reason
    return Effect.interrupt
  })

/** `CHECK_FOR_INTERRUPTS()`. */
export const checkInterrupts = (proc: Proc): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (proc.terminateDue) return endNow(proc, "terminate")
    if (proc.latch.dead) return endNow(proc, "death")
    return Effect.void
  })

/** `WaitLatch(MyLatch, ...)` with the worker's interrupts and wait event. */
export const waitLatch = (proc: Proc, options: WaitOptions): Effect.Effect<WaitResult> =>
  Effect.suspend(() => {
    if (proc.terminateDue) return endNow(proc, "terminate")
    const event = options.waitEvent
    if (event !== undefined) {
      const problem = event.length > maxWaitEventLength
        ? `wait event name "${event}" is longer than ${maxWaitEventLength} characters`
        : proc.host.registerWaitEvent(event)
      if (problem !== undefined) return Effect.die(new Error(problem))
    }
    const wait = proc.latch.wait(options)
    const waited = event === undefined ? wait : Effect.ensuring(
      Effect.andThen(Effect.sync(() => proc.setWaitEvent("Extension", event)), wait),
      Effect.sync(() => proc.setWaitEvent(null, null))
    )
    return Effect.flatMap(waited, (result) => proc.terminateDue ? endNow(proc, "terminate") : Effect.succeed(result))
  })

/** `HOLD_INTERRUPTS()` ... `RESUME_INTERRUPTS()`: uninterruptible, and terminate requests wait for the end. */
export const holdInterrupts = <A, E, R>(proc: Proc, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.andThen(
    Effect.uninterruptible(
      Effect.ensuring(
        Effect.andThen(Effect.sync(() => proc.holdCount++), effect),
        Effect.sync(() => proc.holdCount--)
      )
    ),
    (a) => Effect.as(checkInterrupts(proc), a)
  )
