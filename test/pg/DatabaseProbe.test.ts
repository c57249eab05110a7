import { assert, describe, it, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { SqlClient } from "effect/sql/SqlClient"
import * as Stream from "effect/Stream"
import * as DatabaseState from "../../src/DatabaseState.ts"
import * as DatabaseProbe from "../../src/pg/DatabaseProbe.ts"
import * as EmbeddedPostgres from "../../src/pg/EmbeddedPostgres.ts"
import * as PgTest from "./support.ts"

/** Every state `changes` publishes, up to and including `ready`; fails after `timeout`. */
const statesUntilReady = (timeout: Duration.Input = "10 seconds") =>
  Effect.gen(function*() {
    const db = yield* DatabaseState.DatabaseState
    const states = yield* db.changes.pipe(
      Stream.takeUntil((state) => state === "ready"),
      Stream.runCollect,
      Effect.timeoutOrElse({
        duration: timeout,
        orElse: () => Effect.die(`not ready within ${Duration.format(Duration.fromInputUnsafe(timeout))}`)
      })
    )
    return Array.from(states)
  })

layer(DatabaseProbe.layer().pipe(Layer.provideMerge(PgTest.layer({ prefix: "probe" }))), PgTest.suiteOptions)(
  "DatabaseProbe on a primary",
  (it) => {
    it.effect("reports ready as soon as the layer is built", () =>
      Effect.gen(function*() {
        assert.strictEqual(yield* DatabaseState.DatabaseState.use((db) => db.get), "ready")
        assert.deepStrictEqual(yield* statesUntilReady(), ["ready"])
      }))

    it.effect("probes the suite's own database, which the shared test layer created", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const [row] = yield* sql<{ readonly name: string }>`SELECT current_database() AS name`
        assert.match(row?.name ?? "", /^probe_[0-9a-f]{12}$/)
        assert.strictEqual(yield* DatabaseProbe.probe({ database: row?.name }), "ready")
      }))

    it.effect("set is a no-op: the state is the server's", () =>
      Effect.gen(function*() {
        yield* DatabaseState.set("starting")
        assert.strictEqual(yield* DatabaseState.DatabaseState.use((db) => db.get), "ready")
      }))
  }
)

describe("DatabaseProbe", () => {
  it.live("reports consistent for a hot standby, then ready once it is promoted", () =>
    Effect.gen(function*() {
      const db = yield* DatabaseState.DatabaseState
      assert.strictEqual(yield* db.get, "consistent")
      assert.deepStrictEqual(yield* PgTest.query("SELECT pg_is_in_recovery()"), [[true]])
      const states = yield* Effect.forkChild(statesUntilReady(), { startImmediately: true })
      yield* PgTest.query("SELECT pg_promote()")
      assert.deepStrictEqual(yield* Fiber.join(states), ["consistent", "ready"])
    }).pipe(
      Effect.provide(
        DatabaseProbe.layer({ interval: "20 millis" }).pipe(
          Layer.provideMerge(EmbeddedPostgres.layerEmbedded({ standby: true }))
        )
      )
    ))

  it.live("reports starting while nothing listens, then moves forward when the server appears", () =>
    Effect.gen(function*() {
      const port = yield* PgTest.freePort
      const password = "probe secret"
      const server = yield* EmbeddedPostgres.fromUrl(
        Redacted.make(`postgresql://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`)
      )
      const db = yield* Layer.build(DatabaseProbe.layer({ interval: "20 millis" })).pipe(
        Effect.provideService(EmbeddedPostgres.PgServer, server),
        Effect.map((context) => Context.get(context, DatabaseState.DatabaseState))
      )
      assert.strictEqual(yield* db.get, "starting")
      yield* Effect.sleep("100 millis")
      assert.strictEqual(yield* db.get, "starting")
      yield* Layer.build(EmbeddedPostgres.layerEmbedded({ port, password: Redacted.make(password) }))
      const states = yield* statesUntilReady().pipe(Effect.provideService(DatabaseState.DatabaseState, db))
      assert.strictEqual(states[0], "starting")
      assert.strictEqual(states.at(-1), "ready")
      assert.deepStrictEqual(states, Array.from(new Set(states)), "a state was published twice")
    }).pipe(Effect.scoped))
})
