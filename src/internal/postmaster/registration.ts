/**
 * A registered worker (PostgreSQL's `RegisteredBgWorker` plus its `BackgroundWorkerSlot`) and the checks a
 * definition passes before it gets one (`SanityCheckBackgroundWorker`).
 *
 * A registration lives in one slot from `register` until it is forgotten. It has at most one running
 * incarnation (`proc`) at a time; between incarnations it waits in one of the phases below.
 *
 * @internal
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import type * as Pull from "effect/Pull"
import * as Schema from "effect/Schema"
import type * as Tracer from "effect/Tracer"
import type { LastExit } from "../../Activity.ts"
import * as BackgroundWorker from "../../BackgroundWorker.ts"
import type { PreloadApi } from "../../Preload.ts"
import type { LaunchRequest } from "../../Supervisor.ts"
import * as Errors from "../../SupervisorError.ts"
import { WorkerConnector } from "../../WorkerConnector.ts"
import * as Handle from "../../WorkerHandle.ts"
import { escape, escapeBounded } from "../logText.ts"
import type { TypeMetrics } from "../metrics.ts"
import type { Proc } from "../proc.ts"
import { parentSpanOf } from "../tracing.ts"
import type { Postmaster } from "./postmaster.ts"

/**
 * - `pending`: not running, and may start as soon as its gate opens (never started yet, or back after a
 *   kill or a crash restart).
 * - `running`: `proc` is its incarnation.
 * - `restartWait`: ended, waiting for its restart schedule's delay (its `restartTimer` sleeps).
 * - `givenUp`: its schedule or its restart intensity gave it up; it keeps its slot until terminated.
 */
export type Phase = "pending" | "running" | "restartWait" | "givenUp"

/** Hears a registration's status. `forgotten`: the registration is gone, and the listener is detached. */
export type StatusListener = (status: Handle.WorkerStatus, forgotten: boolean) => void

/** The restart schedule, stepped once per failure (kept across restarts, reset after a stable run). */
export type RestartStep = (
  now: number,
  input: BackgroundWorker.WorkerFailure
) => Pull.Pull<[unknown, Duration.Duration], never, unknown>

/** What a registration is made from: a checked definition and its encoded argument. */
export interface RegistrationOptions {
  readonly slot: number
  readonly generation: number
  readonly definition: BackgroundWorker.Any
  readonly encodedArgument: unknown
  readonly extra: Uint8Array | undefined
  /** The services its incarnations run with. */
  readonly context: Context.Context<never>
  readonly origin: "static" | "dynamic"
  /** Launched by a name no entry point had at registration: resolved at each start (PostgreSQL's late binding). */
  readonly lateBoundEntryPoint: BackgroundWorker.EntryPointName | undefined
  /** The span current where it was registered (internal/tracing.ts): its first incarnation's parent. */
  readonly registeredUnder?: Tracer.AnySpan | undefined
}

/**
 * One registration of a slot. Mutated only by the postmaster, inside its transitions. `generation` is bumped
 * each time the slot is taken, so a handle `{slot, generation}` knows whether it still names this one.
 */
export class RegisteredWorker {
  phase: Phase = "pending"
  everStarted = false
  /** The running incarnation (phase `running`), else `undefined`. */
  proc: Proc | undefined = undefined
  /** `TerminateBackgroundWorker` was called: forget it whatever the exit. */
  terminate = false
  restartCount = 0
  /** How its latest incarnation ended; written only by `recordEnd` (internal/postmaster/incarnation.ts). */
  lastExit: LastExit | undefined = undefined
  nextRestartAt: number | undefined = undefined
  givenUpReason: string | undefined = undefined
  /** The database role of the worker's session: pinned at a launch for a caller, else resolved at each start. */
  role: string | undefined = undefined
  /** Sleeps until the next restart (phase `restartWait`). */
  restartTimer: Fiber.Fiber<void> | undefined = undefined
  restartStep: RestartStep | undefined = undefined
  /** When it was restarted lately, for its restart intensity. */
  restartTimes: Array<number> = []
  /** When it was registered, or its restart became due: a start's latency is measured from it. */
  pendingSince = 0
  /** Its worker type's metrics, when the supervisor keeps metrics (resolved once, at its allocation). */
  metrics: TypeMetrics | undefined = undefined
  listeners: Set<StatusListener> | undefined = undefined
  /** Its latest incarnation's span, which the next incarnation's links to (internal/tracing.ts). */
  lastSpan: Tracer.Span | undefined = undefined
  readonly registeredUnder: Tracer.AnySpan | undefined
  readonly slot: number
  readonly generation: number
  readonly definition: BackgroundWorker.Any
  readonly encodedArgument: unknown
  readonly extra: Uint8Array | undefined
  readonly context: Context.Context<never>
  readonly origin: "static" | "dynamic"
  readonly lateBoundEntryPoint: BackgroundWorker.EntryPointName | undefined
  constructor(options: RegistrationOptions) {
    this.slot = options.slot
    this.generation = options.generation
    this.definition = options.definition
    this.encodedArgument = options.encodedArgument
    this.extra = options.extra
    this.context = options.context
    this.origin = options.origin
    this.lateBoundEntryPoint = options.lateBoundEntryPoint
    this.registeredUnder = options.registeredUnder
  }
  get handle(): Handle.WorkerHandle {
    return Handle.make(this.slot, this.generation)
  }
}

/** A registration made by a preload (`RegisterBackgroundWorker` in `_PG_init`), registered once preloading is over. */
export interface StaticRegistration {
  readonly worker: BackgroundWorker.Any
  readonly argument: unknown
  readonly extra: Uint8Array | undefined
  readonly context: Context.Context<never>
}

/**
 * Checks a definition (once per definition value: definitions are immutable) and `extra`, and encodes the
 * argument with the definition's schema (copied, so the worker never shares the caller's objects).
 */
export const prepare = (
  checked: WeakSet<BackgroundWorker.Any>,
  definition: BackgroundWorker.Any,
  argument: unknown,
  extra: Uint8Array | undefined,
  refused: Refused = notCounted
): Effect.Effect<unknown, Errors.SupervisorError> => {
  if (!checked.has(definition)) {
    const invalid = BackgroundWorker.check(definition)
    if (invalid !== undefined) return Effect.fail(refused(Errors.fail(invalid)))
    checked.add(definition)
  }
  if (extra !== undefined && (!(extra instanceof Uint8Array) || extra.byteLength > BackgroundWorker.maxExtraBytes)) {
    return Effect.fail(refused(Errors.fail(
      new Errors.InvalidDefinition({
        worker: definition.name,
        field: "extra",
        detail: `must be a Uint8Array of at most ${BackgroundWorker.maxExtraBytes} bytes`
      })
    )))
  }
  if (definition.argument === undefined) return Effect.succeed(undefined)
  return Schema.encodeUnknownEffect(definition.argument)(argument).pipe(
    Effect.map((encoded) => structuredClone(encoded)),
    Effect.mapError((error) =>
      refused(Errors.fail(new Errors.InvalidArgument({ worker: definition.name, detail: error.message })))
    )
  ) as Effect.Effect<unknown, Errors.SupervisorError>
}

/**
 * What a refusal goes through on its way out: `Supervisor.register`'s are counted in the metrics where they
 * are made (`bgworker_launches_refused`), rather than by a wrapper around every registration, which would cost
 * every accepted one too; a launch counts its own (`Postmaster.launch`).
 */
export type Refused = (error: Errors.SupervisorError) => Errors.SupervisorError

const notCounted: Refused = (error) => error

/** Counts `Supervisor.register`'s refusals of `type` in the metrics, when the supervisor keeps them. */
export const countedFor = (postmaster: Postmaster, type: string): Refused =>
  postmaster.metrics === undefined ? notCounted : postmaster.metrics.forType(type).refuse

/**
 * Why a database worker cannot be registered in `context`: it asks for a session and no `WorkerConnector`
 * is there to open one. `undefined` when it can.
 */
export const noConnector = (
  definition: BackgroundWorker.Any,
  context: Context.Context<never>
): Errors.InvalidDefinition | undefined =>
  definition?.database === undefined || Context.getOrUndefined(context, WorkerConnector) !== undefined
    ? undefined
    : new Errors.InvalidDefinition({
      worker: escape(String(definition.name)),
      field: "database",
      detail: "database connection requested, but no WorkerConnector is installed",
      hint: "Provide WorkerConnection.layer() from effect-bgworker/pg to the supervisor's layer " +
        "(Supervisor.layer(...).pipe(Layer.provide(WorkerConnection.layer()))), or another WorkerConnector."
    })

// --- the registration paths ---

/** Every preload's `Preload.register` adds to `pending`, registered in order once preloading is over. */
export const preloadApi = (pending: Array<StaticRegistration>): PreloadApi => ({
  register: (worker, argument, options, context) =>
    Effect.sync(() => {
      pending.push({ worker, argument, extra: options?.extra, context: context as Context.Context<never> })
    })
})

/**
 * Registers the preloads' workers (`RegisterBackgroundWorker` under `shared_preload_libraries`): an
 * invalid one is logged and skipped, one beyond `maxWorkerProcesses` too. A database worker without a
 * connector fails the whole start instead: a mistake in the program, not in one registration.
 */
export const registerStatic = (
  postmaster: Postmaster,
  pending: ReadonlyArray<StaticRegistration>
): Effect.Effect<void, Errors.SupervisorError> => {
  for (const s of pending) {
    const missing = noConnector(s.worker, s.context)
    if (missing !== undefined) return Effect.fail(Errors.fail(missing))
  }
  return Effect.forEach(
    pending,
    (s) =>
      Effect.matchEffect(prepare(postmaster.checkedDefinitions, s.worker, s.argument, s.extra), {
        onFailure: (error) =>
          Effect.sync(() => postmaster.log("Warn", `${error.message}; skipping`, { worker: String(s.worker?.name) })),
        onSuccess: (encodedArgument) =>
          Effect.sync(() => {
            const registered = allocate(postmaster, {
              definition: s.worker,
              encodedArgument,
              extra: s.extra,
              context: s.context,
              origin: "static",
              lateBoundEntryPoint: undefined,
              registeredUnder: postmaster.options.tracing ? parentSpanOf(s.context) : undefined
            })
            if (registered === undefined) {
              postmaster.log(
                "Warn",
                `too many background workers: background worker "${s.worker.name}" not registered; ` +
                  `Up to ${postmaster.options.maxWorkerProcesses} background workers can be registered with the ` +
                  `current settings. ` +
                  `Consider increasing maxWorkerProcesses.`,
                { worker: s.worker.name }
              )
            }
          })
      }),
    { discard: true }
  )
}

const allocate = (
  postmaster: Postmaster,
  options: Omit<RegistrationOptions, "slot" | "generation">
): RegisteredWorker | undefined => {
  const registered = postmaster.slots.allocate(options)
  if (registered !== undefined) {
    if (postmaster.metrics !== undefined) {
      const metrics = postmaster.metrics.forType(registered.definition.type)
      registered.metrics = metrics
      registered.pendingSince = postmaster.clock.currentTimeMillisUnsafe()
      metrics.accepted.count++
    }
    postmaster.feed.updated(registered)
  }
  return registered
}

/** `RegisterDynamicBackgroundWorker`: see `Supervisor.register`. */
export const register = (
  postmaster: Postmaster,
  definition: BackgroundWorker.Any,
  argument: unknown,
  options: { readonly extra?: Uint8Array | undefined } | undefined,
  context: Context.Context<never>,
  refused: Refused = notCounted
): Effect.Effect<Handle.WorkerHandle, Errors.SupervisorError> =>
  Effect.flatMap(
    prepare(postmaster.checkedDefinitions, definition, argument, options?.extra, refused),
    // The worker runs with the supervisor's services (its layer's: a connector, the GUC registry, ...) and,
    // on top, the registrant's (which satisfy the definition's own requirements).
    (encodedArgument) => {
      const merged = postmaster.workerContext(context)
      const missing = noConnector(definition, merged)
      return missing !== undefined
        ? Effect.fail(refused(Errors.fail(missing)))
        : registerPrepared(postmaster, definition, encodedArgument, options?.extra, merged, undefined, refused)
    }
  )

const registerPrepared = (
  postmaster: Postmaster,
  definition: BackgroundWorker.Any,
  encodedArgument: unknown,
  extra: Uint8Array | undefined,
  context: Context.Context<never>,
  lateBoundEntryPoint: BackgroundWorker.EntryPointName | undefined,
  refused: Refused = notCounted
): Effect.Effect<Handle.WorkerHandle, Errors.SupervisorError> =>
  // The caller's fiber: its current span (a control-plane request's, say) is the first incarnation's parent.
  Effect.withFiber((fiber) => {
    const state = postmaster.state
    if (state !== "running" && state !== "recovering" && state !== "starting") {
      return Effect.fail(refused(Errors.fail(new Errors.ShuttingDown({ mode: state }))))
    }
    let registered: RegisteredWorker | undefined
    postmaster.transition(() => {
      registered = allocate(postmaster, {
        definition,
        encodedArgument,
        extra,
        context,
        origin: "dynamic",
        lateBoundEntryPoint,
        registeredUnder: postmaster.options.tracing ? fiber.cache.span : undefined
      })
      if (registered !== undefined) postmaster.tryStart(registered)
    })
    if (registered === undefined) {
      return Effect.fail(refused(Errors.fail(
        new Errors.NoFreeSlot({
          maxWorkerProcesses: postmaster.options.maxWorkerProcesses,
          hint: "Consider increasing maxWorkerProcesses, or terminate workers that are no longer needed."
        })
      )))
    }
    return Effect.succeed(registered.handle)
  })

/** Launching by `(library, function)`: see `Supervisor.launch`. */
export const launch = (
  postmaster: Postmaster,
  request: LaunchRequest
): Effect.Effect<Handle.WorkerHandle, Errors.SupervisorError> =>
  Effect.suspend(() => {
    // Names from outside are logged and shown: escape their control characters once, here.
    const name = request.name === undefined ? undefined : escape(request.name)
    const type = request.type === undefined ? undefined : escape(request.type)
    const entry = postmaster.options.entryPoints.get(BackgroundWorker.entryPointKey(request))
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
      const lateBound = { library: escape(request.library), function: escape(request.function) }
      return Effect.flatMap(
        prepare(postmaster.checkedDefinitions, placeholder, undefined, request.extra),
        () => registerPrepared(postmaster, placeholder, request.argument, request.extra, postmaster.context, lateBound)
      )
    }
    const definition: BackgroundWorker.Any = {
      ...entry,
      name: name ?? entry.name,
      type: type ?? entry.type,
      restart: request.restart ?? entry.restart
    }
    // The argument arrives encoded (from SQL, from another process): it must decode before anything starts.
    const decoded: Effect.Effect<unknown, Errors.SupervisorError> = definition.argument === undefined
      ? Effect.void
      : Effect.mapError(
        Schema.decodeUnknownEffect(definition.argument)(request.argument),
        // The message quotes the argument, which came from outside: escaped, and bounded.
        (error) =>
          Errors.fail(
            new Errors.InvalidArgument({ worker: definition.name, detail: escapeBounded(error.message, 1000) })
          )
      )
    return Effect.flatMap(decoded, (argument) =>
      Effect.flatMap(
        authorize(postmaster, definition, argument, request.caller),
        (authorized) => register(postmaster, authorized, argument, { extra: request.extra }, postmaster.context)
      ))
  })

/**
 * A database worker launched for a caller: the connector resolves its role and database (the caller's
 * own role when it names none) and checks the caller's rights; the definition keeps the resolved pair,
 * so every restart uses it whatever the parameters say by then.
 */
const authorize = (
  postmaster: Postmaster,
  definition: BackgroundWorker.Any,
  argument: unknown,
  caller: string | undefined
): Effect.Effect<BackgroundWorker.Any, Errors.SupervisorError> => {
  const missing = noConnector(definition, postmaster.context)
  if (missing !== undefined) return Effect.fail(Errors.fail(missing))
  if (caller === undefined || definition.database === undefined) return Effect.succeed(definition)
  const connector = Context.getOrUndefined(postmaster.context, WorkerConnector)!
  const options = definition.databaseFor === undefined
    ? definition.database
    : { ...definition.database, ...definition.databaseFor(argument) }
  return connector.authorize({ caller, worker: definition.name, options }).pipe(
    Effect.map((pinned): BackgroundWorker.Any => ({ ...definition, database: pinned, databaseFor: undefined })),
    Effect.mapError(Errors.fail)
  )
}
