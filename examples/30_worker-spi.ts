/**
 * @title worker_spi on a real PostgreSQL: static workers, `SELECT worker_spi_launch(n)`, reload, activity
 *
 * The demo of the seed talk, in one process: worker_spi "preloaded" into a supervisor that runs against a
 * PostgreSQL server, and a psql session to watch and drive it.
 *
 * - The server is `DATABASE_URL` when set, else a throwaway PostgreSQL started from the bundled binaries
 *   (about two seconds; deleted on exit).
 * - The preload (`_PG_init`) defines `worker_spi.naptime`, `.database`, `.role` and `.total_workers`, and
 *   registers `total_workers` (2) static workers, `worker_spi worker 1` and `2`. Each connects to
 *   `worker_spi.database` (`postgres`), creates `schema<N>.counted`, and every `naptime` (10) seconds folds
 *   the `'delta'` rows into the `'total'` row.
 * - The control plane (`bgworker` schema) and `worker_spi_launch` are installed in the server's database, so
 *   workers can be launched, and the activity view read, from SQL.
 * - A short scripted session then does what the TAP test t/001_worker_spi.pl does first: it launches worker 4
 *   from SQL (`SELECT worker_spi_launch(4)`, which returns the worker's backend pid), inserts `('total', 0), ('delta', 1)` into `schema4.counted`, and reloads, so the worker logs
 *   `count in schema4.counted is now 1` at once instead of after `naptime`.
 * - `worker_spi.*` can also live in the server's configuration: `ALTER SYSTEM SET worker_spi.naptime = 2;
 *   SELECT pg_reload_conf();` reaches the workers within a second (`ServerSettings`), over this program's
 *   own file and under its `BGW_*` variables.
 * - `kill -HUP <pid>` re-reads the configuration and wakes every worker for one cycle (`pg_ctl reload`);
 *   Ctrl-C (SIGINT) or SIGTERM stops the workers, detaches the control plane and stops the server (exit 130).
 *
 * Run: `npm start`. Parameters: a `postgresql.conf`-style file (`npm start -- my.conf`, or
 * `WORKER_SPI_CONFIG=my.conf`), re-read on SIGHUP, and environment variables over it:
 * `BGW_WORKER_SPI__NAPTIME=1 BGW_WORKER_SPI__TOTAL_WORKERS=3 npm start`. With
 * `OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318` (an OpenTelemetry collector) the workers' spans, the
 * metrics and the log records are exported over OTLP (`NodeSupervisor.runMain` installs `NodeOtlp`). With `EXAMPLE_EXIT_AFTER_MS=8000` it
 * shuts itself down after eight seconds and exits with code 0.
 *
 * **Differences from the C module** (see examples/worker_spi/worker_spi.ts for all of them)
 *
 * - `SELECT worker_spi_launch(5)` returns the pid as PostgreSQL's does: the control plane commits the launch
 *   on a session of its own (dblink, which ships with the embedded server) and waits for the worker. Without
 *   dblink it returns NULL with a notice, and the worker starts when the calling transaction commits. It takes
 *   oids (`worker_spi_launch(10, 16384, 16385)`) or names (`worker_spi_launch(10, 'mydb', 'myrole')`).
 * - The workers are client sessions of the server: a worker's pid is its session's backend pid, so
 *   `bgworker.activity` joins `pg_stat_activity` on `pid` and `pg_terminate_backend(pid)` ends the worker.
 *   `pg_stat_activity` shows them as `client backend`s named by `application_name`; the backend type
 *   (`worker_spi`, `worker_spi dynamic`) and the wait event `WorkerSpiMain` are in `bgworker.activity`.
 *   This program's own sessions are named `bgworker supervisor`, so `application_name LIKE 'worker_spi%'`
 *   finds only workers.
 * - Workers launched from SQL are named `worker_spi dynamic worker N` after their index, as PostgreSQL's
 *   launcher sets `bgw_name`; they run as the role that called `worker_spi_launch` unless it names another
 *   role that caller could `SET ROLE` to (see the README's Security section).
 *
 * PostgreSQL: src/test/modules/worker_spi (worker_spi.c, worker_spi--1.0.sql, t/001_worker_spi.pl).
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import { SqlClient } from "effect/sql/SqlClient"
import * as path from "node:path"
import * as Guc from "../src/Guc.ts"
import { NodeSupervisor } from "../src/node/index.ts"
import * as ControlPlane from "../src/pg/ControlPlane.ts"
import * as DatabaseProbe from "../src/pg/DatabaseProbe.ts"
import * as EmbeddedPostgres from "../src/pg/EmbeddedPostgres.ts"
import * as ServerSettings from "../src/pg/ServerSettings.ts"
import * as WorkerConnection from "../src/pg/WorkerConnection.ts"
import * as Supervisor from "../src/Supervisor.ts"
import { exitAfter } from "./support.ts"
import * as WorkerSpi from "./worker_spi/worker_spi.ts"

/** `argv[2]`, else `WORKER_SPI_CONFIG`, else none (defaults and `BGW_*` variables only). */
const configArgument = process.argv[2] ?? process.env["WORKER_SPI_CONFIG"]
const configFile = configArgument === undefined || configArgument === "" ? undefined : path.resolve(configArgument)

// --- The supervisor: worker_spi preloaded, its entry point launchable by name ---

const supervisor = Layer.unwrap(
  Effect.map(WorkerSpi.entryPoints, (entryPoints) => Supervisor.layer({ preload: [WorkerSpi.init], entryPoints }))
)

// --- What to try ---

const howTo = Effect.gen(function*() {
  const server = yield* EmbeddedPostgres.PgServer
  const psql = server.embedded ? `psql "${Redacted.value(server.url)}"` : `psql "$DATABASE_URL"`
  const naptime = yield* Guc.get(WorkerSpi.Naptime)
  yield* Effect.logInfo(
    [
      `connect: ${psql}`,
      "then try:",
      "  INSERT INTO schema1.counted VALUES ('total', 0), ('delta', 1);",
      "  INSERT INTO schema1.counted VALUES ('delta', 41);",
      `  SELECT * FROM schema1.counted \\watch 1                 -- folded every ${naptime} s (worker_spi.naptime)`,
      "  SELECT worker_spi_launch(5);                            -- a dynamic worker on schema5: its backend pid",
      "  SELECT pid, name, backend_type, state, wait_event_type, wait_event, query FROM bgworker.activity;",
      "  SELECT pid, application_name, datname, usename FROM pg_stat_activity WHERE application_name LIKE 'worker_spi%';",
      "  SELECT pg_terminate_backend(pid) FROM bgworker.activity WHERE name = 'worker_spi dynamic worker 5';",
      "  ALTER SYSTEM SET worker_spi.naptime = 2; SELECT pg_reload_conf();   -- the workers follow within 1 s",
      "  SELECT name, setting, source, sourcefile FROM bgworker.settings WHERE name LIKE 'worker_spi.%';",
      `  SELECT bgworker.reload();   -- or: kill -HUP ${process.pid}   (every worker runs a cycle now)`,
      `stop: Ctrl-C, or kill ${process.pid}`
    ].join("\n")
  )
}).pipe(Effect.annotateLogs({ worker: "main" }))

// --- The scripted session: t/001_worker_spi.pl's first steps, from SQL ---

const session = Effect.gen(function*() {
  const sql = yield* SqlClient
  const [launched] = yield* sql<{ pid: number | null }>`SELECT worker_spi_launch(4) AS pid`
  yield* Effect.logInfo(`SELECT worker_spi_launch(4) returned pid ${launched?.pid ?? "NULL"}`)
  const exists = sql`SELECT 1 FROM information_schema.tables WHERE table_schema = 'schema4' AND table_name = 'counted'`
  yield* exists.pipe(
    Effect.flatMap((rows) => rows.length === 1 ? Effect.void : Effect.fail("not yet" as const)),
    Effect.retry({ times: 200, schedule: Schedule.spaced("50 millis") })
  )
  yield* sql`INSERT INTO schema4.counted VALUES ('total', 0) ON CONFLICT (type) WHERE type = 'total' DO NOTHING`
  yield* sql`INSERT INTO schema4.counted VALUES ('delta', 1)`
  yield* Effect.logInfo("inserted ('total', 0), ('delta', 1) into schema4.counted; SELECT bgworker.reload()")
  yield* sql`SELECT bgworker.reload()`
}).pipe(
  Effect.tapCause((cause) => Effect.logError("session failed", cause)),
  Effect.annotateLogs({ worker: "session" })
)

// --- The program ---

const app = Layer.effectDiscard(
  Effect.andThen(howTo, Effect.andThen(Effect.forkScoped(session), Effect.forkScoped(exitAfter)))
).pipe(
  // CREATE EXTENSION worker_spi: both worker_spi_launch forms, over the control plane's schema.
  Layer.provideMerge(Layer.effectDiscard(WorkerSpi.install())),
  Layer.provideMerge(ControlPlane.layer()),
  // The server's own configuration: ALTER SYSTEM SET worker_spi.naptime = 5; SELECT pg_reload_conf();
  // reaches the workers (a check of pg_conf_load_time() every 250 ms, then Supervisor.reload).
  Layer.provideMerge(ServerSettings.layer()),
  Layer.provideMerge(supervisor),
  // Read once before the preloads, so worker_spi.* (total_workers included) start with the server's values.
  Layer.provideMerge(ServerSettings.layerStartup()),
  // The registry is in the supervisor's context: SIGHUP re-reads the file before waking the workers.
  Layer.provideMerge(NodeSupervisor.layerGucs({ configFile })),
  Layer.provideMerge(WorkerConnection.layer()),
  Layer.provideMerge(DatabaseProbe.layer()),
  Layer.provideMerge(EmbeddedPostgres.clientLayer({ applicationName: "bgworker supervisor" })),
  Layer.provideMerge(EmbeddedPostgres.layer())
)

NodeSupervisor.runMain(app)
