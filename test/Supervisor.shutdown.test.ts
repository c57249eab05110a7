import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Layer, Scope } from "effect"
import { TestClock } from "effect/testing"
import * as Activity from "../src/Activity.ts"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import * as DatabaseState from "../src/DatabaseState.ts"
import { liveFibers } from "../src/internal/postmaster/postmaster.ts"
import * as ProcLatch from "../src/ProcLatch.ts"
import * as Supervisor from "../src/Supervisor.ts"
import {
  eventually,
  layerLeakChecked,
  napForever,
  supervisorService,
  untilQuiet,
  untilState,
  untilStatus,
  withSupervisor
} from "./fixtures.ts"

/** A worker that records its finalizer and every cycle it completes. */
const recording = (name: string, log: Array<string>, restart: BackgroundWorker.RestartPolicy = "never") =>
  BackgroundWorker.make({
    name,
    restart,
    main: () =>
      Effect.gen(function*() {
        yield* Effect.addFinalizer(() => Effect.sync(() => log.push(`${name} finalized`)))
        while (true) {
          yield* ProcLatch.wait({ timeout: "1 second", onPostmasterDeath: "exit" })
          yield* ProcLatch.reset
          log.push(`${name} cycle`)
        }
      })
  })

describe("Supervisor: shutdown", () => {
  it.effect("a fast shutdown stops every worker at once, runs their finalizers, restarts none and cancels unstarted ones", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const a = yield* Supervisor.register(recording("a", log, BackgroundWorker.restartAfter(0)))
      const b = yield* Supervisor.register(recording("b", log))
      const pending = yield* Supervisor.register(
        BackgroundWorker.make({ name: "pending", startTime: "recoveryFinished", main: () => napForever() })
      )
      yield* untilStatus(b, "has started", (s) => s._tag === "Started")
      const waiter = yield* Effect.forkChild(Supervisor.awaitStartup(pending), { startImmediately: true })
      yield* Supervisor.shutdown("fast")
      assert.deepStrictEqual(log.sort(), ["a finalized", "b finalized"])
      assert.deepStrictEqual(yield* Fiber.join(waiter), { _tag: "Stopped" })
      for (const h of [a, b, pending]) assert.deepStrictEqual(yield* Supervisor.status(h), { _tag: "Stopped" })
      yield* TestClock.adjust("1 minute")
      assert.lengthOf(yield* Activity.snapshot, 0)
      assert.strictEqual(yield* Supervisor.state, "stopped")
      assert.strictEqual(liveFibers(yield* supervisorService), 0)
    }).pipe(withSupervisor(), Effect.provide(DatabaseState.layerMemory("consistent"))))

  it.effect("a smart shutdown lets each worker finish its current cycle, then stops it", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const busy = BackgroundWorker.make({
        name: "busy",
        main: () =>
          Effect.gen(function*() {
            yield* Effect.addFinalizer(() => Effect.sync(() => log.push("finalized")))
            while (true) {
              yield* ProcLatch.wait({ timeout: "1 second", onPostmasterDeath: "exit" })
              yield* ProcLatch.reset
              log.push("cycle started")
              yield* Effect.sleep("3 seconds") // a long transaction
              log.push("cycle finished")
            }
          })
      })
      const h = yield* Supervisor.register(busy)
      yield* untilStatus(h, "has started", (s) => s._tag === "Started")
      yield* TestClock.adjust("1 second")
      const stopping = yield* Effect.forkChild(Supervisor.shutdown("smart"))
      yield* untilState("smart")
      assert.deepStrictEqual(log, ["cycle started"])
      yield* TestClock.adjust("3 seconds")
      yield* Fiber.join(stopping)
      assert.deepStrictEqual(log, ["cycle started", "cycle finished", "finalized"])
    }).pipe(withSupervisor({ shutdownTimeout: "10 seconds" })))

  it.effect("a worker that ignores a smart shutdown is interrupted once the shutdown timeout passes", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const stubborn = BackgroundWorker.make({
        name: "stubborn",
        main: () =>
          Effect.gen(function*() {
            yield* Effect.addFinalizer(() => Effect.sync(() => log.push("finalized")))
            yield* Effect.never // never waits on its latch, never checks for interrupts
          })
      })
      const h = yield* Supervisor.register(stubborn)
      yield* untilStatus(h, "has started", (s) => s._tag === "Started")
      const stopping = yield* Effect.forkChild(Supervisor.shutdown("smart"))
      yield* TestClock.adjust("4 seconds")
      assert.deepStrictEqual(log, [])
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(stopping)
      assert.deepStrictEqual(log, ["finalized"])
    }).pipe(withSupervisor({ shutdownTimeout: "5 seconds" })))

  it.effect("an immediate shutdown returns without waiting for the workers", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const release = yield* Deferred.make<void>()
      const slow = BackgroundWorker.make({
        name: "slow to stop",
        main: () =>
          Effect.gen(function*() {
            yield* Effect.addFinalizer(() =>
              Effect.andThen(
                Effect.sync(() => log.push("finalizer started")),
                Effect.andThen(Deferred.await(release), Effect.sync(() => log.push("finalized")))
              )
            )
            yield* napForever()
          })
      })
      yield* Supervisor.register(slow)
      yield* untilQuiet
      yield* Supervisor.shutdown("immediate")
      assert.strictEqual(yield* Supervisor.state, "stopped")
      assert.deepStrictEqual(log, ["finalizer started"])
      yield* Deferred.succeed(release, undefined)
      yield* eventually("the finalizer has finished", Effect.sync(() => log.length === 2))
      assert.deepStrictEqual(log, ["finalizer started", "finalized"])
    }).pipe(withSupervisor()))

  it.effect("no worker is restarted during a shutdown, even one that fails while stopping", () =>
    Effect.gen(function*() {
      const starts: Array<number> = []
      const failing = BackgroundWorker.make({
        name: "fails on stop",
        restart: BackgroundWorker.restartAfter(0),
        main: () =>
          Effect.gen(function*() {
            starts.push((yield* BackgroundWorker.current).pid)
            yield* ProcLatch.wait({ onPostmasterDeath: "exit" })
            return yield* Effect.fail("stopping badly")
          })
      })
      const h = yield* Supervisor.register(failing)
      yield* untilStatus(h, "has started", (s) => s._tag === "Started")
      yield* Supervisor.shutdown("smart")
      yield* TestClock.adjust("1 minute")
      assert.deepStrictEqual(starts, [1])
    }).pipe(withSupervisor()))

  it.effect("a worker that shuts its own supervisor down is stopped, and the shutdown completes", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const other = yield* Supervisor.register(recording("other", log))
      const stopper = BackgroundWorker.make({
        name: "stopper",
        main: () =>
          Effect.gen(function*() {
            yield* Effect.addFinalizer(() => Effect.sync(() => log.push("stopper finalized")))
            yield* Supervisor.shutdown("fast")
            log.push("stopper kept running")
          })
      })
      yield* Supervisor.register(stopper)
      yield* Supervisor.awaitTermination
      assert.strictEqual(yield* Supervisor.state, "stopped")
      assert.deepStrictEqual(log.sort(), ["other finalized", "stopper finalized"])
      assert.deepStrictEqual(yield* Supervisor.status(other), { _tag: "Stopped" })
    }).pipe(withSupervisor()))

  it.effect("shutdown is idempotent: a second call waits for the first", () =>
    Effect.gen(function*() {
      const h = yield* Supervisor.register(recording("x", []))
      yield* untilStatus(h, "has started", (s) => s._tag === "Started")
      yield* Effect.all([Supervisor.shutdown("fast"), Supervisor.shutdown("smart")], { concurrency: 2 })
      assert.strictEqual(yield* Supervisor.state, "stopped")
    }).pipe(withSupervisor()))
})

describe("Supervisor: postmaster death (the scope closes)", () => {
  it.effect("every worker ends, handle waiters get PostmasterDied, and no fiber is left", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        layerLeakChecked().pipe(Layer.provide(DatabaseState.layerMemory("consistent"))),
        scope
      )
      const supervisor = context.mapUnsafe.get(Supervisor.Supervisor.key) as Supervisor.SupervisorApi
      const run = <A, E>(effect: Effect.Effect<A, E, Supervisor.Supervisor>) => Effect.provide(effect, context)
      const a = yield* run(Supervisor.register(recording("a", log)))
      const neverWaits = yield* run(Supervisor.register(BackgroundWorker.make({
        name: "busy loop",
        main: () =>
          Effect.andThen(Effect.addFinalizer(() => Effect.sync(() => log.push("busy finalized"))), Effect.never)
      })))
      const pending = yield* run(Supervisor.register(
        BackgroundWorker.make({ name: "pending", startTime: "recoveryFinished", main: () => napForever() })
      ))
      yield* run(untilStatus(a, "has started", (s) => s._tag === "Started"))
      const startupWaiter = yield* Effect.forkChild(run(Supervisor.awaitStartup(pending)), { startImmediately: true })
      const shutdownWaiter = yield* Effect.forkChild(run(Supervisor.awaitShutdown(a)), { startImmediately: true })
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(yield* Fiber.join(startupWaiter), { _tag: "PostmasterDied" })
      assert.deepStrictEqual(yield* Fiber.join(shutdownWaiter), { _tag: "PostmasterDied" })
      assert.deepStrictEqual(log.sort(), ["a finalized", "busy finalized"])
      for (const h of [a, neverWaits, pending]) {
        assert.deepStrictEqual(yield* run(Supervisor.status(h)), { _tag: "PostmasterDied" })
      }
      assert.strictEqual(liveFibers(supervisor), 0)
    }))

  it.effect("a wait with onPostmasterDeath exit ends the worker inside the wait", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(layerLeakChecked(), scope)
      const h = yield* Effect.provide(
        Supervisor.register(BackgroundWorker.make({
          name: "exits",
          main: () =>
            Effect.gen(function*() {
              yield* Effect.addFinalizer(() => Effect.sync(() => log.push("finalized")))
              yield* ProcLatch.wait({ onPostmasterDeath: "exit" })
              log.push("returned from the wait")
            })
        })),
        context
      )
      yield* Effect.provide(untilStatus(h, "has started", (s) => s._tag === "Started"), context)
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(log, ["finalized"])
    }))

  it.effect("a wait with onPostmasterDeath return reports the death and lets the worker clean up", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(layerLeakChecked(), scope)
      const h = yield* Effect.provide(
        Supervisor.register(BackgroundWorker.make({
          name: "returns",
          main: () =>
            Effect.gen(function*() {
              const result = yield* ProcLatch.wait({ timeout: "1 hour", onPostmasterDeath: "return" })
              log.push(`woke: ${JSON.stringify(result)}`)
              const again = yield* ProcLatch.wait({ timeout: "1 hour", onPostmasterDeath: "return" })
              log.push(`again: ${again.postmasterDeath}`)
            })
        })),
        context
      )
      yield* Effect.provide(untilStatus(h, "has started", (s) => s._tag === "Started"), context)
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(log, [
        `woke: {"latchSet":false,"timeout":false,"postmasterDeath":true}`,
        "again: true"
      ])
    }))
})
