/**
 * The typed errors of the supervisor: one wrapper, `SupervisorError`, holding a tagged `reason`.
 *
 * PostgreSQL reports these conditions as a `false` return (`RegisterDynamicBackgroundWorker` when no slot
 * is free) or as `ereport(ERROR, ...)` (an invalid definition). Here every one of them is a value in the
 * error channel, never a defect, so callers can match them with `Effect.catchReason`:
 *
 * ```ts
 * const worker = BackgroundWorker.make({ name: "w", argument: Schema.Number, main: () => Effect.void })
 *
 * Supervisor.register(worker, 1).pipe(
 *   Effect.catchReason("SupervisorError", "NoFreeSlot", () => Effect.succeed(undefined))
 * )
 * ```
 *
 * Messages follow PostgreSQL's style: lowercase, no trailing period, names in double quotes; the advice
 * goes in `hint`.
 *
 * **Identity**
 *
 * A `SupervisorError` carries a type id, and so does each of its reasons: {@link isSupervisorError} and
 * {@link isSupervisorErrorReason} recognise them in an `unknown` (a defect, a `Cause`, a value that crossed a
 * library boundary), as `SqlError.isSqlError` does for `effect/sql`.
 *
 * **Retrying**
 *
 * `isRetryable` is `true` when the same call, with the same arguments, against the same supervisor, may
 * succeed later without any change by the caller: something else has to happen first (a worker ends, a
 * server answers), and nothing the caller passed was wrong. Per reason:
 *
 * | reason | retryable | why |
 * |---|---|---|
 * | `NoFreeSlot` | yes | a slot frees up when some worker is forgotten |
 * | `InvalidDefinition` | no | the definition must change |
 * | `InvalidArgument` | no | the argument must change |
 * | `UnknownEntryPoint` | no | entry points are fixed when the supervisor is built |
 * | `ShuttingDown` | no | a supervisor that shuts down never accepts again; only a new one can |
 * | `PermissionDenied` | only `08000` | a failed check can pass later; a denial stands until the grants change |
 * | `ShmemInitFailed` | no | the supervisor has ended |
 * | `DatabaseLost` | no | the supervisor has ended |
 *
 * **Errors that are not reasons**
 *
 * Only what a supervisor operation fails with is a reason. A queue's errors (`Mq.MqError`) come from `Mq`'s
 * own operations, between the two sides, and never from the supervisor's. A worker's connection error
 * (`WorkerConnector.WorkerConnectionError`) ends that worker's incarnation: it reaches its restart policy and
 * its status, not the caller of `register`; a check that `WorkerConnector.authorize` cannot make is
 * `PermissionDenied` with SQLSTATE `08000`. Both carry a type id, a guard and `isRetryable` by the same rule.
 *
 * @since 0.1.0
 */
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"

/** The type id of a {@link SupervisorError}: its value is the id itself, read through the prototype. */
const TypeId = "~effect-bgworker/SupervisorError" as const

/** The type id that every reason of a {@link SupervisorError} carries. */
const ReasonTypeId = "~effect-bgworker/SupervisorError/Reason" as const

const hint = Schema.optionalKey(Schema.String)

/**
 * Every slot of `maxWorkerProcesses` is in use (PostgreSQL: `RegisterDynamicBackgroundWorker` returns false).
 *
 * @category errors
 * @since 0.1.0
 */
export class NoFreeSlot extends Schema.TaggedError<NoFreeSlot>()("NoFreeSlot", {
  maxWorkerProcesses: Schema.Number,
  hint
}) {
  /** Marks a reason of a `SupervisorError`, for {@link isSupervisorErrorReason}. */
  get [ReasonTypeId](): typeof ReasonTypeId {
    return ReasonTypeId
  }
  override get message(): string {
    return `no free background worker slot (max_worker_processes = ${this.maxWorkerProcesses})`
  }
  /** A slot frees up when some worker is forgotten, so trying later can succeed. */
  get isRetryable(): boolean {
    return true
  }
}

/**
 * A definition or registration failed its sanity check (PostgreSQL: `SanityCheckBackgroundWorker`).
 * `field` names the offending option.
 *
 * @category errors
 * @since 0.1.0
 */
export class InvalidDefinition extends Schema.TaggedError<InvalidDefinition>()("InvalidDefinition", {
  worker: Schema.String,
  field: Schema.String,
  detail: Schema.String,
  hint
}) {
  /** Marks a reason of a `SupervisorError`, for {@link isSupervisorErrorReason}. */
  get [ReasonTypeId](): typeof ReasonTypeId {
    return ReasonTypeId
  }
  override get message(): string {
    return `background worker "${this.worker}": invalid ${this.field}: ${this.detail}`
  }
  /** The definition is wrong as given: the same registration fails the same way. */
  get isRetryable(): boolean {
    return false
  }
}

/**
 * The argument did not encode with the worker's `argument` schema (or, when launching by name, did not decode).
 *
 * @category errors
 * @since 0.1.0
 */
export class InvalidArgument extends Schema.TaggedError<InvalidArgument>()("InvalidArgument", {
  worker: Schema.String,
  detail: Schema.String,
  hint
}) {
  /** Marks a reason of a `SupervisorError`, for {@link isSupervisorErrorReason}. */
  get [ReasonTypeId](): typeof ReasonTypeId {
    return ReasonTypeId
  }
  override get message(): string {
    return `background worker "${this.worker}": invalid argument: ${this.detail}`
  }
  /** The argument is wrong as given: the same call fails the same way. */
  get isRetryable(): boolean {
    return false
  }
}

/**
 * No entry point is registered under `(library, function)` (PostgreSQL: `could not find function`).
 *
 * @category errors
 * @since 0.1.0
 */
export class UnknownEntryPoint extends Schema.TaggedError<UnknownEntryPoint>()("UnknownEntryPoint", {
  library: Schema.String,
  function: Schema.String,
  hint
}) {
  /** Marks a reason of a `SupervisorError`, for {@link isSupervisorErrorReason}. */
  get [ReasonTypeId](): typeof ReasonTypeId {
    return ReasonTypeId
  }
  override get message(): string {
    return `could not find function "${this.function}" in library "${this.library}"`
  }
  /** Entry points are fixed when the supervisor is built: the same launch fails the same way. */
  get isRetryable(): boolean {
    return false
  }
}

/**
 * The supervisor is shutting down (or has stopped) and accepts no new registration.
 *
 * @category errors
 * @since 0.1.0
 */
export class ShuttingDown extends Schema.TaggedError<ShuttingDown>()("ShuttingDown", {
  mode: Schema.String,
  hint
}) {
  /** Marks a reason of a `SupervisorError`, for {@link isSupervisorErrorReason}. */
  get [ReasonTypeId](): typeof ReasonTypeId {
    return ReasonTypeId
  }
  override get message(): string {
    return `cannot register background workers: the supervisor is shutting down (${this.mode})`
  }
  /** A supervisor that shuts down never accepts registrations again; only a new one can. */
  get isRetryable(): boolean {
    return false
  }
}

/**
 * The caller of a launch may not have what it asked for: the role the worker would run as, or the database
 * it would connect to (PostgreSQL: `SET ROLE`'s and `CONNECT`'s privilege checks, SQLSTATE 42501). Also used,
 * with its own SQLSTATE, when what the launch names does not exist (`42704` for a role, `3D000` for a
 * database), and when the rights could not be checked at all (`08000`): a launch is refused whenever its
 * caller's rights are not established.
 *
 * `message`, `detail` and `hint` follow PostgreSQL's error fields; `caller` is the role that asked.
 *
 * @category errors
 * @since 0.2.0
 */
export class PermissionDenied extends Schema.TaggedError<PermissionDenied>()("PermissionDenied", {
  caller: Schema.String,
  worker: Schema.String,
  /** PostgreSQL's primary message, e.g. `permission denied to set role "postgres"`. */
  problem: Schema.String,
  detail: Schema.optionalKey(Schema.String),
  /** `42501` (insufficient privilege) unless said otherwise. */
  sqlstate: Schema.optionalKey(Schema.String),
  hint
}) {
  /** Marks a reason of a `SupervisorError`, for {@link isSupervisorErrorReason}. */
  get [ReasonTypeId](): typeof ReasonTypeId {
    return ReasonTypeId
  }
  override get message(): string {
    return this.problem
  }
  /** The SQLSTATE an SQL surface raises this with. */
  get code(): string {
    return this.sqlstate ?? "42501"
  }
  /** Only a failed check (`08000`) can succeed on a retry; a denial stands until the grants change. */
  get isRetryable(): boolean {
    return this.code === "08000"
  }
}

/**
 * A shared-state struct could not be created (PostgreSQL: a failure in `shmem_startup_hook` or
 * `ShmemInitStruct`, which is FATAL to the postmaster): its initialiser died, or did not finish within the
 * supervisor's `abandonTimeout`. `struct` is the struct's name.
 *
 * **Details**
 *
 * Every struct listed in `Supervisor.layer({ shmem })` is created before any worker starts and again after
 * each crash restart. At start this reason fails the layer; after a crash restart it ends the supervisor:
 * `Supervisor.awaitTermination` fails with it and every handle reports `PostmasterDied`, as PostgreSQL exits
 * when it cannot re-initialise shared memory. Structs created on first use are not covered: their failure is a
 * defect in the worker that asked (a crash, since only `shmem: true` workers can ask).
 *
 * @category errors
 * @since 0.2.0
 */
export class ShmemInitFailed extends Schema.TaggedError<ShmemInitFailed>()("ShmemInitFailed", {
  struct: Schema.String,
  detail: Schema.String,
  hint
}) {
  /** Marks a reason of a `SupervisorError`, for {@link isSupervisorErrorReason}. */
  get [ReasonTypeId](): typeof ReasonTypeId {
    return ReasonTypeId
  }
  override get message(): string {
    return `could not initialize shared memory structure "${this.struct}": ${this.detail}`
  }
  /** The supervisor has ended; only building a new one can succeed. */
  get isRetryable(): boolean {
    return false
  }
}

/**
 * The database the workers run against is gone for good: an embedded server that exited under the
 * supervisor (see `DatabaseState.lost`). The supervisor ends with it, as PostgreSQL's children end with
 * their postmaster.
 *
 * @category errors
 * @since 0.2.0
 */
export class DatabaseLost extends Schema.TaggedError<DatabaseLost>()("DatabaseLost", {
  detail: Schema.String,
  hint
}) {
  /** Marks a reason of a `SupervisorError`, for {@link isSupervisorErrorReason}. */
  get [ReasonTypeId](): typeof ReasonTypeId {
    return ReasonTypeId
  }
  override get message(): string {
    return this.detail
  }
  /** The supervisor has ended; only building a new one (with a new server) can succeed. */
  get isRetryable(): boolean {
    return false
  }
}

/**
 * The reasons a `SupervisorError` can carry.
 *
 * @category errors
 * @since 0.1.0
 */
export const SupervisorErrorReason = Schema.Union([
  NoFreeSlot,
  InvalidDefinition,
  InvalidArgument,
  UnknownEntryPoint,
  ShuttingDown,
  PermissionDenied,
  ShmemInitFailed,
  DatabaseLost
])

/**
 * @category errors
 * @since 0.1.0
 */
export type SupervisorErrorReason = typeof SupervisorErrorReason.Type

/**
 * The error of every supervisor operation that can fail. Match on `reason._tag`, or with
 * `Effect.catchReason("SupervisorError", "NoFreeSlot", ...)`.
 *
 * **Details**
 *
 * `message`, `hint` and `isRetryable` are the reason's. The reason is kept in `reason`, not in `cause`: it
 * is the same condition, not an earlier one.
 *
 * @category errors
 * @since 0.1.0
 */
export class SupervisorError extends Schema.TaggedError<SupervisorError>()("SupervisorError", {
  reason: SupervisorErrorReason
}) {
  /** Marks a `SupervisorError`, for {@link isSupervisorError}. */
  get [TypeId](): typeof TypeId {
    return TypeId
  }
  override get message(): string {
    return this.reason.message
  }
  get hint(): string | undefined {
    return this.reason.hint
  }
  /** The reason's: see the table in the module comment. */
  get isRetryable(): boolean {
    return this.reason.isRetryable
  }
}

/**
 * Whether `u` is a {@link SupervisorError}.
 *
 * **When to use**
 *
 * Where the type is lost: a defect, a `Cause` collected from several layers, an error that crossed a
 * library boundary. Inside a typed error channel, `Effect.catchTag("SupervisorError", ...)` and
 * `Effect.catchReason` are simpler.
 *
 * **Example** (Telling the supervisor's retryable failures apart where errors of many kinds meet)
 *
 * ```ts
 * import { Cause } from "effect"
 * import * as SupervisorError from "effect-bgworker/SupervisorError"
 *
 * const worthRetrying = (cause: Cause.Cause<unknown>): boolean => {
 *   const error = Cause.squash(cause)
 *   return SupervisorError.isSupervisorError(error) && error.isRetryable
 * }
 * ```
 *
 * @category guards
 * @since 0.2.0
 */
export const isSupervisorError = (u: unknown): u is SupervisorError => Predicate.hasProperty(u, TypeId)

/**
 * Whether `u` is one of the reasons a {@link SupervisorError} carries (`NoFreeSlot`, `PermissionDenied`, ...),
 * whether or not it is wrapped yet: `PermissionDenied` also comes bare from `WorkerConnector.authorize`.
 *
 * @category guards
 * @since 0.2.0
 */
export const isSupervisorErrorReason = (u: unknown): u is SupervisorErrorReason =>
  Predicate.hasProperty(u, ReasonTypeId)

/** @internal */
export const fail = (reason: SupervisorErrorReason): SupervisorError => new SupervisorError({ reason })
