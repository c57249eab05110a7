/**
 * Background worker definitions: what to run, when to start it, and what happens when it ends.
 *
 * PostgreSQL: the `BackgroundWorker` struct (src/include/postmaster/bgworker.h) and
 * `SanityCheckBackgroundWorker` (src/backend/postmaster/bgworker.c).
 *
 * | PostgreSQL | here |
 * |---|---|
 * | `bgw_name`, `bgw_type` (defaults to the name) | `name`, `type` |
 * | `bgw_start_time` | `startTime` |
 * | `bgw_restart_time`, `BGW_NEVER_RESTART` | `restart`: `"never"` or a `Schedule` ({@link restartAfter} is the fixed interval) |
 * | `bgw_library_name` + `bgw_function_name` | `entryPoint: { library, function }`, for launching by name |
 * | `bgw_main_arg` | one argument, encoded with the `argument` schema at registration and decoded in the worker |
 * | `bgw_extra` (128 bytes) | `extra` at registration (at most 128 bytes), read through `CurrentWorker` |
 * | `BGWORKER_SHMEM_ACCESS` | `shmem: true`: the worker may use `Shmem`, and a defect in it is a crash |
 * | `BGWORKER_BACKEND_DATABASE_CONNECTION` | `database: {...}`: the worker gets `SqlClient` |
 *
 * The options decide the worker's environment, checked by the compiler: `main` always gets
 * `CurrentWorker` and `Supervisor`; `Shmem` only with `shmem: true`; `SqlClient` only with `database`.
 * A `main` that uses `SqlClient` without declaring `database` does not compile.
 *
 * Deliberate differences from PostgreSQL, each because the struct's C habit has a safer TypeScript form:
 * - `restart` defaults to `"never"` (a zeroed C struct means "restart at once, forever").
 * - `startTime` defaults to `"postmasterStart"`, or `"recoveryFinished"` for a database worker.
 * - The argument is a Schema-typed value, copied through its encoding, never a closure or a pointer.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { identity } from "effect/Function"
import * as Predicate from "effect/Predicate"
import * as Schedule from "effect/Schedule"
import type * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { SqlClient } from "effect/sql/SqlClient"
import type * as Types from "effect/Types"
import type { Shmem, Supervisor } from "./internal/context.ts"
import { CurrentWorker } from "./internal/context.ts"
import type { ProcLatch } from "./ProcLatch.ts"
import { InvalidDefinition } from "./SupervisorError.ts"
import type { WorkerConnector } from "./WorkerConnector.ts"
import type { WorkerHandle } from "./WorkerHandle.ts"

export { CurrentWorker } from "./internal/context.ts"

/** @internal */
export const TypeId = "~effect-bgworker/BackgroundWorker"

/** The type parameters' markers, shared by every definition (they exist for the type checker only). */
const variance = { _A: identity, _E: identity, _R: identity }

/**
 * Whether `u` is a worker definition made by {@link make}.
 *
 * @category guards
 * @since 0.2.0
 */
export const isBackgroundWorker = (u: unknown): u is BackgroundWorker<unknown, unknown, unknown> =>
  Predicate.hasProperty(u, TypeId)

/**
 * When a worker may start (`bgw_start_time`). A gate delays the start only: a running worker is never
 * stopped because the database state changes.
 *
 * - `postmasterStart`: as soon as the supervisor starts.
 * - `consistentState`: once the database accepts read-only queries.
 * - `recoveryFinished`: once the database accepts writes.
 *
 * Without a `DatabaseState` service the last two behave like the first.
 *
 * @category models
 * @since 0.1.0
 */
export type StartTime = "postmasterStart" | "consistentState" | "recoveryFinished"

/**
 * What the restart schedule is stepped with: the failure that ended the incarnation. Only failures (exit 1)
 * step a schedule; the same failure is the activity row's `lastExit` (kind `failed`, same `message`) and
 * the supervisor's `exited with exit code 1` log line.
 *
 * @category models
 * @since 0.1.0
 */
export interface WorkerFailure {
  /** `"error"`: a typed failure; `"terminated"`: a terminate signal; `"defect"`: a defect in a worker without
   * shared-state access; `"interrupted"`: interrupted by something other than the supervisor; `"startup"`: the
   * worker could not start (unknown entry point, bad argument, connection failure). */
  readonly reason: "error" | "terminated" | "defect" | "interrupted" | "startup"
  readonly message: string
  /** The typed error, the defect, or `undefined`. */
  readonly error: unknown
}

/**
 * `"never"`, or a `Schedule` stepped with each {@link WorkerFailure}: its delay is the wait before the next
 * start, and when it completes the worker is given up.
 *
 * @category models
 * @since 0.1.0
 */
export type RestartPolicy = "never" | Schedule.Schedule<unknown, WorkerFailure>

/**
 * OTP's restart intensity: more than `maxRestarts` restarts within `within` gives the worker up.
 *
 * @category models
 * @since 0.1.0
 */
export interface RestartIntensity {
  readonly maxRestarts: number
  readonly within: Duration.Input
}

/**
 * What a database worker connects to (`BackgroundWorkerInitializeConnection`). Provided by a
 * `WorkerConnector` layer (see `src/pg/`).
 *
 * @category models
 * @since 0.1.0
 */
export interface DatabaseOptions {
  /** Database name; the connector's default when absent. */
  readonly database?: string | undefined
  /** Role name; the connector's default when absent. */
  readonly user?: string | undefined
  /** `BGWORKER_BYPASS_ALLOWCONN`: connect even if the database does not accept connections. */
  readonly bypassAllowConn?: boolean | undefined
  /** `BGWORKER_BYPASS_ROLELOGINCHECK`: connect with a role that cannot log in. */
  readonly bypassRoleLoginCheck?: boolean | undefined
}

/**
 * `(library, function)`: the name a worker is launched by.
 *
 * @category models
 * @since 0.1.0
 */
export interface EntryPointName {
  readonly library: string
  readonly function: string
}

/**
 * A worker definition: a plain value, registered statically (in a preload) or dynamically
 * (`Supervisor.register`).
 *
 * `A` is the argument's type, `E` the typed errors of `main`, `R` what `main` needs beyond what the
 * supervisor provides to every worker.
 *
 * @category models
 * @since 0.1.0
 */
export interface BackgroundWorker<in out A, out E = never, out R = never> {
  readonly [TypeId]: {
    readonly _A: Types.Invariant<A>
    readonly _E: Types.Covariant<E>
    readonly _R: Types.Covariant<R>
  }
  readonly name: string
  readonly type: string
  readonly startTime: StartTime
  readonly restart: RestartPolicy
  readonly argument: Schema.Codec<A, unknown> | undefined
  readonly main: (argument: A) => Effect.Effect<void, E, any>
  readonly shmem: boolean
  readonly database: DatabaseOptions | undefined
  /** Refines `database` from the decoded argument at each start. */
  readonly databaseFor: ((argument: A) => DatabaseOptions) | undefined
  readonly entryPoint: EntryPointName | undefined
  readonly resetAfter: Duration.Duration | undefined
  readonly intensity: { readonly maxRestarts: number; readonly within: Duration.Duration } | undefined
}

/**
 * @category models
 * @since 0.1.0
 */
export type Any = BackgroundWorker<any, any, any>

/**
 * What a running worker knows about itself (`MyBgworkerEntry`, `MyProcPid`, `MyLatch`), from the
 * `CurrentWorker` service.
 *
 * @category models
 * @since 0.1.0
 */
export interface WorkerInfo {
  readonly name: string
  readonly type: string
  /**
   * The pid of this incarnation: a new one at every start. For a database worker whose connector reports
   * its session's backend pid (`WorkerConnector.SessionInfo`), that pid once the session is open (so it
   * joins `pg_stat_activity.pid`); otherwise, and before that, the supervisor's own number ({@link incarnation}).
   */
  readonly pid: number
  /** The supervisor's own number for this incarnation, unique within the supervisor and never changing. */
  readonly incarnation: number
  readonly handle: WorkerHandle
  readonly origin: "static" | "dynamic"
  /** The `extra` bytes given at registration (`bgw_extra`). */
  readonly extra: Uint8Array | undefined
  /** The encoded argument, as stored with the registration. */
  readonly encodedArgument: unknown
  readonly latch: ProcLatch
  readonly definition: Any
}

/**
 * The services every worker's `main` gets. `Scope` is the incarnation's own: its finalizers run when the
 * incarnation ends (PostgreSQL's `on_proc_exit` callbacks).
 *
 * @category models
 * @since 0.1.0
 */
export type WorkerServices = CurrentWorker | Supervisor | Scope.Scope

type Provided<Sh, Db> =
  | WorkerServices
  | (Sh extends true ? Shmem : never)
  | (Db extends DatabaseOptions ? SqlClient : never)

/**
 * What a definition asks of whoever registers it, besides its `main`'s own requirements: a database worker
 * needs a `WorkerConnector` (e.g. `WorkerConnection.layer()` from `effect-bgworker/pg`) to open its session,
 * so a supervisor layer that preloads one does not compile until the connector is provided to it.
 *
 * @category models
 * @since 0.2.0
 */
export type Needs<Db> = [Db] extends [undefined] ? never : WorkerConnector

type Capabilities<R, Sh, Db> =
  & ([Extract<R, Shmem>] extends [never] ? unknown
    : Sh extends true ? unknown
    : { readonly shmem: true })
  & ([Extract<R, SqlClient>] extends [never] ? unknown
    : Db extends DatabaseOptions ? unknown
    : { readonly database: DatabaseOptions })

/**
 * @category models
 * @since 0.1.0
 */
export interface MakeOptions<A, E, R, Sh extends boolean, Db extends DatabaseOptions | undefined> {
  /** The instance name (`bgw_name`): at most 95 characters. */
  readonly name: string
  /** The group name (`bgw_type`); defaults to `name`. */
  readonly type?: string | undefined
  readonly startTime?: StartTime | undefined
  /** Defaults to `"never"`. */
  readonly restart?: RestartPolicy | undefined
  /** Restart only: after an incarnation ran this long, the schedule and the intensity window start afresh. */
  readonly resetAfter?: Duration.Input | undefined
  readonly intensity?: RestartIntensity | undefined
  /** The argument's schema: registration encodes with it, the worker decodes. Needed unless `main` takes none. */
  readonly argument?: Schema.Codec<A, any> | undefined
  readonly shmem?: Sh | undefined
  readonly database?: Db | undefined
  /**
   * Chooses the connection from the decoded argument at each start, over `database` (which must be given:
   * it declares the connection). worker_spi passes each dynamic launch's database and role this way, where
   * PostgreSQL packs them into `bgw_extra`.
   */
  readonly databaseFor?: ((argument: NoInfer<A>) => DatabaseOptions) | undefined
  readonly entryPoint?: EntryPointName | undefined
  readonly main: (argument: A) => Effect.Effect<void, E, R>
}

/**
 * Defines a worker. Nothing is checked or started here: `Supervisor.register` (or a preload's
 * `Preload.register`) validates the definition and fails with `InvalidDefinition` naming the field.
 *
 * **Example** (A worker that counts its wake-ups)
 *
 * ```ts
 * const ticker = BackgroundWorker.make({
 *   name: "ticker",
 *   restart: BackgroundWorker.restartAfter("5 seconds"),
 *   argument: Schema.Number,
 *   main: (every) => Effect.gen(function*() {
 *     while (true) {
 *       yield* ProcLatch.wait({ timeout: Duration.seconds(every), onPostmasterDeath: "exit" })
 *       yield* ProcLatch.reset
 *       yield* Effect.log("tick")
 *     }
 *   })
 * })
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const make = <
  A = void,
  E = never,
  R = never,
  const Sh extends boolean = false,
  const Db extends DatabaseOptions | undefined = undefined
>(
  options: MakeOptions<A, E, R, Sh, Db> & Capabilities<R, Sh, Db>
): BackgroundWorker<A, E, Exclude<R, Provided<Sh, Db>> | Needs<Db>> => ({
  [TypeId]: variance,
  name: options.name,
  type: options.type === undefined || options.type === "" ? options.name : options.type,
  startTime: options.startTime ?? (options.database === undefined ? "postmasterStart" : "recoveryFinished"),
  restart: options.restart ?? "never",
  argument: options.argument,
  main: options.main,
  shmem: options.shmem === true,
  database: options.database,
  databaseFor: options.databaseFor,
  entryPoint: options.entryPoint,
  resetAfter: options.resetAfter === undefined ? undefined : Duration.fromInputUnsafe(options.resetAfter),
  intensity: options.intensity === undefined ? undefined : {
    maxRestarts: options.intensity.maxRestarts,
    within: Duration.fromInputUnsafe(options.intensity.within)
  }
})

/**
 * PostgreSQL's `bgw_restart_time`: restart `duration` after every failure, forever.
 * `restartAfter(0)` restarts at once.
 *
 * @category restart
 * @since 0.1.0
 */
export const restartAfter = (duration: Duration.Input): Schedule.Schedule<unknown, WorkerFailure> =>
  Schedule.spaced(duration)

/** `BGW_MAXLEN` is 96 bytes including the terminating zero. */
const maxNameLength = 95
/** `BGW_EXTRALEN`. */
export const maxExtraBytes = 128
/** `USECS_PER_DAY / 1000` seconds: the longest restart interval PostgreSQL accepts. */
const maxRestartIntervalMs = 86_400_000 * 1000

/**
 * The sanity check (`SanityCheckBackgroundWorker`): fails with `InvalidDefinition` naming the first bad
 * field.
 *
 * @category validation
 * @since 0.1.0
 */
export const validate = (worker: Any): Effect.Effect<void, InvalidDefinition> => {
  const problem = check(worker)
  return problem === undefined ? Effect.void : Effect.fail(problem)
}

const invalid = (worker: Any, field: string, detail: string, hint?: string) =>
  new InvalidDefinition(
    hint === undefined
      ? { worker: String(worker?.name ?? ""), field, detail }
      : { worker: String(worker?.name ?? ""), field, detail, hint }
  )

/** @internal */
export const check = (worker: Any): InvalidDefinition | undefined => {
  if (typeof worker !== "object" || worker === null) return invalid(worker, "definition", "not a worker definition")
  if (typeof worker.name !== "string" || worker.name.length === 0) {
    return invalid(worker, "name", "must be a non-empty string")
  }
  if (worker.name.length > maxNameLength) {
    return invalid(worker, "name", `longer than ${maxNameLength} characters`)
  }
  if (typeof worker.type !== "string" || worker.type.length === 0 || worker.type.length > maxNameLength) {
    return invalid(worker, "type", `must be 1 to ${maxNameLength} characters`)
  }
  if (!["postmasterStart", "consistentState", "recoveryFinished"].includes(worker.startTime)) {
    return invalid(worker, "startTime", `unknown start time "${String(worker.startTime)}"`)
  }
  if (worker.database !== undefined && worker.startTime === "postmasterStart") {
    return invalid(
      worker,
      "startTime",
      "a worker with a database connection cannot start at postmasterStart",
      "Use \"consistentState\" or \"recoveryFinished\"."
    )
  }
  if (worker.databaseFor !== undefined && worker.database === undefined) {
    return invalid(worker, "databaseFor", "needs `database` too: it declares the connection", "Add database: {}.")
  }
  if (worker.restart !== "never" && !Schedule.isSchedule(worker.restart)) {
    return invalid(worker, "restart", "must be \"never\" or a Schedule", "Use BackgroundWorker.restartAfter(duration).")
  }
  if (typeof worker.main !== "function") return invalid(worker, "main", "must be a function")
  if (worker.entryPoint !== undefined) {
    const { library, function: fn } = worker.entryPoint
    if (typeof library !== "string" || library.length === 0 || library.length > maxNameLength) {
      return invalid(worker, "entryPoint.library", `must be 1 to ${maxNameLength} characters`)
    }
    if (typeof fn !== "string" || fn.length === 0 || fn.length > maxNameLength) {
      return invalid(worker, "entryPoint.function", `must be 1 to ${maxNameLength} characters`)
    }
  }
  if (worker.resetAfter !== undefined && Duration.toMillis(worker.resetAfter) <= 0) {
    return invalid(worker, "resetAfter", "must be a positive duration")
  }
  if (worker.intensity !== undefined) {
    const { maxRestarts, within } = worker.intensity
    if (!Number.isInteger(maxRestarts) || maxRestarts < 0) {
      return invalid(worker, "intensity.maxRestarts", "must be a whole number, 0 or more")
    }
    const ms = Duration.toMillis(within)
    if (!(ms > 0) || ms > maxRestartIntervalMs) {
      return invalid(worker, "intensity.within", "must be a positive duration of at most 86400000 seconds")
    }
  }
  return undefined
}

/**
 * The key under which an entry point is registered: `"library.function"`.
 *
 * @category formats
 * @since 0.1.0
 */
export const entryPointKey = (name: EntryPointName): string => `${name.library}.${name.function}`

/**
 * The current worker's own information (`MyBgworkerEntry`).
 *
 * @category accessors
 * @since 0.1.0
 */
export const current: Effect.Effect<WorkerInfo, never, CurrentWorker> = CurrentWorker.useSync((worker) => worker)
