/**
 * Preload: static registration, what a library does in `_PG_init` from `shared_preload_libraries`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as Activity from "../src/Activity.ts"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import * as Preload from "../src/Preload.ts"
import { eventually, napForever, untilQuiet, withSupervisor } from "./fixtures.ts"

const napper = (name: string) => BackgroundWorker.make({ name, main: () => napForever() })

describe("Preload", () => {
  it.effect("workers registered by a preload are static and run once the supervisor has started", () =>
    Effect.gen(function*() {
      yield* untilQuiet
      const rows = yield* Activity.snapshot
      assert.deepStrictEqual(rows.map((r) => [r.name, r.origin, r.registration]), [
        ["first", "static", "running"],
        ["second", "static", "running"]
      ])
    }).pipe(withSupervisor({ preload: [Preload.register(napper("first")), Preload.register(napper("second"))] })))

  it.effect("preloads run in the order given, and their workers take slots in registration order", () =>
    Effect.gen(function*() {
      yield* untilQuiet
      const rows = yield* Activity.snapshot
      assert.deepStrictEqual(rows.map((r) => [r.slot, r.name]), [[0, "a"], [1, "b"], [2, "c"]])
    }).pipe(withSupervisor({
      preload: [
        Effect.andThen(Preload.register(napper("a")), Preload.register(napper("b"))),
        Preload.register(napper("c"))
      ]
    })))

  it.effect("a static worker receives the argument its preload registered it with", () => {
    const received: Array<number> = []
    const numbered = BackgroundWorker.make({
      name: "numbered",
      argument: Schema.Number,
      main: (n) => Effect.andThen(Effect.sync(() => received.push(n)), napForever())
    })
    return Effect.gen(function*() {
      yield* eventually("both workers have started", Effect.sync(() => received.length === 2))
      assert.deepStrictEqual(received.sort(), [1, 2])
    }).pipe(withSupervisor({ preload: [Preload.register(numbered, 1), Preload.register(numbered, 2)] }))
  })
})
