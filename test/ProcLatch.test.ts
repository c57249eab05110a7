import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Option } from "effect"
import { TestClock } from "effect/testing"
import * as Activity from "../src/Activity.ts"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import * as DatabaseState from "../src/DatabaseState.ts"
import * as ProcLatch from "../src/ProcLatch.ts"
import * as Supervisor from "../src/Supervisor.ts"
import { settle, withSupervisor } from "./fixtures.ts"

const exitOnDeath = { onPostmasterDeath: "exit" } as const

describe("ProcLatch", () => {
  it.effect("a set before the wait is not lost: the wait returns at once", () =>
    Effect.gen(function*() {
      const latch = yield* ProcLatch.make
      yield* latch.set
      const result = yield* latch.wait({ ...exitOnDeath, timeout: "1 hour" })
      assert.deepStrictEqual(result, { latchSet: true, timeout: false, postmasterDeath: false })
    }))

  it.effect("a wait does not reset the latch; only reset does", () =>
    Effect.gen(function*() {
      const latch = yield* ProcLatch.make
      yield* latch.set
      yield* latch.wait(exitOnDeath)
      assert.isTrue(latch.isSetUnsafe())
      yield* latch.reset
      assert.isFalse(latch.isSetUnsafe())
    }))

  it.effect("several sets coalesce into one wake-up", () =>
    Effect.gen(function*() {
      const latch = yield* ProcLatch.make
      let wakeups = 0
      const waiter = yield* Effect.forkChild(Effect.gen(function*() {
        while (true) {
          const r = yield* latch.wait({ ...exitOnDeath, timeout: "1 second" })
          yield* latch.reset
          if (r.latchSet) wakeups++
        }
      }))
      yield* settle
      for (let i = 0; i < 5; i++) latch.setUnsafe()
      yield* settle
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual(wakeups, 1)
      yield* Fiber.interrupt(waiter)
    }))

  it.effect("the timeout wakes the waiter with the timeout event", () =>
    Effect.gen(function*() {
      const latch = yield* ProcLatch.make
      const waiter = yield* Effect.forkChild(latch.wait({ ...exitOnDeath, timeout: "10 seconds" }))
      yield* TestClock.adjust("9 seconds")
      assert.isUndefined(waiter.pollUnsafe())
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(yield* Fiber.join(waiter), { latchSet: false, timeout: true, postmasterDeath: false })
    }))

  it.effect("a zero timeout polls the latch without waiting", () =>
    Effect.gen(function*() {
      const latch = yield* ProcLatch.make
      assert.isTrue((yield* latch.wait({ ...exitOnDeath, timeout: 0 })).timeout)
      latch.setUnsafe()
      assert.isTrue((yield* latch.wait({ ...exitOnDeath, timeout: 0 })).latchSet)
    }))

  it.effect("setUnsafe from a plain callback wakes the waiter", () =>
    Effect.gen(function*() {
      const latch = yield* ProcLatch.make
      const waiter = yield* Effect.forkChild(latch.wait(exitOnDeath))
      yield* settle
      const callback = () => latch.setUnsafe()
      callback()
      assert.isTrue((yield* Fiber.join(waiter)).latchSet)
    }))

  it.effect("a set that lands between checking for work and waiting still wakes the waiter", () =>
    Effect.gen(function*() {
      const latch = yield* ProcLatch.make
      yield* latch.reset // 1. reset
      const work = false // 2. check for work: none
      latch.setUnsafe() // a setter runs here, between the check and the wait
      const result = yield* latch.wait({ ...exitOnDeath, timeout: "1 hour" }) // 3. wait
      assert.isFalse(work)
      assert.isTrue(result.latchSet)
    }))

  it.effect("only one fiber may wait on a latch at a time", () =>
    Effect.gen(function*() {
      const latch = yield* ProcLatch.make
      const first = yield* Effect.forkChild(latch.wait(exitOnDeath))
      yield* settle
      const second = yield* Effect.exit(latch.wait(exitOnDeath))
      assert.isTrue(Exit.isFailure(second))
      latch.setUnsafe()
      assert.isTrue((yield* Fiber.join(first)).latchSet)
    }))
})

describe("ProcLatch inside a worker", () => {
  it.effect("setting a worker's latch through its handle wakes a napping worker early", () =>
    Effect.gen(function*() {
      const wakes: Array<{ at: number; latchSet: boolean }> = []
      const napper = BackgroundWorker.make({
        name: "napper",
        main: () =>
          Effect.gen(function*() {
            while (true) {
              const r = yield* ProcLatch.wait({ timeout: "10 seconds", onPostmasterDeath: "exit" })
              yield* ProcLatch.reset
              wakes.push({ at: yield* Effect.clockWith((c) => c.currentTimeMillis), latchSet: r.latchSet })
            }
          })
      })
      const h = yield* Supervisor.register(napper)
      yield* settle
      yield* TestClock.adjust("3 seconds")
      yield* Supervisor.setLatch(h)
      yield* settle
      yield* TestClock.adjust("10 seconds")
      assert.deepStrictEqual(wakes, [{ at: 3000, latchSet: true }, { at: 13000, latchSet: false }])
    }).pipe(withSupervisor()))

  it.effect("the wait event shows in the activity view while the worker waits, and only then", () =>
    Effect.gen(function*() {
      const w = BackgroundWorker.make({
        name: "spi 1",
        type: "worker_spi",
        main: () =>
          Effect.gen(function*() {
            while (true) {
              yield* ProcLatch.wait({ timeout: "10 seconds", onPostmasterDeath: "exit", waitEvent: "WorkerSpiMain" })
              yield* ProcLatch.reset
              yield* Effect.sleep("1 second") // working
            }
          })
      })
      const h = yield* Supervisor.register(w)
      yield* settle
      const napping = Option.getOrThrow(yield* Supervisor.info(h))
      assert.strictEqual(napping.waitEventType, "Extension")
      assert.strictEqual(napping.waitEvent, "WorkerSpiMain")
      assert.strictEqual(napping.backendType, "worker_spi")
      yield* TestClock.adjust("10 seconds")
      const working = Option.getOrThrow(yield* Supervisor.info(h))
      assert.isNull(working.waitEvent)
      assert.isNull(working.waitEventType)
    }).pipe(withSupervisor()))

  it.effect("wait event names are registered once in the catalogue however many workers use them", () =>
    Effect.gen(function*() {
      const w = BackgroundWorker.make({
        name: "w",
        main: () => ProcLatch.wait({ onPostmasterDeath: "exit", waitEvent: "WorkerSpiMain" }).pipe(Effect.forever)
      })
      yield* Supervisor.register(w)
      yield* Supervisor.register(w)
      yield* settle
      const events = yield* Activity.waitEvents
      const custom = events.filter((e) => e.type === "Extension")
      assert.deepStrictEqual(custom, [{ type: "Extension", name: "WorkerSpiMain", id: 1 }])
      assert.isTrue(events.some((e) => e.type === "IPC" && e.name === "BgWorkerStartup"))
    }).pipe(withSupervisor()))

  it.effect("a wait event name of 64 characters is a programming error that ends the worker", () =>
    Effect.gen(function*() {
      const w = BackgroundWorker.make({
        name: "long event",
        main: () => ProcLatch.wait({ onPostmasterDeath: "exit", waitEvent: "x".repeat(64) })
      })
      const h = yield* Supervisor.register(w)
      yield* Supervisor.awaitShutdown(h)
      yield* settle
      const rows = yield* Activity.snapshot
      assert.lengthOf(rows, 0)
    }).pipe(withSupervisor()))

  it.effect("a registrant waiting for a worker's startup shows the BgWorkerStartup wait event", () =>
    Effect.gen(function*() {
      const child = BackgroundWorker.make({ name: "child", startTime: "recoveryFinished", main: () => Effect.never })
      const parent = BackgroundWorker.make({
        name: "parent",
        main: () =>
          Effect.gen(function*() {
            const h = yield* Supervisor.register(child).pipe(Effect.orDie)
            yield* Supervisor.awaitStartup(h)
          })
      })
      const h = yield* Supervisor.register(parent)
      yield* settle
      const row = Option.getOrThrow(yield* Supervisor.info(h))
      assert.strictEqual(row.waitEventType, "IPC")
      assert.strictEqual(row.waitEvent, "BgWorkerStartup")
    }).pipe(withSupervisor(), Effect.provide(DatabaseState.layerMemory("consistent")))) // the child's gate stays closed
})
