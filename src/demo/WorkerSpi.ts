/**
 * worker_spi: PostgreSQL's sample background worker, as a library for this project's supervisor.
 *
 * PostgreSQL: src/test/modules/worker_spi/worker_spi.c and worker_spi--1.0.sql (PG 17/18). The sample
 * demonstrates the patterns a database worker needs: connecting to a database, starting and committing
 * transactions, reading parameters that change on SIGHUP, sleeping on the process latch, and reporting
 * what it does in the activity view.
 *
 * What a worker does: it owns table `schema<N>.counted (type text, value integer)`, creating it if its
 * schema does not exist, and every `worker_spi.naptime` seconds folds the table's `'delta'` rows into its
 * `'total'` row, in one statement:
 *
 * ```sql
 * INSERT INTO schema1.counted VALUES ('total', 0), ('delta', 1), ('delta', 41);
 * -- one cycle later (or at once after a reload): schema1.counted holds total | 42
 * ```
 *
 * | PostgreSQL | here |
 * |---|---|
 * | `_PG_init` (when preloaded) | {@link init}: a preload for `Supervisor.layer({ preload })` |
 * | `DefineCustomIntVariable("worker_spi.naptime", ...)` and the other three | {@link Naptime}, {@link Database}, {@link Role}, {@link TotalWorkers} |
 * | `MarkGUCPrefixReserved("worker_spi")` | `Guc.reservePrefix("worker_spi")` in {@link init} |
 * | `RegisterBackgroundWorker` x `worker_spi.total_workers` | static workers `worker_spi worker N` (type `worker_spi`) |
 * | `bgw_library_name = "worker_spi"`, `bgw_function_name = "worker_spi_main"` | entry point `{ library: "worker_spi", function: "worker_spi_main" }` ({@link entryPoints}) |
 * | `worker_spi_launch(index, dboid, roleoid, flags)` | {@link launch} in TypeScript; `SELECT worker_spi_launch(index, dboid, roleoid, flags)` (or with names) in SQL ({@link install}) |
 * | `bgw_main_arg` (the index) + `bgw_extra` (dboid, roleoid, flags) | one Schema-typed {@link Argument}: `{ index, database?, role?, flags? }` |
 * | `worker_spi_main` | {@link worker_spi_main} |
 * | `WaitEventExtensionNew("WorkerSpiMain")` | `ProcLatch.wait({ waitEvent: "WorkerSpiMain" })` |
 *
 * **Deliberate differences**
 *
 * - The {@link Argument} carries databases and roles by name, not by oid (SQL's `worker_spi_launch` takes
 *   either, and resolves oids in the calling session). A missing `database` or `role` falls back to
 *   `worker_spi.database` / `worker_spi.role` as the worker starts (PostgreSQL's static workers do the same;
 *   `worker_spi_launch` resolves the parameters in the launching session, which reads the same values).
 * - The workers are clients of the server, through the `WorkerConnector` (`src/pg/WorkerConnection.ts`):
 *   the session's `application_name` is the worker's name, and it logs in as the worker's role, so
 *   `pg_stat_activity.usename` shows that role. `ROLELOGINCHECK` (a `NOLOGIN` role) needs the connector's
 *   explicit `allowSetSessionAuthorization` opt-in; `ALLOWCONN` (`BGWORKER_BYPASS_ALLOWCONN`) cannot be
 *   honoured by a client and the worker fails at start saying so.
 * - A worker launched from SQL runs as the role that launched it, or as the role its argument names if
 *   that caller could `SET ROLE` to it; PostgreSQL's `worker_spi_launch` runs it as any role it is given.
 * - The wait event `WorkerSpiMain` shows in this project's activity view (`Activity.snapshot`,
 *   `bgworker.activity`) and catalogue (`Activity.waitEvents`), not in the server's `pg_stat_activity`,
 *   where an idle client session always waits on `Client`/`ClientRead`.
 * - A worker's pid is its session's backend pid, known once the session is open: a worker that cannot
 *   connect never counts as started, so `worker_spi_launch` fails for it with `could not start background
 *   process` and the cause, where PostgreSQL returns the pid of a process that then exits.
 * - {@link Argument} has one field PostgreSQL lacks, `schemaPrefix` (default `"schema"`), so that a schema
 *   name that needs quoting can be exercised.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import * as Activity from "../Activity.ts"
import * as BackgroundWorker from "../BackgroundWorker.ts"
import * as Guc from "../Guc.ts"
import * as Interrupts from "../Interrupts.ts"
import * as PgServer from "../pg/PgServer.ts"
import * as Preload from "../Preload.ts"
import * as ProcLatch from "../ProcLatch.ts"
import * as Spi from "../Spi.ts"
import * as Supervisor from "../Supervisor.ts"
import type * as SupervisorError from "../SupervisorError.ts"
import type { WorkerConnector } from "../WorkerConnector.ts"

// --- Parameters (_PG_init's DefineCustom*Variable calls) ---

/**
 * `worker_spi.naptime`: seconds between two cycles. A plain integer without a unit, as in PostgreSQL.
 *
 * @category parameters
 * @since 0.1.0
 */
export const Naptime: Guc.Parameter<number> = Guc.int("worker_spi.naptime", {
  context: "sighup",
  description: "Duration between each check (in seconds).",
  default: 10,
  min: 1,
  max: 2_147_483_647
})

/**
 * `worker_spi.database`: the database of workers launched without one.
 *
 * @category parameters
 * @since 0.1.0
 */
export const Database: Guc.Parameter<string> = Guc.string("worker_spi.database", {
  context: "sighup",
  description: "Database to connect to.",
  default: "postgres"
})

/**
 * `worker_spi.role`: the role of workers launched without one; `null` (unset) means the connector's own
 * login role for the static workers (PostgreSQL: the bootstrap superuser) and the caller's own role for a
 * worker launched from SQL, which may never run as a role its caller could not become itself.
 *
 * @category parameters
 * @since 0.1.0
 */
export const Role: Guc.Parameter<string | null> = Guc.string("worker_spi.role", {
  context: "sighup",
  description: "Role to connect with.",
  default: null
})

/**
 * `worker_spi.total_workers`: how many static workers {@link init} registers. Read once, at start.
 *
 * @category parameters
 * @since 0.1.0
 */
export const TotalWorkers: Guc.Parameter<number> = Guc.int("worker_spi.total_workers", {
  context: "postmaster",
  description: "Number of workers.",
  default: 2,
  min: 1,
  max: 100
})

// --- Names ---

/**
 * `bgw_library_name`.
 *
 * @category constants
 * @since 0.1.0
 */
export const library = "worker_spi"

/**
 * `bgw_function_name`.
 *
 * @category constants
 * @since 0.1.0
 */
export const mainFunction = "worker_spi_main"

/**
 * The custom wait event shown while a worker naps.
 *
 * @category constants
 * @since 0.1.0
 */
export const waitEvent = "WorkerSpiMain"

// --- The argument (bgw_main_arg + bgw_extra) ---

/**
 * `"ALLOWCONN"` (`BGWORKER_BYPASS_ALLOWCONN`) or `"ROLELOGINCHECK"` (`BGWORKER_BYPASS_ROLELOGINCHECK`).
 * Anything else is refused with PostgreSQL's `incorrect flag value found in array`.
 *
 * @category models
 * @since 0.1.0
 */
export const Flag = Schema.Literals(["ALLOWCONN", "ROLELOGINCHECK"]).annotate({
  message: "incorrect flag value found in array"
})

/**
 * @category models
 * @since 0.1.0
 */
export type Flag = typeof Flag.Type

/**
 * What a worker is started with: PostgreSQL's `bgw_main_arg` (the index) and `bgw_extra` (database, role,
 * flags) in one value. Its JSON form is what `bgworker.launch('worker_spi', 'worker_spi_main', arg)` takes.
 *
 * @category models
 * @since 0.1.0
 */
export const Argument = Schema.Struct({
  /** The table is `<schemaPrefix><index>.counted`. */
  index: Schema.Int.check(Schema.isInt32()),
  /** Database name; `worker_spi.database` at start when absent. */
  database: Schema.optionalKey(Schema.String),
  /** Role name; `worker_spi.role` at start when absent. */
  role: Schema.optionalKey(Schema.String),
  flags: Schema.optionalKey(Schema.Array(Flag)),
  /** Not in PostgreSQL (always `"schema"`): lets a test use a schema name that needs quoting. */
  schemaPrefix: Schema.optionalKey(Schema.String.check(Schema.isMinLength(1)))
})

/**
 * @category models
 * @since 0.1.0
 */
export type Argument = typeof Argument.Type

// --- SQL texts ---

/**
 * PostgreSQL's `quote_identifier`: the name as is when it is a lowercase identifier that is not a
 * reserved word (`schema4`, `counted`), else in double quotes with inner quotes doubled (`"My Schema7"`).
 * The library's `PgServer.quoteIdentifier`, which holds PostgreSQL 18's list of reserved words.
 *
 * @category sql
 * @since 0.1.0
 */
export const quoteIdentifier: (name: string) => string = PgServer.quoteIdentifier

/** `'text'` with inner quotes doubled (worker_spi splices the schema name in unescaped). */
const literal = (text: string) => `'${text.replaceAll("'", "''")}'`

/** worker_spi's own `"%s"`: always quoted (and, unlike worker_spi, with inner quotes doubled). */
const quoted = (name: string) => `"${name.replaceAll("\"", "\"\"")}"`

/**
 * The statements of one worker, exactly as worker_spi builds them for `schema`.`table`.
 *
 * @category sql
 * @since 0.1.0
 */
export interface Statements {
  /** `initialize_worker_spi`'s check (read-only). */
  readonly count: string
  /** `initialize_worker_spi`'s creation, with the C source's tabs and the missing space before the index. */
  readonly create: string
  /** The cycle's statement: deletes the deltas and adds their sum to the total, atomically. */
  readonly summary: string
}

/**
 * Builds {@link Statements}.
 *
 * @category sql
 * @since 0.1.0
 */
export const statements = (schema: string, table: string): Statements => {
  const s = quoteIdentifier(schema)
  const t = quoteIdentifier(table)
  return {
    count: `select count(*) from pg_namespace where nspname = ${literal(schema)}`,
    create: `CREATE SCHEMA ${quoted(schema)} ` +
      `CREATE TABLE ${quoted(table)} (` +
      `\t\ttype text CHECK (type IN ('total', 'delta')), ` +
      `\t\tvalue\tinteger)` +
      `CREATE UNIQUE INDEX ${quoted(`${table}_unique_total`)} ON ${quoted(table)} (type) ` +
      `WHERE type = 'total'`,
    summary: `WITH deleted AS (DELETE ` +
      `FROM ${s}.${t} ` +
      `WHERE type = 'delta' RETURNING value), ` +
      `total AS (SELECT coalesce(sum(value), 0) as sum ` +
      `FROM deleted) ` +
      `UPDATE ${s}.${t} ` +
      `SET value = ${t}.value + total.sum ` +
      `FROM total WHERE type = 'total' ` +
      `RETURNING ${t}.value`
  }
}

// --- Errors ---

/**
 * What worker_spi reports with `ereport(FATAL)` or `ERROR`: the worker ends, as failed.
 *
 * @category errors
 * @since 0.1.0
 */
export class WorkerSpiError extends Schema.TaggedError<WorkerSpiError>()("WorkerSpiError", {
  message: Schema.String,
  hint: Schema.optionalKey(Schema.String)
}) {}

// --- The worker ---

/** `initialize_worker_spi`: creates the schema and table unless the schema exists, in its own transaction. */
const initialize = (texts: Statements) =>
  Spi.transaction(Effect.gen(function*() {
    const sql = yield* SqlClient
    // pgstat_report_activity(STATE_RUNNING, "initializing worker_spi schema"): the statements below run
    // through the client directly, so the activity keeps this text rather than theirs.
    yield* Activity.report("active", "initializing worker_spi schema")
    const rows = yield* sql.unsafe<{ count: string | number | bigint | null }>(texts.count)
    if (rows.length !== 1) return yield* new WorkerSpiError({ message: "not a singleton result" })
    const count = rows[0]!.count
    if (count === null) return yield* new WorkerSpiError({ message: "null result" })
    // A schema that exists is left as it is, even without the table: the first cycle then fails.
    if (Number(count) === 0) yield* sql.unsafe(texts.create)
  }))

/** The body of {@link worker_spi_main}, for the worker `me`. */
const run = (me: BackgroundWorker.WorkerInfo, argument: Argument) =>
  Effect.gen(function*() {
    const schema = `${argument.schemaPrefix ?? "schema"}${argument.index}`
    const table = "counted"
    yield* Effect.logInfo(`${me.name} initialized with ${schema}.${table}`)
    const texts = statements(schema, table)
    yield* initialize(texts)
    // worker_spi quotes the identifiers after initialize_worker_spi, and logs them quoted from then on.
    const target = `${quoteIdentifier(schema)}.${quoteIdentifier(table)}`
    let settings = yield* Guc.snapshot
    while (true) {
      // Background workers mustn't sleep any other way: the latch wakes them for a reload, a terminate
      // request, or the supervisor's death.
      yield* ProcLatch.wait({
        timeout: Duration.seconds(settings.get(Naptime)),
        onPostmasterDeath: "exit",
        waitEvent
      })
      yield* ProcLatch.reset
      yield* Interrupts.check
      // ProcessConfigFile(PGC_SIGHUP): the supervisor has re-read the configuration; take the new values.
      if (yield* Interrupts.reloadPending) settings = yield* Guc.snapshot
      const rows = yield* Spi.transaction(Spi.unsafe<{ value: number | null }>(texts.summary))
      const value = rows[0]?.value
      if (value !== undefined && value !== null) {
        yield* Effect.logInfo(`${me.name}: count in ${target} is now ${value}`)
      }
    }
  })

/**
 * `worker_spi_main(Datum main_arg)`: the worker's whole life.
 *
 * **Details**
 *
 * Logs `<name> initialized with <schema>.counted`, creates the schema and table if needed (activity
 * `initializing worker_spi schema`), builds the summary statement once, then loops forever: wait on the
 * latch for `worker_spi.naptime` seconds (wait event `WorkerSpiMain`) — it waits first and works second —,
 * reset the latch, check for a terminate request, take a fresh parameter snapshot when a reload was
 * requested (`ProcessConfigFile(PGC_SIGHUP)`), then run the summary in one transaction and, when a total
 * row exists, log `<name>: count in <schema>.counted is now <value>`.
 *
 * **Gotchas**
 *
 * The `DELETE` runs even without a `total` row: deltas inserted before the total exists are consumed and
 * lost, and nothing is logged. A SQL error (the table dropped, the session terminated) ends the worker as
 * failed; its restart policy applies (worker_spi's is never).
 *
 * @category workers
 * @since 0.1.0
 */
export const worker_spi_main = (argument: Argument) =>
  // The supervisor annotates every line with the worker's name, type and pid (log_line_prefix's %a %b %p).
  Effect.flatMap(BackgroundWorker.current, (me) => run(me, argument))

/** `BackgroundWorkerInitializeConnection(ByOid)`: the argument's database and role, else the parameters now. */
const connection = (gucs: Guc.GucsApi, argument: Argument): BackgroundWorker.DatabaseOptions => {
  const settings = gucs.currentSnapshot()
  const flags = argument.flags ?? []
  return {
    database: argument.database ?? settings.get(Database),
    user: argument.role ?? settings.get(Role) ?? undefined,
    bypassAllowConn: flags.includes("ALLOWCONN"),
    bypassRoleLoginCheck: flags.includes("ROLELOGINCHECK")
  }
}

/**
 * @category models
 * @since 0.1.0
 */
export interface MakeOptions {
  /** `bgw_name`: `worker_spi worker N` (static) or `worker_spi dynamic worker N` (launched). */
  readonly name: string
  /** `bgw_type`: `worker_spi` or `worker_spi dynamic`. */
  readonly type: string
  /** Default `"never"` (`BGW_NEVER_RESTART`), as worker_spi. */
  readonly restart?: BackgroundWorker.RestartPolicy | undefined
}

/**
 * A worker_spi worker definition: database connection (from the argument, else the parameters read
 * through `gucs` at each start), start time `recoveryFinished`, entry point `worker_spi.worker_spi_main`.
 *
 * **When to use**
 *
 * {@link init} and {@link entryPoints} call it; call it yourself for a variant, such as a restartable one.
 *
 * @category workers
 * @since 0.1.0
 */
export const make = (
  gucs: Guc.GucsApi,
  options: MakeOptions
): BackgroundWorker.BackgroundWorker<Argument, SqlError | WorkerSpiError, Guc.Gucs | WorkerConnector> =>
  BackgroundWorker.make({
    name: options.name,
    type: options.type,
    startTime: "recoveryFinished",
    restart: options.restart ?? "never",
    argument: Argument,
    entryPoint: { library, function: mainFunction },
    database: {},
    databaseFor: (argument) => connection(gucs, argument),
    main: worker_spi_main
  })

/**
 * `_PG_init` of a preloaded worker_spi: defines the four parameters, reserves the `worker_spi` prefix, and
 * registers `worker_spi.total_workers` static workers `worker_spi worker 1..N` (type `worker_spi`,
 * argument `{ index: N }`, never restarted), which connect to `worker_spi.database` as `worker_spi.role`.
 *
 * **Gotchas**
 *
 * Needs a `Gucs` registry in the supervisor's context, and must be listed in `preload`: {@link entryPoints}
 * reads the parameters it defines.
 *
 * @category preload
 * @since 0.1.0
 */
export const init: Effect.Effect<void, Guc.GucError, Preload.Preload | Guc.Gucs | WorkerConnector> = Effect.gen(
  function*() {
    yield* Guc.define(Naptime)
    yield* Guc.define(Database)
    yield* Guc.define(Role)
    yield* Guc.define(TotalWorkers)
    yield* Guc.reservePrefix("worker_spi")
    const gucs = yield* Guc.Gucs
    const total = yield* Guc.get(TotalWorkers)
    for (let i = 1; i <= total; i++) {
      yield* Preload.register(make(gucs, { name: `worker_spi worker ${i}`, type: "worker_spi" }), { index: i })
    }
  }
)

/**
 * The library's launchable functions, for `Supervisor.layer({ entryPoints })`: `worker_spi_main`, as the
 * dynamic worker `worker_spi dynamic worker` of type `worker_spi dynamic` ({@link launch} names each one
 * after its index).
 *
 * @category workers
 * @since 0.1.0
 */
export const entryPoints = Guc.Gucs.useSync((gucs) => [
  make(gucs, { name: "worker_spi dynamic worker", type: "worker_spi dynamic" })
])

// --- worker_spi_launch ---

/**
 * @category models
 * @since 0.1.0
 */
export interface LaunchOptions {
  readonly index: number
  readonly database?: string | undefined
  readonly role?: string | undefined
  readonly flags?: ReadonlyArray<string> | undefined
  readonly schemaPrefix?: string | undefined
}

const launchArgument = (options: LaunchOptions): Effect.Effect<Argument, WorkerSpiError> =>
  Effect.gen(function*() {
    const flags: Array<Flag> = []
    for (const flag of options.flags ?? []) {
      if (flag !== "ALLOWCONN" && flag !== "ROLELOGINCHECK") {
        return yield* new WorkerSpiError({ message: "incorrect flag value found in array" })
      }
      flags.push(flag)
    }
    return {
      index: options.index,
      ...(options.database === undefined ? {} : { database: options.database }),
      ...(options.role === undefined ? {} : { role: options.role }),
      ...(flags.length === 0 ? {} : { flags }),
      ...(options.schemaPrefix === undefined ? {} : { schemaPrefix: options.schemaPrefix })
    }
  })

/**
 * `worker_spi_launch(index, dboid, roleoid, flags)` in TypeScript: launches `worker_spi dynamic worker
 * <index>` (type `worker_spi dynamic`) and waits until it runs.
 *
 * **Details**
 *
 * Returns the worker's pid, or `null` when no slot was free (PostgreSQL returns NULL then, without an
 * error). Fails with `incorrect flag value found in array` for a flag other than `ALLOWCONN` and
 * `ROLELOGINCHECK`, with `could not start background process` (hint `More details may be available in
 * the server log.`) when the worker stopped before it was seen running, and with `cannot start background
 * processes without postmaster` when the supervisor died. Other refusals (shutdown, an argument that does
 * not decode) are the supervisor's `SupervisorError`.
 *
 * @category launching
 * @since 0.1.0
 */
export const launch = (
  options: LaunchOptions
): Effect.Effect<number | null, WorkerSpiError | SupervisorError.SupervisorError, Supervisor.Supervisor> =>
  Effect.gen(function*() {
    const argument = yield* launchArgument(options)
    const handle = yield* Supervisor.launch({
      library,
      function: mainFunction,
      argument: Schema.encodeSync(Argument)(argument),
      name: `worker_spi dynamic worker ${options.index}`,
      type: "worker_spi dynamic"
    }).pipe(
      Effect.map((h) => h as typeof h | null),
      Effect.catchIf((e) => e.reason._tag === "NoFreeSlot", () => Effect.succeed(null))
    )
    if (handle === null) return null
    const status = yield* Supervisor.awaitStartup(handle)
    switch (status._tag) {
      case "Started":
        return status.pid
      case "PostmasterDied":
        return yield* new WorkerSpiError({
          message: "cannot start background processes without postmaster",
          hint: "Kill all remaining database processes and restart the database."
        })
      default:
        return yield* new WorkerSpiError({
          message: "could not start background process",
          hint: "More details may be available in the server log."
        })
    }
  })

// --- SQL: worker_spi--1.0.sql ---

/**
 * @category models
 * @since 0.1.0
 */
export interface InstallOptions {
  /** The control plane's schema (`ControlPlane.layer({ schema })`). Default `"bgworker"`. */
  readonly controlPlane?: string | undefined
  /** Where the functions go. Default `"public"`. */
  readonly schema?: string | undefined
}

/**
 * The statements of `worker_spi_launch` for SQL: PostgreSQL's signature, `worker_spi_launch(index int4,
 * dboid oid DEFAULT 0, roleoid oid DEFAULT 0, flags text[] DEFAULT '{}') RETURNS int4`, and one taking names,
 * `worker_spi_launch(index int4, database text, role text DEFAULT NULL, flags text[] DEFAULT '{}')`. Both
 * are functions over the control plane's `start`. See {@link install}.
 *
 * @category sql
 * @since 0.2.0
 */
export const launchFunctions = (options: InstallOptions = {}): ReadonlyArray<string> => {
  const cp = quoteIdentifier(options.controlPlane ?? "bgworker")
  const schema = quoteIdentifier(options.schema ?? "public")
  // One body for both forms: `database` and `role` are names (NULL: the parameter, at the worker's start).
  const body = (resolve: string) => `
DECLARE
  flag text;
  database text;
  role text;
BEGIN
  IF index IS NULL OR flags IS NULL THEN
    RETURN NULL;
  END IF;
  IF pg_catalog.array_ndims(flags) > 1 THEN
    RAISE EXCEPTION 'flags array must be one-dimensional' USING ERRCODE = 'array_subscript_error';
  END IF;
  IF pg_catalog.array_position(flags, NULL) IS NOT NULL THEN
    RAISE EXCEPTION 'flags array must not contain nulls' USING ERRCODE = 'null_value_not_allowed';
  END IF;
  FOREACH flag IN ARRAY flags LOOP
    IF flag NOT IN ('ALLOWCONN', 'ROLELOGINCHECK') THEN
      RAISE EXCEPTION 'incorrect flag value found in array' USING ERRCODE = 'invalid_parameter_value';
    END IF;
  END LOOP;
${resolve}
  RETURN ${cp}.start('${library}', '${mainFunction}', pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
    'index', index,
    'database', database,
    'role', role,
    'flags', CASE WHEN pg_catalog.cardinality(flags) = 0 THEN NULL ELSE pg_catalog.to_jsonb(flags) END)),
    'worker_spi dynamic worker ' || index, 'worker_spi dynamic');
END`
  return [
    // 0.1 installed a procedure of that name: functions and procedures share one namespace.
    `DROP PROCEDURE IF EXISTS ${schema}.worker_spi_launch(int4, text, text, text[], int4)`,
    `CREATE OR REPLACE FUNCTION ${schema}.worker_spi_launch(
  index int4,
  dboid oid DEFAULT 0,
  roleoid oid DEFAULT 0,
  flags text[] DEFAULT '{}')
RETURNS pg_catalog.int4 STRICT
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $worker_spi$${
      body(`  -- 0: worker_spi.database / worker_spi.role, read by the worker as it starts.
  IF dboid <> 0 THEN
    SELECT d.datname INTO database FROM pg_catalog.pg_database d WHERE d.oid = dboid;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'database % does not exist', dboid USING ERRCODE = 'invalid_catalog_name';
    END IF;
  END IF;
  IF roleoid <> 0 THEN
    SELECT r.rolname INTO role FROM pg_catalog.pg_roles r WHERE r.oid = roleoid;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'role with OID % does not exist', roleoid USING ERRCODE = 'undefined_object';
    END IF;
  END IF;`)
    }
$worker_spi$`,
    `CREATE OR REPLACE FUNCTION ${schema}.worker_spi_launch(
  index int4,
  db_name text,
  role_name text DEFAULT NULL,
  flags text[] DEFAULT '{}')
RETURNS pg_catalog.int4
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $worker_spi$${
      body(`  -- What worker_spi's callers meet in their 'x'::regdatabase and 'x'::regrole casts.
  IF db_name IS NOT NULL AND NOT EXISTS (SELECT FROM pg_catalog.pg_database d WHERE d.datname = db_name) THEN
    RAISE EXCEPTION 'database "%" does not exist', db_name USING ERRCODE = 'invalid_catalog_name';
  END IF;
  IF role_name IS NOT NULL AND NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = role_name) THEN
    RAISE EXCEPTION 'role "%" does not exist', role_name USING ERRCODE = 'undefined_object';
  END IF;
  database := db_name;
  role := role_name;`)
    }
$worker_spi$`
  ]
}

/**
 * Installs `worker_spi_launch` in the database (worker_spi's `CREATE EXTENSION worker_spi`), idempotently:
 * `CREATE OR REPLACE`, under a transaction-scoped advisory lock so that concurrent installs queue.
 *
 * ```sql
 * SELECT worker_spi_launch(5);                                 -- 4321: the worker's backend pid
 * SELECT worker_spi_launch(10, 16384, 16385);                  -- database and role oids, as in PostgreSQL
 * SELECT worker_spi_launch(10, 'mydb', 'myrole');              -- or their names
 * SELECT worker_spi_launch(13, 'mydb', 'nologrole', '{ROLELOGINCHECK}');
 * SELECT pg_terminate_backend(worker_spi_launch(6));           -- the pid is a real backend's
 * ```
 *
 * **Details**
 *
 * As PostgreSQL's function: launches `worker_spi dynamic worker <index>` (type `worker_spi dynamic`), waits
 * until it has started and returns its pid, which is the backend pid of the worker's session (it joins
 * `pg_stat_activity.pid`); NULL when no slot was free. A database or role oid of 0 means
 * `worker_spi.database` / `worker_spi.role`, read by the worker as it starts. It raises `could not start
 * background process` (hint `More details may be available in the server log.`, the cause in the detail)
 * when the worker stopped before its session opened (a database that does not accept connections, a role
 * that may not log in), and when the launch was still queued at the timeout or with no supervisor attached
 * (it then withdraws it first, so that a failed launch never starts later). It validates like worker_spi
 * (`flags array must be one-dimensional`, `flags array must not contain nulls`, `incorrect flag value found
 * in array`).
 *
 * How it can return the pid: the control plane's `bgworker.start` commits the launch on a session of its
 * own (dblink, over the loopback connection the supervisor checks when it attaches), so the supervisor
 * sees it while the caller's statement still runs. Where that session is not available (no dblink, or no
 * loopback: see `ControlPlane.layer({ loopback })`; the supervisor logs why at start), the launch takes
 * effect when the caller's transaction commits and the function returns NULL with a notice naming the
 * handle: `SELECT bgworker.wait_for_startup(<handle>)` after the commit gives the pid.
 *
 * **Gotchas**
 *
 * - A launch is committed even if the calling transaction rolls back (PostgreSQL's is too: a registered
 *   background worker is not transactional). The wait needs READ COMMITTED only for the fallback.
 * - Workers launched this way run as the role that called `worker_spi_launch`, unless it names a role that
 *   caller could `SET ROLE` to (PostgreSQL runs them as any role given).
 * - The caller needs `EXECUTE` on `bgworker.start`, that is membership in `bgworker_launcher`
 *   (worker_spi_launch has no such check).
 * - Needs the control plane's schema, installed by `ControlPlane.layer()`.
 *
 * @category sql
 * @since 0.1.0
 */
export const install = (options: InstallOptions = {}): Effect.Effect<void, SqlError, SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql`SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('worker_spi install'))`
      for (const statement of launchFunctions(options)) yield* sql.unsafe(statement)
    }))
  })
