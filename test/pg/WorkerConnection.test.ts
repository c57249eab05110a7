import { assert, layer } from "@effect/vitest"
import { Deferred, Effect, Layer, Option, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as BackgroundWorker from "../../src/BackgroundWorker.ts"
import { PgServer } from "../../src/pg/EmbeddedPostgres.ts"
import * as WorkerConnection from "../../src/pg/WorkerConnection.ts"
import * as ProcLatch from "../../src/ProcLatch.ts"
import * as Spi from "../../src/Spi.ts"
import * as Supervisor from "../../src/Supervisor.ts"
import * as WorkerConnector from "../../src/WorkerConnector.ts"
import type { WorkerHandle } from "../../src/WorkerHandle.ts"
import { captureLogs } from "../fixtures.ts"
import * as PgTest from "./support.ts"

const logs = captureLogs()

/** A supervisor whose database workers connect to the test server. */
const withSupervisor = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(
    Effect.provide(
      Supervisor.layer({ shutdownTimeout: "2 seconds" }).pipe(Layer.provide(WorkerConnection.layer()))
    ),
    Effect.scoped
  )

const lastExit = (h: WorkerHandle) =>
  Effect.map(Supervisor.info(h), (row) => Option.match(row, { onNone: () => undefined, onSome: (r) => r.lastExit }))

layer(PgTest.layer({ prefix: "conn" }), PgTest.suiteOptions)("WorkerConnection", (it) => {
  it.effect("a database worker runs in a session of its own, named after it in pg_stat_activity", () =>
    withSupervisor(Effect.gen(function*() {
      const sql = yield* SqlClient
      const ready = yield* Deferred.make<number>()
      const worker = BackgroundWorker.make({
        name: "counter 1",
        type: "counter",
        database: {},
        startTime: "consistentState",
        main: () =>
          Effect.gen(function*() {
            const rows = yield* Spi.transaction(Spi.unsafe<{ pid: number }>("SELECT pg_backend_pid() AS pid"))
            yield* Deferred.succeed(ready, rows[0]!.pid)
            yield* ProcLatch.wait({ onPostmasterDeath: "exit" })
          })
      })
      const h = yield* Supervisor.register(worker)
      const backend = yield* Deferred.await(ready)
      const seen = yield* sql<{ application_name: string; datname: string }>`
        SELECT application_name, datname FROM pg_stat_activity WHERE pid = ${backend}`
      assert.deepStrictEqual(seen.map((r) => r.application_name), ["counter 1"])
      const row = Option.getOrThrow(yield* Supervisor.info(h))
      assert.strictEqual(row.state, "idle")
      assert.strictEqual(row.query, "SELECT pg_backend_pid() AS pid")
      yield* Supervisor.terminate(h)
      yield* Supervisor.awaitShutdown(h)
      yield* PgTest.eventually(
        "the session to end",
        Effect.map(
          sql`SELECT 1 FROM pg_stat_activity WHERE pid = ${backend}`,
          (rows) => rows.length === 0
        )
      )
    })))

  it.effect("a worker can choose its database from its argument at each start", () =>
    withSupervisor(Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql.unsafe(`DROP DATABASE IF EXISTS otherdb`)
      yield* sql.unsafe(`CREATE DATABASE otherdb`)
      const connected = yield* Deferred.make<string>()
      const worker = BackgroundWorker.make({
        name: "chooser",
        argument: Schema.Struct({ db: Schema.String }),
        database: {},
        databaseFor: ({ db }) => ({ database: db }),
        startTime: "consistentState",
        main: () =>
          Effect.flatMap(
            Spi.unsafe<{ d: string }>("SELECT current_database() AS d"),
            (rows) => Deferred.succeed(connected, rows[0]!.d)
          )
      })
      yield* Supervisor.register(worker, { db: "otherdb" })
      assert.strictEqual(yield* Deferred.await(connected), "otherdb")
      yield* sql.unsafe(`DROP DATABASE otherdb WITH (FORCE)`)
    })))

  it.effect("a transaction commits on success, and an uncaught SQL error rolls back and fails the worker", () =>
    withSupervisor(Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`CREATE TABLE IF NOT EXISTS spi_test (v int)`
      yield* sql`TRUNCATE spi_test`
      const worker = BackgroundWorker.make({
        name: "writer",
        database: {},
        startTime: "consistentState",
        restart: BackgroundWorker.restartAfter("1 hour"),
        main: () =>
          Effect.gen(function*() {
            yield* Spi.transaction(Spi.unsafe("INSERT INTO spi_test VALUES (1)"))
            yield* Spi.transaction(Effect.andThen(
              Spi.unsafe("INSERT INTO spi_test VALUES (2)"),
              Spi.unsafe("SELECT 1/0")
            ))
          })
      })
      const h = yield* Supervisor.register(worker)
      yield* Supervisor.awaitShutdown(h)
      yield* PgTest.eventually("the failure to be recorded", Effect.map(lastExit(h), (e) => e?.kind === "failed"))
      assert.deepStrictEqual((yield* sql<{ v: number }>`SELECT v FROM spi_test`).map((r) => r.v), [1])
      const exit = yield* lastExit(h)
      assert.strictEqual(exit?.query, "SELECT 1/0")
      assert.include(exit!.message, "division by zero")
      assert.strictEqual(Option.getOrThrow(yield* Supervisor.info(h)).registration, "waiting for restart")
    })))

  it.effect("a worker whose database does not exist fails with the server's text and is restarted per its policy", () =>
    withSupervisor(Effect.gen(function*() {
      const worker = BackgroundWorker.make({
        name: "lost",
        database: { database: "no_such_db" },
        startTime: "consistentState",
        restart: BackgroundWorker.restartAfter("100 millis"),
        intensity: { maxRestarts: 2, within: "1 minute" },
        main: () => ProcLatch.wait({ onPostmasterDeath: "exit" })
      })
      const h = yield* Supervisor.register(worker)
      yield* PgTest.eventually(
        "the worker to be given up",
        Effect.map(Supervisor.info(h), (r) => Option.isSome(r) && r.value.registration === "given up")
      )
      const row = Option.getOrThrow(yield* Supervisor.info(h))
      assert.strictEqual(row.lastExit?.message, `database "no_such_db" does not exist`)
      assert.strictEqual(row.restartCount, 2)
    })))

  it.effect("a connection refused by the server carries its SQLSTATE, and says whether trying again can help", () =>
    Effect.gen(function*() {
      const connector = yield* WorkerConnector.WorkerConnector
      const worker = { name: "probe", type: "probe" } as BackgroundWorker.WorkerInfo // connect reads these two
      const missing = yield* Effect.flip(Effect.scoped(connector.connect(worker, { database: "no_such_db" })))
      assert.isTrue(WorkerConnector.isWorkerConnectionError(missing))
      assert.deepStrictEqual([missing.sqlstate, missing.isRetryable], ["3D000", false])
      const bypass = yield* Effect.flip(Effect.scoped(connector.connect(worker, { bypassAllowConn: true })))
      assert.deepStrictEqual([bypass.sqlstate, bypass.isRetryable], ["0A000", false])
    }).pipe(Effect.provide(WorkerConnection.layer())))

  it.effect("a database that does not accept connections refuses the worker, and the bypass flag is refused too", () =>
    withSupervisor(Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql.unsafe(`DROP DATABASE IF EXISTS noconndb`)
      yield* sql.unsafe(`CREATE DATABASE noconndb ALLOW_CONNECTIONS false`)
      const make = (name: string, bypassAllowConn: boolean) =>
        BackgroundWorker.make({
          name,
          database: { database: "noconndb", bypassAllowConn },
          startTime: "consistentState",
          main: () => ProcLatch.wait({ onPostmasterDeath: "exit" })
        })
      const plain = yield* Supervisor.register(make("plain", false))
      const bypass = yield* Supervisor.register(make("bypass", true))
      yield* PgTest.eventually(
        "both to fail",
        Effect.map(
          Effect.all([Supervisor.status(plain), Supervisor.status(bypass)]),
          (ss) => ss.every((s) => s._tag === "Stopped")
        )
      )
      const server = yield* PgServer
      assert.isTrue(server.port > 0)
      yield* sql.unsafe(`DROP DATABASE noconndb`)
    })))

  it.effect("a role that cannot log in is refused, unless the worker asks to bypass the login check", () =>
    withSupervisor(Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql.unsafe(`DROP ROLE IF EXISTS nologrole`)
      yield* sql.unsafe(`CREATE ROLE nologrole NOLOGIN`)
      const sessionUser = yield* Deferred.make<string>()
      const make = (name: string, bypassRoleLoginCheck: boolean) =>
        BackgroundWorker.make({
          name,
          database: { user: "nologrole", bypassRoleLoginCheck },
          startTime: "consistentState",
          restart: BackgroundWorker.restartAfter("1 hour"), // keeps the registration, and its last exit, visible
          main: () =>
            Effect.gen(function*() {
              const rows = yield* Spi.unsafe<{ u: string }>("SELECT session_user AS u")
              yield* Deferred.succeed(sessionUser, rows[0]!.u)
              yield* ProcLatch.wait({ onPostmasterDeath: "exit" })
            })
        })
      const refused = yield* Supervisor.register(make("refused", false))
      yield* PgTest.eventually("the refusal", Effect.map(lastExit(refused), (e) => e != null))
      assert.strictEqual((yield* lastExit(refused))?.message, `role "nologrole" is not permitted to log in`)
      // A client cannot log in as a NOLOGIN role: without the opt-in, the bypass fails with a hint.
      const hinted = yield* Supervisor.register(make("hinted", true))
      yield* PgTest.eventually("the hinted refusal", Effect.map(lastExit(hinted), (e) => e != null))
      assert.include((yield* lastExit(hinted))?.message, "allowSetSessionAuthorization")
      // With the explicit opt-in the session logs in as the server's user and switches to the role.
      yield* Effect.gen(function*() {
        yield* Supervisor.register(make("bypassing", true))
        assert.strictEqual(yield* Deferred.await(sessionUser), "nologrole")
      }).pipe(
        Effect.provide(
          Supervisor.layer({ shutdownTimeout: "2 seconds" }).pipe(
            Layer.provide(WorkerConnection.layer({ allowSetSessionAuthorization: true }))
          )
        ),
        Effect.scoped
      )
    })))

  it.effect("a napping worker whose session is terminated is ended within 1 s with the server's message, and restarted", () =>
    withSupervisor(Effect.gen(function*() {
      const sql = yield* SqlClient
      const backends: Array<number> = []
      // Naps for an hour: only the session's end can wake it.
      const h = yield* Supervisor.register(PgTest.backendRecorder("sleeper", backends))
      yield* PgTest.eventually("the first backend", Effect.sync(() => backends.length === 1))
      const start = Date.now()
      yield* sql`SELECT pg_terminate_backend(${backends[0]!})`
      yield* PgTest.eventually("the failure", Effect.map(lastExit(h), (e) => e != null), 1000)
      console.log(`session end noticed after ${Date.now() - start} ms`)
      // A background worker's words for pg_terminate_backend (its die()), not a client's.
      assert.include(
        (yield* lastExit(h))?.message,
        `terminating background worker "sleeper" due to administrator command`
      )
      yield* PgTest.eventually("a second backend", Effect.sync(() => backends.length === 2))
    })))

  it.effect("a crash of one server process ends every worker's session, logged once as a crash restart", () =>
    withSupervisor(
      Effect.gen(function*() {
        const server = yield* PgServer
        // Only an embedded server is ours to crash (we run as root or as its owner); a shared DATABASE_URL
        // server is left alone, and the test then checks only that workers start.
        const sql = yield* SqlClient
        const backends: Array<number> = []
        yield* Supervisor.register(PgTest.backendRecorder("crash 1", backends, "200 millis"))
        yield* Supervisor.register(PgTest.backendRecorder("crash 2", backends, "200 millis"))
        yield* PgTest.eventually("both backends", Effect.sync(() => backends.length === 2))
        if (!server.embedded) return
        const [victim] = yield* sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`
        // SIGKILL of one backend: the postmaster ends every other session (57P02) and restarts.
        yield* Effect.exit(Effect.sync(() => process.kill(victim!.pid, "SIGKILL")))
        yield* PgTest.eventually("both workers back", Effect.sync(() => backends.length >= 4), 20_000)
        const crashLines = logs.lines.filter((line) => line.includes("is restarting after a server process crashed"))
        assert.strictEqual(crashLines.length, 1)
      }).pipe(Effect.provide(logs.layer))
    ))

  it.effect("pg_terminate_backend on a worker's backend fails the worker, and its restart policy brings it back", () =>
    withSupervisor(
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const backends: Array<number> = []
        const worker = BackgroundWorker.make({
          name: "victim",
          database: {},
          startTime: "consistentState",
          restart: BackgroundWorker.restartAfter("100 millis"),
          main: () =>
            Effect.gen(function*() {
              while (true) {
                const rows = yield* Spi.unsafe<{ pid: number }>("SELECT pg_backend_pid() AS pid")
                if (!backends.includes(rows[0]!.pid)) backends.push(rows[0]!.pid)
                yield* ProcLatch.wait({ timeout: "20 millis", onPostmasterDeath: "exit" })
                yield* ProcLatch.reset
              }
            })
        })
        const h = yield* Supervisor.register(worker)
        yield* PgTest.eventually("the first backend", Effect.sync(() => backends.length === 1))
        yield* sql`SELECT pg_terminate_backend(${backends[0]!})`
        yield* PgTest.eventually("a second backend", Effect.sync(() => backends.length === 2))
        const row = Option.getOrThrow(yield* Supervisor.info(h))
        assert.strictEqual(row.lastExit?.kind, "failed")
        assert.strictEqual(row.restartCount, 1)
      }).pipe(Effect.timeout("20 seconds"))
    ))
})
