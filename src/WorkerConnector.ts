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
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { SqlClient } from "effect/sql/SqlClient"
import type { DatabaseOptions, WorkerInfo } from "./BackgroundWorker.ts"

/**
 * The connection could not be made. `message` is the server's error text.
 *
 * @category errors
 * @since 0.1.0
 */
export class WorkerConnectionError extends Schema.TaggedError<WorkerConnectionError>()("WorkerConnectionError", {
  message: Schema.String,
  database: Schema.optionalKey(Schema.String),
  user: Schema.optionalKey(Schema.String)
}) {}

/**
 * Opens a worker's own session; the session ends when the scope closes.
 *
 * @category services
 * @since 0.1.0
 */
export class WorkerConnector extends Context.Service<WorkerConnector, {
  readonly connect: (
    worker: WorkerInfo,
    options: DatabaseOptions
  ) => Effect.Effect<Context.Context<SqlClient>, WorkerConnectionError, Scope.Scope>
}>()("effect-bgworker/WorkerConnector") {}
