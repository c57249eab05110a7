/**
 * The postmaster: slot table, registrations, starts, exits, restarts, crash restart, shutdown and death.
 *
 * Protocol essay (the part of bgworker.c's slot comment that matters here):
 *
 * - All state is mutated in synchronous blocks (an `Effect.sync`, a fiber observer). JavaScript never
 *   preempts a synchronous block, so each block is atomic with respect to every fiber: no locks.
 * - A slot holds at most one `Reg` (registration). `Reg.generation` is bumped each time a slot is taken, so a
 *   handle `{slot, generation}` knows whether it still names the registration it was given.
 * - A running registration has exactly one incarnation, a `Proc`, whose fiber is a root fiber started with
 *   the worker's own context. Its exit is seen synchronously by a fiber observer (`onExit`), which decides,
 *   as `CleanupBackgroundWorker` does, between done, failed and crashed.
 * - A transition (a start, an exit, a crash restart, a shutdown, ...) often runs other fibers synchronously:
 *   interrupting a worker runs its finalizers and its `onExit` at once, and resuming a waiter runs its
 *   continuation at once. So no waiter is resumed inside a transition: status notifications, activity events
 *   and the completion of shutdown and termination waits go to an outbox (`post`), delivered when the
 *   outermost transition ends (`begin`/`end`). A waiter that reacts (registers a replacement, shuts down)
 *   always finds a finished state: `recovering` with every crashed incarnation recorded, or `running` with the
 *   new fiber recorded.
 * - Wherever PostgreSQL would SIGKILL (a crash restart, a shutdown's forced stop, postmaster death), the
 *   waits for interrupted workers and for shared-state finalizers are bounded by `abandonTimeout`. A fiber
 *   that outlives it is abandoned: logged by name, taken out of the registration (which moves on), and left
 *   to end whenever it does; its `onExit` then only drops it from `abandoned`.
 * - A registration waiting for its restart keeps its slot, and owns one timer fiber. A registration is
 *   forgotten (slot freed, waiters told `Stopped`) on success, on any exit of a never-restart worker, on
 *   terminate, at shutdown, and for never-restart workers at a crash restart.
 * - Postmaster death is the close of the supervisor's scope: `die()` below.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Pull from "effect/Pull"
import * as Queue from "effect/Queue"
import * as References from "effect/References"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { ActivityEvent, ActivityRow, LastExit, Registration, WaitEventInfo } from "../Activity.ts"
import * as BackgroundWorker from "../BackgroundWorker.ts"
import * as DatabaseState from "../DatabaseState.ts"
import type { ShmemApi, ShmemStruct } from "../Shmem.ts"
import type { LaunchRequest, ShutdownMode, SupervisorApi, SupervisorState, WorkerSignal } from "../Supervisor.ts"
import * as Errors from "../SupervisorError.ts"
import * as Handle from "../WorkerHandle.ts"
import { CurrentWorker, Preload, Shmem, Supervisor } from "./context.ts"
import { SessionInfo, SessionLost, WorkerConnector } from "../WorkerConnector.ts"
import { withRootCause } from "./causeChain.ts"
import { escape, escapeBounded } from "./logText.ts"
import { Proc, type ProcHost } from "./proc.ts"

type Phase = "pending" | "running" | "restartWait" | "givenUp"

type Listener = (status: Handle.WorkerStatus, final: boolean) => void

/** One registration of a slot (`RegisteredBgWorker` + `BackgroundWorkerSlot`). */
class Reg {
  phase: Phase = "pending"
  everStarted = false
  proc: Proc | undefined = undefined
  /** `TerminateBackgroundWorker` was called: forget it whatever the exit. */
  terminate = false
  restartCount = 0
  lastExit: LastExit | undefined = undefined
  nextRestartAt: number | undefined = undefined
  givenUpReason: string | undefined = undefined
  /** The database role of the worker's session: pinned at a launch for a caller, else resolved at each start. */
  role: string | undefined = undefined
  timer: Fiber.Fiber<void> | undefined = undefined
  step: ((now: number, input: BackgroundWorker.WorkerFailure) => Pull.Pull<[unknown, Duration.Duration], never, unknown>) | undefined =
    undefined
  restartTimes: Array<number> = []
  listeners: Set<Listener> | undefined = undefined
  readonly slot: number
  readonly generation: number
  readonly def: BackgroundWorker.Any
  readonly encodedArgument: unknown
  readonly extra: Uint8Array | undefined
  readonly context: Context.Context<never>
  readonly origin: "static" | "dynamic"
  readonly lazyEntryPoint: BackgroundWorker.EntryPointName | undefined
  constructor(
    slot: number,
    generation: number,
    def: BackgroundWorker.Any,
    encodedArgument: unknown,
    extra: Uint8Array | undefined,
    context: Context.Context<never>,
    origin: "static" | "dynamic",
    lazyEntryPoint: BackgroundWorker.EntryPointName | undefined
  ) {
    this.slot = slot
    this.generation = generation
    this.def = def
    this.encodedArgument = encodedArgument
    this.extra = extra
    this.context = context
    this.origin = origin
    this.lazyEntryPoint = lazyEntryPoint
}
  get handle(): Handle.WorkerHandle {
    return Handle.make(this.slot, this.generation)
  }
}

class StartupFailure extends Schema.TaggedError<StartupFailure>()("StartupFailure", { message: Schema.String }) {}

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
}

const finalStatus = (s: Handle.WorkerStatus) => s._tag === "PostmasterDied"

/** Unread statuses a `changes` stream holds before it conflates to the newest. */
const statusBuffer = 64

export class Postmaster implements SupervisorApi, ProcHost {
  readonly slots: Array<Reg | undefined>
  private readonly freeSlots: Array<number>
  private readonly validated = new WeakSet<BackgroundWorker.Any>()
  readonly generations: Array<number>
  readonly clock: Clock.Clock
  state: SupervisorState = "starting"
  dbState: DatabaseState.State = "ready"
  private nextPid = 1
  /** Incarnations whose fiber runs (bound at the fiber's first step, dropped by `onExit` or `abandon`). */
  private readonly live = new Set<Proc>()
  /**
   * Incarnations given up on whose fiber still runs (the registration has moved on: their end changes
   * nothing). A set rather than a flag on `Proc`, which every idle worker would pay for.
   */
  private readonly abandoned = new Set<Proc>()
  /** Shared-state finalizers and initialisers given up on (see `within`) whose fiber still runs. */
  private readonly abandonedTasks = new Set<Fiber.Fiber<unknown, unknown>>()
  private readonly timers = new Set<Fiber.Fiber<unknown, unknown>>()
  /** Transitions in progress (nested ones count): notifications wait in `outbox` until it is back to 0. */
  private depth = 0
  private readonly outbox: Array<() => void> = []
  /** The queues of open `activityChanges` streams: offered every event, ended at death. */
  private readonly activityListeners = new Set<Queue.Queue<ActivityEvent, Cause.Done>>()
  private readonly waitEventIds = new Map<string, number>()
  private shutdownDone: Deferred.Deferred<void> | undefined = undefined
  readonly terminated = Deferred.makeUnsafe<void, Errors.SupervisorError | CrashedError>()
  /** Completed once a death has finished: every fiber ended, shared state released. */
  private readonly deathDone = Deferred.makeUnsafe<void>()
  private shmemGeneration = 0
  /** The current generation's structs, each with its own scope, in creation order. */
  private shmemScopes: Array<{ readonly name: string; readonly scope: Scope.Closeable }> = []
  private shmemValues = new Map<string, Deferred.Deferred<unknown>>()
  private readonly logEnabled: (level: "Debug" | "Info" | "Warn" | "Error") => boolean

  readonly options: Options
  readonly context: Context.Context<never>
  constructor(
    options: Options,
    context: Context.Context<never>
  ) {
    this.options = options
    this.context = context
    this.slots = new Array(options.maxWorkerProcesses).fill(undefined)
    // Lowest slot first at the start; afterwards the most recently freed one.
    this.freeSlots = Array.from({ length: options.maxWorkerProcesses }, (_, i) => options.maxWorkerProcesses - 1 - i)
    this.generations = new Array(options.maxWorkerProcesses).fill(0)
    this.clock = Context.get(context, Clock.Clock)
    const minimum = Context.get(context, References.MinimumLogLevel)
    const order = ["All", "Trace", "Debug", "Info", "Warn", "Error", "Fatal", "None"]
    this.logEnabled = (level) => order.indexOf(level) >= order.indexOf(minimum)
  }

  readonly maxWorkerProcesses = (): number => this.options.maxWorkerProcesses

  // --- logging and forking outside any caller's fiber ---

  private fork<A, E>(effect: Effect.Effect<A, E>): Fiber.Fiber<A, E> {
    return Effect.runForkWith(this.context)(effect)
  }

  log(level: "Debug" | "Info" | "Warn" | "Error", message: string, annotations?: Record<string, unknown>): void {
    if (!this.logEnabled(level)) return
    const log = level === "Debug"
      ? Effect.logDebug(message)
      : level === "Info"
      ? Effect.logInfo(message)
      : level === "Warn"
      ? Effect.logWarning(message)
      : Effect.logError(message)
    this.fork(Effect.annotateLogs(log, { module: "effect-bgworker/Supervisor", ...annotations }))
  }

  private timer(reg: Reg | undefined, effect: Effect.Effect<void>): Fiber.Fiber<void> {
    const fiber = this.fork(effect)
    if (fiber.pollUnsafe() === undefined) {
      this.timers.add(fiber)
      fiber.addObserver(() => {
        this.timers.delete(fiber)
        if (reg !== undefined && reg.timer === fiber) reg.timer = undefined
      })
    }
    return fiber
  }

  /**
   * Runs `effect` (a scope's finalizers, a shared-state initialiser: uninterruptible) in a supervisor fiber
   * of its own, at once, and waits for its exit at most `timeout`. Unlike `Effect.timeoutOption`, which
   * waits for the interruption of what it gives up on, this leaves an effect that hangs running on its own:
   * abandoned, it leaves `timers` (death does not wait for it again) and counts in `liveFibers()` until it
   * ends. Until then it is one of the `timers`, so a death waits for it (boundedly) before releasing shared
   * state.
   */
  private within<A, E>(effect: Effect.Effect<A, E>, timeout: Duration.Duration): Effect.Effect<Option.Option<Exit.Exit<A, E>>> {
    return Effect.suspend(() => {
      const fiber = this.fork(effect)
      const exit = fiber.pollUnsafe()
      if (exit !== undefined) return Effect.succeed(Option.some(exit))
      this.timers.add(fiber)
      fiber.addObserver(() => this.timers.delete(fiber))
      return Effect.tap(Effect.timeoutOption(Fiber.await(fiber), timeout), (ended) =>
        Effect.sync(() => {
          if (Option.isSome(ended) || fiber.pollUnsafe() !== undefined) return
          this.timers.delete(fiber)
          this.abandonedTasks.add(fiber)
          fiber.addObserver(() => this.abandonedTasks.delete(fiber))
        }))
    })
  }

  // --- transitions and their notifications ---

  /** Starts a transition: until the matching `end`, notifications wait in the outbox. */
  private begin(): void {
    this.depth++
  }

  /** Ends a transition; the outermost one delivers what its transitions posted, in order. */
  private end(): void {
    if (--this.depth === 0 && this.outbox.length > 0) this.flush()
  }

  /** Runs `f` as one transition (for the paths that are not hot; the hot ones inline `begin`/`end`). */
  private transition(f: () => void): void {
    this.begin()
    try {
      f()
    } finally {
      this.end()
    }
  }

  /** Delivers `notification` (which may resume a waiter) now if no transition is in progress, else after it. */
  private post(notification: () => void): void {
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

  // --- status, listeners and activity ---

  statusOf(reg: Reg | undefined, handle: Handle.WorkerHandle): Handle.WorkerStatus {
    if (this.state === "dead") return Handle.PostmasterDied
    if (reg === undefined || reg.generation !== handle.generation) return Handle.Stopped
    if (reg.phase === "running") {
      // A database worker starts when its session opens: its pid is then the session's backend pid.
      return reg.proc!.awaitingSession ? Handle.NotYetStarted : Handle.Started(reg.proc!.pid)
    }
    if (reg.phase === "pending" && !reg.everStarted) return Handle.NotYetStarted
    return Handle.Stopped
  }

  private lookup(handle: Handle.WorkerHandle): Reg | undefined {
    const reg = this.slots[handle.slot]
    return reg !== undefined && reg.generation === handle.generation ? reg : undefined
  }

  /**
   * Publishes the registration's status as it is now; the listeners hear it once the transition is over.
   * `final`: the registration is forgotten, and its listeners are detached.
   */
  private changed(reg: Reg, final = false): void {
    if (reg.listeners !== undefined && reg.listeners.size > 0) {
      const status = final ? Handle.Stopped : this.statusOf(reg, reg.handle)
      const listeners = Array.from(reg.listeners)
      this.post(() => {
        for (const listener of listeners) listener(status, final)
      })
    }
    if (final) reg.listeners = undefined
    this.publish(reg, final)
  }

  private publish(reg: Reg, removed: boolean): void {
    if (this.activityListeners.size === 0) return
    const event: ActivityEvent = removed
      ? { _tag: "Removed", slot: reg.slot, generation: reg.generation, name: reg.def.name }
      : { _tag: "Updated", row: this.row(reg) }
    this.post(() => {
      for (const queue of this.activityListeners) Queue.offerUnsafe(queue, event)
    })
  }

  activityChanged(proc: Proc): void {
    if (this.activityListeners.size === 0) return
    const reg = this.slots[proc.handle.slot]
    if (reg !== undefined && reg.proc === proc) this.publish(reg, false)
  }

  registerWaitEvent(name: string): string | undefined {
    if (this.waitEventIds.has(name)) return undefined
    if (this.waitEventIds.size >= 128) return "too many custom wait events"
    this.waitEventIds.set(name, this.waitEventIds.size + 1)
    return undefined
  }

  /** The supervisor's context with a registrant's on top, cached per registrant context (usually one). */
  private workerContext(registrant: Context.Context<never>): Context.Context<never> {
    if (registrant === this.context) return registrant
    let merged = this.merged.get(registrant)
    if (merged === undefined) {
      merged = Context.merge(this.context, registrant)
      this.merged.set(registrant, merged)
    }
    return merged
  }
  private readonly merged = new WeakMap<Context.Context<never>, Context.Context<never>>()

  private row(reg: Reg): ActivityRow {
    const p = reg.phase === "running" ? reg.proc : undefined
    const registration: Registration = reg.phase === "running"
      ? "running"
      : reg.phase === "givenUp"
      ? "given up"
      : reg.phase === "restartWait" || reg.everStarted
      ? "waiting for restart"
      : "not yet started"
    return {
      slot: reg.slot,
      generation: reg.generation,
      pid: p === undefined || p.awaitingSession ? null : p.pid,
      incarnation: p?.incarnation ?? null,
      name: reg.def.name,
      backendType: reg.def.type,
      origin: reg.origin,
      registration,
      state: p?.state ?? null,
      query: p?.query ?? "",
      backendStart: p?.backendStart ?? null,
      stateChange: p?.stateChange ?? null,
      waitEventType: p?.waitEventType ?? null,
      waitEvent: p?.waitEvent ?? null,
      restartCount: reg.restartCount,
      lastExit: reg.lastExit ?? null,
      nextRestartAt: reg.nextRestartAt ?? null,
      givenUpReason: reg.givenUpReason ?? null,
      role: reg.role ?? reg.def.database?.user ?? null
    }
  }

  // --- registration ---

  private allocate(
    def: BackgroundWorker.Any,
    encodedArgument: unknown,
    extra: Uint8Array | undefined,
    context: Context.Context<never>,
    origin: "static" | "dynamic",
    lazyEntryPoint: BackgroundWorker.EntryPointName | undefined
  ): Reg | undefined {
    const slot = this.freeSlots.pop()
    if (slot === undefined) return undefined
    const generation = ++this.generations[slot]!
    const reg = new Reg(slot, generation, def, encodedArgument, extra, context, origin, lazyEntryPoint)
    this.slots[slot] = reg
    this.publish(reg, false)
    return reg
  }

  /** Checks a registration and encodes its argument; `Left` is the error. */
  prepare(
    def: BackgroundWorker.Any,
    argument: unknown,
    extra: Uint8Array | undefined
  ): Effect.Effect<unknown, Errors.SupervisorError> {
    if (!this.validated.has(def)) {
      const invalid = BackgroundWorker.check(def)
      if (invalid !== undefined) return Effect.fail(Errors.fail(invalid))
      this.validated.add(def) // definitions are immutable values: checking one once is enough
    }
    if (extra !== undefined && (!(extra instanceof Uint8Array) || extra.byteLength > BackgroundWorker.maxExtraBytes)) {
      return Effect.fail(Errors.fail(
        new Errors.InvalidDefinition({
          worker: def.name,
          field: "extra",
          detail: `must be a Uint8Array of at most ${BackgroundWorker.maxExtraBytes} bytes`
        })
      ))
    }
    if (def.argument === undefined) return Effect.succeed(undefined)
    return Schema.encodeUnknownEffect(def.argument)(argument).pipe(
      Effect.map((encoded) => structuredClone(encoded)),
      Effect.mapError((error) =>
        Errors.fail(new Errors.InvalidArgument({ worker: def.name, detail: error.message }))
      )
    ) as Effect.Effect<unknown, Errors.SupervisorError>
  }

  register(
    def: BackgroundWorker.Any,
    argument: unknown,
    options: { readonly extra?: Uint8Array | undefined } | undefined,
    context: Context.Context<never>
  ): Effect.Effect<Handle.WorkerHandle, Errors.SupervisorError> {
    return Effect.flatMap(
      this.prepare(def, argument, options?.extra),
      // The worker runs with the supervisor's services (its layer's: a connector, the GUC registry, ...) and,
      // on top, the registrant's (which satisfy the definition's own requirements).
      (encoded) => {
        const merged = this.workerContext(context)
        const missing = noConnector(def, merged)
        return missing !== undefined
          ? Effect.fail(Errors.fail(missing))
          : this.registerPrepared(def, encoded, options?.extra, merged, undefined)
      }
    )
  }

  private registerPrepared(
    def: BackgroundWorker.Any,
    encoded: unknown,
    extra: Uint8Array | undefined,
    context: Context.Context<never>,
    lazyEntryPoint: BackgroundWorker.EntryPointName | undefined
  ): Effect.Effect<Handle.WorkerHandle, Errors.SupervisorError> {
    return Effect.suspend(() => {
      if (this.state !== "running" && this.state !== "recovering" && this.state !== "starting") {
        return Effect.fail(Errors.fail(new Errors.ShuttingDown({ mode: this.state })))
      }
      this.begin()
      let reg: Reg | undefined
      try {
        reg = this.allocate(def, encoded, extra, context, "dynamic", lazyEntryPoint)
        if (reg !== undefined) this.tryStart(reg)
      } finally {
        this.end()
      }
      if (reg === undefined) {
        return Effect.fail(Errors.fail(
          new Errors.NoFreeSlot({
            maxWorkerProcesses: this.options.maxWorkerProcesses,
            hint: "Consider increasing maxWorkerProcesses, or terminate workers that are no longer needed."
          })
        ))
      }
      return Effect.succeed(reg.handle)
    })
  }

  launch(request: LaunchRequest): Effect.Effect<Handle.WorkerHandle, Errors.SupervisorError> {
    return Effect.suspend(() => {
      // Names from outside are logged and shown: escape their control characters once, here.
      const name = request.name === undefined ? undefined : escape(request.name)
      const type = request.type === undefined ? undefined : escape(request.type)
      const key = BackgroundWorker.entryPointKey(request)
      const entry = this.options.entryPoints.get(key)
      if (entry === undefined) {
        if (request.resolveAtStart !== true) {
          return Effect.fail(Errors.fail(
            new Errors.UnknownEntryPoint({
              library: escapeBounded(request.library),
              function: escapeBounded(request.function),
              hint: "Only entry points listed in Supervisor.layer({ entryPoints }) can be launched."
            })
          ))
        }
        // PostgreSQL's late binding: the registration is accepted, its start fails (exit 1).
        const placeholder = BackgroundWorker.make({
          name: name ?? escape(`${request.library}.${request.function}`),
          type,
          restart: request.restart,
          main: () => Effect.void
        })
        const lazy = { library: escape(request.library), function: escape(request.function) }
        return Effect.flatMap(
          this.prepare(placeholder, undefined, request.extra),
          () => this.registerPrepared(placeholder, request.argument, request.extra, this.context, lazy)
        )
      }
      const def: BackgroundWorker.Any = {
        ...entry,
        name: name ?? entry.name,
        type: type ?? entry.type,
        restart: request.restart ?? entry.restart
      }
      // The argument arrives encoded (from SQL, from another process): it must decode before anything starts.
      const decoded: Effect.Effect<unknown, Errors.SupervisorError> = def.argument === undefined
        ? Effect.void
        : Effect.mapError(
          Schema.decodeUnknownEffect(def.argument)(request.argument),
          // The message quotes the argument, which came from outside: escaped, and bounded.
          (error) =>
            Errors.fail(new Errors.InvalidArgument({ worker: def.name, detail: escapeBounded(error.message, 1000) }))
        )
      return Effect.flatMap(decoded, (argument) =>
        Effect.flatMap(
          this.authorize(def, argument, request.caller),
          (authorized) => this.register(authorized, argument, { extra: request.extra }, this.context)
        ))
    })
  }

  /**
   * A database worker launched for a caller: the connector resolves its role and database (the caller's
   * own role when it names none) and checks the caller's rights; the definition keeps the resolved pair,
   * so every restart uses it whatever the parameters say by then.
   */
  private authorize(
    def: BackgroundWorker.Any,
    argument: unknown,
    caller: string | undefined
  ): Effect.Effect<BackgroundWorker.Any, Errors.SupervisorError> {
    const missing = noConnector(def, this.context)
    if (missing !== undefined) return Effect.fail(Errors.fail(missing))
    if (caller === undefined || def.database === undefined) return Effect.succeed(def)
    const connector = Context.getOrUndefined(this.context, WorkerConnector)!
    const options = def.databaseFor === undefined ? def.database : { ...def.database, ...def.databaseFor(argument) }
    return connector.authorize({ caller, worker: def.name, options }).pipe(
      Effect.map((pinned): BackgroundWorker.Any => ({ ...def, database: pinned, databaseFor: undefined })),
      Effect.mapError(Errors.fail)
    )
  }

  // --- starting ---

  private gateOpen(def: BackgroundWorker.Any): boolean {
    return this.state === "running" && DatabaseState.allows(this.dbState, def.startTime)
  }

  private tryStart(reg: Reg): void {
    if (reg.phase === "pending" && this.gateOpen(reg.def)) this.start(reg)
  }

  startPending(): void {
    this.begin()
    try {
      for (const reg of this.slots) if (reg !== undefined) this.tryStart(reg)
    } finally {
      this.end()
    }
  }

  private start(reg: Reg): void {
    // A transition of its own: the `Started` notification is delivered once the fiber is recorded.
    this.begin()
    try {
      this.startIncarnation(reg)
    } finally {
      this.end()
    }
  }

  private startIncarnation(reg: Reg): void {
    const pid = this.nextPid++
    const proc = new Proc(
      this,
      reg.def.name,
      reg.def.type,
      pid,
      reg.handle,
      reg.origin,
      reg.extra,
      reg.encodedArgument,
      reg.def
    )
    // Known before the fiber runs, so that the status published below already says "not yet started".
    proc.awaitingSession = this.startsWithSession(reg)
    reg.proc = proc
    reg.phase = "running"
    reg.everStarted = true
    reg.nextRestartAt = undefined
    let context = Context.add(reg.context, CurrentWorker, proc)
    if (Context.getOrUndefined(context, Supervisor) !== this) context = Context.add(context, Supervisor, this)
    if (reg.def.shmem) context = Context.add(context, Shmem, this.shmemApi())
    // Every line the worker logs says who wrote it (log_line_prefix's %a, %b and %p): in the context the
    // fiber starts with, rather than a wrapper, which would copy the context once more per worker.
    context = Context.add(context, References.CurrentLogAnnotations, {
      ...Context.get(context, References.CurrentLogAnnotations),
      worker: proc.name,
      type: proc.type,
      pid: proc.pid
    })
    // Everything about the start is recorded before the fiber runs: it runs at once, up to its first wait,
    // and may even end before `runForkWith` returns. So the fiber binds itself to its incarnation as its
    // very first step, before any of the worker's code can ask the supervisor about it. Waiters hear of
    // the start when the transition ends (`start`), by which time the fiber is recorded.
    this.changed(reg)
    Effect.runForkWith(context)(Effect.withFiber((fiber) => {
      proc.fiber = fiber as Fiber.Fiber<void, unknown>
      this.live.add(proc)
      fiber.addObserver((exit) => this.onExit(reg, proc, exit as Exit.Exit<void, unknown>))
      return this.body(reg, proc)
    }))
  }

  /** Whether the incarnation about to start opens a database session before its `main` runs. */
  private startsWithSession(reg: Reg): boolean {
    const name = reg.lazyEntryPoint
    const def = name === undefined ? reg.def : this.options.entryPoints.get(BackgroundWorker.entryPointKey(name))
    return def?.database !== undefined
  }

  /** The worker's session is open: the incarnation has started, under its backend's pid. */
  private sessionOpened(reg: Reg, proc: Proc, backendPid: number | undefined): void {
    if (proc.endReason !== undefined || reg.proc !== proc) return
    this.begin()
    try {
      proc.backendPid = backendPid
      proc.awaitingSession = false
      this.changed(reg)
    } finally {
      this.end()
    }
  }

  private body(reg: Reg, proc: Proc): Effect.Effect<void, unknown> {
    // Plain combinators rather than a generator: the startup closure lives as long as the worker does.
    const run = (worker: BackgroundWorker.Any, argument: unknown): Effect.Effect<void, unknown> => {
      const database = worker.database === undefined || worker.databaseFor === undefined
        ? worker.database
        : { ...worker.database, ...worker.databaseFor(argument) }
      if (database?.user !== undefined) reg.role = database.user
      if (database === undefined) {
        proc.report("active", undefined)
        return Effect.scoped(worker.main(argument)) as Effect.Effect<void, unknown>
      }
      // BackgroundWorkerInitializeConnection: the session belongs to this incarnation's scope.
      return Effect.withFiber((fiber) => {
        const connector = Context.getOrUndefined(fiber.context, WorkerConnector)
        if (connector === undefined) {
          return Effect.fail(
            new StartupFailure({ message: "database connection requested, but no WorkerConnector is installed" })
          )
        }
        return Effect.scoped(Effect.flatMap(
          Effect.mapError(connector.connect(proc, database), (e) =>
            new StartupFailure({
              // The server's text may quote names that came from outside: one log line, whatever they hold.
              message: escape(e.hint === undefined ? e.message : `${e.message} (hint: ${e.hint})`)
            })),
          (session) => {
            this.sessionOpened(reg, proc, Context.getOrUndefined(session, SessionInfo)?.backendPid)
            proc.report("idle", undefined)
            const main = Effect.annotateLogs(
              Effect.updateContext(worker.main(argument), (c: Context.Context<never>) => Context.merge(c, session)),
              "pid",
              proc.pid
            )
            // A session that ends under the worker ends the worker, napping or not (exit 1: its policy applies).
            const lost = Context.getOrUndefined(session, SessionLost)
            return lost === undefined ? main : Effect.raceFirst(main, lost)
          }
        )) as Effect.Effect<void, unknown>
      })
    }
    const decodeAndRun = (worker: BackgroundWorker.Any): Effect.Effect<void, unknown> =>
      worker.argument === undefined ? run(worker, undefined) : Effect.flatMap(
        Effect.mapError(
          Schema.decodeUnknownEffect(worker.argument)(reg.encodedArgument),
          (error) => new StartupFailure({ message: `invalid argument: ${error.message}` })
        ),
        (argument) => run(worker, argument)
      )
    const start = Effect.suspend(() => {
      const name = reg.lazyEntryPoint
      if (name === undefined) return decodeAndRun(reg.def)
      const found = this.options.entryPoints.get(BackgroundWorker.entryPointKey(name))
      return found === undefined
        ? Effect.fail(
          new StartupFailure({ message: `could not find function "${name.function}" in library "${name.library}"` })
        )
        : decodeAndRun(found)
    })
    return start
  }

  // --- exits ---

  private onExit(reg: Reg, proc: Proc, exit: Exit.Exit<void, unknown>): void {
    if (this.isAbandoned(proc)) {
      // Given up on earlier: its registration has moved on, so its end only stops it being counted.
      this.abandoned.delete(proc)
      if (this.logEnabled("Debug")) {
        this.log("Debug", `abandoned background worker "${proc.name}" (PID ${proc.pid}) has ended`, {
          worker: proc.name,
          pid: proc.pid
        })
      }
      return
    }
    this.live.delete(proc)
    if (proc.forceTimer !== undefined) proc.forceTimer.interruptUnsafe()
    this.begin()
    try {
      this.cleanup(reg, proc, exit)
    } finally {
      this.end()
    }
  }

  /** `CleanupBackgroundWorker`: what the incarnation's end means for its registration, and for the others. */
  private cleanup(reg: Reg, proc: Proc, exit: Exit.Exit<void, unknown>): void {
    if (reg.proc === proc) reg.proc = undefined
    const now = this.clock.currentTimeMillisUnsafe()
    const outcome = this.classify(reg, proc, exit)
    reg.lastExit = { kind: outcome.kind, message: outcome.message, at: now, query: proc.query }
    const annotations = { worker: reg.def.name, type: reg.def.type, pid: proc.pid }
    if (this.state === "dead") {
      reg.phase = "pending"
      return
    }
    if (outcome.kind === "killed") {
      // Ended by a crash restart or a shutdown: those paths decide what comes next.
      reg.phase = "pending"
      if (this.state === "running" || this.state === "recovering") {
        this.changed(reg)
      } else {
        this.forget(reg)
      }
      return
    }
    if (outcome.kind === "done") {
      if (this.logEnabled("Debug")) {
        this.log("Debug", `background worker "${reg.def.type}" (PID ${proc.pid}) exited with exit code 0`, annotations)
      }
      this.forget(reg)
      return
    }
    if (outcome.kind === "crashed") {
      this.log(
        "Error",
        `background worker "${reg.def.type}" (PID ${proc.pid}) crashed: ${outcome.message}` +
          (proc.query === "" ? "" : `; failed process was running: ${proc.query}`),
        annotations
      )
      reg.phase = "pending"
      if (this.state === "running") {
        this.changed(reg) // waiters see Stopped (after the transition) before the crash restart brings it back
        this.crashRestart(reg)
      } else if (this.state === "smart" || this.state === "fast") {
        this.forget(reg)
        this.crashDuringShutdown(reg)
      } else {
        this.forget(reg)
      }
      return
    }
    this.log(
      "Info",
      `background worker "${reg.def.type}" (PID ${proc.pid}) exited with exit code 1: ${outcome.message}`,
      annotations
    )
    if (reg.terminate || this.state !== "running" && this.state !== "recovering" || reg.def.restart === "never") {
      this.forget(reg)
      return
    }
    this.scheduleRestart(reg, proc, outcome.failure!)
  }

  private classify(
    reg: Reg,
    proc: Proc,
    exit: Exit.Exit<void, unknown>
  ): { kind: LastExit["kind"]; message: string; failure?: BackgroundWorker.WorkerFailure } {
    if (Exit.isSuccess(exit)) return { kind: "done", message: "exited with exit code 0" }
    const cause = exit.cause
    const failed = (reason: BackgroundWorker.WorkerFailure["reason"], message: string, error: unknown) => ({
      kind: "failed" as const,
      message,
      failure: { reason, message, error }
    })
    if (proc.endReason === "crash" || proc.endReason === "shutdown" || proc.endReason === "death") {
      return { kind: "killed", message: proc.endReason === "crash" ? "terminated by crash restart" : `terminated by ${proc.endReason}` }
    }
    const error = Cause.findErrorOption(cause)
    if (Option.isSome(error)) {
      const e = error.value
      if (e instanceof StartupFailure) return failed("startup", e.message, e)
      return failed("error", withRootCause(e), e)
    }
    const defect = Cause.findDefect(cause)
    if (defect._tag === "Success") {
      const message = withRootCause(defect.success)
      if (reg.def.shmem) return { kind: "crashed", message }
      return failed("defect", message, defect.success)
    }
    if (proc.endReason === "terminate" || proc.terminatePending) {
      return failed("terminated", `terminating background worker "${reg.def.type}" due to administrator command`, undefined)
    }
    return failed("interrupted", "interrupted", undefined)
  }

  /** Frees the slot (`ForgetBackgroundWorker`); waiters see `Stopped`. */
  /** How forgotten registrations last ended, by handle, for {@link lastExit}: the latest 1024. */
  private readonly recentExits = new Map<string, LastExit>()

  private forget(reg: Reg): void {
    if (this.slots[reg.slot] !== reg) return
    if (reg.lastExit !== undefined) {
      this.recentExits.set(`${reg.slot}:${reg.generation}`, reg.lastExit)
      if (this.recentExits.size > 1024) this.recentExits.delete(this.recentExits.keys().next().value!)
    }
    if (reg.timer !== undefined) reg.timer.interruptUnsafe()
    this.slots[reg.slot] = undefined
    this.freeSlots.push(reg.slot)
    reg.phase = "pending"
    this.changed(reg, true)
  }

  private scheduleRestart(reg: Reg, proc: Proc, failure: BackgroundWorker.WorkerFailure): void {
    reg.phase = "restartWait"
    const policy = reg.def.restart as Schedule.Schedule<unknown, BackgroundWorker.WorkerFailure>
    const ranFor = this.clock.currentTimeMillisUnsafe() - proc.backendStart
    reg.timer = this.timer(
      reg,
      Effect.gen({ self: this }, function*() {
        const now = this.clock.currentTimeMillisUnsafe()
        if (reg.def.resetAfter !== undefined && ranFor >= Duration.toMillis(reg.def.resetAfter)) {
          reg.step = undefined
          reg.restartTimes = []
        }
        const intensity = reg.def.intensity
        if (intensity !== undefined) {
          const since = now - Duration.toMillis(intensity.within)
          reg.restartTimes = reg.restartTimes.filter((t) => t >= since)
          reg.restartTimes.push(now)
          if (reg.restartTimes.length > intensity.maxRestarts) {
            return this.giveUp(
              reg,
              `more than ${intensity.maxRestarts} restarts within ${Duration.format(intensity.within)}`
            )
          }
        }
        reg.step ??= yield* Schedule.toStep(policy)
        const next = yield* Effect.exit(reg.step(now, failure))
        if (Exit.isFailure(next)) return this.giveUp(reg, "restart schedule exhausted")
        const delay = next.value[1]
        reg.nextRestartAt = now + Duration.toMillis(delay)
        this.changed(reg)
        yield* Effect.sleep(delay)
        reg.timer = undefined
        if (this.slots[reg.slot] !== reg || reg.phase !== "restartWait") return
        this.transition(() => {
          reg.restartCount++
          reg.phase = "pending"
          reg.nextRestartAt = undefined
          this.tryStart(reg)
          if (reg.phase === "pending") this.changed(reg)
        })
      })
    )
    this.changed(reg)
  }

  private giveUp(reg: Reg, reason: string): void {
    reg.phase = "givenUp"
    reg.timer = undefined
    reg.nextRestartAt = undefined
    reg.givenUpReason = reason
    this.log("Warn", `background worker "${reg.def.name}": given up: ${reason}; last exit: ${reg.lastExit?.message}`, {
      worker: reg.def.name
    })
    this.changed(reg)
  }

  // --- crash restart ---

  private crashRestart(crashed: Reg): void {
    if (!this.options.restartAfterCrash()) {
      this.log("Error", "terminating any other active server processes; restartAfterCrash is off: the supervisor ends")
      this.fork(this.die(new CrashedError({ worker: crashed.def.name, detail: crashed.lastExit?.message ?? "" })))
      return
    }
    this.state = "recovering"
    this.log("Warn", "terminating any other active server processes", { worker: crashed.def.name })
    // The crash rules apply to the registrations that existed at the crash; ones made during the recovery
    // simply start when it is over.
    const atCrash = new Set(this.slots.filter((reg) => reg !== undefined))
    for (const reg of this.slots) {
      if (reg === undefined) continue
      if (reg.timer !== undefined) {
        reg.timer.interruptUnsafe()
        reg.timer = undefined
      }
      const proc = reg.proc
      if (proc !== undefined) {
        proc.endReason = "crash"
        proc.fiber!.interruptUnsafe()
      }
    }
    this.timer(undefined, Effect.gen({ self: this }, function*() {
      // PostgreSQL sends SIGKILL to the stragglers after 5 seconds; here they are abandoned.
      yield* this.awaitOrAbandon(Array.from(this.live), "the crash restart's interruption")
      if (this.state !== "recovering") return
      const reset = yield* Effect.exit(this.resetShmem())
      if (this.state !== "recovering") return
      if (Exit.isFailure(reset)) {
        const error = Cause.findErrorOption(reset.cause)
        if (Option.isSome(error)) {
          this.log("Error", `${error.value.message}: the supervisor ends`, { worker: crashed.def.name })
          this.fork(this.die(error.value))
          return
        }
        return yield* Effect.failCause(reset.cause as Cause.Cause<never>)
      }
      this.log("Warn", "all server processes terminated; reinitializing")
      this.transition(() => {
        this.state = "running"
        for (const reg of this.slots) {
          if (reg === undefined || reg.phase === "givenUp") continue
          if (!atCrash.has(reg)) {
            this.tryStart(reg)
            continue
          }
          if (reg.terminate || reg.def.restart === "never") {
            this.forget(reg)
            continue
          }
          // Restartable workers come back at once: the crash delay is reset.
          reg.step = undefined
          reg.nextRestartAt = undefined
          if (reg.everStarted) reg.restartCount++
          reg.phase = "pending"
          this.tryStart(reg)
          if (reg.phase === "pending") this.changed(reg)
        }
      })
    }))
  }

  /**
   * A crash while a smart or fast shutdown is under way (`HandleChildCrash` with `Shutdown > NoShutdown`):
   * PostgreSQL sends SIGQUIT to every other child at once instead of letting it finish, re-initialises
   * nothing, and exits with `abnormal database system shutdown` once they are gone. Here: postmaster death
   * with a `SupervisorCrashed` error.
   */
  private crashDuringShutdown(crashed: Reg): void {
    const mode = this.state
    this.log("Error", "terminating any other active server processes", { worker: crashed.def.name })
    this.fork(this.die(
      new CrashedError({ worker: crashed.def.name, detail: crashed.lastExit?.message ?? "", shutdown: mode })
    ))
  }

  // --- abandoning what does not end ---

  /**
   * Waits for the incarnations' fibers (already interrupted) to end, for at most `abandonTimeout`, then
   * abandons the ones still running. `after` completes the log line: "did not end within 5s after ...".
   */
  private awaitOrAbandon(procs: ReadonlyArray<Proc>, after: string): Effect.Effect<void> {
    return Effect.suspend(() => {
      const running = (p: Proc) => !this.isAbandoned(p) && p.fiber !== undefined && p.fiber.pollUnsafe() === undefined
      const pending = procs.filter(running)
      if (pending.length === 0) return Effect.void
      const timeout = this.options.abandonTimeout()
      return Effect.flatMap(
        Effect.timeoutOption(Fiber.awaitAll(pending.map((p) => p.fiber!)), timeout),
        (ended) =>
          Option.isSome(ended) ? Effect.void : Effect.sync(() =>
            this.transition(() => {
              for (const p of pending) if (running(p)) this.abandon(p, timeout, after)
            })
          )
      )
    })
  }

  private isAbandoned(proc: Proc): boolean {
    return this.abandoned.size > 0 && this.abandoned.has(proc)
  }

  /** Gives up on an incarnation whose fiber will not end: its registration moves on as if it had ended. */
  private abandon(proc: Proc, timeout: Duration.Duration, after: string): void {
    this.live.delete(proc)
    this.abandoned.add(proc)
    if (proc.forceTimer !== undefined) proc.forceTimer.interruptUnsafe()
    this.log(
      "Warn",
      `background worker "${proc.name}" (PID ${proc.pid}) did not end within ${Duration.format(timeout)} after ${after}; ` +
        `abandoned (its fiber keeps running, holding whatever it holds)`,
      { worker: proc.name, type: proc.type, pid: proc.pid }
    )
    const reg = this.slots[proc.handle.slot]
    if (reg === undefined || reg.proc !== proc) return
    reg.proc = undefined
    reg.phase = "pending"
    reg.lastExit = {
      kind: "killed",
      message: `abandoned after ${after}`,
      at: this.clock.currentTimeMillisUnsafe(),
      query: proc.query
    }
    if (this.state === "dead") return
    if (this.state === "running" || this.state === "recovering") this.changed(reg)
    else this.forget(reg)
  }

  // --- shared state ---

  private shmemApi(): ShmemApi {
    const generation = this.shmemGeneration
    return {
      generation,
      get: <A>(struct: ShmemStruct<A>) => this.shmemGet(struct)
    }
  }

  shmemGet<A>(struct: ShmemStruct<A>): Effect.Effect<A> {
    return Effect.suspend(() => {
      const existing = this.shmemValues.get(struct.name)
      if (existing !== undefined) return Deferred.await(existing) as Effect.Effect<A>
      const deferred = Deferred.makeUnsafe<unknown>()
      this.shmemValues.set(struct.name, deferred)
      // One scope per struct, so that a struct whose finalizers hang can be named and abandoned alone.
      const scope = Scope.makeUnsafe()
      this.shmemScopes.push({ name: struct.name, scope })
      return Effect.uninterruptible(
        Effect.flatMap(
          Effect.exit(Scope.provide(struct.init, scope)),
          (exit) => Effect.andThen(Deferred.done(deferred, exit), exit)
        )
      ) as Effect.Effect<A>
    })
  }

  /** Ends the current generation: its structs' finalizers run (newest first), each bounded by `abandonTimeout`. */
  private releaseShmem(after: string): Effect.Effect<void> {
    return Effect.suspend(() => {
      const scopes = this.shmemScopes
      this.shmemScopes = []
      this.shmemValues = new Map()
      if (scopes.length === 0) return Effect.void
      const timeout = this.options.abandonTimeout()
      return Effect.forEach(scopes.reverse(), ({ name, scope }) =>
        Effect.flatMap(this.within(Scope.close(scope, Exit.void), timeout), (closed) =>
          Option.isSome(closed) ? Effect.void : Effect.sync(() =>
            this.log(
              "Warn",
              `shared state "${name}": its finalizers did not finish within ${Duration.format(timeout)} after ${after}; abandoned`,
              { struct: name }
            )
          )), { discard: true })
    })
  }

  /**
   * Creates the structs listed in `Supervisor.layer({ shmem })` for the current generation, each within
   * `abandonTimeout`; the first that dies or hangs fails with `ShmemInitFailed`.
   */
  private createListedShmem(): Effect.Effect<void, Errors.SupervisorError> {
    if (this.options.shmem.length === 0) return Effect.void
    return Effect.suspend(() => {
      const timeout = this.options.abandonTimeout()
      const failed = (struct: ShmemStruct<unknown>, detail: string) =>
        Errors.fail(
          new Errors.ShmemInitFailed({
            struct: struct.name,
            detail,
            hint: "Every struct listed in Supervisor.layer({ shmem }) is created at start and again after each crash " +
              "restart: its initialiser must succeed each time, within abandonTimeout."
          })
        )
      return Effect.forEach(this.options.shmem, (struct) =>
        Effect.flatMap(this.within(this.shmemGet(struct), timeout), (created) => {
          if (Option.isNone(created)) {
            return Effect.fail(failed(struct, `initialization did not finish within ${Duration.format(timeout)}`))
          }
          if (Exit.isSuccess(created.value)) return Effect.void
          return Effect.fail(failed(struct, escape(withRootCause(Cause.squash(created.value.cause)))))
        }), { discard: true })
    })
  }

  private resetShmem(): Effect.Effect<void, Errors.SupervisorError> {
    return Effect.andThen(
      Effect.suspend(() => {
        this.shmemGeneration++
        return this.releaseShmem("the crash restart")
      }),
      this.createListedShmem()
    )
  }

  initShmem(): Effect.Effect<void, Errors.SupervisorError> {
    return this.createListedShmem()
  }

  // --- requests ---

  private requestTerminate(proc: Proc, direct: boolean): void {
    proc.requestTerminate(direct)
    const fiber = proc.fiber
    if (proc.forceTimer !== undefined || fiber === undefined || fiber.pollUnsafe() !== undefined) return
    // Most workers honour the request as soon as they run (it woke their wait), so look again one scheduler
    // turn later, after the worker's own wake-up, and only then pay for a timer.
    fiber.currentDispatcher.scheduleTask(() => this.armForceTimer(proc), 0)
  }

  private armForceTimer(proc: Proc): void {
    if (proc.forceTimer !== undefined || proc.fiber === undefined || proc.fiber.pollUnsafe() !== undefined) return
    if (this.state === "dead") return
    const timeout = this.options.terminateTimeout()
    proc.forceTimer = this.timer(
      undefined,
      Effect.andThen(
        Effect.sleep(timeout),
        Effect.sync(() => {
          if (proc.fiber !== undefined && proc.fiber.pollUnsafe() === undefined) {
            this.log("Warn", `background worker "${proc.name}" ignored a terminate request for ${Duration.format(timeout)}: interrupting it`)
            proc.endReason ??= "terminate"
            proc.fiber.interruptUnsafe()
          }
        })
      )
    )
  }

  terminate(handle: Handle.WorkerHandle): Effect.Effect<void> {
    return Effect.sync(() => {
      const reg = this.lookup(handle)
      if (reg === undefined || this.state === "dead") return
      reg.terminate = true
      const proc = reg.proc
      if (proc !== undefined) this.requestTerminate(proc, true) // the request is this effect's last act
      else this.transition(() => this.forget(reg))
    })
  }

  signal(handle: Handle.WorkerHandle, signal: WorkerSignal): Effect.Effect<void> {
    return Effect.sync(() => {
      const proc = this.lookup(handle)?.proc
      if (proc === undefined) return
      if (signal === "terminate") this.requestTerminate(proc, true)
      else proc.requestReload()
    })
  }

  setLatch(handle: Handle.WorkerHandle): Effect.Effect<void> {
    // The set is this effect's last act, so the worker may resume at once (see LatchImpl.setDirectUnsafe).
    return Effect.sync(() => this.lookup(handle)?.proc?.latch.setDirectUnsafe())
  }

  readonly reload: Effect.Effect<void> = Effect.suspend(() => {
    // PostgreSQL forwards SIGHUP to its children only up to a smart shutdown.
    if (this.state !== "running" && this.state !== "smart" && this.state !== "recovering") return Effect.void
    return Effect.andThen(
      this.options.beforeReload,
      Effect.sync(() => {
        for (const reg of this.slots) reg?.proc?.requestReload()
      })
    )
  })

  // --- waiting on handles ---

  status(handle: Handle.WorkerHandle): Effect.Effect<Handle.WorkerStatus> {
    return Effect.sync(() => this.statusOf(this.slots[handle.slot], handle))
  }

  lastExit(handle: Handle.WorkerHandle): Effect.Effect<Option.Option<LastExit>> {
    return Effect.sync(() => {
      const reg = this.lookup(handle)
      return Option.fromNullishOr(
        reg === undefined ? this.recentExits.get(`${handle.slot}:${handle.generation}`) : reg.lastExit
      )
    })
  }

  info(handle: Handle.WorkerHandle): Effect.Effect<Option.Option<ActivityRow>> {
    return Effect.sync(() => {
      const reg = this.lookup(handle)
      return reg === undefined ? Option.none() : Option.some(this.row(reg))
    })
  }

  private awaitStatus(
    handle: Handle.WorkerHandle,
    done: (status: Handle.WorkerStatus) => boolean,
    waitEvent: string
  ): Effect.Effect<Handle.WorkerStatus> {
    const wait = Effect.callback<Handle.WorkerStatus>((resume) => {
      const reg = this.lookup(handle)
      const now = this.statusOf(reg, handle)
      if (done(now) || reg === undefined) return resume(Effect.succeed(now))
      const listener: Listener = (status) => {
        if (done(status) || finalStatus(status)) {
          reg.listeners?.delete(listener)
          resume(Effect.succeed(status))
        }
      }
      ;(reg.listeners ??= new Set()).add(listener)
      return Effect.sync(() => reg.listeners?.delete(listener))
    })
    return Effect.withFiber((fiber) => {
      const proc = Context.getOrUndefined(fiber.context, CurrentWorker) as Proc | undefined
      if (proc === undefined) return wait
      return Effect.ensuring(
        Effect.andThen(Effect.sync(() => proc.setWaitEvent("IPC", waitEvent)), wait),
        Effect.sync(() => proc.setWaitEvent(null, null))
      )
    })
  }

  awaitStartup(handle: Handle.WorkerHandle): Effect.Effect<Handle.WorkerStatus> {
    return this.awaitStatus(handle, (s) => s._tag !== "NotYetStarted", "BgWorkerStartup")
  }

  awaitShutdown(handle: Handle.WorkerHandle): Effect.Effect<Handle.WorkerStatus> {
    return this.awaitStatus(handle, (s) => s._tag === "Stopped" || s._tag === "PostmasterDied", "BgWorkerShutdown")
  }

  changes(handle: Handle.WorkerHandle): Stream.Stream<Handle.WorkerStatus> {
    // A consumer that keeps up gets every change. One that falls a whole buffer behind is conflated: what it
    // has not read is dropped and the newest status kept, so it catches up at once, and the final status
    // (followed by the end of the queue) is always delivered.
    return Stream.callback<Handle.WorkerStatus>((queue) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          const reg = this.lookup(handle)
          const now = this.statusOf(reg, handle)
          Queue.offerUnsafe(queue, now)
          if (reg === undefined || finalStatus(now)) {
            Queue.endUnsafe(queue)
            return undefined
          }
          const listener: Listener = (status, final) => {
            if (Queue.isFullUnsafe(queue)) while (Queue.takeUnsafe(queue) !== undefined);
            Queue.offerUnsafe(queue, status)
            if (final || finalStatus(status)) Queue.endUnsafe(queue)
          }
          ;(reg.listeners ??= new Set()).add(listener)
          return { reg, listener }
        }),
        (registered) => Effect.sync(() => registered?.reg.listeners?.delete(registered.listener))
      ), { bufferSize: statusBuffer, strategy: "sliding" }).pipe(Stream.changesWith(sameStatus))
  }

  // --- views ---

  readonly activity: Effect.Effect<ReadonlyArray<ActivityRow>> = Effect.sync(() => {
    const rows: Array<ActivityRow> = []
    for (const reg of this.slots) if (reg !== undefined) rows.push(this.row(reg))
    return rows
  })

  readonly activityChanges: Stream.Stream<ActivityEvent> = Stream.callback<ActivityEvent>((queue) =>
    Effect.acquireRelease(
      Effect.sync(() => {
        if (this.state === "dead") Queue.endUnsafe(queue)
        else this.activityListeners.add(queue)
      }),
      () => Effect.sync(() => this.activityListeners.delete(queue))
    )
  , { bufferSize: 4096, strategy: "sliding" })

  readonly waitEvents: Effect.Effect<ReadonlyArray<WaitEventInfo>> = Effect.sync(() => [
    { type: "IPC" as const, name: "BgWorkerShutdown", id: -2 },
    { type: "IPC" as const, name: "BgWorkerStartup", id: -1 },
    ...Array.from(this.waitEventIds, ([name, id]) => ({ type: "Extension" as const, name, id }))
  ])

  readonly currentState: Effect.Effect<SupervisorState> = Effect.sync(() => this.state)

  readonly awaitTermination: Effect.Effect<void, Errors.SupervisorError | CrashedError> = Deferred.await(this.terminated)

  // --- shutdown ---

  shutdown(mode: ShutdownMode): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.state === "dead") return Deferred.await(this.deathDone)
      if (this.state === "stopped") return Effect.void
      if (this.shutdownDone !== undefined) {
        if (mode !== "immediate") return Deferred.await(this.shutdownDone)
      }
      const done = this.shutdownDone ??= Deferred.makeUnsafe<void>()
      const running: Array<Proc> = []
      this.begin()
      try {
        this.state = mode
        this.log("Info", `received ${mode} shutdown request`)
        for (const reg of this.slots) {
          if (reg === undefined) continue
          // Capture the incarnation first: waking its latch may run it to its end synchronously.
          const proc = reg.proc
          if (proc !== undefined) {
            running.push(proc)
            if (mode !== "smart") proc.endReason = "shutdown"
            if (mode !== "immediate") proc.requestTerminate()
            if (mode !== "smart") proc.fiber!.interruptUnsafe()
          } else {
            this.forget(reg) // unstarted and restart-waiting registrations: cancelled, waiters get Stopped
          }
        }
        if (mode === "immediate") {
          // Nothing to wait for: the supervisor has stopped, and whoever awaits its termination hears so.
          this.state = "stopped"
          this.post(() => {
            Deferred.doneUnsafe(done, Exit.void)
            Deferred.doneUnsafe(this.terminated, Exit.void)
          })
        }
      } finally {
        this.end()
      }
      if (mode === "immediate") return Effect.void
      // The postmaster finishes the shutdown in a fiber of its own: the caller may be one of the workers it
      // stops (a worker that shuts the supervisor down), and the shutdown must complete all the same.
      this.timer(undefined, Effect.gen({ self: this }, function*() {
        const finished = yield* Effect.timeoutOption(
          Fiber.awaitAll(running.map((p) => p.fiber!)),
          this.options.shutdownTimeout()
        )
        if (Option.isNone(finished)) {
          const stragglers = running.filter((p) => !this.isAbandoned(p) && p.fiber!.pollUnsafe() === undefined)
          this.log("Warn", `shutdown timeout reached: interrupting ${stragglers.length} worker(s) by force`)
          for (const p of stragglers) {
            p.endReason = "shutdown"
            p.fiber!.interruptUnsafe()
          }
          yield* this.awaitOrAbandon(stragglers, "the shutdown's forced interruption")
        }
        if (this.state === "dead") return
        this.transition(() => {
          this.state = "stopped"
          this.post(() => {
            Deferred.doneUnsafe(done, Exit.void)
            Deferred.doneUnsafe(this.terminated, Exit.void)
          })
        })
      }))
      return Deferred.await(done)
    })
  }

  // --- death ---

  /**
   * Postmaster death: nothing is restarted, every waiter is told `PostmasterDied`, every wait ends the
   * worker or returns `postmasterDeath`, and the supervisor waits for its fibers to end, abandoning the ones
   * that outlive `abandonTimeout`. `error` is how `awaitTermination` fails: a crash with `restartAfterCrash`
   * off or during a shutdown, or shared state that could not be re-created.
   */
  die(error?: CrashedError | Errors.SupervisorError): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.state === "dead") return Deferred.await(this.deathDone)
      const returning: Array<Proc> = []
      this.begin()
      try {
        this.state = "dead"
        for (const timer of Array.from(this.timers)) timer.interruptUnsafe()
        for (const reg of this.slots) {
          const proc = reg?.proc
          if (proc === undefined) continue
          proc.endReason ??= "death"
          if (proc.latch.waitMode === "return") {
            proc.kill() // the wait returns `postmasterDeath`; the worker ends on its own, within the timeout
            returning.push(proc)
          } else {
            proc.latch.dead = true // no wake-up to schedule: the interruption ends the wait
            proc.fiber!.interruptUnsafe()
          }
        }
        for (const reg of this.slots) {
          if (reg?.listeners === undefined) continue
          const listeners = Array.from(reg.listeners)
          reg.listeners = undefined
          this.post(() => {
            for (const listener of listeners) listener(Handle.PostmasterDied, true)
          })
        }
        // A shutdown still in progress ends here: its waiters are released, the workers are dealt with below.
        const shutdownDone = this.shutdownDone
        if (shutdownDone !== undefined) this.post(() => Deferred.doneUnsafe(shutdownDone, Exit.void))
      } finally {
        this.end()
      }
      return Effect.gen({ self: this }, function*() {
        if (returning.length > 0) {
          const ended = yield* Effect.timeoutOption(
            Fiber.awaitAll(returning.map((p) => p.fiber!)),
            this.options.shutdownTimeout()
          )
          if (Option.isNone(ended)) for (const p of returning) p.fiber!.interruptUnsafe()
        }
        yield* this.awaitOrAbandon(Array.from(this.live), "postmaster death")
        // The supervisor's own fibers were interrupted above and never block it: a bound all the same.
        yield* Effect.timeoutOption(Fiber.awaitAll(Array.from(this.timers)), this.options.abandonTimeout())
        // Every worker has ended (or been abandoned) and published its last change: the activity streams end here.
        for (const queue of this.activityListeners) Queue.endUnsafe(queue)
        this.activityListeners.clear()
        yield* this.releaseShmem("postmaster death")
        if (error !== undefined && error._tag === "SupervisorCrashed" && error.shutdown !== undefined) {
          this.log("Error", "abnormal database system shutdown", { worker: error.worker })
        }
        if (error !== undefined) Deferred.doneUnsafe(this.terminated, Exit.fail(error))
        else Deferred.doneUnsafe(this.terminated, Exit.void)
        Deferred.doneUnsafe(this.deathDone, Exit.void)
      }).pipe(Effect.uninterruptible)
    })
  }

  /** Fibers that are still alive (for leak checks). */
  liveFibers(): number {
    return this.live.size + this.timers.size + this.abandoned.size + this.abandonedTasks.size
  }

  // --- preload ---

  preloadApi(pending: Array<StaticRegistration>) {
    return Preload.of({
      register: (worker, argument, options, context) =>
        Effect.sync(() => {
          pending.push({ worker, argument, extra: options?.extra, context: context as Context.Context<never> })
        })
    })
  }

  registerStatic(pending: ReadonlyArray<StaticRegistration>): Effect.Effect<void, Errors.SupervisorError> {
    // A database worker without a connector is a mistake in the program, not in one registration: the
    // supervisor does not start (instead of running on without it, as it does for an invalid definition).
    for (const s of pending) {
      const missing = noConnector(s.worker, s.context)
      if (missing !== undefined) return Effect.fail(Errors.fail(missing))
    }
    return Effect.forEach(pending, (s) =>
      Effect.matchEffect(this.prepare(s.worker, s.argument, s.extra), {
        onFailure: (error) =>
          Effect.sync(() => this.log("Warn", `${error.message}; skipping`, { worker: String(s.worker?.name) })),
        onSuccess: (encoded) =>
          Effect.sync(() => {
            const reg = this.allocate(s.worker, encoded, s.extra, s.context, "static", undefined)
            if (reg === undefined) {
              this.log(
                "Warn",
                `too many background workers: background worker "${s.worker.name}" not registered; ` +
                  `Up to ${this.options.maxWorkerProcesses} background workers can be registered with the current settings. ` +
                  `Consider increasing maxWorkerProcesses.`,
                { worker: s.worker.name }
              )
            }
          })
      }), { discard: true })
  }

  /** `PM_RUN`: start everything whose gate is open. */
  run(): void {
    this.state = "running"
    this.startPending()
  }

  setDatabaseState(state: DatabaseState.State): void {
    this.dbState = state
    if (this.state === "running") this.startPending()
  }
}

/**
 * Why a database worker cannot be registered in `context`: it asks for a session and no `WorkerConnector`
 * is there to open one. `undefined` when it can.
 *
 * @internal
 */
export const noConnector = (
  def: BackgroundWorker.Any,
  context: Context.Context<never>
): Errors.InvalidDefinition | undefined =>
  def?.database === undefined || Context.getOrUndefined(context, WorkerConnector) !== undefined
    ? undefined
    : new Errors.InvalidDefinition({
      worker: escape(String(def.name)),
      field: "database",
      detail: "database connection requested, but no WorkerConnector is installed",
      hint: "Provide WorkerConnection.layer() from effect-bgworker/pg to the supervisor's layer " +
        "(Supervisor.layer(...).pipe(Layer.provide(WorkerConnection.layer()))), or another WorkerConnector."
    })

/** Whether two statuses say the same (the status stream skips repeats). */
const sameStatus = (a: Handle.WorkerStatus, b: Handle.WorkerStatus): boolean =>
  a._tag === b._tag && (a._tag !== "Started" || a.pid === (b as { readonly pid: number }).pid)

/** @internal */
export interface StaticRegistration {
  readonly worker: BackgroundWorker.Any
  readonly argument: unknown
  readonly extra: Uint8Array | undefined
  readonly context: Context.Context<never>
}

/**
 * The supervisor ended because a worker with shared-state access crashed and either `restartAfterCrash` is
 * off (PostgreSQL exits when `restart_after_crash = off`) or a smart or fast shutdown was under way (PostgreSQL
 * exits with `abnormal database system shutdown`; then `shutdown` names the mode, since 0.2.0).
 *
 * @category errors
 * @since 0.1.0
 */
export class CrashedError extends Schema.TaggedError<CrashedError>()("SupervisorCrashed", {
  worker: Schema.String,
  detail: Schema.String,
  /**
   * Set when the crash happened during a shutdown (`"smart"` or `"fast"`): the supervisor ended as
   * PostgreSQL does then (`abnormal database system shutdown`), whatever `restartAfterCrash` says.
   */
  shutdown: Schema.optionalKey(Schema.String)
}) {
  override get message(): string {
    return this.shutdown === undefined
      ? `background worker "${this.worker}" crashed and restart_after_crash is off: ${this.detail}`
      : `background worker "${this.worker}" crashed during a ${this.shutdown} shutdown: ${this.detail}`
  }
  get hint(): string {
    return this.shutdown === undefined
      ? "Turn restart_after_crash on to restart every worker after a crash instead."
      : "Nothing restarts during a shutdown: every other worker was interrupted at once, as shared state may be " +
        "corrupt. The worker's crash is logged with its cause."
  }
}

