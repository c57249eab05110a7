/**
 * A newcomer's first runs (issue 9): each failure says what, where and what to do, and the process's log
 * says when the system is ready and when it has stopped. Real `runMain` child processes; the database ones
 * point `DATABASE_URL` at a port nothing listens on, or at a host name that cannot resolve.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as PgTest from "../pg/support.ts"
import { type Child, spawn } from "./fixtures/child.ts"

const fixture = "test/node/fixtures/firstContact.ts"

const lines = (child: Child, pattern: RegExp) =>
  Effect.map(child.output, (all) => all.filter((line) => pattern.test(line)))

const dump = (child: Child) => Effect.map(child.output, (all) => all.join("\n"))

/** The last line printed is PostgreSQL's `database system is shut down`. */
const assertShutDownLast = (child: Child) =>
  Effect.gen(function*() {
    const output = yield* child.output
    assert.match(output.at(-1) ?? "", /NodeSupervisor LOG: {2}database system is shut down$/, output.join("\n"))
    assert.strictEqual(output.filter((line) => line.includes("database system is shut down")).length, 1)
  })

describe("first contact (runMain child processes)", () => {
  it.live(
    "a preloaded database worker without WorkerConnection.layer() stops the start with one FATAL line and a hint naming the layer",
    () =>
      Effect.gen(function*() {
        const child = yield* spawn(fixture, { FIXTURE_MODE: "no-connector" })
        assert.deepStrictEqual(yield* child.awaitExit("10 seconds"), { code: 1 })
        const fatal = yield* lines(child, / FATAL: {2}/)
        assert.strictEqual(fatal.length, 1, yield* dump(child))
        assert.include(fatal[0], "background worker \"counter db\": invalid database: database connection requested")
        const hints = yield* lines(child, / HINT: {2}/)
        assert.strictEqual(hints.length, 1, yield* dump(child))
        assert.include(hints[0], "WorkerConnection.layer() from effect-bgworker/pg")
        assert.deepStrictEqual(yield* lines(child, /supervisor ready/), [])
        yield* assertShutDownLast(child)
      }).pipe(Effect.provide(NodeServices.layer)),
    20_000
  )

  it.live(
    "an unreachable database is one WARNING with host, port and cause, and the supervisor says it is not ready instead of ready",
    () =>
      Effect.gen(function*() {
        const port = yield* PgTest.freePort
        const child = yield* spawn(fixture, {
          FIXTURE_MODE: "unreachable",
          DATABASE_URL: `postgres://x@127.0.0.1:${port}/db`
        })
        yield* child.waitFor("but not ready", { timeout: "10 seconds" })
        // Twenty probes or so (every 50 ms): still one warning.
        yield* Effect.sleep("1 second")
        const warnings = yield* lines(child, / WARNING: {2}/)
        assert.strictEqual(warnings.length, 1, yield* dump(child))
        assert.include(warnings[0], `could not connect to PostgreSQL at 127.0.0.1:${port}`)
        assert.include(warnings[0], "ECONNREFUSED")
        const waiting = yield* lines(child, /but not ready/)
        assert.include(waiting[0], "1 background worker waits for the database to accept connections (\"counter db\")")
        assert.deepStrictEqual(yield* lines(child, /supervisor ready/), [])
        yield* child.signal("SIGTERM")
        assert.deepStrictEqual(yield* child.awaitExit("10 seconds"), { code: 130 })
        yield* assertShutDownLast(child)
      }).pipe(Effect.provide(NodeServices.layer)),
    20_000
  )

  it.live(
    "supervisor ready is said only once the database gate opens and the waiting worker has started",
    () =>
      Effect.gen(function*() {
        const child = yield* spawn(fixture, { FIXTURE_MODE: "gated" })
        yield* child.waitFor("but not ready: 1 background worker waits for the database", { timeout: "10 seconds" })
        yield* child.waitFor("supervisor ready", { timeout: "5 seconds" })
        const output = yield* child.output
        const started = output.findIndex((line) => line.includes("late (late) LOG:  worker: ready"))
        const ready = output.findIndex((line) => line.includes("supervisor ready"))
        assert.isTrue(started >= 0 && started < ready, output.join("\n"))
        yield* child.signal("SIGINT")
        assert.deepStrictEqual(yield* child.awaitExit("10 seconds"), { code: 130 })
        yield* assertShutDownLast(child)
      }).pipe(Effect.provide(NodeServices.layer)),
    20_000
  )

  it.live(
    "a refused connection at start names host, port and ECONNREFUSED, with libpq's hint",
    () =>
      Effect.gen(function*() {
        const port = yield* PgTest.freePort
        const child = yield* spawn(fixture, {
          FIXTURE_MODE: "connect",
          DATABASE_URL: `postgres://x@127.0.0.1:${port}/db`
        })
        assert.deepStrictEqual(yield* child.awaitExit("10 seconds"), { code: 1 })
        const fatal = yield* lines(child, / FATAL: {2}/)
        assert.strictEqual(fatal.length, 1, yield* dump(child))
        assert.include(
          fatal[0],
          `connection to server at "127.0.0.1", port ${port} failed: Connection refused (ECONNREFUSED)`
        )
        const hints = yield* lines(child, / HINT: {2}/)
        assert.deepStrictEqual(hints.map((line) => line.replace(/^.* HINT: {2}/, "")), [
          "Is the server running on that host and accepting TCP/IP connections?"
        ])
        yield* assertShutDownLast(child)
      }).pipe(Effect.provide(NodeServices.layer)),
    20_000
  )

  it.live(
    "a host name that does not resolve is named in the FATAL line with ENOTFOUND and a hint",
    () =>
      Effect.gen(function*() {
        const child = yield* spawn(fixture, {
          FIXTURE_MODE: "connect",
          DATABASE_URL: "postgres://x@nohost.invalid:5432/db"
        })
        assert.deepStrictEqual(yield* child.awaitExit("20 seconds"), { code: 1 })
        const fatal = yield* lines(child, / FATAL: {2}/)
        assert.strictEqual(fatal.length, 1, yield* dump(child))
        // ENOTFOUND, or EAI_AGAIN where no resolver answers at all.
        assert.match(
          fatal[0]!,
          /could not translate host name "nohost\.invalid" to address: .* \((ENOTFOUND|EAI_AGAIN)\)/
        )
        assert.strictEqual((yield* lines(child, / HINT: {2}Check the host name/)).length, 1, yield* dump(child))
      }).pipe(Effect.provide(NodeServices.layer)),
    30_000
  )

  it.live(
    "an EmbeddedPostgresError is one FATAL line with the server's last lines and its hint printed once",
    () =>
      Effect.gen(function*() {
        const child = yield* spawn(fixture, { FIXTURE_MODE: "embedded-error" })
        assert.deepStrictEqual(yield* child.awaitExit("10 seconds"), { code: 1 })
        const output = yield* child.output
        const fatal = output.filter((line) => / FATAL: {2}embedded PostgreSQL: the server exited/.test(line))
        assert.strictEqual(fatal.length, 1, output.join("\n"))
        assert.isTrue(
          output.some((line) =>
            line === "\tFATAL:  could not create lock file \"/tmp/.s.PGSQL.5432.lock\": Permission denied"
          )
        )
        assert.strictEqual(
          output.filter((line) => /Remove the stale lock file/i.test(line)).length,
          1,
          output.join("\n")
        )
        assert.strictEqual(output.filter((line) => /hint/i.test(line)).length, 1, output.join("\n"))
        yield* assertShutDownLast(child)
      }).pipe(Effect.provide(NodeServices.layer)),
    20_000
  )

  it.live(
    "after Ctrl-C the last line is database system is shut down, after the workers' finalizers",
    () =>
      Effect.gen(function*() {
        const child = yield* spawn("test/node/fixtures/signals.ts")
        yield* child.waitFor("sleeper: ready")
        yield* child.signal("SIGINT")
        assert.deepStrictEqual(yield* child.awaitExit("10 seconds"), { code: 130 })
        const output = yield* child.output
        const finalizer = output.findIndex((line) => line.includes("sleeper: finalizer ran"))
        assert.isTrue(finalizer >= 0 && finalizer < output.length - 1, output.join("\n"))
        yield* assertShutDownLast(child)
      }).pipe(Effect.provide(NodeServices.layer)),
    20_000
  )
})
