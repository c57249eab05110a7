/**
 * Database workers' sessions on PostgreSQL: the `WorkerConnector` for `@effect/sql-pg`.
 *
 * PostgreSQL: `BackgroundWorkerInitializeConnection(dbname, username, flags)` (bgworker.c,
 * `InitPostgres`). A PostgreSQL worker runs inside the server and needs no credentials; ours is a client,
 * so this connector decides how each session logs in:
 *
 * - Every incarnation gets one session of its own (not a pool), opened before `main` runs and closed when
 *   the incarnation ends. Its `application_name` is the worker's name (63 characters at most), so the
 *   worker shows up in the server's own `pg_stat_activity`. There `backend_type` reads `client backend`, as
 *   for any client, and `wait_event` shows the session's own waits (`ClientRead` while the worker naps): the
 *   worker's type and its custom wait events are in `bgworker.activity` (the `ControlPlane`'s view).
 * - The database is the worker's `database.database`, else this layer's `defaultDatabase`, else the
 *   server's database.
 * - The role: with a password for it in `passwords`, the session logs in as that role. Otherwise it logs in
 *   as the server's administrator and takes the role with `SET SESSION AUTHORIZATION` (so `session_user`
 *   and `current_user` are the role), after checking, as PostgreSQL does, that the role exists and may log
 *   in (`role "x" is not permitted to log in`). `bypassRoleLoginCheck` skips that check
 *   (`BGWORKER_BYPASS_ROLELOGINCHECK`). `pg_stat_activity.usename` then shows the login role.
 * - `bypassAllowConn` (`BGWORKER_BYPASS_ALLOWCONN`) cannot be honoured by a client: PostgreSQL refuses
 *   every client connection to a database with `ALLOW_CONNECTIONS false`. A worker that asks for it fails at
 *   start with a message saying so.
 *
 * A failure to connect ends the incarnation as failed with the server's error text (for example
 * `database "noconndb" is not currently accepting connections`); its restart policy applies.
 *
 * @since 0.1.0
 */
import { PgClient } from "@effect/sql-pg"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import * as Reactivity from "effect/reactivity/Reactivity"
import { SqlClient } from "effect/sql/SqlClient"
import { WorkerConnectionError, WorkerConnector } from "../WorkerConnector.ts"
import { PgServer, quoteIdentifier } from "./EmbeddedPostgres.ts"

/**
 * @category models
 * @since 0.1.0
 */
export interface Options {
  /** The database of workers that name none (worker_spi's `worker_spi.database` plays this role). */
  readonly defaultDatabase?: string | undefined
  /** Roles that log in themselves, with their passwords. */
  readonly passwords?: Readonly<Record<string, Redacted.Redacted>> | undefined
  /** How long a connection attempt may take. Default 10 seconds. */
  readonly connectTimeout?: Duration.Input | undefined
}

/** The server's error text: `SqlError` keeps the driver's error as its cause. */
const serverText = (error: unknown): string => {
  let current: unknown = error
  for (let i = 0; i < 5 && current !== undefined && current !== null; i++) {
    const message = (current as { message?: unknown }).message
    const cause = (current as { cause?: unknown }).cause
    if (cause === undefined || cause === null) return typeof message === "string" ? message : String(current)
    current = cause
  }
  return String(error)
}

/**
 * The connector, for the server in `PgServer` (embedded or `DATABASE_URL`).
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = (options: Options = {}): Layer.Layer<WorkerConnector, never, PgServer> =>
  Layer.effect(
    WorkerConnector,
    Effect.gen(function*() {
      const server = yield* PgServer
      return WorkerConnector.of({
        connect: (worker, db) =>
          Effect.gen(function*() {
            const database = db.database ?? options.defaultDatabase ?? server.database
            const role = db.user
            const fail = (message: string) =>
              new WorkerConnectionError(
                role === undefined ? { message, database } : { message, database, user: role }
              )
            if (db.bypassAllowConn === true) {
              return yield* fail(
                "BGWORKER_BYPASS_ALLOWCONN is not available to client connections: " +
                  "PostgreSQL refuses every client of a database that does not accept connections"
              )
            }
            const password = role === undefined ? undefined : options.passwords?.[role]
            const client = yield* PgClient.makeClient({
              host: server.host,
              port: server.port,
              username: password !== undefined ? role : server.user,
              password: password ?? server.password,
              database,
              applicationName: worker.name.slice(0, 63),
              connectTimeout: options.connectTimeout ?? "10 seconds"
            }).pipe(
              Effect.provide(Reactivity.layer),
              Effect.mapError((e) => fail(serverText(e)))
            )
            if (role !== undefined && password === undefined) {
              const rows = yield* client<{ rolcanlogin: boolean }>`
                SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = ${role}`.pipe(
                Effect.mapError((e) => fail(serverText(e)))
              )
              if (rows.length === 0) return yield* fail(`role "${role}" does not exist`)
              if (!rows[0]!.rolcanlogin && db.bypassRoleLoginCheck !== true) {
                return yield* fail(`role "${role}" is not permitted to log in`)
              }
              yield* client.unsafe(`SET SESSION AUTHORIZATION ${quoteIdentifier(role)}`).pipe(
                Effect.mapError((e) => fail(serverText(e)))
              )
            } else {
              // Connect now, so a failure is a failed start rather than the first query's error.
              yield* client`SELECT 1`.pipe(Effect.mapError((e) => fail(serverText(e))))
            }
            return Context.make(SqlClient, client as SqlClient).pipe(Context.add(PgClient.PgClient, client))
          })
      })
    })
  )
