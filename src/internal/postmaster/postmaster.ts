/**
 * The postmaster's core: the supervisor's state, its transitions, and the one place that decides what an
 * incarnation's end means (`CleanupBackgroundWorker`). Each PostgreSQL concept lives in a file of its own
 * next to this one; a worker's life reads in this order:
 *
 * - main.ts: the start sequence (`PostmasterMain`).
 * - registration.ts: a registered worker, its checks, the registration paths (`RegisteredBgWorker`,
 *   `RegisterDynamicBackgroundWorker`).
 * - slots.ts: the slot table, what a handle reports, the waits on a handle (`BackgroundWorkerSlot`,
 *   `GetBackgroundWorkerPid`, `WaitForBackgroundWorkerStartup/Shutdown`).
 * - incarnation.ts: one start and one end (`IncarnationEnd`), requests to a running worker
 *   (`do_start_bgworker`, `TerminateBackgroundWorker`).
 * - restart.ts: what follows an end, restart schedules, the crash restart (`CleanupBackgroundWorker`,
 *   `HandleChildCrash`).
 * - shmemState.ts: shared state, created at start and after each crash restart
 *   (`CreateSharedMemoryAndSemaphores`).
 * - activityFeed.ts: the activity view and its change stream (`pg_stat_activity`, `pg_wait_events`).
 * - shutdown.ts: the shutdown modes, abandoning what does not end, postmaster death (`pmdie`).
 *
 * Protocol essay (the part of bgworker.c's slot comment that matters here):
 *
 * - All state is mutated in synchronous blocks (an `Effect.sync`, a fiber observer). JavaScript never
 *   preempts a synchronous block, so each block is atomic with respect to every fiber: no locks.
 * - A slot holds at most one `RegisteredWorker`. Its `generation` is bumped each time a slot is taken, so a
 *   handle `{slot, generation}` knows whether it still names the registration it was given.
 * - A running registration has exactly one incarnation, a `Proc`, whose fiber is a root fiber started with
 *   the worker's own context. Its exit is seen synchronously by a fiber observer, classified once as an
 *   `IncarnationEnd` and handed to {@link Postmaster.incarnationEnded}, the only writer of a registration's
 *   last exit, which derives the log line, the activity row and what comes next from it.
 * - A transition (a start, an exit, a crash restart, a shutdown, ...) often runs other fibers synchronously:
 *   interrupting a worker runs its finalizers and its exit observer at once, and resuming a waiter runs its
 *   continuation at once. So no waiter is resumed inside a transition: status notifications, activity events
 *   and the completion of shutdown and termination waits go to an outbox (`post`), delivered when the
 *   outermost transition ends (`begin`/`end`). A waiter that reacts (registers a replacement, shuts down)
 *   always finds a finished state: `recovering` with every crashed incarnation recorded, or `running` with the
 *   new fiber recorded.
 * - Wherever PostgreSQL would SIGKILL (a crash restart, a shutdown's forced stop, postmaster death), the
 *   waits for interrupted workers and for shared-state finalizers are bounded by `abandonTimeout`. A fiber
 *   that outlives it is abandoned: logged by name, taken out of the registration (which moves on), and left
 *   to end whenever it does; its exit observer then only drops it from `abandoned`.
 * - A registration waiting for its restart keeps its slot, and owns one timer fiber. A registration is
 *   forgotten (slot freed, waiters told `Stopped`) on success, on any exit of a never-restart worker, on
 *   terminate, at shutdown, and for never-restart workers at a crash restart.
 * - Postmaster death is the close of the supervisor's scope (shutdown.ts).
 *
 * The concept files never import a value from this file, and import each other's values only along the
 * reading order above (slots.ts builds registrations, shutdown.ts tells the slots' listeners): every step
 * back (a restart that starts a worker, a crash restart that waits for abandoned ones, a crash that kills the
 * supervisor) goes through a method of the core, and the core alone decides what follows an end.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as References from "effect/References"
import type * as Stream from "effect/Stream"
import type * as Tracer from "effect/Tracer"
import type { ActivityEvent, ActivityRow, LastExit, WaitEventInfo } from "../../Activity.ts"
import * as BackgroundWorker from "../../BackgroundWorker.ts"
import type * as DatabaseState from "../../DatabaseState.ts"
import type { ShmemStruct } from "../../Shmem.ts"
import type { LaunchRequest, ShutdownMode, SupervisorApi, SupervisorState, WorkerSignal } from "../../Supervisor.ts"
import type * as Errors from "../../SupervisorError.ts"
import * as Handle from "../../WorkerHandle.ts"
import { withResolvedReferences } from "../fiberContext.ts"
import { type ExitOutcome, SupervisorMetrics, type WorkerState } from "../metrics.ts"
import type { Proc, ProcHost } from "../proc.ts"
import { SpanClock, tracerOf } from "../tracing.ts"
import { ActivityFeed } from "./activityFeed.ts"
import * as Incarnation from "./incarnation.ts"
import type { IncarnationEnd } from "./incarnation.ts"
import * as Registration from "./registration.ts"
import type { RegisteredWorker } from "./registration.ts"
import * as Restart from "./restart.ts"
import type { CrashedError } from "./restart.ts"
import { SharedState } from "./shmemState.ts"
import * as Shutdown from "./shutdown.ts"
import * as Slots from "./slots.ts"

/** The supervisor's settings, resolved by the start sequence (main.ts); the functions are read at each use. */
export interface Options {
  readonly maxWorkerProcesses: number
  /** Read at every crash: a reloadable setting. */
  readonly restartAfterCrash: () => boolean
  readonly shutdownTimeout: () => Duration.Duration
  readonly terminateTimeout: () => Duration.Duration
  /** How long an interrupted worker, or a shared-state struct's finalizers, may take before being abandoned. */
  readonly abandonTimeout: () => Duration.Duration
  /** Runs first in every reload (the configuration's re-read). */
  readonly beforeReload: Effect.Effect<void>
  readonly entryPoints: ReadonlyMap<string, BackgroundWorker.Any>
  readonly shmem: ReadonlyArray<ShmemStruct<any>>
  /** Whether the supervisor keeps its metrics (`Supervisor.Options.metrics`). */
  readonly metrics: boolean
  /** Whether the supervisor makes spans when a tracer records them (`Supervisor.Options.tracing`). */
  readonly tracing: boolean
}

const outcomes: Record<IncarnationEnd["_tag"], ExitOutcome> = {
  Done: "done",
  Failed: "failed",
  Crashed: "crashed",
  Killed: "killed",
  Abandoned: "abandoned"
}

export class Postmaster implements SupervisorApi, ProcHost {
  readonly options: Options
  /** The supervisor's own services: every worker runs with them, under its registrant's. */
  readonly context: Context.Context<never>
  readonly clock: Clock.Clock
  /** The incarnation spans' times (internal/tracing.ts). */
  readonly spanClock: SpanClock
  state: SupervisorState = "starting"
  /** The start gates' input (`pmState` as `bgworker_should_start_now` reads it). */
  databaseState: DatabaseState.State = "ready"
  readonly slots: Slots.SlotTable
  readonly feed = new ActivityFeed((notification) => this.post(notification))
  readonly sharedState: SharedState
  /** Definitions already checked (definitions are immutable values: checking one once is enough). */
  readonly checkedDefinitions = new WeakSet<BackgroundWorker.Any>()
  nextIncarnation = 1
  /** Incarnations whose fiber runs (bound at the fiber's first step, dropped at its exit or when abandoned). */
  readonly live = new Set<Proc>()
  /**
   * Incarnations given up on whose fiber still runs (the registration has moved on: their end changes
   * nothing). A set rather than a flag on `Proc`, which every idle worker would pay for.
   */
  readonly abandoned = new Set<Proc>()
  /** The supervisor's own fibers: restart timers, terminate timers, a crash restart's and a shutdown's work. */
  readonly supervisorFibers = new Set<Fiber.Fiber<unknown, unknown>>()
  /** Completed when a smart or fast shutdown in progress has finished (shutdown.ts). */
  shutdownDone: Deferred.Deferred<void> | undefined = undefined
  readonly terminated = Deferred.makeUnsafe<void, Errors.SupervisorError | CrashedError>()
  /** Completed once a death has finished: every fiber ended, shared state released. */
  readonly deathDone = Deferred.makeUnsafe<void>()
  /** Transitions in progress (nested ones count): notifications wait in `outbox` until it is back to 0. */
  private depth = 0
  private readonly outbox: Array<() => void> = []
  private readonly minimumLogLevel: LogLevel.LogLevel
  private readonly mergedContexts = new WeakMap<Context.Context<never>, Context.Context<never>>()
  private readonly tracers = new WeakMap<Context.Context<never>, { readonly tracer: Tracer.Tracer | undefined }>()
  private lastTracerContext: Context.Context<never> | undefined = undefined
  private lastTracer: Tracer.Tracer | undefined = undefined
  /** The metrics, unless `Options.metrics` is off (then every update site is one `undefined` test). */
  readonly metrics: SupervisorMetrics | undefined

  constructor(options: Options, context: Context.Context<never>) {
    this.options = options
    this.context = context
    this.clock = Context.get(context, Clock.Clock)
    this.spanClock = new SpanClock(this.clock)
    this.minimumLogLevel = Context.get(context, References.MinimumLogLevel)
    this.slots = new Slots.SlotTable(options.maxWorkerProcesses)
    this.sharedState = new SharedState(this)
    this.metrics = options.metrics
      ? new SupervisorMetrics(context, {
        maxWorkerProcesses: options.maxWorkerProcesses,
        count: (type, state) => this.countRegistrations(type, state)
      })
      : undefined
  }

  /** Registrations in use, of `type` and in `state` when given (the metrics' gauges, read at a scrape). */
  countRegistrations(type: string | undefined, state: WorkerState | undefined): number {
    let n = 0
    for (const registered of this.slots.registrations) {
      if (registered === undefined) continue
      if (type !== undefined && registered.definition.type !== type) continue
      if (state !== undefined && registered.phase !== state) continue
      n++
    }
    return n
  }

  readonly maxWorkerProcesses = (): number => this.options.maxWorkerProcesses

  // --- logging and the supervisor's own fibers ---

  /** Runs `effect` in a root fiber with the supervisor's context, outside any caller's fiber. */
  fork<A, E>(effect: Effect.Effect<A, E>): Fiber.Fiber<A, E> {
    return Effect.runForkWith(this.context)(effect)
  }

  logEnabled(level: LogLevel.Severity): boolean {
    return LogLevel.isGreaterThanOrEqualTo(level, this.minimumLogLevel)
  }

  /** Logs from synchronous code (a transition): in a fiber of its own, only when `level` is enabled. */
  log(level: LogLevel.Severity, message: string, annotations?: Record<string, unknown>): void {
    if (!this.logEnabled(level)) return
    this.fork(Effect.annotateLogs(Effect.logWithLevel(level)(message), {
      module: "effect-bgworker/Supervisor",
      ...annotations
    }))
  }

  /**
   * Forks one of the supervisor's own fibers (a timer, a crash restart's or a shutdown's work), counted in
   * `supervisorFibers` until it ends; postmaster death interrupts them all. `onEnd` runs when it ends.
   */
  forkSupervisorFiber(effect: Effect.Effect<void>, onEnd?: (fiber: Fiber.Fiber<void>) => void): Fiber.Fiber<void> {
    const fiber = this.fork(effect)
    if (fiber.pollUnsafe() === undefined) {
      this.supervisorFibers.add(fiber)
      fiber.addObserver(() => {
        this.supervisorFibers.delete(fiber)
        onEnd?.(fiber)
      })
    }
    return fiber
  }

  // --- transitions and their notifications ---

  /** Starts a transition: until the matching `end`, notifications wait in the outbox. */
  begin(): void {
    this.depth++
  }

  /** Ends a transition; the outermost one delivers what its transitions posted, in order. */
  end(): void {
    if (--this.depth === 0 && this.outbox.length > 0) this.flush()
  }

  /** Runs `f` as one transition (for the paths that are not hot; the hot ones inline `begin`/`end`). */
  transition(f: () => void): void {
    this.begin()
    try {
      f()
    } finally {
      this.end()
    }
  }

  /** Delivers `notification` (which may resume a waiter) now if no transition is in progress, else after it. */
  post(notification: () => void): void {
    if (this.depth === 0) notification()
    else this.outbox.push(notification)
  }

  private flush(): void {
    // A delivery resumes a waiter at once, and the waiter may start transitions of its own: the flush counts
    // as one, so their notifications queue behind and this loop delivers them in order.
    this.depth++
    try {
      for (let i = 0; i < this.outbox.length; i++) this.outbox[i]!()
    } finally {
      this.outbox.length = 0
      this.depth--
    }
  }

  // --- a registration's status ---

  statusOf(registered: RegisteredWorker | undefined, handle: Handle.WorkerHandle): Handle.WorkerStatus {
    return Slots.statusOf(this.state, registered, handle)
  }

  /** Publishes the registration's status as it is now; its listeners hear it once the transition is over. */
  changed(registered: RegisteredWorker): void {
    Slots.notifyListeners(this, registered)
    this.feed.updated(registered)
  }

  /** Frees the slot (`ForgetBackgroundWorker`); waiters see `Stopped`, and the listeners are detached. */
  forget(registered: RegisteredWorker): void {
    if (!this.slots.free(registered)) return
    if (registered.restartTimer !== undefined) registered.restartTimer.interruptUnsafe()
    registered.phase = "pending"
    Slots.notifyListenersForgotten(this, registered)
    this.feed.removed(registered)
  }

  // --- starts ---

  /** Starts the registration if it waits (`pending`) and its gate is open. */
  tryStart(registered: RegisteredWorker): void {
    Incarnation.tryStart(this, registered)
  }

  /** `maybe_start_bgworkers`: starts every registration whose gate is open. */
  startPending(): void {
    this.transition(() => {
      for (const registered of this.slots.registrations) if (registered !== undefined) this.tryStart(registered)
    })
  }

  /** `PM_RUN`: start everything whose gate is open. */
  enterRunning(): void {
    this.state = "running"
    this.startPending()
  }

  setDatabaseState(state: DatabaseState.State): void {
    this.databaseState = state
    if (this.state === "running") this.startPending()
  }

  // --- ends: CleanupBackgroundWorker ---

  /**
   * What an incarnation's end means for its registration, and for the others: the only writer of
   * `lastExit`. From `end` come the activity row's last exit, the log line, and the next step (restart,
   * forget, crash restart, ...). Called inside a transition, by the incarnation's exit observer and when an
   * incarnation is abandoned. `exit` is the fiber's, when it has ended (its span reports it).
   */
  incarnationEnded(
    registered: RegisteredWorker,
    proc: Proc,
    end: IncarnationEnd,
    exit?: Exit.Exit<unknown, unknown>
  ): void {
    if (registered.proc === proc) registered.proc = undefined
    const lastExit = Incarnation.lastExitOf(end, this.clock.currentTimeMillisUnsafe(), proc.query)
    registered.lastExit = lastExit
    proc.metrics?.exited(outcomes[end._tag])
    if (proc.span !== undefined) {
      Incarnation.endSpan(this, registered, proc, end, exit, outcomes[end._tag], lastExit)
    }
    const next = Restart.afterEnd(end, registered, this.state)
    if (next === "postmaster dead") {
      registered.phase = "pending"
      return
    }
    Incarnation.logEnd(this, registered, proc, end)
    switch (next) {
      case "stay registered": {
        // Ended by a crash restart or a shutdown: those paths decide what comes next.
        registered.phase = "pending"
        return this.changed(registered)
      }
      case "forget":
        return this.forget(registered)
      case "crash restart": {
        registered.phase = "pending"
        this.changed(registered) // waiters see Stopped (after the transition) before the crash restart brings it back
        return Restart.crashRestart(this, registered)
      }
      case "crash during shutdown": {
        this.forget(registered)
        return Restart.crashDuringShutdown(this, registered)
      }
      case "restart":
        return Restart.scheduleRestart(this, registered, proc, (end as Incarnation.Failed).failure)
    }
  }

  // --- what every incarnation asks of its host (ProcHost) ---

  activityChanged(proc: Proc): void {
    if (!this.feed.watched()) return
    const registered = this.slots.registrations[proc.handle.slot]
    if (registered !== undefined && registered.proc === proc) this.feed.updated(registered)
  }

  registerWaitEvent(name: string): string | undefined {
    return this.feed.registerWaitEvent(name)
  }

  /**
   * The supervisor's context with a registrant's on top, and the references a fiber reads at its start
   * resolved into it (internal/fiberContext.ts: a traced incarnation's fiber starts in a new cache root),
   * cached per registrant context (usually one).
   */
  workerContext(registrant: Context.Context<never>): Context.Context<never> {
    let merged = this.mergedContexts.get(registrant)
    if (merged === undefined) {
      merged = withResolvedReferences(
        registrant === this.context ? registrant : Context.merge(this.context, registrant)
      )
      this.mergedContexts.set(registrant, merged)
    }
    return merged
  }

  /**
   * The tracer the incarnations of a registration made in `context` report their spans to, or `undefined`
   * (tracing off, or no tracer recording spans): looked up once per registrant context, and the last one
   * answered without a lookup (most registrations come from one context; it stays referenced until another's).
   */
  tracerFor(context: Context.Context<never>): Tracer.Tracer | undefined {
    if (context === this.lastTracerContext) return this.lastTracer
    let found = this.tracers.get(context)
    if (found === undefined) {
      found = { tracer: this.options.tracing ? tracerOf(context) : undefined }
      this.tracers.set(context, found)
    }
    this.lastTracerContext = context
    this.lastTracer = found.tracer
    return found.tracer
  }

  // --- abandoning and death (shutdown.ts) ---

  isAbandoned(proc: Proc): boolean {
    return this.abandoned.size > 0 && this.abandoned.has(proc)
  }

  /** Waits for interrupted incarnations to end, at most `abandonTimeout`, then abandons the rest. */
  awaitOrAbandon(procs: ReadonlyArray<Proc>, after: string): Effect.Effect<void> {
    return Shutdown.awaitOrAbandon(this, procs, after)
  }

  /** Postmaster death (see shutdown.ts). `error`: how `awaitTermination` fails. */
  die(error?: CrashedError | Errors.SupervisorError): Effect.Effect<void> {
    return Shutdown.die(this, error)
  }

  // --- the service (SupervisorApi) ---

  register(
    definition: BackgroundWorker.Any,
    argument: unknown,
    options: { readonly extra?: Uint8Array | undefined } | undefined,
    context: Context.Context<never>
  ): Effect.Effect<Handle.WorkerHandle, Errors.SupervisorError> {
    // Refusals counted where they are made (Registration.Refused): no wrapper for the accepted ones to pay.
    return Registration.register(
      this,
      definition,
      argument,
      options,
      context,
      Registration.countedFor(this, definition.type)
    )
  }

  launch(request: LaunchRequest): Effect.Effect<Handle.WorkerHandle, Errors.SupervisorError> {
    const launching = Registration.launch(this, request)
    if (this.metrics === undefined) return launching
    const type = request.type ?? this.options.entryPoints.get(BackgroundWorker.entryPointKey(request))?.type ??
      `${request.library}.${request.function}`
    return this.countLaunch(launching, type)
  }

  /** Counts a refused registration or launch by its `SupervisorError` reason (an accepted one is counted at its allocation). */
  private countLaunch(
    effect: Effect.Effect<Handle.WorkerHandle, Errors.SupervisorError>,
    type: string
  ): Effect.Effect<Handle.WorkerHandle, Errors.SupervisorError> {
    return Effect.tapError(
      effect,
      (error) => Effect.sync(() => this.metrics!.forType(type).refusedFor(error.reason._tag))
    )
  }

  status(handle: Handle.WorkerHandle): Effect.Effect<Handle.WorkerStatus> {
    return Effect.sync(() => this.statusOf(this.slots.registrations[handle.slot], handle))
  }

  lastExit(handle: Handle.WorkerHandle): Effect.Effect<Option.Option<LastExit>> {
    return Effect.sync(() => Option.fromNullishOr(this.slots.lastExit(handle)))
  }

  info(handle: Handle.WorkerHandle): Effect.Effect<Option.Option<ActivityRow>> {
    return Effect.sync(() => {
      const registered = this.slots.lookup(handle)
      return registered === undefined ? Option.none() : Option.some(this.feed.row(registered))
    })
  }

  awaitStartup(handle: Handle.WorkerHandle): Effect.Effect<Handle.WorkerStatus> {
    return Slots.awaitStatus(this, handle, (s) => s._tag !== "NotYetStarted", "BgWorkerStartup")
  }

  awaitShutdown(handle: Handle.WorkerHandle): Effect.Effect<Handle.WorkerStatus> {
    const stopped = (s: Handle.WorkerStatus) => s._tag === "Stopped" || s._tag === "PostmasterDied"
    return Slots.awaitStatus(this, handle, stopped, "BgWorkerShutdown")
  }

  changes(handle: Handle.WorkerHandle): Stream.Stream<Handle.WorkerStatus> {
    return Slots.statusChanges(this, handle)
  }

  terminate(handle: Handle.WorkerHandle): Effect.Effect<void> {
    return Incarnation.terminate(this, handle)
  }

  signal(handle: Handle.WorkerHandle, signal: WorkerSignal): Effect.Effect<void> {
    return Incarnation.signal(this, handle, signal)
  }

  setLatch(handle: Handle.WorkerHandle): Effect.Effect<void> {
    // The set is this effect's last act, so the worker may resume at once (see LatchImpl.setDirectUnsafe).
    return Effect.sync(() => this.slots.lookup(handle)?.proc?.latch.setDirectUnsafe())
  }

  readonly reload: Effect.Effect<void> = Effect.suspend(() => Incarnation.reload(this))

  shutdown(mode: ShutdownMode): Effect.Effect<void> {
    return Shutdown.shutdown(this, mode)
  }

  readonly awaitTermination: Effect.Effect<void, Errors.SupervisorError | CrashedError> = Deferred.await(
    this.terminated
  )

  readonly currentState: Effect.Effect<SupervisorState> = Effect.sync(() => this.state)

  readonly activity: Effect.Effect<ReadonlyArray<ActivityRow>> = Effect.sync(() => {
    const rows: Array<ActivityRow> = []
    for (const registered of this.slots.registrations) {
      if (registered !== undefined) rows.push(this.feed.row(registered))
    }
    return rows
  })

  readonly activityChanges: Stream.Stream<ActivityEvent> = this.feed.changes(() => this.state === "dead")

  readonly waitEvents: Effect.Effect<ReadonlyArray<WaitEventInfo>> = Effect.sync(() => this.feed.waitEventCatalogue())

  /**
   * Not part of the public service since 0.2.0 (a test hook): read it with {@link liveFibers} from this
   * module. The method stays on the implementation for 0.1 callers at run time.
   */
  liveFibers(): number {
    return this.live.size + this.supervisorFibers.size + this.abandoned.size + this.sharedState.abandonedTasks.size
  }
}

/**
 * Worker and supervisor fibers still alive: 0 once the supervisor's scope has closed, except for abandoned
 * workers and shared-state tasks (see `abandonTimeout`), which count until their fibers end. For leak
 * checks in tests; `0` for a `Supervisor` service that is not a postmaster (a stub).
 */
export const liveFibers = (supervisor: SupervisorApi): number =>
  supervisor instanceof Postmaster ? supervisor.liveFibers() : 0
