import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Option, References } from "effect"
import { TestClock } from "effect/testing"
import * as Activity from "../src/Activity.ts"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import * as DatabaseState from "../src/DatabaseState.ts"
import * as ProcLatch from "../src/ProcLatch.ts"
import * as Supervisor from "../src/Supervisor.ts"
import { eventually, untilQuiet, untilStatus, untilWaiting, withSupervisor } from "./fixtures.ts"

const exitOnDeath = { onPostmasterDeath: "exit" } as const

/**
 * Scheduler budgets (`References.MaxOpsBeforeYield`: operations per run-loop slice before the fiber yields)
 * that the race tests sweep. 4 is the smallest that always makes progress, and at 4 a fiber yields after every
 * step of its own: a resumed slice spends its first operations resuming (the wake-up and the continuation
 * that returns the interrupted step), so with 3 or less a fiber can yield again before that step, forever.
 * The default (2048) almost never yields inside a wait.
 */
const smallBudgets = [4, 5, 6, 7, 8] as const

/** Runs `effect`, and every fiber it forks, with a scheduler that yields every `ops` operations. */
const withBudget = (ops: number) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.provideService(effect, References.MaxOpsBeforeYield, ops)

/** `n` cheap operations: with a small budget they move a fiber's next step across the other fiber's slices. */
const spin = (n: number): Effect.Effect<void> => n <= 0 ? Effect.void : Effect.andThen(Effect.void, spin(n - 1))

/**
 * Lets the other fibers run until `done` holds, for at most `n` scheduler turns: enough for a woken waiter to
 * finish its wait under any budget swept here. (A lost wake-up never finishes: the clock stands still.)
 */
const turnsUntil = (n: number, done: () => boolean): Effect.Effect<void> =>
  Effect.suspend(() => n <= 0 || done() ? Effect.void : Effect.andThen(Effect.yieldNow, turnsUntil(n - 1, done)))

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
      const waiter = yield* Effect.forkChild(
        Effect.gen(function*() {
          while (true) {
            const r = yield* latch.wait({ ...exitOnDeath, timeout: "1 second" })
            yield* latch.reset
            if (r.latchSet) wakeups++
          }
        }),
        { startImmediately: true }
      )
      for (let i = 0; i < 5; i++) latch.setUnsafe()
      yield* eventually("the waiter has woken", Effect.sync(() => wakeups > 0))
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
      const waiter = yield* Effect.forkChild(latch.wait(exitOnDeath), { startImmediately: true })
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

  it.effect(
    "a set from another fiber while the owner is entering its wait always wakes it, at every interleaving under a scheduler that yields every 4 to 8 operations",
    () =>
      Effect.gen(function*() {
        const lost: Array<string> = []
        for (const budget of smallBudgets) {
          for (const timeout of [undefined, "1 hour"] as const) {
            for (const via of ["set", "setUnsafe"] as const) {
              // The waiter and the setter take turns, one slice each. `offset` moves the waiter's wait across
              // its slice boundaries, `delay` moves the set across the setter's: together they put the set
              // at every step of the wait, including between its check of the flag and its registration.
              for (let offset = 0; offset <= budget; offset++) {
                for (let delay = 0; delay <= 2 * budget; delay++) {
                  const woke = yield* Effect.gen(function*() {
                    const latch = yield* ProcLatch.make
                    const waiter = yield* Effect.forkChild(
                      Effect.andThen(spin(offset), latch.wait({ ...exitOnDeath, timeout }))
                    )
                    yield* Effect.forkChild(
                      Effect.andThen(spin(delay), via === "set" ? latch.set : Effect.sync(() => latch.setUnsafe()))
                    )
                    yield* turnsUntil(100, () => waiter.pollUnsafe() !== undefined)
                    const exit = waiter.pollUnsafe()
                    yield* Fiber.interrupt(waiter)
                    return exit !== undefined && Exit.isSuccess(exit) && exit.value.latchSet
                  }).pipe(withBudget(budget))
                  if (!woke) {
                    const at = `wait after ${offset} ops, ${via} after ${delay}`
                    lost.push(`budget ${budget}, timeout ${timeout ?? "none"}: ${at}`)
                  }
                }
              }
            }
          }
        }
        assert.deepStrictEqual(lost, [], "the latch is set but its waiter stays parked")
      })
  )

  it.effect("only one fiber may wait on a latch at a time", () =>
    Effect.gen(function*() {
      const latch = yield* ProcLatch.make
      const first = yield* Effect.forkChild(latch.wait(exitOnDeath), { startImmediately: true })
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
      yield* untilStatus(h, "has started", (s) => s._tag === "Started")
      yield* TestClock.adjust("3 seconds")
      yield* Supervisor.setLatch(h)
      yield* eventually("the worker has woken", Effect.sync(() => wakes.length === 1))
      yield* TestClock.adjust("10 seconds")
      assert.deepStrictEqual(wakes, [{ at: 3000, latchSet: true }, { at: 13000, latchSet: false }])
    }).pipe(withSupervisor()))

  it.effect(
    "a worker entering its wait is woken by setLatch, by a reload and by setUnsafe from another fiber, at every interleaving under a scheduler that yields every 4 to 8 operations",
    () =>
      Effect.gen(function*() {
        const lost: Array<string> = []
        for (const budget of smallBudgets) {
          for (const via of ["setLatch", "reload", "setUnsafe"] as const) {
            for (let delay = 0; delay <= 3 * budget + 12; delay++) {
              const woke = yield* Effect.gen(function*() {
                const probe = { latch: undefined as ProcLatch.ProcLatch | undefined, entering: false, wakes: 0 }
                const w = BackgroundWorker.make({
                  name: "racer",
                  main: () =>
                    Effect.gen(function*() {
                      probe.latch = yield* ProcLatch.myLatch
                      while (true) {
                        probe.entering = true
                        yield* ProcLatch.wait({ onPostmasterDeath: "exit", waitEvent: "Racer" })
                        probe.wakes++
                        yield* ProcLatch.reset
                      }
                    })
                })
                const h = yield* Supervisor.register(w)
                // Catch the worker as it enters its first wait, then set after `delay` more operations.
                for (let i = 0; i < 1000 && !probe.entering; i++) yield* Effect.yieldNow
                yield* spin(delay)
                yield* via === "setLatch"
                  ? Supervisor.setLatch(h)
                  : via === "reload"
                  ? Supervisor.reload
                  : Effect.sync(() => probe.latch?.setUnsafe())
                yield* turnsUntil(200, () => probe.wakes > 0)
                yield* turnsUntil(20, () => false) // a second, spurious wake-up would show here
                return probe.wakes === 1
              }).pipe(withSupervisor(), withBudget(budget))
              if (!woke) lost.push(`budget ${budget}, ${via} after ${delay} ops`)
            }
          }
        }
        assert.deepStrictEqual(lost, [], "the worker's latch is set but the worker stays parked")
      })
  )

  it.effect(
    "a terminate request that lands while a worker is entering its wait ends the worker at once, at every interleaving under a scheduler that yields every 4 to 8 operations",
    () =>
      Effect.gen(function*() {
        const late: Array<string> = []
        for (const budget of smallBudgets) {
          for (let delay = 0; delay <= 3 * budget + 12; delay++) {
            const stopped = yield* Effect.gen(function*() {
              const probe = { entering: false, ended: false }
              const w = BackgroundWorker.make({
                name: "terminated",
                main: () =>
                  Effect.gen(function*() {
                    while (true) {
                      probe.entering = true
                      yield* ProcLatch.wait({ onPostmasterDeath: "exit", waitEvent: "Racer" })
                      yield* ProcLatch.reset
                    }
                  }).pipe(Effect.ensuring(Effect.sync(() => {
                    probe.ended = true
                  })))
              })
              const h = yield* Supervisor.register(w)
              for (let i = 0; i < 1000 && !probe.entering; i++) yield* Effect.yieldNow
              yield* spin(delay)
              yield* Supervisor.terminate(h)
              // The clock stands still: the supervisor's terminate timeout never fires.
              yield* turnsUntil(200, () => probe.ended)
              yield* turnsUntil(20, () => false) // the supervisor records the exit
              return (yield* Supervisor.status(h))._tag === "Stopped"
            }).pipe(withSupervisor(), withBudget(budget))
            if (!stopped) late.push(`budget ${budget}, terminate after ${delay} ops`)
          }
        }
        assert.deepStrictEqual(late, [], "the worker slept through a terminate request")
      })
  )

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
      yield* untilWaiting(h)
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
      yield* untilQuiet
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
      yield* eventually("the registration is forgotten", Effect.map(Activity.snapshot, (rows) => rows.length === 0))
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
      yield* untilWaiting(h)
      const row = Option.getOrThrow(yield* Supervisor.info(h))
      assert.strictEqual(row.waitEventType, "IPC")
      assert.strictEqual(row.waitEvent, "BgWorkerStartup")
    }).pipe(withSupervisor(), Effect.provide(DatabaseState.layerMemory("consistent")))) // the child's gate stays closed
})
