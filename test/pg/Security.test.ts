/**
 * The control plane and the worker connector tried as a hostile database role would: a launcher must never
 * get a worker with more privilege than its own session has, a worker's session must hold exactly its
 * role's privileges, and no input from SQL may stall the consumer, exhaust memory or forge a log line.
 *
 * Roles and databases carry a per-run suffix: roles are cluster-wide, and a shared `DATABASE_URL` server
 * may run other suites at the same time. Every role logs in with a password the connector is given, so the
 * suite runs the same on an external server (no trusted socket there).
 */
import { PgClient } from "@effect/sql-pg"
import { assert, describe, it, layer } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Reactivity from "effect/reactivity/Reactivity"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { randomUUID } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import * as Activity from "../../src/Activity.ts"
import * as BackgroundWorker from "../../src/BackgroundWorker.ts"
import * as WorkerSpi from "../../src/demo/WorkerSpi.ts"
import * as Guc from "../../src/Guc.ts"
import * as ControlPlane from "../../src/pg/ControlPlane.ts"
import { PgServer } from "../../src/pg/EmbeddedPostgres.ts"
import { serverText as serverMessage } from "../../src/pg/internal/serverText.ts"
import * as WorkerConnection from "../../src/pg/WorkerConnection.ts"
import * as ProcLatch from "../../src/ProcLatch.ts"
import * as Supervisor from "../../src/Supervisor.ts"
import { captureLogs } from "../fixtures.ts"
import * as PgTest from "./support.ts"

// --- roles, databases ---

const suffix = randomUUID().slice(0, 8)
const mallory = `mallory_${suffix}`
const alice = `alice_${suffix}`
const bob = `bob_${suffix}`
const signaller = `signaller_${suffix}`
const reader = `reader_${suffix}`
const nobody = `nobody_${suffix}`
const malldb = `malldb_${suffix}`
const closeddb = `closeddb_${suffix}`
/** A role the connector has no password for. */
const stranger = `stranger_${suffix}`
const roles = [mallory, alice, bob, signaller, reader, nobody, stranger]
const password = (role: string) => `pw-${role}-${suffix}`
const passwords = Object.fromEntries(
  roles.filter((role) => role !== stranger).map((role) => [role, Redacted.make(password(role))])
)

const logs = captureLogs()

// --- a probe worker: what SQL run in a worker's session can reach ---

interface Escape {
  readonly sessionUser: string
  readonly currentUser: string
  readonly superuser: boolean
  readonly setSessionAuthorizationDefault: string
  readonly resetRole: string
  readonly setRoleOther: string
  readonly searchPath: string
}

const escapes = new Map<string, Escape>()

/** How many times a probe with each tag started. */
const probeStarts = new Map<string, number>()

/** Runs every way back to a more privileged role, and records who the session is after each. */
const probe = BackgroundWorker.make({
  name: "security probe",
  entryPoint: { library: "security", function: "probe" },
  argument: Schema.Struct({ tag: Schema.String, role: Schema.optionalKey(Schema.String), target: Schema.String }),
  database: {},
  databaseFor: ({ role }) => (role === undefined ? {} : { user: role }),
  main: ({ tag, target }) =>
    Effect.gen(function*() {
      probeStarts.set(tag, (probeStarts.get(tag) ?? 0) + 1)
      const sql = yield* SqlClient
      const attempt = (statement: string) =>
        Effect.match(sql.unsafe(statement), {
          onFailure: (error) => `error: ${serverMessage(error)}`,
          onSuccess: () => "ok"
        })
      const setSessionAuthorizationDefault = yield* attempt("SET SESSION AUTHORIZATION DEFAULT")
      const resetRole = yield* attempt("RESET ROLE")
      const setRoleOther = yield* attempt(`SET ROLE ${target}`)
      const [who] = yield* sql<{ s: string; c: string; superuser: boolean; search_path: string }>`
        SELECT session_user AS s, current_user AS c, current_setting('search_path') AS search_path,
               (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser`
      escapes.set(tag, {
        sessionUser: who!.s,
        currentUser: who!.c,
        superuser: who!.superuser,
        setSessionAuthorizationDefault,
        resetRole,
        setRoleOther,
        searchPath: who!.search_path
      })
      yield* ProcLatch.wait({ onPostmasterDeath: "exit" })
    })
})

// --- the suite's supervisor ---

const cleanup = Layer.effectDiscard(Effect.addFinalizer(() =>
  SqlClient.use((sql) =>
    Effect.gen(function*() {
      for (const db of [malldb, closeddb]) yield* sql.unsafe(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`)
      const existing = yield* sql<{ rolname: string }>`SELECT rolname FROM pg_roles WHERE rolname IN ${sql.in(roles)}`
      if (existing.length > 0) yield* sql.unsafe(`DROP OWNED BY ${existing.map((r) => r.rolname).join(", ")}`)
      yield* sql.unsafe(`DROP ROLE IF EXISTS ${roles.join(", ")}`)
    })
  ).pipe(Effect.orDie)
))

const gucs = Layer.unwrap(Effect.gen(function*() {
  const server = yield* PgServer
  return Guc.layer({
    overrides: {
      "worker_spi.database": server.database,
      "worker_spi.naptime": 1,
      "worker_spi.total_workers": 1,
      max_worker_processes: 16
    }
  })
}))

const supervisor = Layer.unwrap(Effect.map(WorkerSpi.entryPoints, (entryPoints) =>
  Supervisor.layer({
    preload: [WorkerSpi.init],
    entryPoints: [...entryPoints, probe],
    shutdownTimeout: "2 seconds"
  }))).pipe(Layer.provideMerge(gucs))

const Suite = Layer.mergeAll(ControlPlane.layer({ pollInterval: "200 millis" }), cleanup).pipe(
  Layer.provideMerge(supervisor),
  Layer.provideMerge(WorkerConnection.layer({ passwords })),
  Layer.provideMerge(PgTest.layer({ prefix: "security" })),
  Layer.provide(logs.layer)
)

// --- helpers ---

/** A client logged in as `role` (with its password, over TCP) on `database` (default: the suite's). */
const asRole = (role: string, database?: string) =>
  Effect.gen(function*() {
    const server = yield* PgServer
    return yield* PgClient.makeClient({
      host: server.host,
      port: server.port,
      username: role,
      password: Redacted.make(password(role)),
      database: database ?? server.database,
      applicationName: `security test as ${role}`
    }).pipe(Effect.provide(Reactivity.layer))
  })

/** Runs `text` as `role` in a session of its own. */
const runAs = (role: string, text: string, database?: string) =>
  Effect.scoped(Effect.flatMap(asRole(role, database), (client) => client.unsafe(text)))

const createRole = (name: string, options = "") =>
  SqlClient.use((sql) => sql.unsafe(`CREATE ROLE ${name} LOGIN PASSWORD '${password(name)}' ${options}`))

const launcher = ControlPlane.launcherRole()

/** `bgworker.launch` + `wait_for_startup` as `role`: the pid, or PostgreSQL's error fields. */
const launchAs = (role: string, fn: string, arg: unknown, extra = "") =>
  Effect.scoped(Effect.gen(function*() {
    const client = yield* asRole(role)
    const [row] = yield* client.unsafe<{ handle: string }>(
      `SELECT bgworker.launch('${fn === "probe" ? "security" : "worker_spi"}', '${fn}', $1::jsonb${extra}) AS handle`,
      [JSON.stringify(arg)]
    )
    const handle = row!.handle
    const waited = yield* Effect.result(
      client.unsafe<{ pid: number | null }>(`SELECT bgworker.wait_for_startup($1) AS pid`, [handle])
    )
    return { handle, waited }
  }))

const failureOf = <A>(
  result: { readonly _tag: "Success"; readonly success: A } | {
    readonly _tag: "Failure"
    readonly failure: SqlError
  }
) => {
  assert.strictEqual(result._tag, "Failure", "expected the call to fail")
  const cause = ((result as { failure: SqlError }).failure.reason as { cause?: unknown }).cause as {
    message: string
    code: string
    detail?: string
    hint?: string
  }
  return cause
}

const sessionsOf = (applicationName: string) =>
  SqlClient.use((sql) =>
    sql<{ usename: string; datname: string }>`
      SELECT usename, datname FROM pg_stat_activity WHERE application_name = ${applicationName}`
  )

const logged = (text: string) => Effect.sync(() => logs.lines.some((line) => line.includes(text)))

layer(Suite, PgTest.suiteOptions)("Security", (it) => {
  it.effect("setup: roles, databases and worker_spi_launch", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* WorkerSpi.install()
      yield* createRole(mallory, `IN ROLE ${launcher}`)
      yield* createRole(alice)
      yield* createRole(bob, `IN ROLE ${launcher}`)
      yield* createRole(signaller, `IN ROLE ${launcher}, pg_signal_backend`)
      yield* createRole(reader, "IN ROLE pg_read_all_stats")
      yield* createRole(nobody)
      yield* sql.unsafe(`GRANT ${alice} TO ${mallory}`)
      yield* sql.unsafe(`CREATE DATABASE ${malldb} OWNER ${mallory}`)
      yield* sql.unsafe(`CREATE DATABASE ${closeddb}`)
      yield* sql.unsafe(`REVOKE CONNECT ON DATABASE ${closeddb} FROM PUBLIC`)
      const server = yield* PgServer
      // CREATE on the suite's database, so the launchers' worker_spi workers can create their schemas.
      yield* sql.unsafe(`GRANT CREATE ON DATABASE ${server.database} TO ${mallory}, ${bob}, ${alice}`)
    }))

  it.effect("the repro: a launcher's worker_spi on its own database runs as the launcher, and a trigger cannot make it superuser", () =>
    Effect.gen(function*() {
      for (
        const statement of [
          "CREATE SCHEMA schema77",
          "CREATE TABLE schema77.counted(type text, value int)",
          "INSERT INTO schema77.counted VALUES ('total', 0), ('delta', 1)",
          `CREATE FUNCTION schema77.f() RETURNS trigger LANGUAGE plpgsql
             AS $$BEGIN ALTER ROLE ${mallory} SUPERUSER; RETURN OLD; END$$`,
          "CREATE TRIGGER t BEFORE DELETE ON schema77.counted FOR EACH ROW EXECUTE FUNCTION schema77.f()"
        ]
      ) yield* runAs(mallory, statement, malldb)
      const [called] = yield* runAs(mallory, `SELECT worker_spi_launch(77, '${malldb}') AS pid`)
      assert.isNumber((called as { pid: number | null }).pid)
      // The worker runs as mallory on malldb; its first cycle fires the trigger, which fails.
      yield* PgTest.eventually("the worker's cycle to fail", logged("permission denied to alter role"))
      const sql = yield* SqlClient
      const [after] = yield* sql<{ rolsuper: boolean }>`SELECT rolsuper FROM pg_roles WHERE rolname = ${mallory}`
      assert.isFalse(after!.rolsuper)
    }))

  it.effect("with no role given a launched worker runs as its caller, never as the connector's login", () =>
    Effect.gen(function*() {
      const { waited } = yield* launchAs(mallory, "worker_spi_main", { index: 78 }, ", 'worker_spi by mallory'")
      assert.strictEqual(waited._tag, "Success")
      yield* PgTest.eventually(
        "the session",
        Effect.map(sessionsOf("worker_spi by mallory"), (rows) => rows.length === 1)
      )
      const server = yield* PgServer
      assert.deepStrictEqual(
        (yield* sessionsOf("worker_spi by mallory")).map((r) => `${r.usename}|${r.datname}`),
        [`${mallory}|${server.database}`]
      )
      const row = (yield* Activity.snapshot).find((r) => r.name === "worker_spi by mallory")
      assert.strictEqual(row?.role, mallory)
    }))

  it.effect("a launch naming a superuser role is refused with 42501, starts nothing, and is logged with who asked", () =>
    Effect.gen(function*() {
      const server = yield* PgServer
      const before = (yield* Activity.snapshot).length
      const { handle, waited } = yield* launchAs(mallory, "worker_spi_main", { index: 79, role: server.user })
      const error = failureOf(waited)
      assert.strictEqual(error.code, "42501")
      assert.strictEqual(
        error.message,
        `permission denied to launch background worker "worker_spi dynamic worker" as superuser "${server.user}"`
      )
      assert.isString(error.hint)
      assert.strictEqual((yield* Activity.snapshot).length, before)
      assert.isTrue(yield* logged(`request ${handle} by role "${mallory}"`))
      // worker_spi_launch with a role argument raises the same.
      const viaCall = yield* Effect.result(runAs(mallory, `SELECT worker_spi_launch(80, NULL, '${server.user}')`))
      assert.strictEqual(failureOf(viaCall).code, "42501")
    }))

  it.effect("a role the caller could not SET ROLE to is refused; one it may SET ROLE to is used", () =>
    Effect.gen(function*() {
      const denied = yield* launchAs(bob, "probe", { tag: "bob as alice", role: alice, target: mallory })
      const error = failureOf(denied.waited)
      assert.deepStrictEqual([error.code, error.message], ["42501", `permission denied to set role "${alice}"`])
      // mallory is a member of alice (with SET, the default): the worker runs as alice.
      const granted = yield* launchAs(mallory, "probe", { tag: "mallory as alice", role: alice, target: mallory })
      assert.strictEqual(granted.waited._tag, "Success")
      yield* PgTest.eventually("the probe", Effect.sync(() => escapes.has("mallory as alice")))
      assert.strictEqual(escapes.get("mallory as alice")!.sessionUser, alice)
    }))

  it.effect("a database the worker's role may not CONNECT to is refused with 42501", () =>
    Effect.gen(function*() {
      const { waited } = yield* launchAs(mallory, "worker_spi_main", { index: 81, database: closeddb })
      const error = failureOf(waited)
      assert.deepStrictEqual([error.code, error.message], ["42501", `permission denied for database "${closeddb}"`])
      const missing = yield* launchAs(mallory, "worker_spi_main", { index: 82, database: `nodb_${suffix}` })
      assert.strictEqual(failureOf(missing.waited).code, "3D000")
    }))

  it.effect("SQL in a worker's session cannot switch back to a more privileged role", () =>
    Effect.gen(function*() {
      const server = yield* PgServer
      const { waited } = yield* launchAs(mallory, "probe", { tag: "escape", target: server.user })
      assert.strictEqual(waited._tag, "Success")
      yield* PgTest.eventually("the probe", Effect.sync(() => escapes.has("escape")))
      const seen = escapes.get("escape")!
      assert.strictEqual(seen.sessionUser, mallory)
      assert.strictEqual(seen.currentUser, mallory)
      assert.isFalse(seen.superuser)
      assert.strictEqual(seen.setRoleOther, `error: permission denied to set role "${server.user}"`)
    }))

  it.effect("a worker's session gets its role's ALTER ROLE ... SET defaults, as at any login", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql.unsafe(`ALTER ROLE ${bob} SET search_path = bobs_schema, public`)
      const { waited } = yield* launchAs(bob, "probe", { tag: "defaults", target: mallory })
      assert.strictEqual(waited._tag, "Success")
      yield* PgTest.eventually("the probe", Effect.sync(() => escapes.has("defaults")))
      assert.strictEqual(escapes.get("defaults")!.searchPath, "bobs_schema, public")
    }))

  it.effect("a worker's session is refused at login on a database its role may not CONNECT to, as any login", () =>
    Effect.gen(function*() {
      const worker = BackgroundWorker.make({
        name: "closed door",
        database: { user: alice, database: closeddb },
        startTime: "consistentState",
        restart: BackgroundWorker.restartAfter("1 hour"),
        main: () => ProcLatch.wait({ onPostmasterDeath: "exit" }).pipe(Effect.asVoid)
      })
      const handle = yield* Supervisor.register(worker)
      yield* PgTest.eventually(
        "the refusal",
        Effect.map(Supervisor.info(handle), (row) => Option.isSome(row) && row.value.lastExit !== null)
      )
      assert.include(
        Option.getOrThrow(yield* Supervisor.info(handle)).lastExit!.message,
        `permission denied for database "${closeddb}"`
      )
      yield* Supervisor.terminate(handle)
    }))

  it.effect("the privilege table: who may wait for, terminate and set the latch of a worker, and reload", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const { handle, waited } = yield* launchAs(mallory, "probe", { tag: "target", target: mallory })
      assert.strictEqual(waited._tag, "Success")
      // its launcher (and anyone with its role's privileges) may signal it
      yield* runAs(mallory, `SELECT bgworker.set_latch(${handle})`)
      // another launcher may not
      const other = yield* Effect.result(runAs(bob, `SELECT bgworker.terminate(${handle})`))
      assert.deepStrictEqual(
        [failureOf(other).code, failureOf(other).message],
        ["42501", "permission denied to terminate background worker"]
      )
      // pg_signal_backend may signal others' workers
      yield* runAs(signaller, `SELECT bgworker.set_latch(${handle})`)
      // ... but not a superuser's
      const [superHandle] = yield* sql<{ handle: string }>`
        SELECT bgworker.launch('security', 'probe', ${
        JSON.stringify({ tag: "super", target: mallory })
      }::jsonb) AS handle`
      const bySignaller = yield* Effect.result(runAs(signaller, `SELECT bgworker.terminate(${superHandle!.handle})`))
      assert.include(failureOf(bySignaller).detail, "SUPERUSER")
      // reload is not a launcher's right; a superuser's, or a role's it is granted to
      const reload = yield* Effect.result(runAs(mallory, `SELECT bgworker.reload()`))
      assert.deepStrictEqual(
        [failureOf(reload).code, failureOf(reload).message],
        ["42501", "permission denied for function reload"]
      )
      // reload(process) checks the same grant, on reload()
      const [coordinator] = yield* sql<{ readonly process: string }>`
        SELECT process FROM bgworker.processes WHERE coordinator`
      const process = coordinator!.process
      const reloadOne = yield* Effect.result(runAs(mallory, `SELECT bgworker.reload('${process}')`))
      assert.deepStrictEqual(
        [failureOf(reloadOne).code, failureOf(reloadOne).message],
        ["42501", "permission denied for function reload"]
      )
      yield* sql.unsafe(`GRANT EXECUTE ON FUNCTION bgworker.reload() TO ${bob}`)
      yield* runAs(bob, `SELECT bgworker.reload()`)
      yield* runAs(bob, `SELECT bgworker.reload('${process}')`)
      // process_of: wait_for_startup's rights
      yield* runAs(mallory, `SELECT bgworker.process_of(${handle})`)
      const processOf = yield* Effect.result(runAs(bob, `SELECT bgworker.process_of(${handle})`))
      assert.strictEqual(failureOf(processOf).code, "42501")
      // the views: launchers and pg_read_all_stats members; nobody else
      for (const view of ["activity", "processes"]) {
        yield* runAs(reader, `SELECT count(*) FROM bgworker.${view}`)
        yield* runAs(mallory, `SELECT count(*) FROM bgworker.${view}`)
        const refused = yield* Effect.result(runAs(nobody, `SELECT count(*) FROM bgworker.${view}`))
        assert.strictEqual(failureOf(refused).code, "42501")
      }
      // ... but the registry behind the processes view holds each process's channel and wake key: the owner's alone
      for (const role of [reader, mallory]) {
        const keys = yield* Effect.result(runAs(role, `SELECT wake_key, channel FROM bgworker._processes`))
        assert.strictEqual(failureOf(keys).code, "42501")
        const live = yield* Effect.result(runAs(role, `SELECT (bgworker._live_process('${process}')).wake_key`))
        assert.strictEqual(failureOf(live).message, "permission denied for function _live_process")
      }
      const launch = yield* Effect.result(runAs(nobody, `SELECT bgworker.launch('security', 'probe')`))
      assert.strictEqual(failureOf(launch).message, "permission denied for function launch")
      // its own terminate ends it
      yield* runAs(mallory, `SELECT bgworker.terminate(${handle})`)
      yield* sql`SELECT bgworker.terminate(${superHandle!.handle})`
    }))

  it.effect("a name, type or argument over the limit fails at the call with PostgreSQL's codes", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const name95 = "n".repeat(95)
      const ok = yield* launchAs(mallory, "probe", { tag: "limits", target: mallory }, `, '${name95}'`)
      assert.strictEqual(ok.waited._tag, "Success")
      const long = yield* Effect.result(
        runAs(mallory, `SELECT bgworker.launch('security', 'probe', NULL, repeat('n', 96))`)
      )
      assert.deepStrictEqual(
        [failureOf(long).code, failureOf(long).message],
        ["22001", "background worker name is too long (96 bytes)"]
      )
      const hugeType = yield* Effect.result(
        runAs(mallory, `SELECT bgworker.launch('security', 'probe', NULL, 'x', repeat('t', 10000000))`)
      )
      assert.strictEqual(failureOf(hugeType).code, "22001")
      const big = yield* Effect.result(runAs(
        mallory,
        `SELECT bgworker.launch('worker_spi','worker_spi_main', jsonb_build_object('index',50,'pad',repeat('p',17*1024*1024)))`
      ))
      assert.strictEqual(failureOf(big).code, "54000")
      assert.include(failureOf(big).message, "background worker argument is too large")
      // and the next launch is served at once
      const start = Date.now()
      const next = yield* launchAs(mallory, "probe", { tag: "after the oversized calls", target: mallory })
      assert.strictEqual(next.waited._tag, "Success")
      assert.isBelow(Date.now() - start, 1000)
      // nothing was stored
      const stored = yield* sql<{ n: number }>`
        SELECT count(*)::int AS n FROM bgworker._requests WHERE octet_length(coalesce(arg::text, '')) > 1048576
           OR octet_length(coalesce(type, '')) > 95`
      assert.strictEqual(stored[0]!.n, 0)
    }))

  it.effect("rows over the limits stored around the functions are refused with the reason, and later requests are served within 1 s", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      // A superuser can write the table directly; the consumer must not stall on what it finds there.
      const [big] = yield* sql<{ id: string }>`
        INSERT INTO bgworker._requests (kind, library, function, arg, requested_by)
        VALUES ('launch', 'worker_spi', 'worker_spi_main',
                jsonb_build_object('index', 50, 'pad', repeat('p', 17 * 1024 * 1024)), ${mallory})
        RETURNING id`
      const [named] = yield* sql<{ id: string }>`
        INSERT INTO bgworker._requests (kind, library, function, arg, name, type, requested_by)
        VALUES ('launch', 'security', 'probe', '{"tag":"x","target":"x"}', repeat('n', 10000000),
                repeat('t', 10000000), ${mallory})
        RETURNING id`
      const start = Date.now()
      const next = yield* launchAs(mallory, "probe", { tag: "after the oversized rows", target: mallory })
      assert.strictEqual(next.waited._tag, "Success")
      assert.isBelow(Date.now() - start, 1000)
      // The following launch may overtake them (launch's fast path); they are refused all the same.
      const refusedRows = sql<{ id: string; state: string; sqlstate: string; error: string }>`
        SELECT id, state, sqlstate, error FROM bgworker._requests WHERE id IN (${big!.id}, ${named!.id}) ORDER BY id`
      yield* PgTest.eventually(
        "both refused",
        Effect.map(refusedRows, (rows) => rows.every((r) => r.state !== "requested"))
      )
      const rows = yield* refusedRows
      assert.deepStrictEqual(rows.map((r) => [r.state, r.sqlstate]), [["refused", "54000"], ["refused", "22001"]])
      assert.include(rows[0]!.error, "too large")
    }))

  it.effect("a string from SQL with a newline reaches the log as one escaped line", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const forged = "04:06:59.000 INFO  [Supervisor] FORGED LOG LINE"
      const [row] = yield* sql<{ handle: string }>`SELECT bgworker.launch(${`nolib\n${forged}`}, 'f') AS handle`
      yield* PgTest.eventually("the refusal in the log", logged(`request ${row!.handle} by role`))
      const lines = logs.lines.filter((line) => line.includes("FORGED LOG LINE"))
      assert.isAbove(lines.length, 0)
      for (const line of lines) {
        assert.notInclude(line, "\n")
        assert.include(line, "nolib\\n04:06:59.000")
      }
      // a type with control characters is stored escaped, so it is one line wherever it is shown
      const { waited } = yield* launchAs(
        mallory,
        "probe",
        { tag: "escaped type", target: mallory },
        `, 'escaped', E'evil\\ntype\\x1b[31m'`
      )
      assert.strictEqual(waited._tag, "Success")
      const shown = (yield* Activity.snapshot).find((r) => r.name === "escaped")
      assert.strictEqual(shown?.backendType, "evil\\ntype\\x1b[31m")
    }))

  it.effect("the notification channel is a secret: other roles cannot read it, and NOTIFY on the schema's name reaches nobody", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const [config] = yield* sql<{ channel: string }>`SELECT channel FROM bgworker._config`
      assert.match(config!.channel, /^bgw_[0-9a-f]{32}$/)
      const read = yield* Effect.result(runAs(mallory, `SELECT channel FROM bgworker._config`))
      assert.strictEqual(failureOf(read).code, "42501")
      const listening = yield* sql<{ n: number }>`
        SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'LISTEN "bgworker"'`
      assert.strictEqual(listening[0]!.n, 0)
    }))

  it.effect("SELECT worker_spi_launch commits on the owner's loopback session, yet no caller can name another caller, use dblink or read the loopback", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const server = yield* PgServer
      // The internal launch that takes the caller as an argument: the owner's alone.
      const forged = yield* Effect.result(
        runAs(mallory, `SELECT bgworker._launch('${server.user}', 'worker_spi', 'worker_spi_main', '{"index": 90}')`)
      )
      assert.deepStrictEqual([failureOf(forged).code, failureOf(forged).message], [
        "42501",
        "permission denied for function _launch"
      ])
      // dblink, installed for the loopback, is closed to other roles (it could reach other hosts).
      const [ext] = yield* sql<{ schema: string }>`
        SELECT n.nspname AS schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
        WHERE e.extname = 'dblink'`
      assert.strictEqual(ext!.schema, "bgworker_dblink")
      const dblink = yield* Effect.result(runAs(mallory, `SELECT bgworker_dblink.dblink_get_connections()`))
      assert.strictEqual(failureOf(dblink).code, "42501")
      const loopback = yield* Effect.result(runAs(mallory, `SELECT loopback FROM bgworker._config`))
      assert.strictEqual(failureOf(loopback).code, "42501")
      // Through start, the worker still runs as the role that called it, not as the loopback's owner.
      const [started] = yield* runAs(
        mallory,
        `SELECT bgworker.start('worker_spi', 'worker_spi_main',
        '{"index": 91}', 'worker_spi by mallory via start') AS pid`
      )
      const pid = (started as { pid: number }).pid
      const [session] = yield* sql<{ usename: string; application_name: string }>`
        SELECT usename, application_name FROM pg_stat_activity WHERE pid = ${pid}`
      assert.deepStrictEqual(session, { usename: mallory, application_name: "worker_spi by mallory via start" })
      const [request] = yield* sql<{ requested_by: string }>`
        SELECT requested_by FROM bgworker._requests WHERE name = 'worker_spi by mallory via start'`
      assert.strictEqual(request!.requested_by, mallory)
      // A caller who may call dblink itself could use the owner's session while it is open: for such a
      // caller start launches at commit instead, and returns NULL.
      const grant = `${ext!.schema}.dblink(text, text)`
      yield* sql.unsafe(`GRANT USAGE ON SCHEMA ${ext!.schema} TO ${mallory}`)
      yield* sql.unsafe(`GRANT EXECUTE ON FUNCTION ${grant} TO ${mallory}`)
      const [deferred] = yield* Effect.ensuring(
        runAs(
          mallory,
          `SELECT bgworker.start('worker_spi', 'worker_spi_main', '{"index": 92}', 'deferred by mallory') AS pid`
        ),
        Effect.orDie(Effect.andThen(
          sql.unsafe(`REVOKE EXECUTE ON FUNCTION ${grant} FROM ${mallory}`),
          sql.unsafe(`REVOKE USAGE ON SCHEMA ${ext!.schema} FROM ${mallory}`)
        ))
      )
      assert.isNull((deferred as { pid: number | null }).pid)
      yield* PgTest.eventually(
        "the deferred launch to run, as mallory",
        Effect.map(
          sessionsOf("deferred by mallory"),
          (rows) => rows.length === 1 && rows[0]!.usename === mallory
        )
      )
    }))

  it.effect("a notification without the supervisor's key launches nothing, and a replayed signed one launches once", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const pg = yield* PgClient.PgClient
      const [config] = yield* sql<{ channel: string }>`SELECT channel FROM bgworker._config`
      const [caller] = yield* sql<{ u: string }>`SELECT current_user AS u`
      // Forged: a well-formed request with a made-up signature.
      const body = JSON.stringify({
        i: 999_999,
        s: "any",
        l: "security",
        f: "probe",
        a: { tag: "forged", target: mallory },
        x: false,
        n: null,
        t: null,
        r: caller!.u
      })
      yield* sql`SELECT pg_notify(${config!.channel}, ${"0".repeat(64) + body})`
      // Replayed: a real signed notification, captured and sent again.
      const notifications = yield* pg.listen(config!.channel)
      const { waited } = yield* launchAs(mallory, "probe", { tag: "replayed", target: mallory })
      assert.strictEqual(waited._tag, "Success")
      const captured = (yield* Queue.takeAll(notifications)).map((n) => n.payload).find((p) => p.includes("replayed"))
      assert.isString(captured)
      yield* sql`SELECT pg_notify(${config!.channel}, ${captured!})`
      yield* Effect.sleep("500 millis")
      assert.strictEqual(probeStarts.get("replayed"), 1)
      assert.isUndefined(probeStarts.get("forged"))
    }))

  it.effect("a worker naming no password-backed role is refused on a server without a trusted socket, with a hint", () =>
    Effect.gen(function*() {
      const server = yield* PgServer
      const external = Layer.succeed(PgServer, PgServer.of({ ...server, localSocket: undefined }))
      const worker = BackgroundWorker.make({
        name: "no credentials",
        database: { user: stranger },
        startTime: "consistentState",
        restart: BackgroundWorker.restartAfter("1 hour"),
        main: () => ProcLatch.wait({ onPostmasterDeath: "exit" }).pipe(Effect.asVoid)
      })
      const exit = yield* Effect.gen(function*() {
        const handle = yield* Supervisor.register(worker)
        yield* PgTest.eventually(
          "the refusal",
          Effect.map(Supervisor.info(handle), (row) => Option.isSome(row) && row.value.lastExit !== null)
        )
        return Option.getOrThrow(yield* Supervisor.info(handle)).lastExit!.message
      }).pipe(
        // provideMerge: a registrant's own services come first, so it must see this connector too.
        Effect.provide(
          Supervisor.layer().pipe(Layer.provideMerge(WorkerConnection.layer().pipe(Layer.provide(external))))
        ),
        Effect.scoped
      )
      assert.include(exit, `no credentials to log in as role "${stranger}"`)
      assert.include(exit, "hint")
    }))

  it.effect("a passfile in libpq's format gives a role its password; one others may read is ignored with libpq's warning", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql.unsafe(`CREATE ROLE ${stranger} LOGIN PASSWORD '${password(stranger)}'`)
      const server = yield* PgServer
      const external = Layer.succeed(PgServer, PgServer.of({ ...server, localSocket: undefined }))
      const directory = yield* Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "bgw-passfile-")))
      yield* Effect.addFinalizer(() => Effect.promise(() => fs.rm(directory, { recursive: true, force: true })))
      const passfile = path.join(directory, "pgpass")
      yield* Effect.promise(() =>
        fs.writeFile(passfile, `# comment\nnohost:1:*:*:wrong\n*:*:*:${stranger}:${password(stranger)}\n`, {
          mode: 0o600
        })
      )
      const sessionUser = (tag: string) =>
        Effect.gen(function*() {
          const seen = yield* Deferred.make<string>()
          const worker = BackgroundWorker.make({
            name: `passfile ${tag}`,
            database: { user: stranger },
            startTime: "consistentState",
            restart: BackgroundWorker.restartAfter("1 hour"),
            main: () =>
              Effect.gen(function*() {
                const rows = yield* SqlClient.use((s) => s<{ u: string }>`SELECT session_user AS u`)
                yield* Deferred.succeed(seen, rows[0]!.u)
                yield* ProcLatch.wait({ onPostmasterDeath: "exit" })
              })
          })
          const handle = yield* Supervisor.register(worker)
          yield* PgTest.eventually(
            "a start or a failure",
            Effect.map(
              Effect.all([Deferred.isDone(seen), Supervisor.info(handle)]),
              ([done, row]) => done || (Option.isSome(row) && row.value.lastExit !== null)
            )
          )
          return (yield* Deferred.isDone(seen))
            ? { user: yield* Deferred.await(seen) }
            : { failure: Option.getOrThrow(yield* Supervisor.info(handle)).lastExit!.message }
        }).pipe(
          Effect.provide(
            Supervisor.layer().pipe(
              Layer.provideMerge(WorkerConnection.layer({ passfile }).pipe(Layer.provide(external)))
            )
          ),
          Effect.scoped
        )
      assert.deepStrictEqual(yield* sessionUser("0600"), { user: stranger })
      yield* Effect.promise(() => fs.chmod(passfile, 0o644))
      const ignored = yield* sessionUser("0644")
      assert.include((ignored as { failure: string }).failure, `no credentials to log in as role "${stranger}"`)
      assert.isTrue(yield* logged("has group or world access; permissions should be u=rw (0600) or less"))
    }).pipe(Effect.provide(logs.layer)))

  it.effect("Supervisor.launch with a caller follows the same rules as SQL: a superuser role is refused, the caller's own role is used", () =>
    Effect.gen(function*() {
      const server = yield* PgServer
      const refused = yield* Effect.flip(Supervisor.launch({
        library: "security",
        function: "probe",
        argument: { tag: "api refused", role: server.user, target: mallory },
        caller: mallory
      }))
      assert.strictEqual(refused.reason._tag, "PermissionDenied")
      assert.strictEqual((refused.reason as { code?: string }).code, "42501")
      const handle = yield* Supervisor.launch({
        library: "security",
        function: "probe",
        argument: { tag: "api as caller", target: server.user },
        caller: bob
      })
      yield* PgTest.eventually("the probe", Effect.sync(() => escapes.has("api as caller")))
      assert.strictEqual(escapes.get("api as caller")!.sessionUser, bob)
      assert.strictEqual(Option.getOrThrow(yield* Supervisor.info(handle)).role, bob)
    }))

  it.effect("switching roles from the server's login is an explicit opt-in that logs a warning when the connector is built", () =>
    Effect.gen(function*() {
      yield* Effect.void.pipe(
        Effect.provide(WorkerConnection.layer({ allowSetSessionAuthorization: true })),
        Effect.scoped
      )
      assert.isTrue(yield* logged("SQL a worker runs can switch back to that login"))
    }).pipe(Effect.provide(logs.layer)))
})

describe("passwordFromPassfile", () => {
  const login = { host: "db.example", port: 5432, database: "app", user: "worker" }
  it("takes the first matching line, with * as a wildcard and \\: \\\\ as escapes", () => {
    const text = "# a comment\n\nother:5432:app:worker:nope\n*:5432:app:worker:p\\:a\\\\ss\n*:*:*:*:fallback\n"
    assert.strictEqual(WorkerConnection.passwordFromPassfile(text, login), "p:a\\ss")
    assert.strictEqual(WorkerConnection.passwordFromPassfile(text, { ...login, user: "x" }), "fallback")
    assert.isUndefined(WorkerConnection.passwordFromPassfile("db.example:5432:app\n", login))
  })
})
