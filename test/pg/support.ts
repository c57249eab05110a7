/**
 * Test support for suites that run against PostgreSQL: the server is `DATABASE_URL` when set, else an
 * embedded server started for the test file; each suite gets a fresh database on it.
 *
 * ```ts
 * layer(PgTest.layer({ prefix: "spi" }), PgTest.suiteOptions)("Spi", (it) => {
 *   it.effect("...", () => Effect.gen(function*() { const sql = yield* SqlClient; ... }))
 * })
 * ```
 *
 * An embedded server takes about a second to start (mostly `initdb`), once per `layer(...)` block.
 */
import type * as PgClient from "@effect/sql-pg/PgClient"
import * as Clock from "effect/Clock"
import type * as Config from "effect/Config"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as SqlClient from "effect/sql/SqlClient"
import type * as SqlError from "effect/sql/SqlError"
import * as net from "node:net"
import * as BackgroundWorker from "../../src/BackgroundWorker.ts"
import * as EmbeddedPostgres from "../../src/pg/EmbeddedPostgres.ts"
import * as ProcLatch from "../../src/ProcLatch.ts"
import * as Spi from "../../src/Spi.ts"

type ServerError = EmbeddedPostgres.EmbeddedPostgresError | EmbeddedPostgres.InvalidDatabaseUrl | Config.ConfigError

/**
 * Options for `layer(...)` blocks that use a real server: real time (no `TestClock`, whose timeouts never
 * fire) and room for the server's start.
 */
export const suiteOptions = { timeout: "60 seconds", excludeTestServices: true } as const

/** The server: `DATABASE_URL` from the environment, or an embedded one. */
export const layerServer: Layer.Layer<EmbeddedPostgres.PgServer, ServerError> = EmbeddedPostgres.layer()

/**
 * The server with a fresh database (`<prefix>_<random>`, a copy of `template1`) as its default database,
 * dropped on release. Suites that share a `DATABASE_URL` server stay apart this way.
 */
export const layerDatabase = (
  options: { readonly prefix?: string | undefined } = {}
): Layer.Layer<EmbeddedPostgres.PgServer, ServerError | SqlError.SqlError> =>
  EmbeddedPostgres.layerDatabase({ prefix: options.prefix }).pipe(Layer.provide(layerServer))

/** {@link layerDatabase} plus a pooled client (`PgClient`, `SqlClient`) connected to that database. */
export const layer = (
  options: { readonly prefix?: string | undefined; readonly applicationName?: string | undefined } = {}
): Layer.Layer<
  EmbeddedPostgres.PgServer | PgClient.PgClient | SqlClient.SqlClient,
  ServerError | SqlError.SqlError
> =>
  EmbeddedPostgres.clientLayer({ applicationName: options.applicationName }).pipe(
    Layer.provideMerge(layerDatabase(options))
  )

/** A TCP port on 127.0.0.1 that nothing listens on (at the time of asking). */
export const freePort: Effect.Effect<number> = Effect.callback<number>((resume) => {
  const server = net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
export const accepts = (port: number): Effect.Effect<boolean> =>
  Effect.callback<boolean>((resume) => {
    const socket = net.connect(port, "127.0.0.1")
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed(true))
    })
    socket.once("error", () => resume(Effect.succeed(false)))
  })

/** Runs one query in a session of its own on the server in context. */
export const query = (
  text: string,
  options: EmbeddedPostgres.ClientOptions = {}
): Effect.Effect<ReadonlyArray<ReadonlyArray<unknown>>, SqlError.SqlError, EmbeddedPostgres.PgServer> =>
  Effect.scoped(Effect.flatMap(EmbeddedPostgres.connect(options), (connection) => connection.queryValues(text)))

/** Re-runs `check` every 20 ms until it holds; dies after `ms` (real time: these suites use a live clock). */
export const eventually = <E, R>(what: string, check: Effect.Effect<boolean, E, R>, ms = 8000) =>
  Effect.gen(function*() {
    const deadline = (yield* Clock.currentTimeMillis) + ms
    while (!(yield* check)) {
      if ((yield* Clock.currentTimeMillis) > deadline) {
        return yield* Effect.die(new Error(`timed out waiting for: ${what}`))
      }
      yield* Effect.sleep("20 millis")
    }
  })

/** PostgreSQL's message, code, detail and hint of a statement that failed. */
export const pgFailure = <A, R>(effect: Effect.Effect<A, SqlError.SqlError, R>) =>
  Effect.map(Effect.flip(effect), (error) => {
    const cause = (error.reason as { readonly cause?: unknown }).cause as {
      readonly message?: string
      readonly code?: string
      readonly hint?: string
      readonly detail?: string
    }
    return { message: cause.message, code: cause.code, hint: cause.hint, detail: cause.detail }
  })

/**
 * A database worker that records its session's backend pid in `backends` at each start, then naps for an
 * hour: only its session's end (or a terminate) wakes it. Restarted after `restartAfter`.
 */
export const backendRecorder = (
  name: string,
  backends: Array<number>,
  restartAfter: Duration.Input = "100 millis"
) =>
  BackgroundWorker.make({
    name,
    database: {},
    startTime: "consistentState",
    restart: BackgroundWorker.restartAfter(restartAfter),
    main: () =>
      Effect.gen(function*() {
        const rows = yield* Spi.unsafe<{ pid: number }>("SELECT pg_backend_pid() AS pid")
        backends.push(rows[0]!.pid)
        yield* ProcLatch.wait({ timeout: "1 hour", onPostmasterDeath: "exit" })
      })
  })
