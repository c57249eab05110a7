/**
 * worker_spi against a real PostgreSQL: the library in src/demo/WorkerSpi.ts, driven the way
 * PostgreSQL's TAP test t/001_worker_spi.pl drives the C module, plus the behaviour worker_spi.c implies
 * (lost deltas, restarts, quoting) and the SQL `worker_spi_launch` function over the control plane, in the forms the TAP test types.
 *
 * Databases and roles carry a per-run suffix (`mydb_<suffix>`): roles are cluster-wide, and a shared
 * `DATABASE_URL` server may run other suites at the same time.
 *
 * Not mirrored: the TAP test's `pg_stat_activity.wait_event = 'WorkerSpiMain'` and `pg_wait_events` checks
 * read this project's activity view and wait-event catalogue instead (a client session idles on
 * `Client`/`ClientRead`); `ALLOWCONN` cannot be honoured by a client connection and is asserted to be refused.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Result from "effect/Result"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { randomUUID } from "node:crypto"
import * as Activity from "../../src/Activity.ts"
import * as BackgroundWorker from "../../src/BackgroundWorker.ts"
import * as WorkerSpi from "../../src/demo/WorkerSpi.ts"
import * as Guc from "../../src/Guc.ts"
import * as ControlPlane from "../../src/pg/ControlPlane.ts"
import { PgServer } from "../../src/pg/EmbeddedPostgres.ts"
import * as WorkerConnection from "../../src/pg/WorkerConnection.ts"
import * as Supervisor from "../../src/Supervisor.ts"
import { captureLogs } from "../fixtures.ts"
import * as PgTest from "./support.ts"

// --- names, roles, logs ---

const suffix = randomUUID().slice(0, 8)
const mydb = `mydb_${suffix}`
const noconndb = `noconndb_${suffix}`
const myrole = `myrole_${suffix}`
const nologrole = `nologrole_${suffix}`
const outsider = `wspi_outsider_${suffix}`
const myrolePassword = Redacted.make(randomUUID())
const outsiderPassword = Redacted.make(randomUUID())

const logs = captureLogs()

/** Clusterwide objects of this run, dropped when the suite ends (databases first: they hold the grants). */
const cleanup = Layer.effectDiscard(Effect.addFinalizer(() =>
  SqlClient.use((sql) =>
    Effect.gen(function*() {
      for (const db of [mydb, noconndb]) yield* sql.unsafe(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`)
      // What the roles' workers created in the suite's database (schema11 is myrole's) goes with them.
      const roles = yield* sql<{ rolname: string }>`
        SELECT rolname FROM pg_roles WHERE rolname IN (${myrole}, ${nologrole}, ${outsider})`
      if (roles.length > 0) yield* sql.unsafe(`DROP OWNED BY ${roles.map((r) => r.rolname).join(", ")}`)
      yield* sql.unsafe(`DROP ROLE IF EXISTS ${myrole}, ${nologrole}, ${outsider}`)
    })
  ).pipe(Effect.orDie)
))

const Suite = cleanup.pipe(Layer.provideMerge(PgTest.layer({ prefix: "wspi" })))

// --- helpers ---

/**
 * Runs `body` with a supervisor of its own: worker_spi preloaded (`_PG_init`), its entry point, the
 * control plane, the worker connector, and these parameter values over the defaults below (naptime 1 s,
 * one static worker, the suite's database). The supervisor dies when `body` ends.
 */
const withWorkerSpi = (
  settings: Readonly<Record<string, unknown>> = {},
  connection: WorkerConnection.Options = {},
  controlPlane: ControlPlane.Options = {}
) =>
<A, E, R>(body: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const server = yield* PgServer
    const overrides = {
      "worker_spi.database": server.database,
      "worker_spi.naptime": 1,
      "worker_spi.total_workers": 1,
      ...settings
    }
    const supervisor = Layer.unwrap(Effect.map(WorkerSpi.entryPoints, (entryPoints) =>
      Supervisor.layer({ preload: [WorkerSpi.init], entryPoints, shutdownTimeout: "2 seconds" })))
    const stack = ControlPlane.layer({ pollInterval: "200 millis", ...controlPlane }).pipe(
      Layer.provideMerge(supervisor),
      Layer.provideMerge(Guc.layer({ overrides })),
      Layer.provide(WorkerConnection.layer({
        passwords: { [myrole]: myrolePassword, [outsider]: outsiderPassword },
        ...connection
      })),
      Layer.provide(logs.layer)
    )
    return yield* body.pipe(Effect.provide(stack), Effect.scoped)
  })

const logged = (text: string) => Effect.sync(() => logs.lines.some((line) => line.includes(text)))

/** Rows of one query run on `database` (default: the suite's), in a session of its own. */
const queryOn = (database: string | undefined, text: string) =>
  PgTest.query(text, database === undefined ? {} : { database })

/** Whether `<schema>.counted` exists in `database`. */
const tableExists = (schema: string, database?: string) =>
  Effect.map(
    queryOn(
      database,
      `SELECT 1 FROM information_schema.tables WHERE table_schema = '${schema}' AND table_name = 'counted'`
    ),
    (rows) => rows.length === 1
  )

/** `SELECT type, value FROM <table> ORDER BY type, value` as `type|value` strings. */
const contents = (table: string) =>
  SqlClient.use((sql) =>
    Effect.map(
      sql.unsafe<{ type: string; value: number }>(`SELECT type, value FROM ${table} ORDER BY type, value`),
      (rows) => rows.map((r) => `${r.type}|${r.value}`)
    )
  )

const deltasLeft = (table: string) =>
  SqlClient.use((sql) =>
    Effect.map(
      sql.unsafe<{ n: number }>(`SELECT count(*)::int AS n FROM ${table} WHERE type = 'delta'`),
      (rows) => rows[0]!.n
    )
  )

/** The activity row of the worker named `name`, if registered. */
const activityOf = (name: string) =>
  Effect.map(Activity.snapshot, (rows) => Option.fromNullishOr(rows.find((r) => r.name === name)))

/** The activity row of the worker with pid `pid` (our pid, not the server's). */
const activityOfPid = (pid: number) =>
  Effect.map(Activity.snapshot, (rows) => Option.fromNullishOr(rows.find((r) => r.pid === pid)))

const napping = (row: Option.Option<Activity.ActivityRow>) =>
  Option.isSome(row) && row.value.waitEvent === WorkerSpi.waitEvent && row.value.waitEventType === "Extension"

/** The server's sessions named `applicationName` (`pg_stat_activity`). */
const sessionsNamed = (applicationName: string) =>
  SqlClient.use((sql) =>
    sql<{ datname: string; usename: string; pid: number; wait_event: string | null }>`
      SELECT datname, usename, pid, wait_event FROM pg_stat_activity WHERE application_name = ${applicationName}
      ORDER BY datname`
  )

/** `SELECT worker_spi_launch(...)`, as typed in psql: the pid. */
const callLaunch = (args: string) =>
  SqlClient.use((sql) =>
    Effect.map(sql.unsafe<{ pid: number | null }>(`SELECT worker_spi_launch(${args}) AS pid`), (rows) => rows[0]!.pid)
  )

const ensureDatabase = (name: string, options = "") =>
  SqlClient.use((sql) =>
    Effect.gen(function*() {
      const rows = yield* sql`SELECT 1 FROM pg_database WHERE datname = ${name}`
      if (rows.length === 0) yield* sql.unsafe(`CREATE DATABASE ${name}${options === "" ? "" : ` ${options}`}`)
    })
  )

const ensureRole = (name: string, options: string) =>
  SqlClient.use((sql) =>
    sql.unsafe(`DO $$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${name}') THEN CREATE ROLE ${name} ${options}; END IF;
    END $$`)
  )

// --- pure parts ---

describe("worker_spi definitions", () => {
  it("builds worker_spi's statements exactly, tabs and missing space included", () => {
    const texts = WorkerSpi.statements("schema4", "counted")
    assert.strictEqual(texts.count, "select count(*) from pg_namespace where nspname = 'schema4'")
    assert.strictEqual(
      texts.create,
      "CREATE SCHEMA \"schema4\" CREATE TABLE \"counted\" (\t\ttype text CHECK (type IN ('total', 'delta')), " +
        "\t\tvalue\tinteger)CREATE UNIQUE INDEX \"counted_unique_total\" ON \"counted\" (type) WHERE type = 'total'"
    )
    assert.strictEqual(
      texts.summary,
      "WITH deleted AS (DELETE FROM schema4.counted WHERE type = 'delta' RETURNING value), total AS " +
        "(SELECT coalesce(sum(value), 0) as sum FROM deleted) UPDATE schema4.counted SET value = counted.value + " +
        "total.sum FROM total WHERE type = 'total' RETURNING counted.value"
    )
  })

  it("quotes identifiers only when PostgreSQL's quote_identifier would", () => {
    assert.strictEqual(WorkerSpi.quoteIdentifier("schema4"), "schema4")
    assert.strictEqual(WorkerSpi.quoteIdentifier("_x1"), "_x1")
    assert.strictEqual(WorkerSpi.quoteIdentifier("My Schema7"), "\"My Schema7\"")
    assert.strictEqual(WorkerSpi.quoteIdentifier("select"), "\"select\"")
    assert.strictEqual(WorkerSpi.quoteIdentifier("name"), "name") // unreserved keyword
    assert.strictEqual(WorkerSpi.quoteIdentifier("1abc"), "\"1abc\"")
    assert.strictEqual(WorkerSpi.quoteIdentifier("a\"b"), "\"a\"\"b\"")
  })

  it.effect("defines the four parameters of _PG_init with their types, bounds, contexts and descriptions", () =>
    Effect.gen(function*() {
      const rows = (yield* Guc.settings).filter((row) => row.name.startsWith("worker_spi."))
      const shown = rows.map((r) =>
        [r.name, r.vartype, r.boot_val, r.min_val, r.max_val, r.unit, r.context, r.short_desc].join(" | ")
      )
      assert.deepStrictEqual(shown, [
        "worker_spi.database | string | postgres |  |  |  | sighup | Database to connect to.",
        "worker_spi.naptime | integer | 10 | 1 | 2147483647 |  | sighup | Duration between each check (in seconds).",
        "worker_spi.role | string |  |  |  |  | sighup | Role to connect with.",
        "worker_spi.total_workers | integer | 2 | 1 | 100 |  | postmaster | Number of workers."
      ])
    }).pipe(Effect.provide(Guc.layer({
      parameters: [WorkerSpi.Naptime, WorkerSpi.Database, WorkerSpi.Role, WorkerSpi.TotalWorkers]
    }))))
})

// --- against the server ---

layer(Suite, PgTest.suiteOptions)("worker_spi", (it) => {
  it.effect("a launched worker creates schema4.counted, and a reload folds the deltas into exactly total|1", () =>
    withWorkerSpi()(Effect.gen(function*() {
      const sql = yield* SqlClient
      const pid = yield* WorkerSpi.launch({ index: 4 })
      assert.isNumber(pid)
      yield* PgTest.eventually("schema4.counted", tableExists("schema4"))
      assert.isTrue(yield* logged("INFO worker_spi dynamic worker 4 initialized with schema4.counted"))
      yield* sql`INSERT INTO schema4.counted VALUES ('total', 0), ('delta', 1)`
      yield* Supervisor.reload // $node->reload: forces the worker to loop once
      yield* PgTest.eventually("the delta to be folded", Effect.map(deltasLeft("schema4.counted"), (n) => n === 0))
      assert.deepStrictEqual(yield* contents("schema4.counted"), ["total|1"])
      yield* PgTest.eventually(
        "the count line",
        logged("INFO worker_spi dynamic worker 4: count in schema4.counted is now 1")
      )
      // The static worker of the preload (total_workers = 1) runs beside it.
      yield* PgTest.eventually("schema1.counted", tableExists("schema1"))
    })))

  it.effect("without a reload the worker wakes every worker_spi.naptime seconds and folds what it finds", () =>
    withWorkerSpi()(Effect.gen(function*() {
      const sql = yield* SqlClient
      const pid = (yield* WorkerSpi.launch({ index: 6 }))!
      yield* PgTest.eventually("schema6.counted", tableExists("schema6"))
      yield* PgTest.eventually("the worker to nap", Effect.map(activityOfPid(pid), napping))
      yield* sql`INSERT INTO schema6.counted VALUES ('total', 0), ('delta', 7)`
      const start = yield* Clock.currentTimeMillis
      yield* PgTest.eventually(
        "a timed cycle",
        Effect.map(contents("schema6.counted"), (rows) => rows[0] === "total|7"),
        3000
      )
      assert.isBelow((yield* Clock.currentTimeMillis) - start, 2500) // naptime is 1 second
    })))

  it.effect("while idle a worker waits on WorkerSpiMain (type Extension), listed in the wait-event catalogue", () =>
    withWorkerSpi()(Effect.gen(function*() {
      const pid = (yield* WorkerSpi.launch({ index: 5 }))!
      yield* PgTest.eventually("the worker to nap", Effect.map(activityOfPid(pid), napping))
      const row = Option.getOrThrow(yield* activityOfPid(pid))
      assert.strictEqual(row.backendType, "worker_spi dynamic")
      assert.strictEqual(row.state, "idle")
      const events = yield* Activity.waitEvents
      assert.isTrue(events.some((e) => e.type === "Extension" && e.name === "WorkerSpiMain"))
      // The server itself sees an idle client: its wait event is ClientRead, not the custom one.
      const server = yield* sessionsNamed("worker_spi dynamic worker 5")
      assert.deepStrictEqual(server.map((r) => r.wait_event), ["ClientRead"])
    })))

  it.effect("total_workers=3 and database=mydb start three static workers of type worker_spi on mydb", () =>
    Effect.gen(function*() {
      yield* ensureDatabase(mydb)
      yield* withWorkerSpi({ "worker_spi.total_workers": 3, "worker_spi.database": mydb })(Effect.gen(function*() {
        const sql = yield* SqlClient
        const sessions = () =>
          sql<{ application_name: string }>`
            SELECT application_name FROM pg_stat_activity
            WHERE datname = ${mydb} AND application_name LIKE 'worker_spi worker %' ORDER BY application_name`
        yield* PgTest.eventually("three sessions on mydb", Effect.map(sessions(), (rows) => rows.length === 3))
        assert.deepStrictEqual((yield* sessions()).map((r) => r.application_name), [
          "worker_spi worker 1",
          "worker_spi worker 2",
          "worker_spi worker 3"
        ])
        const rows = (yield* Activity.snapshot).filter((r) => r.backendType === "worker_spi")
        assert.deepStrictEqual(rows.map((r) => [r.name, r.origin]), [
          ["worker_spi worker 1", "static"],
          ["worker_spi worker 2", "static"],
          ["worker_spi worker 3", "static"]
        ])
        yield* PgTest.eventually(
          "all three to nap",
          Effect.map(
            Activity.snapshot,
            (all) => all.filter((r) => r.backendType === "worker_spi" && napping(Option.some(r))).length === 3
          )
        )
        for (const i of [1, 2, 3]) assert.isTrue(yield* tableExists(`schema${i}`, mydb))
      }))
    }))

  it.effect("dynamic workers on two databases with a role connect as that role, named after their index", () =>
    Effect.gen(function*() {
      const server = yield* PgServer
      yield* ensureDatabase(mydb)
      yield* ensureRole(myrole, `SUPERUSER LOGIN PASSWORD '${Redacted.value(myrolePassword)}'`)
      yield* withWorkerSpi()(Effect.gen(function*() {
        const first = (yield* WorkerSpi.launch({ index: 10, database: mydb, role: myrole }))!
        const second = (yield* WorkerSpi.launch({ index: 11, database: server.database, role: myrole }))!
        yield* PgTest.eventually(
          "both to nap",
          Effect.map(
            Effect.all([activityOfPid(first), activityOfPid(second)]),
            (rows) => rows.every(napping)
          )
        )
        const seen = [
          ...(yield* sessionsNamed("worker_spi dynamic worker 10")),
          ...(yield* sessionsNamed("worker_spi dynamic worker 11"))
        ].map((r) => `${r.datname}|${r.usename}`)
        assert.deepStrictEqual(seen, [`${mydb}|${myrole}`, `${server.database}|${myrole}`])
      }))
    }))

  it.effect("a database that does not accept connections stops the worker with PostgreSQL's message; ALLOWCONN is refused", () =>
    Effect.gen(function*() {
      yield* ensureDatabase(noconndb, "ALLOW_CONNECTIONS false")
      yield* withWorkerSpi()(Effect.gen(function*() {
        // Like the TAP test's plain psql call: the worker may already be seen stopped.
        yield* Effect.exit(WorkerSpi.launch({ index: 12, database: noconndb }))
        yield* PgTest.eventually(
          "the refusal in the log",
          logged(`database "${noconndb}" is not currently accepting connections`)
        )
        yield* Effect.exit(WorkerSpi.launch({ index: 12, database: noconndb, flags: ["ALLOWCONN"] }))
        yield* PgTest.eventually("the bypass refusal in the log", logged("BGWORKER_BYPASS_ALLOWCONN is not available"))
        assert.isTrue(Option.isNone(yield* activityOf("worker_spi dynamic worker 12")))
      }))
    }))

  it.effect("a NOLOGIN role is not permitted to log in, unless the worker is launched with ROLELOGINCHECK", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* ensureDatabase(mydb)
      yield* ensureRole(nologrole, "NOLOGIN")
      yield* sql.unsafe(`GRANT CREATE ON DATABASE ${mydb} TO ${nologrole}`)
      // A client cannot log in as a NOLOGIN role: bypassing the check needs the explicit opt-in to switching
      // roles with SET SESSION AUTHORIZATION.
      yield* withWorkerSpi({}, { allowSetSessionAuthorization: true })(Effect.gen(function*() {
        // The worker may already be seen stopped by the launch, which then fails as worker_spi_launch does.
        const refused = yield* Effect.result(WorkerSpi.launch({ index: 13, database: mydb, role: nologrole }))
        if (Result.isFailure(refused)) assert.strictEqual(refused.failure.message, "could not start background process")
        yield* PgTest.eventually("the refusal in the log", logged(`role "${nologrole}" is not permitted to log in`))
        const pid =
          (yield* WorkerSpi.launch({ index: 13, database: mydb, role: nologrole, flags: ["ROLELOGINCHECK"] }))!
        yield* PgTest.eventually("the worker to nap", Effect.map(activityOfPid(pid), napping))
        // The session logs in as the administrator and becomes the role: the schema it created is the role's.
        const owner = yield* queryOn(
          mydb,
          `SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'schema13'`
        )
        assert.deepStrictEqual(owner, [[nologrole]])
        const sessions = yield* sessionsNamed("worker_spi dynamic worker 13")
        assert.deepStrictEqual(sessions.map((r) => r.datname), [mydb])
      }))
    }))

  it.effect("an unknown flag is refused with PostgreSQL's message and nothing is launched", () =>
    withWorkerSpi()(Effect.gen(function*() {
      const before = (yield* Activity.snapshot).length
      const failure = yield* Effect.flip(WorkerSpi.launch({ index: 14, flags: ["ALLOWCONN", "BOGUS"] }))
      assert.strictEqual(failure.message, "incorrect flag value found in array")
      // The argument schema refuses it too, for launches that bypass the helper.
      const direct = yield* Effect.flip(Supervisor.launch({
        library: WorkerSpi.library,
        function: WorkerSpi.mainFunction,
        argument: { index: 14, flags: ["BOGUS"] }
      }))
      assert.include(direct.message, "incorrect flag value found in array")
      assert.strictEqual((yield* Activity.snapshot).length, before)
    })))

  it.effect("deltas inserted before a total exists are consumed and lost, and nothing is logged", () =>
    withWorkerSpi()(Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* WorkerSpi.launch({ index: 15 })
      yield* PgTest.eventually("schema15.counted", tableExists("schema15"))
      yield* sql`INSERT INTO schema15.counted VALUES ('delta', 5), ('delta', 6)`
      yield* Supervisor.reload
      yield* PgTest.eventually("the deltas to be consumed", Effect.map(deltasLeft("schema15.counted"), (n) => n === 0))
      assert.deepStrictEqual(yield* contents("schema15.counted"), [])
      assert.isFalse(yield* logged("count in schema15.counted"))
      // A total inserted afterwards starts from what it is given: the lost deltas stay lost.
      yield* sql`INSERT INTO schema15.counted VALUES ('total', 0), ('delta', 2)`
      yield* Supervisor.reload
      yield* PgTest.eventually("the next delta", Effect.map(deltasLeft("schema15.counted"), (n) => n === 0))
      assert.deepStrictEqual(yield* contents("schema15.counted"), ["total|2"])
    })))

  it.effect("pg_terminate_backend on a restartable worker's session restarts it, and no delta is lost", () =>
    withWorkerSpi()(Effect.gen(function*() {
      const sql = yield* SqlClient
      const gucs = yield* Guc.Gucs
      const name = "worker_spi restartable worker 16"
      const worker = WorkerSpi.make(gucs, {
        name,
        type: "worker_spi",
        restart: BackgroundWorker.restartAfter("100 millis")
      })
      const handle = yield* Supervisor.register(worker, { index: 16 })
      yield* PgTest.eventually("schema16.counted", tableExists("schema16"))
      yield* sql`INSERT INTO schema16.counted VALUES ('total', 0), ('delta', 1), ('delta', 2)`
      yield* Supervisor.reload
      yield* PgTest.eventually("the first deltas", Effect.map(deltasLeft("schema16.counted"), (n) => n === 0))
      const [session] = yield* sessionsNamed(name)
      yield* sql`SELECT pg_terminate_backend(${session!.pid})`
      yield* sql`INSERT INTO schema16.counted VALUES ('delta', 10), ('delta', 20)`
      // The worker notices at its next statement, fails, and comes back with a new session.
      yield* Supervisor.reload
      yield* PgTest.eventually(
        "a restart",
        Effect.map(
          Supervisor.info(handle),
          (row) => Option.isSome(row) && row.value.restartCount === 1 && row.value.registration === "running"
        )
      )
      const row = Option.getOrThrow(yield* Supervisor.info(handle))
      assert.strictEqual(row.lastExit?.kind, "failed")
      yield* PgTest.eventually("the new session to nap", Effect.map(activityOf(name), napping))
      yield* Supervisor.reload
      yield* PgTest.eventually(
        "every delta folded",
        Effect.map(contents("schema16.counted"), (rows) => rows.length === 1 && rows[0] === "total|33")
      )
      yield* PgTest.eventually(
        "one session, a new one",
        Effect.map(sessionsNamed(name), (rows) => rows.length === 1 && rows[0]!.pid !== session!.pid)
      )
    })))

  it.effect("a schema name that needs quoting is quoted in every statement", () =>
    withWorkerSpi()(Effect.gen(function*() {
      const sql = yield* SqlClient
      const pid = (yield* WorkerSpi.launch({ index: 17, schemaPrefix: "My Schema" }))!
      yield* PgTest.eventually("\"My Schema17\".counted", tableExists("My Schema17"))
      yield* sql`INSERT INTO "My Schema17".counted VALUES ('total', 0), ('delta', 3)`
      yield* Supervisor.reload
      yield* PgTest.eventually(
        "the count line",
        logged("INFO worker_spi dynamic worker 17: count in \"My Schema17\".counted is now 3")
      )
      assert.isTrue(yield* logged("INFO worker_spi dynamic worker 17 initialized with My Schema17.counted"))
      const row = Option.getOrThrow(yield* activityOfPid(pid))
      assert.strictEqual(row.query, WorkerSpi.statements("My Schema17", "counted").summary)
      assert.include(row.query, "UPDATE \"My Schema17\".counted SET value = counted.value + total.sum")
    })))

  it.effect("with every slot taken a launch returns null, without an error", () =>
    withWorkerSpi({ max_worker_processes: 2, "worker_spi.total_workers": 2 })(Effect.gen(function*() {
      yield* WorkerSpi.install()
      assert.isNull(yield* WorkerSpi.launch({ index: 18 }))
      assert.isNull(yield* callLaunch("18"))
    })))

  it.effect("the reserved prefix removes unknown worker_spi.* settings with a warning", () =>
    withWorkerSpi({ "worker_spi.bogus": 1 })(Effect.gen(function*() {
      assert.isTrue(
        yield* logged(
          "invalid configuration parameter name \"worker_spi.bogus\", removing it; \"worker_spi\" is now a reserved prefix."
        )
      )
      assert.isTrue(Result.isFailure(yield* Effect.result(Guc.show("worker_spi.bogus"))))
      assert.strictEqual(yield* Guc.show("worker_spi.naptime"), "1")
    })))

  // --- SQL: SELECT worker_spi_launch over the control plane ---

  it.effect("SELECT worker_spi_launch(index) returns the backend pid of a running worker, which folds deltas", () =>
    withWorkerSpi()(Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* WorkerSpi.install()
      yield* WorkerSpi.install() // idempotent
      const pid = yield* callLaunch("20")
      assert.isNumber(pid)
      const row = Option.getOrThrow(yield* activityOfPid(pid!))
      assert.strictEqual(row.backendType, "worker_spi dynamic")
      assert.strictEqual(row.name, "worker_spi dynamic worker 20")
      yield* PgTest.eventually("schema20.counted", tableExists("schema20"))
      yield* sql`INSERT INTO schema20.counted VALUES ('total', 0), ('delta', 1)`
      yield* sql`SELECT bgworker.reload()`
      yield* PgTest.eventually("the delta to be folded", Effect.map(deltasLeft("schema20.counted"), (n) => n === 0))
      assert.deepStrictEqual(yield* contents("schema20.counted"), ["total|1"])
      // Named arguments, a database and a role by name.
      const other = yield* callLaunch(`21, db_name => current_database(), flags => '{ROLELOGINCHECK}'`)
      assert.isNumber(other)
    })))

  // --- as typed in psql: the TAP test's forms, pids that join pg_stat_activity ---

  /** One statement sent as psql sends it (the simple query protocol, no parameters). */
  const typed = (text: string) =>
    SqlClient.use((sql) =>
      Effect.scoped(Effect.flatMap(sql.reserve, (conn) => conn.executeUnprepared(text, [], undefined)))
    ) as Effect.Effect<ReadonlyArray<Record<string, unknown>>, SqlError, SqlClient>
  const oidOf = (catalog: "pg_database" | "pg_roles", name: string) =>
    Effect.map(
      typed(
        `SELECT oid::int AS oid FROM ${catalog} WHERE ${catalog === "pg_database" ? "datname" : "rolname"} = '${name}'`
      ),
      (rows) => rows[0]!["oid"] as number
    )

  it.effect("the talk's demo line, SELECT worker_spi_launch(2), returns the backend pid of the worker's session", () =>
    withWorkerSpi()(Effect.gen(function*() {
      yield* WorkerSpi.install()
      const [launched] = yield* typed("SELECT worker_spi_launch(2);")
      const pid = launched!["worker_spi_launch"] as number
      assert.isNumber(pid)
      // It is a server process: pg_stat_activity has it, under the worker's name.
      const [session] = yield* typed(`SELECT application_name, backend_type FROM pg_stat_activity WHERE pid = ${pid}`)
      assert.deepStrictEqual(session, {
        application_name: "worker_spi dynamic worker 2",
        backend_type: "client backend"
      })
      // The activity view agrees, and keeps the supervisor's own number apart.
      const inView = typed(`SELECT pid, incarnation, name, backend_type FROM bgworker.activity WHERE pid = ${pid}`)
      yield* PgTest.eventually("the view to show it", Effect.map(inView, (rows) => rows.length === 1))
      const [row] = yield* inView
      assert.strictEqual(row!["name"], "worker_spi dynamic worker 2")
      assert.isNumber(row!["incarnation"])
      const mine = Option.getOrThrow(yield* activityOf("worker_spi dynamic worker 2"))
      assert.deepStrictEqual([mine.pid, mine.incarnation], [pid, row!["incarnation"]])
    })))

  it.effect("the TAP test's forms resolve as in PostgreSQL: index; database and role oids; flags; and its pg_stat_activity query sees the workers", () =>
    Effect.gen(function*() {
      const server = yield* PgServer
      yield* ensureDatabase(mydb)
      yield* ensureRole(myrole, `SUPERUSER LOGIN PASSWORD '${Redacted.value(myrolePassword)}'`)
      yield* withWorkerSpi()(Effect.gen(function*() {
        yield* WorkerSpi.install()
        const dbOid = yield* oidOf("pg_database", mydb)
        const suiteOid = yield* oidOf("pg_database", server.database)
        const roleOid = yield* oidOf("pg_roles", myrole)
        const [four] = yield* typed("SELECT worker_spi_launch(4) IS NOT NULL AS launched")
        assert.strictEqual(four!["launched"], true)
        const pid1 = (yield* typed(`SELECT worker_spi_launch(10, ${dbOid}, ${roleOid});`))[0]!["worker_spi_launch"]
        const pid2 = (yield* typed(`SELECT worker_spi_launch(11, ${suiteOid}, ${roleOid});`))[0]!["worker_spi_launch"]
        // t/001_worker_spi.pl's query, with the backend type and wait event read from bgworker.activity.
        const tap = typed(`SELECT a.datname, a.usename, w.wait_event FROM pg_stat_activity a
          JOIN bgworker.activity w USING (pid)
          WHERE w.backend_type = 'worker_spi dynamic' AND a.pid IN (${pid1}, ${pid2}) ORDER BY a.datname`)
        const expected = [`${mydb}|${myrole}|WorkerSpiMain`, `${server.database}|${myrole}|WorkerSpiMain`].sort()
        yield* PgTest.eventually(
          "both workers napping",
          Effect.map(
            tap,
            (rows) =>
              JSON.stringify(rows.map((r) => `${r["datname"]}|${r["usename"]}|${r["wait_event"]}`)) ===
                JSON.stringify(expected)
          )
        )
        // An oid that names nothing is refused at the call.
        const missing = yield* PgTest.pgFailure(typed("SELECT worker_spi_launch(12, 4294967295, 0)"))
        assert.deepStrictEqual([missing.message, missing.code], ["database 4294967295 does not exist", "3D000"])
        // Flags: an unknown one is refused; ALLOWCONN cannot be honoured by a client session, and says why.
        const bogus = yield* PgTest.pgFailure(typed(`SELECT worker_spi_launch(12, ${dbOid}, ${roleOid}, '{"BOGUS"}')`))
        assert.strictEqual(bogus.message, "incorrect flag value found in array")
        const allowconn = yield* PgTest.pgFailure(
          typed(`SELECT worker_spi_launch(12, ${dbOid}, ${roleOid}, '{"ALLOWCONN"}')`)
        )
        assert.strictEqual(allowconn.message, "could not start background process")
        assert.include(allowconn.detail, "BGWORKER_BYPASS_ALLOWCONN is not available")
      }))
    }))

  it.effect("without a session of its own to commit on, SELECT worker_spi_launch launches at commit and returns NULL", () =>
    withWorkerSpi({}, {}, { loopback: false })(Effect.gen(function*() {
      yield* WorkerSpi.install()
      assert.isTrue(yield* logged("launches at the caller's commit and returns NULL"))
      const [row] = yield* typed("SELECT worker_spi_launch(25) AS pid")
      const pid = row!["pid"]
      assert.isNull(pid)
      // Committed (autocommit): the launch is there, and wait_for_startup gives the backend pid.
      const [request] = yield* typed(`SELECT id::int AS id FROM bgworker._requests
        WHERE name = 'worker_spi dynamic worker 25' ORDER BY id DESC LIMIT 1`)
      const [waited] = yield* typed(`SELECT bgworker.wait_for_startup(${request!["id"]}) AS pid`)
      const started = waited!["pid"] as number
      const [session] = yield* typed(`SELECT application_name FROM pg_stat_activity WHERE pid = ${started}`)
      assert.strictEqual(session!["application_name"], "worker_spi dynamic worker 25")
    })))

  it.effect("the README's filter on pg_stat_activity finds the workers' sessions and nothing else, each joining bgworker.activity on pid", () =>
    withWorkerSpi({ "worker_spi.total_workers": 2 })(Effect.gen(function*() {
      yield* WorkerSpi.install()
      yield* typed("SELECT worker_spi_launch(26)")
      const filter = typed(`SELECT application_name, pid FROM pg_stat_activity
        WHERE application_name LIKE 'worker_spi%' AND datname = current_database() ORDER BY application_name`)
      yield* PgTest.eventually("three worker sessions", Effect.map(filter, (rows) => rows.length === 3))
      assert.deepStrictEqual(
        (yield* filter).map((r) => r["application_name"]),
        ["worker_spi dynamic worker 26", "worker_spi worker 1", "worker_spi worker 2"]
      )
      // The supervisor's own sessions are named apart (the pool, the connector, the probe).
      const others = yield* typed(`SELECT DISTINCT application_name FROM pg_stat_activity
        WHERE backend_type = 'client backend' AND application_name NOT LIKE 'worker_spi%' AND application_name <> ''`)
      assert.include(others.map((r) => r["application_name"]), "bgworker supervisor")
      const joined = typed(`SELECT a.application_name, w.name, w.backend_type FROM pg_stat_activity a
        JOIN bgworker.activity w USING (pid) WHERE a.application_name LIKE 'worker_spi%' ORDER BY w.name`)
      yield* PgTest.eventually("the view to list all three", Effect.map(joined, (rows) => rows.length === 3))
      assert.deepStrictEqual((yield* joined).map((r) => `${r["application_name"]}|${r["name"]}|${r["backend_type"]}`), [
        "worker_spi dynamic worker 26|worker_spi dynamic worker 26|worker_spi dynamic",
        "worker_spi worker 1|worker_spi worker 1|worker_spi",
        "worker_spi worker 2|worker_spi worker 2|worker_spi"
      ])
    })))

  it.effect("pg_terminate_backend(worker_spi_launch(n)) ends the worker as it ends a background worker", () =>
    withWorkerSpi()(Effect.gen(function*() {
      yield* WorkerSpi.install()
      const [row] = yield* typed("SELECT pg_terminate_backend(worker_spi_launch(24)) AS terminated")
      assert.strictEqual(row!["terminated"], true)
      yield* PgTest.eventually(
        "PostgreSQL's words in the log",
        logged(`terminating background worker "worker_spi dynamic" due to administrator command`)
      )
      // Never restarted (BGW_NEVER_RESTART): gone from both views.
      yield* PgTest.eventually(
        "the worker to be gone",
        Effect.map(activityOf("worker_spi dynamic worker 24"), Option.isNone)
      )
      yield* PgTest.eventually(
        "the view to drop it",
        Effect.map(
          typed(`SELECT pid FROM bgworker.activity WHERE name = 'worker_spi dynamic worker 24'`),
          (rows) => rows.length === 0
        )
      )
    })))

  it.effect("worker_spi_launch validates like worker_spi: flags, dimensions, nulls, unknown names", () =>
    withWorkerSpi()(Effect.gen(function*() {
      yield* WorkerSpi.install()
      const before = (yield* Activity.snapshot).length
      const flag = yield* PgTest.pgFailure(callLaunch(`22, NULL, NULL, '{BOGUS}'`))
      assert.deepStrictEqual([flag.message, flag.code], ["incorrect flag value found in array", "22023"])
      const dims = yield* PgTest.pgFailure(callLaunch(`22, NULL, NULL, '{{ALLOWCONN},{ALLOWCONN}}'`))
      assert.deepStrictEqual([dims.message, dims.code], ["flags array must be one-dimensional", "2202E"])
      const nulls = yield* PgTest.pgFailure(callLaunch(`22, NULL, NULL, ARRAY[NULL]::text[]`))
      assert.deepStrictEqual([nulls.message, nulls.code], ["flags array must not contain nulls", "22004"])
      const db = yield* PgTest.pgFailure(callLaunch(`22, 'no_such_db_${suffix}'`))
      assert.deepStrictEqual([db.message, db.code], [`database "no_such_db_${suffix}" does not exist`, "3D000"])
      const role = yield* PgTest.pgFailure(callLaunch(`22, NULL, 'no_such_role_${suffix}'`))
      assert.deepStrictEqual([role.message, role.code], [`role "no_such_role_${suffix}" does not exist`, "42704"])
      assert.isNull(yield* callLaunch("NULL")) // STRICT
      assert.strictEqual((yield* Activity.snapshot).length, before)
    })))

  it.effect("an unknown entry point or an argument that does not decode is refused through SQL, and nothing starts", () =>
    withWorkerSpi()(Effect.gen(function*() {
      const sql = yield* SqlClient
      const before = (yield* Activity.snapshot).length
      const launchRaw = (fn: string, arg: string) =>
        Effect.flatMap(
          sql<{ handle: string }>`SELECT bgworker.launch('worker_spi', ${fn}, ${arg}::jsonb) AS handle`,
          (rows) => sql`SELECT bgworker.wait_for_startup(${rows[0]!.handle})`
        )
      const unknown = yield* PgTest.pgFailure(launchRaw("worker_spi_nope", `{"index": 1}`))
      assert.strictEqual(unknown.message, "could not start background process")
      assert.strictEqual(unknown.detail, `could not find function "worker_spi_nope" in library "worker_spi"`)
      const bad = yield* PgTest.pgFailure(launchRaw("worker_spi_main", `{"index": "one"}`))
      assert.strictEqual(bad.message, "could not start background process")
      assert.include(bad.detail, "invalid argument")
      const flags = yield* PgTest.pgFailure(launchRaw("worker_spi_main", `{"index": 1, "flags": ["BOGUS"]}`))
      assert.include(flags.detail, "incorrect flag value found in array")
      assert.strictEqual((yield* Activity.snapshot).length, before)
    })))

  it.effect("worker_spi_launch with no supervisor attached fails, and the launch never starts later", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      // Installed by an earlier supervisor, which is gone: nobody is attached now.
      yield* withWorkerSpi()(WorkerSpi.install())
      const failed = yield* PgTest.pgFailure(sql.unsafe(`SELECT worker_spi_launch(31)`))
      assert.strictEqual(failed.message, "could not start background process")
      assert.include(failed.detail, "the launch was withdrawn")
      const [row] = yield* sql<{ state: string }>`
        SELECT state FROM bgworker._requests WHERE name = 'worker_spi dynamic worker 31' ORDER BY id DESC LIMIT 1`
      assert.strictEqual(row!.state, "cancelled")
      // A supervisor attaching later does not start it.
      yield* withWorkerSpi()(Effect.sleep("1 second"))
      assert.isFalse(yield* tableExists("schema31"))
    }))

  it.effect("worker_spi_launch without the bgworker_launcher role is denied", () =>
    withWorkerSpi()(Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* WorkerSpi.install()
      // A role that can log in: a worker launched by it runs as it.
      yield* ensureRole(outsider, `LOGIN PASSWORD '${Redacted.value(outsiderPassword)}'`)
      const server = yield* PgServer
      yield* sql.unsafe(`GRANT CREATE ON DATABASE ${server.database} TO ${outsider}`)
      const denied = yield* PgTest.pgFailure(Effect.scoped(Effect.gen(function*() {
        const conn = yield* sql.reserve
        yield* conn.executeUnprepared(`SET ROLE ${outsider}`, [], undefined)
        return yield* Effect.ensuring(
          conn.executeUnprepared(`SELECT worker_spi_launch(23) AS pid`, [], undefined),
          Effect.ignore(conn.executeUnprepared(`RESET ROLE`, [], undefined))
        )
      })))
      assert.deepStrictEqual([denied.message, denied.code], ["permission denied for function start", "42501"])
      // Granted the launcher role, the same caller may launch.
      yield* sql.unsafe(`GRANT ${ControlPlane.launcherRole()} TO ${outsider}`)
      const pid = yield* Effect.scoped(Effect.gen(function*() {
        const conn = yield* sql.reserve
        yield* conn.executeUnprepared(`SET ROLE ${outsider}`, [], undefined)
        const rows = yield* Effect.ensuring(
          conn.executeUnprepared(`SELECT worker_spi_launch(23) AS pid`, [], undefined),
          Effect.ignore(conn.executeUnprepared(`RESET ROLE`, [], undefined))
        )
        return (rows[0] as { pid: number | null }).pid
      }))
      assert.isNumber(pid)
    })))
})
