import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Layer, Schedule, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Activity from "../src/Activity.ts"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import * as Preload from "../src/Preload.ts"
import * as Shmem from "../src/Shmem.ts"
import * as Supervisor from "../src/Supervisor.ts"
import type { SupervisorError } from "../src/SupervisorError.ts"
import { WorkerConnector } from "../src/WorkerConnector.ts"
import { withSupervisor } from "./fixtures.ts"

const invalidField = (worker: BackgroundWorker.Any) =>
  Effect.map(Effect.flip(BackgroundWorker.validate(worker)), (e) => e.field)

describe("BackgroundWorker definitions", () => {
  it("isBackgroundWorker recognises a definition and nothing that merely looks like one", () => {
    const worker = BackgroundWorker.make({ name: "w", main: () => Effect.void })
    assert.isTrue(BackgroundWorker.isBackgroundWorker(worker))
    assert.isFalse(BackgroundWorker.isBackgroundWorker({ name: "w", main: () => Effect.void }))
    assert.isFalse(BackgroundWorker.isBackgroundWorker(null))
  })

  it.effect("the type defaults to the name", () =>
    Effect.sync(() => {
      const w = BackgroundWorker.make({ name: "worker_spi worker 1", main: () => Effect.void })
      assert.strictEqual(w.type, "worker_spi worker 1")
      assert.strictEqual(w.restart, "never")
      assert.strictEqual(w.startTime, "postmasterStart")
    }))

  it.effect("a database worker starts at recoveryFinished by default and may not use postmasterStart", () =>
    Effect.gen(function*() {
      const db = BackgroundWorker.make({ name: "db", database: { database: "postgres" }, main: () => Effect.void })
      assert.strictEqual(db.startTime, "recoveryFinished")
      const early = BackgroundWorker.make({
        name: "db early",
        startTime: "postmasterStart",
        database: {},
        main: () => Effect.void
      })
      const error = yield* Effect.flip(BackgroundWorker.validate(early))
      assert.strictEqual(error.field, "startTime")
      assert.strictEqual(error.hint, "Use \"consistentState\" or \"recoveryFinished\".")
    }))

  it.effect("each bad field is named by the error", () =>
    Effect.gen(function*() {
      const base = BackgroundWorker.make({ name: "ok", main: () => Effect.void })
      assert.strictEqual(yield* invalidField({ ...base, name: "" }), "name")
      assert.strictEqual(yield* invalidField({ ...base, type: "t".repeat(96) }), "type")
      assert.strictEqual(yield* invalidField({ ...base, startTime: "later" as never }), "startTime")
      assert.strictEqual(yield* invalidField({ ...base, restart: 5 as never }), "restart")
      assert.strictEqual(yield* invalidField({ ...base, main: undefined as never }), "main")
      assert.strictEqual(
        yield* invalidField({ ...base, entryPoint: { library: "", function: "f" } }),
        "entryPoint.library"
      )
      assert.strictEqual(
        yield* invalidField({ ...base, intensity: { maxRestarts: -1, within: Duration.seconds(5) } }),
        "intensity.maxRestarts"
      )
      assert.isTrue(Exit.isSuccess(yield* Effect.exit(BackgroundWorker.validate(base))))
    }))

  it.effect("restartAfter is PostgreSQL's fixed interval: the same delay every time", () =>
    Effect.gen(function*() {
      const step = yield* Schedule.toStep(BackgroundWorker.restartAfter("5 seconds"))
      const failure: BackgroundWorker.WorkerFailure = { reason: "error", message: "x", error: undefined }
      for (const now of [0, 10_000, 99_000]) {
        const [, delay] = yield* step(now, failure)
        assert.strictEqual(Duration.toMillis(delay), 5000)
      }
    }))

  it("a worker that uses SqlClient or Shmem must declare it, or it does not compile", () => {
    const usesSql = Effect.flatMap(SqlClient, () => Effect.void)
    const usesShmem = Shmem.get(Shmem.struct("s", Effect.succeed(1)))
    // @ts-expect-error a worker without `database` has no SqlClient
    BackgroundWorker.make({ name: "no db", main: () => usesSql })
    // @ts-expect-error a worker without `shmem: true` has no shared state
    BackgroundWorker.make({ name: "no shmem", main: () => usesShmem })
    const db = BackgroundWorker.make({ name: "db", database: {}, main: () => usesSql })
    const chosen = BackgroundWorker.make({
      name: "chosen",
      argument: Schema.String,
      database: {},
      databaseFor: (name) => ({ database: name }),
      main: () => usesSql
    })
    // what remains to provide is the connector that opens the session: the supervisor provides the rest
    const none3: BackgroundWorker.BackgroundWorker<string, never, WorkerConnector> = chosen
    assert.isDefined(none3)
    const shm = BackgroundWorker.make({ name: "shm", shmem: true, main: () => usesShmem })
    // what remains to provide is nothing: the supervisor provides the declared services
    const none: BackgroundWorker.BackgroundWorker<void, never, WorkerConnector> = db
    const none2: BackgroundWorker.BackgroundWorker<void, never, never> = shm
    assert.isTrue(none !== undefined && none2 !== undefined)
  })

  it.effect("a database worker registered without a connector installed is refused with a hint naming WorkerConnection.layer()", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Supervisor.register(
        BackgroundWorker.make({
          name: "db",
          database: {},
          restart: BackgroundWorker.restartAfter("1 minute"),
          main: () => Effect.void
        })
      ))
      assert.strictEqual(error.reason._tag, "InvalidDefinition")
      assert.strictEqual(
        error.message,
        "background worker \"db\": invalid database: database connection requested, but no WorkerConnector is installed"
      )
      assert.include(error.hint, "WorkerConnection.layer() from effect-bgworker/pg")
      assert.deepStrictEqual(yield* Activity.snapshot, [])
    }).pipe(withSupervisor()))

  it("a supervisor layer that preloads a database worker does not compile without a connector", () => {
    const db = BackgroundWorker.make({ name: "db", database: {}, main: () => Effect.void })
    const app = Supervisor.layer({ preload: [Preload.register(db)] })
    // @ts-expect-error the layer still needs a WorkerConnector
    const closed: Layer.Layer<Supervisor.Supervisor, unknown, never> = app
    const connector = Layer.succeed(
      WorkerConnector,
      WorkerConnector.of({ connect: () => Effect.die("unused"), authorize: () => Effect.die("unused") })
    )
    const provided: Layer.Layer<Supervisor.Supervisor, unknown, never> = app.pipe(Layer.provide(connector))
    assert.isDefined(closed)
    assert.isDefined(provided)
  })

  it.effect("a preloaded database worker without a connector stops the supervisor's start with a typed error", () =>
    Effect.gen(function*() {
      const db = BackgroundWorker.make({ name: "db", database: {}, main: () => Effect.void })
      const layer = Supervisor.layer({ preload: [Preload.register(db)] }) as Layer.Layer<
        Supervisor.Supervisor,
        SupervisorError
      >
      const error = yield* Effect.flip(Layer.build(layer))
      assert.strictEqual(error.reason._tag, "InvalidDefinition")
      assert.include(error.hint, "WorkerConnection.layer()")
    }))

  it.effect("an entry point that needs a database cannot be declared without a connector", () =>
    Effect.gen(function*() {
      const db = BackgroundWorker.make({
        name: "db",
        database: {},
        entryPoint: { library: "lib", function: "db" },
        main: () => Effect.void
      })
      const layer = Supervisor.layer({ entryPoints: [db] }) as Layer.Layer<Supervisor.Supervisor, SupervisorError>
      const error = yield* Effect.flip(Layer.build(layer))
      assert.strictEqual(error.reason._tag, "InvalidDefinition")
      assert.strictEqual((error.reason as { readonly field: string }).field, "database")
    }))
})
