/**
 * Spi: the worker_spi transaction bracket. What a user relies on: the activity view shows a statement as the
 * worker's `active` query while it runs, `idle in transaction` between the statements of a transaction and `idle`
 * once it committed; a nested transaction is a savepoint whose failure undoes only its own part.
 */
import { assert, layer } from "@effect/vitest"
import { Deferred, Effect, Layer, Option } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as BackgroundWorker from "../../src/BackgroundWorker.ts"
import * as WorkerConnection from "../../src/pg/WorkerConnection.ts"
import * as ProcLatch from "../../src/ProcLatch.ts"
import * as Spi from "../../src/Spi.ts"
import * as Supervisor from "../../src/Supervisor.ts"
import type { WorkerHandle } from "../../src/WorkerHandle.ts"
import * as PgTest from "./support.ts"

/** A supervisor whose database workers connect to the test server. */
const withSupervisor = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(
    Effect.provide(Supervisor.layer({ shutdownTimeout: "2 seconds" }).pipe(Layer.provide(WorkerConnection.layer()))),
    Effect.scoped
  )

const rowOf = (h: WorkerHandle) => Effect.map(Supervisor.info(h), Option.getOrThrow)

/** A database worker that runs `main` once, then naps until terminated. */
const databaseWorker = <E>(name: string, main: Effect.Effect<unknown, E, SqlClient | BackgroundWorker.CurrentWorker>) =>
  BackgroundWorker.make({
    name,
    database: {},
    startTime: "consistentState",
    main: () => Effect.andThen(main, ProcLatch.wait({ onPostmasterDeath: "exit" }))
  })

layer(PgTest.layer({ prefix: "spi" }), PgTest.suiteOptions)("Spi", (it) => {
  it.effect("a statement is the worker's active query while it runs, and the worker is idle after it", () =>
    withSupervisor(Effect.gen(function*() {
      const h = yield* Supervisor.register(databaseWorker("sleeper", Spi.unsafe("SELECT pg_sleep(1)")))
      yield* PgTest.eventually("the statement to show as active", Effect.map(rowOf(h), (r) => r.state === "active"))
      assert.strictEqual((yield* rowOf(h)).query, "SELECT pg_sleep(1)")
      yield* PgTest.eventually("the statement to end", Effect.map(rowOf(h), (r) => r.state !== "active"))
      const row = yield* rowOf(h)
      assert.strictEqual(row.state, "idle")
      assert.strictEqual(row.query, "SELECT pg_sleep(1)", "the last query stays, as in pg_stat_activity")
    })))

  it.effect("between the statements of a transaction the worker is idle in transaction, and idle once it committed", () =>
    withSupervisor(Effect.gen(function*() {
      const inside = yield* Deferred.make<void>()
      const commit = yield* Deferred.make<void>()
      const h = yield* Supervisor.register(databaseWorker(
        "bracket",
        Spi.transaction(Effect.gen(function*() {
          yield* Spi.unsafe("SELECT 1")
          yield* Deferred.succeed(inside, undefined)
          yield* Deferred.await(commit)
        }))
      ))
      yield* Deferred.await(inside)
      let row = yield* rowOf(h)
      assert.strictEqual(row.state, "idle in transaction")
      assert.strictEqual(row.query, "SELECT 1")
      yield* Deferred.succeed(commit, undefined)
      yield* PgTest.eventually("the transaction to commit", Effect.map(rowOf(h), (r) => r.state === "idle"))
      row = yield* rowOf(h)
      assert.strictEqual(row.state, "idle")
    })))

  it.effect("a nested transaction is a savepoint: its failure rolls back only its part, and the outer one still commits", () =>
    withSupervisor(Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`CREATE TABLE IF NOT EXISTS spi_nesting (v int)`
      yield* sql`TRUNCATE spi_nesting`
      const afterInner = yield* Deferred.make<void>()
      const commit = yield* Deferred.make<void>()
      const h = yield* Supervisor.register(databaseWorker(
        "nested",
        Spi.transaction(Effect.gen(function*() {
          yield* Spi.unsafe("INSERT INTO spi_nesting VALUES (1)")
          yield* Spi.transaction(Effect.andThen(
            Spi.unsafe("INSERT INTO spi_nesting VALUES (2)"),
            Spi.unsafe("SELECT 1/0")
          )).pipe(Effect.ignore)
          yield* Deferred.succeed(afterInner, undefined)
          yield* Deferred.await(commit)
          yield* Spi.unsafe("INSERT INTO spi_nesting VALUES (3)")
        }))
      ))
      yield* Deferred.await(afterInner)
      assert.strictEqual(
        (yield* rowOf(h)).state,
        "idle in transaction",
        "the end of the inner transaction does not end the outer one"
      )
      assert.deepStrictEqual(
        yield* sql<{ v: number }>`SELECT v FROM spi_nesting`,
        [],
        "nothing is visible before the commit"
      )
      yield* Deferred.succeed(commit, undefined)
      yield* PgTest.eventually("the outer transaction to commit", Effect.map(rowOf(h), (r) => r.state === "idle"))
      assert.deepStrictEqual((yield* sql<{ v: number }>`SELECT v FROM spi_nesting ORDER BY v`).map((r) => r.v), [1, 3])
    })))
})
