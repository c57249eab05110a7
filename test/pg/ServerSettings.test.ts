/**
 * The server's own configuration reaches the supervisor: `ALTER SYSTEM SET worker_spi.naptime = 5; SELECT
 * pg_reload_conf();` in psql wakes the workers with the new value, `SHOW` and `Guc.settings` agree, and the
 * precedence, validation and privilege rules of src/pg/ServerSettings.ts hold on a real PostgreSQL 18.
 *
 * `ALTER SYSTEM` changes the whole server's `postgresql.auto.conf`, so this file runs on an embedded server
 * of its own (never a shared `DATABASE_URL` server), and every test resets what it set
 * (`ALTER SYSTEM RESET ALL`, then `pg_reload_conf()`) in a finalizer.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as FileSystem from "effect/FileSystem"
import * as Layer from "effect/Layer"
import * as Path from "effect/Path"
import * as Redacted from "effect/Redacted"
import { SqlClient } from "effect/sql/SqlClient"
import { randomUUID } from "node:crypto"
import * as BackgroundWorker from "../../src/BackgroundWorker.ts"
import * as WorkerSpi from "../../src/demo/WorkerSpi.ts"
import * as Guc from "../../src/Guc.ts"
import * as Interrupts from "../../src/Interrupts.ts"
import * as ControlPlane from "../../src/pg/ControlPlane.ts"
import * as EmbeddedPostgres from "../../src/pg/EmbeddedPostgres.ts"
import * as ServerSettings from "../../src/pg/ServerSettings.ts"
import * as Preload from "../../src/Preload.ts"
import * as ProcLatch from "../../src/ProcLatch.ts"
import * as Supervisor from "../../src/Supervisor.ts"
import { captureLogs } from "../fixtures.ts"
import * as PgTest from "./support.ts"

// --- parameters, as worker_spi defines them ---

const { Database: database, Naptime: naptime, Role: role, TotalWorkers: totalWorkers } = WorkerSpi
const parameters = [naptime, totalWorkers, database, role]

// --- helpers ---

const logs = captureLogs()
const logged = (text: string) => logs.lines.filter((line) => line.includes(text)).length

/** `pg_conf_load_time()` of a new session: the postmaster's (a backend inherits it at fork). */
const postmasterLoadTime = Effect.map(
  PgTest.query("SELECT pg_catalog.pg_conf_load_time()::text"),
  (rows) => String(rows[0]?.[0])
)

/**
 * Runs statements one by one (`ALTER SYSTEM` cannot run in a transaction block), then `pg_reload_conf()`,
 * and waits for the postmaster to have reloaded (it signals every backend before it accepts the next
 * session): `pg_reload_conf()` only sends it SIGHUP.
 */
const reloadWith = (...statements: ReadonlyArray<string>) =>
  SqlClient.use((sql) =>
    Effect.gen(function*() {
      const before = yield* postmasterLoadTime
      for (const statement of statements) yield* sql.unsafe(statement)
      yield* sql`SELECT pg_catalog.pg_reload_conf()`
      const reloaded = Effect.map(postmasterLoadTime, (t) => t !== before).pipe(Effect.orDie)
      yield* PgTest.eventually("the server reloaded", reloaded, 5000)
    })
  ).pipe(Effect.orDie)

/** Leaves the server's configuration as it was: every test sets this finalizer first. */
const resetServerAfterwards = Effect.addFinalizer(() =>
  reloadWith("ALTER SYSTEM RESET ALL", "ALTER DATABASE postgres RESET ALL", "ALTER ROLE postgres RESET ALL")
)

/** The registry's row for `name`. */
const row = (name: string) =>
  Effect.map(Guc.settings, (rows) => {
    const found = rows.find((r) => r.name === name)
    if (found === undefined) throw new Error(`no row for ${name}`)
    return found
  })

/** `[setting, source, sourcefile, sourceline]` of the registry's row for `name`. */
const where = (name: string) => Effect.map(row(name), (r) => [r.setting, r.source, r.sourcefile, r.sourceline] as const)

/** `SHOW name` in a session of its own. */
const show = (name: string) =>
  Effect.map(PgTest.query(`SHOW ${name}`), (rows) => String(rows[0]?.[0])).pipe(Effect.orDie)

/** Where `pg_file_settings` says the server's file holds `name`: `[sourcefile, sourceline]`. */
const fileLine = (name: string) =>
  SqlClient.use((sql) =>
    Effect.map(
      sql<{ sourcefile: string; sourceline: number }>`
        SELECT sourcefile, sourceline FROM pg_catalog.pg_file_settings WHERE name = ${name} ORDER BY seqno DESC LIMIT 1`,
      (rows) => [rows[0]!.sourcefile, rows[0]!.sourceline] as const
    )
  ).pipe(Effect.orDie)

/** A worker that naps `worker_spi.naptime` seconds, and records each wake: when, reload flag, naptime. */
const napper = (seen: Array<{ readonly at: number; readonly reload: boolean; readonly naptime: number }>) =>
  BackgroundWorker.make({
    name: "settings napper",
    main: () =>
      Effect.gen(function*() {
        while (true) {
          const settings = yield* Guc.snapshot
          yield* ProcLatch.wait({ timeout: `${settings.get(naptime)} seconds`, onPostmasterDeath: "exit" })
          yield* ProcLatch.reset
          const reload = yield* Interrupts.reloadPending
          seen.push({ at: Date.now(), reload, naptime: (yield* Guc.snapshot).get(naptime) })
        }
      })
  })

/**
 * A supervisor following the server: the registry (with `registry`'s options), `layerStartup` below the
 * supervisor and `layer` above it, checking every 50 ms unless `options` says otherwise.
 */
const following = (
  registry: Guc.Options = {},
  workers: ReadonlyArray<BackgroundWorker.Any> = [],
  options: ServerSettings.Options = { interval: "50 millis" }
) =>
  ServerSettings.layer(options).pipe(
    Layer.provideMerge(
      Supervisor.layer({ preload: workers.map((w) => Preload.register(w)), shutdownTimeout: "1 second" })
    ),
    Layer.provideMerge(ServerSettings.layerStartup(options)),
    Layer.provideMerge(Guc.layer({ parameters, reservedPrefixes: ["worker_spi"], ...registry })),
    Layer.provide(NodeServices.layer),
    Layer.provide(logs.layer)
  )

/** A `postgresql.conf` for the supervisor, in a temporary directory. */
const supervisorConf = (text: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const dir = yield* fs.makeTempDirectoryScoped({ prefix: "server-settings-" })
    const file = path.join(dir, "postgresql.conf")
    yield* fs.writeFileString(file, text)
    return file
  }).pipe(Effect.provide(NodeServices.layer), Effect.orDie)

const Suite = EmbeddedPostgres.clientLayer({ applicationName: "server settings test" }).pipe(
  Layer.provideMerge(EmbeddedPostgres.layerEmbedded())
)

layer(Suite, PgTest.suiteOptions)("ServerSettings", (it) => {
  it.effect("ALTER SYSTEM SET and pg_reload_conf() reach a napping worker within a second, as SIGHUP does", () =>
    Effect.gen(function*() {
      yield* resetServerAfterwards
      const seen: Array<{ at: number; reload: boolean; naptime: number }> = []
      yield* Effect.gen(function*() {
        assert.strictEqual(yield* Guc.get(naptime), 10)
        yield* Effect.sleep("300 millis") // the worker is napping for 10 s
        const before = seen.length
        const sent = Date.now()
        yield* reloadWith("ALTER SYSTEM SET worker_spi.naptime = 5")
        yield* PgTest.eventually("the worker woke", Effect.sync(() => seen.length > before), 2000)
        const wake = seen[before]!
        assert.deepStrictEqual([wake.reload, wake.naptime], [true, 5])
        assert.isBelow(wake.at - sent, 1000)
        assert.strictEqual(yield* Guc.get(naptime), 5)
      }).pipe(Effect.provide(following({}, [napper(seen)], {})))
    }))

  it.effect("a pg_reload_conf() that changes none of the supervisor's parameters wakes nobody", () =>
    Effect.gen(function*() {
      yield* resetServerAfterwards
      const seen: Array<{ at: number; reload: boolean; naptime: number }> = []
      yield* reloadWith("ALTER SYSTEM SET worker_spi.naptime = 5")
      yield* Effect.gen(function*() {
        yield* Effect.sleep("200 millis")
        yield* reloadWith("ALTER SYSTEM SET work_mem = '8MB'")
        yield* Effect.sleep("500 millis")
        assert.deepStrictEqual(seen, [])
        assert.strictEqual(yield* Guc.get(naptime), 5)
      }).pipe(Effect.provide(following({}, [napper(seen)])))
    }))

  it.effect("SHOW and the settings view agree, and the source names the server's file and line", () =>
    Effect.gen(function*() {
      yield* resetServerAfterwards
      const server = yield* EmbeddedPostgres.PgServer
      yield* Effect.gen(function*() {
        assert.deepStrictEqual(yield* where("worker_spi.naptime"), ["10", "default", null, null])
        yield* reloadWith("ALTER SYSTEM SET worker_spi.naptime = 5")
        yield* PgTest.eventually("the registry follows", Effect.map(Guc.get(naptime), (n) => n === 5), 2000)
        const [file, line] = yield* fileLine("worker_spi.naptime")
        assert.strictEqual(file, `${server.directory}/data/postgresql.auto.conf`)
        assert.strictEqual(yield* show("worker_spi.naptime"), "5")
        assert.deepStrictEqual(yield* where("worker_spi.naptime"), ["5", "server configuration", file, line])
        // The control plane publishes the same row as bgworker.settings.
        const sql = yield* SqlClient
        yield* PgTest.eventually(
          "bgworker.settings follows",
          Effect.map(
            sql<{ setting: string; source: string; sourcefile: string; sourceline: number }>`
              SELECT setting, source, sourcefile, sourceline FROM bgworker.settings WHERE name = 'worker_spi.naptime'`,
            (rows) =>
              rows.length === 1 && rows[0]!.setting === "5" && rows[0]!.source === "server configuration" &&
              rows[0]!.sourcefile === file && rows[0]!.sourceline === line
          ).pipe(Effect.orDie),
          3000
        )
      }).pipe(
        Effect.provide(ControlPlane.layer({ pollInterval: "200 millis" }).pipe(Layer.provideMerge(following())))
      )
    }))

  it.effect("an environment variable beats the server's configuration, which beats the supervisor's own file", () =>
    Effect.gen(function*() {
      yield* resetServerAfterwards
      const configFile = yield* supervisorConf(
        "worker_spi.naptime = 20\nworker_spi.database = 'fromfile'\nworker_spi.role = 'filerole'\n"
      )
      yield* reloadWith(
        "ALTER SYSTEM SET worker_spi.naptime = 5",
        "ALTER SYSTEM SET worker_spi.role = 'serverrole'"
      )
      yield* Effect.gen(function*() {
        assert.deepStrictEqual((yield* where("worker_spi.naptime")).slice(0, 2), ["5", "server configuration"])
        assert.deepStrictEqual(yield* where("worker_spi.database"), ["fromfile", "configuration file", configFile, 2])
        assert.deepStrictEqual(yield* where("worker_spi.role"), ["envrole", "environment variable", null, null])
        assert.strictEqual(yield* show("worker_spi.role"), "serverrole")
      }).pipe(Effect.provide(following({ configFile, environment: { BGW_WORKER_SPI__ROLE: "envrole" } })))
    }))

  it.effect("ALTER SYSTEM RESET returns a parameter to the supervisor's file, else to its default", () =>
    Effect.gen(function*() {
      yield* resetServerAfterwards
      const configFile = yield* supervisorConf("worker_spi.naptime = 20\n")
      yield* reloadWith(
        "ALTER SYSTEM SET worker_spi.naptime = 5",
        "ALTER SYSTEM SET worker_spi.database = 'fromserver'"
      )
      yield* Effect.gen(function*() {
        assert.deepStrictEqual([yield* Guc.get(naptime), yield* Guc.get(database)], [5, "fromserver"])
        yield* reloadWith("ALTER SYSTEM RESET worker_spi.naptime", "ALTER SYSTEM RESET worker_spi.database")
        yield* PgTest.eventually("the registry follows", Effect.map(Guc.get(naptime), (n) => n === 20), 2000)
        assert.deepStrictEqual(yield* where("worker_spi.naptime"), ["20", "configuration file", configFile, 1])
        assert.deepStrictEqual(yield* where("worker_spi.database"), ["postgres", "default", null, null])
        assert.isTrue(logs.lines.includes(`INFO parameter "worker_spi.naptime" changed to "20"`))
      }).pipe(Effect.provide(following({ configFile })))
    }))

  it.effect("an invalid value from the server keeps the old one and is logged with the server's file and line", () =>
    Effect.gen(function*() {
      yield* resetServerAfterwards
      yield* reloadWith("ALTER SYSTEM SET worker_spi.naptime = 5")
      yield* Effect.gen(function*() {
        assert.strictEqual(yield* Guc.get(naptime), 5)
        // The server accepts anything for a placeholder.
        yield* reloadWith("ALTER SYSTEM SET worker_spi.naptime = 'abc'", "ALTER SYSTEM SET worker_spi.database = 'db2'")
        yield* PgTest.eventually("the valid change applies", Effect.map(Guc.get(database), (d) => d === "db2"), 2000)
        assert.strictEqual(yield* show("worker_spi.naptime"), "abc")
        assert.strictEqual(yield* Guc.get(naptime), 5)
        const [file, line] = yield* fileLine("worker_spi.naptime")
        assert.strictEqual(
          logged(`WARN invalid value for parameter "worker_spi.naptime": "abc" in file "${file}" line ${line}`),
          1
        )
        assert.strictEqual(
          logged(`WARN server configuration file "${file}" contains errors; unaffected changes were applied`),
          1
        )
      }).pipe(Effect.provide(following()))
    }))

  it.effect("a postmaster parameter applies at start, and a later change is pending restart", () =>
    Effect.gen(function*() {
      yield* resetServerAfterwards
      yield* reloadWith("ALTER SYSTEM SET worker_spi.total_workers = 3")
      yield* Effect.gen(function*() {
        assert.deepStrictEqual(
          [(yield* row("worker_spi.total_workers")).setting, (yield* row("worker_spi.total_workers")).pending_restart],
          ["3", false]
        )
        yield* reloadWith("ALTER SYSTEM SET worker_spi.total_workers = 4")
        yield* PgTest.eventually(
          "pending restart",
          Effect.map(row("worker_spi.total_workers"), (r) => r.pending_restart),
          2000
        )
        assert.strictEqual(yield* Guc.get(totalWorkers), 3)
        assert.isAtLeast(
          logged(`INFO parameter "worker_spi.total_workers" cannot be changed without restarting the server`),
          1
        )
      }).pipe(Effect.provide(following()))
    }))

  it.effect("ALTER DATABASE and ALTER ROLE settings never reach the supervisor", () =>
    Effect.gen(function*() {
      yield* resetServerAfterwards
      yield* reloadWith(
        "ALTER DATABASE postgres SET worker_spi.naptime = 7",
        "ALTER ROLE postgres SET worker_spi.database = 'fromrole'",
        "ALTER SYSTEM SET worker_spi.database = 'fromserver'"
      )
      yield* Effect.gen(function*() {
        // A new session sees the database's and the role's values...
        assert.deepStrictEqual([yield* show("worker_spi.naptime"), yield* show("worker_spi.database")], [
          "7",
          "fromrole"
        ])
        // ...the supervisor only the server's.
        assert.deepStrictEqual((yield* where("worker_spi.naptime")).slice(0, 2), ["10", "default"])
        assert.deepStrictEqual((yield* where("worker_spi.database")).slice(0, 2), [
          "fromserver",
          "server configuration"
        ])
        yield* reloadWith("ALTER SYSTEM SET worker_spi.naptime = 5")
        yield* PgTest.eventually("the registry follows", Effect.map(Guc.get(naptime), (n) => n === 5), 2000)
        assert.strictEqual(yield* show("worker_spi.naptime"), "7")
      }).pipe(Effect.provide(following()))
    }))

  it.effect("a role that may not read pg_file_settings follows the server's values, without file and line", () =>
    Effect.gen(function*() {
      yield* resetServerAfterwards
      const server = yield* EmbeddedPostgres.PgServer
      const name = `ss_plain_${randomUUID().slice(0, 8)}`
      const password = randomUUID()
      const sql = yield* SqlClient
      yield* sql.unsafe(`CREATE ROLE ${name} LOGIN PASSWORD '${password}'`).pipe(Effect.orDie)
      yield* Effect.addFinalizer(() => sql.unsafe(`DROP ROLE IF EXISTS ${name}`).pipe(Effect.orDie))
      yield* reloadWith(
        `ALTER ROLE ${name} SET worker_spi.database = 'fromrole'`,
        "ALTER SYSTEM SET worker_spi.naptime = 5",
        "ALTER SYSTEM SET worker_spi.database = 'fromserver'"
      )
      const asPlain = EmbeddedPostgres.clientLayer().pipe(
        Layer.provide(Layer.succeed(EmbeddedPostgres.PgServer, {
          ...server,
          user: name,
          password: Redacted.make(password),
          url: Redacted.make(`postgresql://${name}:${password}@${server.host}:${server.port}/${server.database}`)
        })),
        Layer.orDie
      )
      yield* Effect.gen(function*() {
        assert.deepStrictEqual(yield* where("worker_spi.naptime"), ["5", "server configuration", null, null])
        // The role's own setting hides the server's value from this role: left out, with a warning.
        assert.deepStrictEqual((yield* where("worker_spi.database")).slice(0, 2), ["postgres", "default"])
        assert.strictEqual(logged(`WARN parameter "worker_spi.database" is set for this session by ALTER ROLE`), 1)
        assert.strictEqual(logged("INFO the server's configuration is read through this session's current_setting"), 1)
        yield* reloadWith("ALTER SYSTEM SET worker_spi.naptime = 6")
        yield* PgTest.eventually("the registry follows", Effect.map(Guc.get(naptime), (n) => n === 6), 2000)
      }).pipe(Effect.provide(following().pipe(Layer.provide(asPlain))))
    }))

  it.effect("an outage is logged once, and the server's values arrive when it answers", () =>
    Effect.gen(function*() {
      const port = yield* PgTest.freePort
      const password = randomUUID()
      const absent = yield* EmbeddedPostgres.fromUrl(
        Redacted.make(`postgresql://postgres:${password}@127.0.0.1:${port}/postgres`)
      )
      const client = EmbeddedPostgres.clientLayer({ connectTimeout: "500 millis" }).pipe(
        Layer.provide(Layer.succeed(EmbeddedPostgres.PgServer, absent)),
        Layer.orDie
      )
      const warning = "WARN cannot read the server's configuration"
      const before = logged(warning)
      yield* Effect.gen(function*() {
        yield* Effect.sleep("600 millis")
        assert.strictEqual(logged(warning) - before, 1)
        assert.strictEqual(yield* Guc.get(naptime), 10)
        // The server comes up at that address, with a value for the supervisor.
        yield* Effect.gen(function*() {
          yield* reloadWith("ALTER SYSTEM SET worker_spi.naptime = 5")
          yield* PgTest.eventually("the registry follows", Effect.map(Guc.get(naptime), (n) => n === 5), 5000)
          assert.strictEqual(logged("INFO the server's configuration is readable again"), 1)
          assert.strictEqual(logged(warning) - before, 1)
        }).pipe(
          Effect.provide(
            EmbeddedPostgres.clientLayer().pipe(
              Layer.provideMerge(EmbeddedPostgres.layerEmbedded({ port, password: Redacted.make(password) }))
            )
          )
        )
      }).pipe(
        Effect.provide(following({}, [], { interval: "50 millis", timeout: "1 second" }).pipe(Layer.provide(client)))
      )
    }), { timeout: 60_000 })
})
