/**
 * DatabaseState: the database's state as the supervisor reads it (PostgreSQL's PM_STARTUP, consistent state,
 * recovery finished), the in-memory layer tests and examples drive, and the start gates it opens.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Stream } from "effect"
import * as DatabaseState from "../src/DatabaseState.ts"

const startTimes = ["postmasterStart", "consistentState", "recoveryFinished"] as const

describe("DatabaseState", () => {
  it.effect("an in-memory state starts ready unless told otherwise", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* DatabaseState.DatabaseState.use((db) => db.get), "ready")
      const starting = yield* DatabaseState.DatabaseState.use((db) => db.get).pipe(
        Effect.provide(DatabaseState.layerMemory("starting"))
      )
      assert.strictEqual(starting, "starting")
    }).pipe(Effect.provide(DatabaseState.layerMemory())))

  it.effect("set changes the in-memory state, and changes streams the current state first, then each change", () =>
    Effect.gen(function*() {
      const db = yield* DatabaseState.DatabaseState
      const seen = yield* Effect.forkChild(Stream.runCollect(Stream.take(db.changes, 3)), { startImmediately: true })
      yield* DatabaseState.set("consistent")
      assert.strictEqual(yield* db.get, "consistent")
      yield* DatabaseState.set("ready")
      assert.deepStrictEqual(yield* Fiber.join(seen), ["starting", "consistent", "ready"])
    }).pipe(Effect.provide(DatabaseState.layerMemory("starting"))))

  it.effect("set does nothing to a state published by something else", () =>
    Effect.gen(function*() {
      yield* DatabaseState.set("ready")
      assert.strictEqual(yield* DatabaseState.DatabaseState.use((db) => db.get), "starting")
    }).pipe(Effect.provide(Layer.succeed(
      DatabaseState.DatabaseState,
      DatabaseState.DatabaseState.of({ get: Effect.succeed("starting"), changes: Stream.make("starting") })
    ))))

  it("the start gates are PostgreSQL's: postmasterStart always, consistentState from a consistent state, recoveryFinished only when ready", () => {
    const table = (["starting", "consistent", "ready"] as const).map((
      state
    ) => [state, startTimes.filter((startTime) => DatabaseState.allows(state, startTime))])
    assert.deepStrictEqual(table, [
      ["starting", ["postmasterStart"]],
      ["consistent", ["postmasterStart", "consistentState"]],
      ["ready", ["postmasterStart", "consistentState", "recoveryFinished"]]
    ])
  })
})
