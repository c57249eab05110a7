/**
 * How a database worker gets its connection: `BackgroundWorkerInitializeConnection`.
 *
 * PostgreSQL: `BackgroundWorkerInitializeConnection(dbname, username, flags)` and `...ByOid`
 * (src/backend/postmaster/bgworker.c), run once by a worker declared with
 * `BGWORKER_BACKEND_DATABASE_CONNECTION`.
 *
 * A worker declared with `database: { database?, user? }` gets a `SqlClient` bound to a session of its own,
 * opened by the `WorkerConnector` service before `main` runs and closed when the incarnation ends. This
 * module only names the seam; `src/pg/` implements it for PostgreSQL (each session's `application_name` is
 * the worker's name, so it shows in `pg_stat_activity`).
 *
 * A connection that fails (missing database, one that does not accept connections, a role that cannot log
 * in) ends the incarnation as failed, with the server's error text; its restart policy applies.
 *
 * **Launches on someone's behalf.** A launch that carries a `caller` (from SQL, from another process) is
 * checked by {@link WorkerConnectorApi.authorize} before anything is registered: the connector resolves the
 * role and database the worker will use (the caller's own role when none is named) and checks them against
 * the caller's rights, as PostgreSQL checks `SET ROLE` and `CONNECT`. The registration keeps the resolved
 * pair for every restart, so a later change of a parameter cannot move the worker to another role.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { SqlClient } from "effect/sql/SqlClient"
import type { DatabaseOptions, WorkerInfo } from "./BackgroundWorker.ts"
import type { PermissionDenied } from "./SupervisorError.ts"

/** The type id of a {@link WorkerConnectionError}, read through the prototype. */
const ErrorTypeId = "~effect-bgworker/WorkerConnector/WorkerConnectionError" as const

/**
 * SQLSTATE classes of conditions that pass by themselves: `08` connection exception, `53` insufficient
 * resources (`too_many_connections`), `57` operator intervention (`admin_shutdown`, `crash_shutdown`,
 * `cannot_connect_now`).
 */
const transientClasses: ReadonlySet<string> = new Set(["08", "53", "57"])

/**
 * The connection could not be made, or the session was lost (`SessionLost`). `message` is the server's error
 * text.
 *
 * **Details**
 *
 * `isRetryable` follows the rule of `SupervisorError`: whether the same connection may succeed later
 * without a change by the caller. With a `sqlstate` it is `true` for the classes that pass by themselves
 * (`08` connection exception, `53` insufficient resources, `57` operator intervention such as a server
 * restarting after a crash) and `false` for the rest (a missing database `3D000` or role `42704`, a role
 * that may not log in `28000`, a database that does not accept connections `55000`): those stand until an
 * administrator changes something. Without a `sqlstate` it is `true`, as the connector could not tell. A
 * worker's restart policy applies either way, as PostgreSQL restarts a background worker whose connection
 * failed (FATAL) after its `bgw_restart_time`.
 *
 * @category errors
 * @since 0.1.0
 */
export class WorkerConnectionError extends Schema.TaggedError<WorkerConnectionError>()("WorkerConnectionError", {
  message: Schema.String,
  database: Schema.optionalKey(Schema.String),
  user: Schema.optionalKey(Schema.String),
  /** What to do about it, when the connector knows. */
  hint: Schema.optionalKey(Schema.String),
  /** PostgreSQL's SQLSTATE for the condition, when the connector knows it (`3D000`, `08006`, ...). */
  sqlstate: Schema.optionalKey(Schema.String)
}) {
  /** Marks a `WorkerConnectionError`, for {@link isWorkerConnectionError}. */
  get [ErrorTypeId](): typeof ErrorTypeId {
    return ErrorTypeId
  }
  /** See **Details**: transient SQLSTATE classes, or no SQLSTATE at all. */
  get isRetryable(): boolean {
    return this.sqlstate === undefined || transientClasses.has(this.sqlstate.slice(0, 2))
  }
}

/**
 * Whether `u` is a {@link WorkerConnectionError}: a worker's session could not be opened, or was lost.
 *
 * **When to use**
 *
 * Where the type is lost: a `Cause`, or `WorkerFailure.error` (`unknown`) in a restart schedule, which holds
 * this error when a worker's session was lost under it (`SessionLost`).
 *
 * @category guards
 * @since 0.2.0
 */
export const isWorkerConnectionError = (u: unknown): u is WorkerConnectionError => Predicate.hasProperty(u, ErrorTypeId)

/**
 * What {@link WorkerConnectorApi.authorize} is asked.
 *
 * @category models
 * @since 0.2.0
 */
export interface AuthorizeRequest {
  /** The role on whose behalf the worker is launched (PostgreSQL: the calling session's role). */
  readonly caller: string
  /** The worker's name, for messages. */
  readonly worker: string
  /** What the definition asks for; a missing `user` means the caller's own role. */
  readonly options: DatabaseOptions
}

/**
 * The service's shape.
 *
 * @category models
 * @since 0.2.0
 */
export interface WorkerConnectorApi {
  /** Opens a worker's own session; the session ends when the scope closes. */
  readonly connect: (
    worker: WorkerInfo,
    options: DatabaseOptions
  ) => Effect.Effect<Context.Context<SqlClient>, WorkerConnectionError, Scope.Scope>
  /**
   * Resolves and checks what a launch on `caller`'s behalf may use: returns the options with `database`
   * and `user` filled in (the caller's role when none is named), or fails with `PermissionDenied` when the
   * caller could not itself become that role, the role may not connect to that database, or the rights
   * could not be checked.
   */
  readonly authorize: (request: AuthorizeRequest) => Effect.Effect<DatabaseOptions, PermissionDenied>
}

/**
 * A connector may put this into the context it returns from `connect`: an effect that fails when the
 * session ends under the worker (the server terminated it, crashed, or went away). The worker is then
 * ended as failed at once, napping or not, and its restart policy applies; without it, the loss is seen
 * only at the worker's next query.
 *
 * @category services
 * @since 0.2.0
 */
export class SessionLost extends Context.Service<SessionLost, Effect.Effect<never, WorkerConnectionError>>()(
  "effect-bgworker/WorkerConnector/SessionLost"
) {}

/**
 * A connector puts this into the context it returns from `connect` when the session is a server process of
 * its own: `backendPid` is that process's pid (`pg_backend_pid()`). The worker then takes it as its pid
 * everywhere (its status, the activity view, its log lines), as a PostgreSQL background worker's pid is
 * its backend's, so it joins `pg_stat_activity.pid` and `pg_terminate_backend(pid)` reaches it. Until the
 * session is open the worker counts as not yet started; without this service it is started once `connect`
 * succeeds and keeps the supervisor's own number.
 *
 * @category services
 * @since 0.2.0
 */
export class SessionInfo extends Context.Service<SessionInfo, {
  readonly backendPid: number
  /**
   * Attributes that describe the session on the worker's spans (`Spi.transaction`'s), in OpenTelemetry's
   * database vocabulary: `WorkerConnection` gives `db.system.name`, `db.namespace` and `db.user`.
   *
   * @since 0.2.0
   */
  readonly spanAttributes?: Readonly<Record<string, unknown>> | undefined
}>()(
  "effect-bgworker/WorkerConnector/SessionInfo"
) {}

/**
 * Opens workers' sessions, and checks launches made on someone's behalf.
 *
 * @category services
 * @since 0.1.0
 */
export class WorkerConnector extends Context.Service<WorkerConnector, WorkerConnectorApi>()(
  "effect-bgworker/WorkerConnector"
) {}
