/**
 * Shared state (`Shmem`): structs created once per generation, before any worker that uses them runs.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import * as Preload from "../src/Preload.ts"
import * as Shmem from "../src/Shmem.ts"
import * as Supervisor from "../src/Supervisor.ts"
import { eventually, withSupervisor } from "./fixtures.ts"

describe("Shmem", () => {
  it.effect("a struct is created once per generation, however many workers ask at once", () =>
    Effect.gen(function*() {
      let created = 0
      const ids: Array<number> = []
      const counter = Shmem.struct("counter", Effect.andThen(Effect.sleep(0), Effect.sync(() => ++created)))
      const w = BackgroundWorker.make({
        name: "user",
        shmem: true,
        main: () => Effect.flatMap(Shmem.get(counter), (id) => Effect.sync(() => ids.push(id)))
      })
      for (let i = 0; i < 5; i++) yield* Supervisor.register(w)
      yield* Effect.sleep(0)
      yield* eventually("every worker has read the struct", Effect.sync(() => ids.length === 5))
      assert.strictEqual(created, 1)
      assert.deepStrictEqual(ids, [1, 1, 1, 1, 1])
    }).pipe(withSupervisor()))

  it.effect("structs listed in the supervisor's options exist before any worker starts", () =>
    Effect.gen(function*() {
      const order: Array<string> = []
      const config = Shmem.struct("config", Effect.sync(() => order.push("created")))
      const w = BackgroundWorker.make({
        name: "first",
        shmem: true,
        main: () => Effect.sync(() => order.push("worker ran"))
      })
      yield* eventually("the preloaded worker has run", Effect.sync(() => order.length === 2)).pipe(
        withSupervisor({ shmem: [config], preload: [Preload.register(w)] })
      )
      assert.deepStrictEqual(order, ["created", "worker ran"])
    }))
})
