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
import type * as Tracer from "effect/Tracer"
import type { BackendState } from "../Activity.ts"
import type * as BackgroundWorker from "../BackgroundWorker.ts"
import type { WaitOptions, WaitResult } from "../ProcLatch.ts"
import type { WorkerHandle } from "../WorkerHandle.ts"
import { LatchImpl } from "./latch.ts"
import type { TypeMetrics } from "./metrics.ts"

/**
 * Why the supervisor itself ends an incarnation (`SIGKILL`/`SIGQUIT` from the postmaster in PostgreSQL): a
 * crash restart of every worker, a shutdown, or postmaster death.
 */
export type KillReason = "crash restart" | "shutdown" | "death"

/**
 * What the supervisor asked of an incarnation before its fiber ended: a terminate request it honoured
 * (`die()`), or a kill. `undefined` while nobody asked it to end. Read once, by the exit's classification
 * (see `IncarnationEnd` in internal/postmaster/incarnation.ts).
 */
export type EndRequest = "terminate" | KillReason

/** What a `Proc` needs from its supervisor. */
export interface ProcHost {
  readonly clock: Clock.Clock
  /** Called after any change of a column of the activity view. */
  activityChanged(proc: Proc): void
  /** Registers a wait event name (idempotent); returns an error message when the name is not acceptable. */
  registerWaitEvent(name: string): string | undefined
}

/** What an incarnation is started with: its registration's fields, copied once. */
export interface ProcOptions {
  /** The supervisor's number for this incarnation (its pid until a database session opens). */
  readonly incarnation: number
  readonly handle: WorkerHandle
  readonly origin: "static" | "dynamic"
  readonly extra: Uint8Array | undefined
  readonly encodedArgument: unknown
  readonly definition: BackgroundWorker.Any
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
  /** Written only by {@link requestEnd}. */
  endRequest: EndRequest | undefined = undefined
  fiber: Fiber.Fiber<void, unknown> | undefined = undefined
  /** Interrupts the fiber if a terminate request is not honoured in time. */
  forceTimer: Fiber.Fiber<void> | undefined = undefined
  /** Its worker type's metrics, when the supervisor keeps metrics. */
  metrics: TypeMetrics | undefined = undefined
  /** Its span (internal/tracing.ts), when the supervisor traces and a tracer records spans. */
  span: Tracer.Span | undefined = undefined

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
  constructor(host: ProcHost, options: ProcOptions) {
    this.host = host
    this.name = options.definition.name
    this.type = options.definition.type
    this.incarnation = options.incarnation
    this.handle = options.handle
    this.origin = options.origin
    this.extra = options.extra
    this.encodedArgument = options.encodedArgument
    this.definition = options.definition
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
   * A terminate request (`die()`): flag first, then the latch and every other wait. The latch waiter resumes
   * through the scheduler, never inside the caller.
   */
  requestTerminate(): void {
    this.terminatePending = true
    this.latch.wake()
    this.notifyInterrupt()
  }

  /**
   * {@link requestTerminate} for a caller whose last act this is: the latch waiter resumes at once (see
   * `LatchImpl.setDirectUnsafe`).
   */
  requestTerminateDirect(): void {
    this.terminatePending = true
    this.latch.wakeDirect()
    this.notifyInterrupt()
  }

  /**
   * Records why the supervisor ends this incarnation; its exit is classified with it. A crash restart or a
   * shutdown replaces an earlier request (they decide what comes next for the registration); a terminate
   * request or postmaster death only fills in when nothing was asked yet.
   */
  requestEnd(reason: EndRequest): void {
    if (reason === "crash restart" || reason === "shutdown" || this.endRequest === undefined) this.endRequest = reason
  }

  /**
   * Postmaster death, as this incarnation sees it (`WL_POSTMASTER_DEATH`). A wait that asked to return on
   * postmaster death is woken and returns `postmasterDeath: true`: the worker ends on its own, and the caller
   * bounds that (`"returns"`). Any other incarnation is interrupted at once (`"interrupted"`). Only the
   * supervisor calls it, once per incarnation, when it dies.
   */
  postmasterDied(): "returns" | "interrupted" {
    this.requestEnd("death")
    const returns = this.latch.waitMode === "return"
    this.latch.postmasterDiedUnsafe()
    if (returns) {
      this.notifyInterrupt()
      return "returns"
    }
    this.fiber!.interruptUnsafe()
    return "interrupted"
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
export const endNow = (proc: Proc, reason: "terminate" | "death"): Effect.Effect<never> =>
  Effect.suspend(() => {
    proc.requestEnd(reason)
    return Effect.interrupt
  })

/**
 * Shows `type`/`name` as the worker's wait event while `effect` runs (`pgstat_report_wait_start` ...
 * `pgstat_report_wait_end`), and clears it however `effect` ends.
 */
export const withWaitEvent = <A, E, R>(
  proc: Proc,
  type: string,
  name: string,
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.ensuring(
    Effect.andThen(Effect.sync(() => proc.setWaitEvent(type, name)), effect),
    Effect.sync(() => proc.setWaitEvent(null, null))
  )

/** `CHECK_FOR_INTERRUPTS()`. */
export const checkInterrupts = (proc: Proc): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (proc.terminateDue) return endNow(proc, "terminate")
    if (proc.latch.postmasterDead) return endNow(proc, "death")
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
    const waited = event === undefined ? wait : withWaitEvent(proc, "Extension", event, wait)
    const metrics = proc.metrics
    const since = metrics === undefined ? 0 : proc.host.clock.currentTimeMillisUnsafe()
    return Effect.flatMap(waited, (result) => {
      if (metrics !== undefined) {
        metrics.latchWait.observeMillis(proc.host.clock.currentTimeMillisUnsafe() - since)
      }
      return proc.terminateDue ? endNow(proc, "terminate") : Effect.succeed(result)
    })
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
