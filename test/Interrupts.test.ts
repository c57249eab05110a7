import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, pipe } from "effect"
import { TestClock } from "effect/testing"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import * as Interrupts from "../src/Interrupts.ts"
import * as ProcLatch from "../src/ProcLatch.ts"
import * as Supervisor from "../src/Supervisor.ts"
import { eventually, untilStatus, withSupervisor } from "./fixtures.ts"

describe("Interrupts", () => {
  it.effect("a reload request wakes a napping worker at once and is seen exactly once", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      const w = BackgroundWorker.make({
        name: "reloader",
        main: () =>
          Effect.gen(function*() {
            while (true) {
              yield* ProcLatch.wait({ timeout: "10 seconds", onPostmasterDeath: "exit" })
              yield* ProcLatch.reset
              const at = yield* Effect.clockWith((c) => c.currentTimeMillis)
              seen.push(`${at}: reload=${yield* Interrupts.reloadPending}`)
            }
          })
      })
      const h = yield* Supervisor.register(w)
      yield* untilStatus(h, "has started", (s) => s._tag === "Started")
      yield* TestClock.adjust("2 seconds")
      yield* Supervisor.reload
      yield* eventually("the worker has seen the reload", Effect.sync(() => seen.length === 1))
      yield* TestClock.adjust("10 seconds")
      assert.deepStrictEqual(seen, ["2000: reload=true", "12000: reload=false"])
    }).pipe(withSupervisor()))

  it.effect("a terminate request ends the worker at its next wait, as failed, with its finalizers run", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const w = BackgroundWorker.make({
        name: "busy",
        restart: BackgroundWorker.restartAfter("1 minute"),
        main: () =>
          Effect.gen(function*() {
            yield* Effect.addFinalizer(() => Effect.sync(() => log.push("finalized")))
            while (true) {
              yield* ProcLatch.wait({ timeout: "1 second", onPostmasterDeath: "exit" })
              yield* ProcLatch.reset
              log.push("cycle started")
              yield* Effect.sleep("5 seconds")
              log.push("cycle finished")
            }
          })
      })
      const h = yield* Supervisor.register(w)
      yield* untilStatus(h, "has started", (s) => s._tag === "Started")
      yield* TestClock.adjust("1 second")
      yield* Supervisor.signal(h, "terminate")
      yield* eventually("the cycle is under way", Effect.sync(() => log.length > 0))
      assert.deepStrictEqual(log, ["cycle started"])
      assert.strictEqual((yield* Supervisor.status(h))._tag, "Started")
      yield* TestClock.adjust("5 seconds")
      assert.deepStrictEqual(log, ["cycle started", "cycle finished", "finalized"])
      const row = Option.getOrThrow(yield* Supervisor.info(h))
      assert.strictEqual(row.lastExit?.kind, "failed")
      assert.strictEqual(row.registration, "waiting for restart")
    }).pipe(withSupervisor({ terminateTimeout: "1 minute" })))

  it.effect("Interrupts.check ends a worker whose terminate request is pending", () =>
    Effect.gen(function*() {
      const log: Array<number> = []
      const w = BackgroundWorker.make({
        name: "cpu bound",
        main: () =>
          Effect.gen(function*() {
            for (let i = 0;; i++) {
              yield* Interrupts.check
              log.push(i)
              yield* Effect.sleep("1 second")
            }
          })
      })
      const h = yield* Supervisor.register(w)
      yield* untilStatus(h, "has started", (s) => s._tag === "Started")
      yield* TestClock.adjust("2 seconds")
      yield* Supervisor.terminate(h)
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(log, [0, 1, 2])
      assert.deepStrictEqual(yield* Supervisor.status(h), { _tag: "Stopped" })
    }).pipe(withSupervisor({ terminateTimeout: "1 minute" })))

  it.effect("a terminate request is deferred until a held-interrupts region ends", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const w = BackgroundWorker.make({
        name: "critical",
        main: () =>
          Effect.gen(function*() {
            yield* Interrupts.holdInterrupts(
              Effect.gen(function*() {
                log.push("critical start")
                yield* ProcLatch.wait({ timeout: "3 seconds", onPostmasterDeath: "exit" })
                yield* ProcLatch.reset
                log.push("critical end")
              })
            )
            log.push("after")
          })
      })
      const h = yield* Supervisor.register(w)
      yield* eventually("the critical section has begun", Effect.sync(() => log.length === 1))
      yield* Supervisor.terminate(h)
      yield* eventually("the critical section has ended", Effect.sync(() => log.length === 2))
      yield* TestClock.adjust("3 seconds")
      assert.deepStrictEqual(log, ["critical start", "critical end"])
      assert.deepStrictEqual(yield* Supervisor.status(h), { _tag: "Stopped" })
    }).pipe(withSupervisor({ terminateTimeout: "1 minute" })))

  it.effect("a worker that never waits nor checks is interrupted once the terminate timeout passes", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const w = BackgroundWorker.make({
        name: "deaf",
        main: () => Effect.andThen(Effect.addFinalizer(() => Effect.sync(() => log.push("finalized"))), Effect.never)
      })
      const h = yield* Supervisor.register(w)
      yield* untilStatus(h, "has started", (s) => s._tag === "Started")
      yield* Supervisor.terminate(h)
      yield* TestClock.adjust("1999 millis")
      assert.deepStrictEqual(log, [])
      yield* TestClock.adjust("1 millis")
      yield* untilStatus(h, "is Stopped", (s) => s._tag === "Stopped")
      assert.deepStrictEqual(log, ["finalized"])
      assert.deepStrictEqual(yield* Supervisor.status(h), { _tag: "Stopped" })
    }).pipe(withSupervisor({ terminateTimeout: "2 seconds" })))

  it.effect("a reload request to one worker sets only that worker's flag", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      const w = (name: string) =>
        BackgroundWorker.make({
          name,
          main: () =>
            Effect.gen(function*() {
              while (true) {
                yield* ProcLatch.wait({ onPostmasterDeath: "exit" })
                yield* ProcLatch.reset
                if (yield* Interrupts.reloadPending) seen.push(name)
              }
            })
        })
      const a = yield* Supervisor.register(w("a"))
      const b = yield* Supervisor.register(w("b"))
      yield* untilStatus(b, "has started", (s) => s._tag === "Started")
      yield* pipe(a, Supervisor.signal("reload")) // data-last (Supervisor.signal is dual)
      yield* eventually("a has seen the reload", Effect.sync(() => seen.length > 0))
      assert.deepStrictEqual(seen, ["a"])
    }).pipe(withSupervisor()))
})
