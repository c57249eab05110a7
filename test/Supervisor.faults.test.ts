/**
 * Faults: workers and shared state that misbehave while the supervisor changes state. Each test is a rule a
 * user relies on when something goes wrong: bounded waits where PostgreSQL would SIGKILL, waiters resumed
 * only after a transition is over, terminations that always complete, final statuses that are never lost, and
 * PostgreSQL's crash rule during a smart shutdown.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Context, Deferred, Effect, Exit, Fiber, Layer, Option, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import * as DatabaseState from "../src/DatabaseState.ts"
import * as Guc from "../src/Guc.ts"
import { liveFibers } from "../src/internal/postmaster/postmaster.ts"
import * as ProcLatch from "../src/ProcLatch.ts"
import * as Shmem from "../src/Shmem.ts"
import * as Supervisor from "../src/Supervisor.ts"
import type { SupervisorError } from "../src/SupervisorError.ts"
import type { WorkerStatus } from "../src/WorkerHandle.ts"
import {
  captureLogs,
  commanded,
  eventually,
  layerLeakChecked,
  napForever,
  supervisorService,
  tell,
  untilEnded,
  untilQuiet,
  untilState,
  untilStatus,
  withSupervisor
} from "./fixtures.ts"

/** A worker whose first incarnation's finalizer waits for `release` (forever, unless the test releases it). */
const stuckOnce = (
  name: string,
  release: Deferred.Deferred<void>,
  restart: BackgroundWorker.RestartPolicy = "never"
) => {
  let incarnations = 0
  return BackgroundWorker.make({
    name,
    restart,
    main: () =>
      Effect.gen(function*() {
        if (++incarnations === 1) yield* Effect.addFinalizer(() => Deferred.await(release))
        yield* napForever()
      })
  })
}

const failureOf = (exit: Exit.Exit<unknown, unknown> | undefined) => {
  assert.isDefined(exit, "still running")
  assert.isTrue(Exit.isFailure(exit!), "succeeded")
  const error = Cause.findErrorOption((exit as Exit.Failure<unknown, unknown>).cause)
  assert.isTrue(Option.isSome(error), "failed with a defect, not a typed error")
  return (error as Option.Some<unknown>).value
}

describe("Supervisor: bounded waits where PostgreSQL would SIGKILL", () => {
  it.effect("a crash restart abandons a sibling whose finalizer never ends after abandonTimeout, names it, and recovers", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const release = yield* Deferred.make<void>()
      const command = { current: "nap" as "nap" | "die" }
      const crasher = yield* Supervisor.register(
        commanded("crasher", { shmem: true, restart: BackgroundWorker.restartAfter("1 minute"), command })
      )
      const stuck = yield* Supervisor.register(stuckOnce("stuck", release, BackgroundWorker.restartAfter("1 hour")))
      yield* untilQuiet
      const stuckBefore = yield* Supervisor.status(stuck)
      yield* tell(crasher, command, "die")
      command.current = "nap"
      assert.strictEqual(yield* Supervisor.state, "recovering")
      yield* TestClock.adjust("4999 millis")
      assert.strictEqual(yield* Supervisor.state, "recovering")
      yield* TestClock.adjust("1 millis")
      yield* untilState("running")
      assert.strictEqual(yield* Supervisor.state, "running")
      assert.strictEqual((yield* Supervisor.status(crasher))._tag, "Started")
      const stuckNow = yield* Supervisor.status(stuck)
      assert.strictEqual(stuckNow._tag, "Started")
      assert.notDeepEqual(stuckNow, stuckBefore)
      assert.isTrue(
        logs.lines.some((l) =>
          l.startsWith(`WARN background worker "stuck" (PID 2) did not end within 5s`) && l.includes("abandoned")
        ),
        logs.lines.join("\n")
      )
      // The abandoned incarnation still runs its finalizer; its eventual end changes nothing.
      assert.strictEqual(liveFibers(yield* supervisorService), 3)
      yield* Deferred.succeed(release, undefined)
      yield* eventually(
        "the abandoned incarnation has ended",
        Effect.map(supervisorService, (s) => liveFibers(s) === 2)
      )
      assert.deepStrictEqual(yield* Supervisor.status(stuck), stuckNow)
      assert.strictEqual(liveFibers(yield* supervisorService), 2)
    }).pipe(withSupervisor({ abandonTimeout: "5 seconds" }), Effect.provide(logs.layer))
  })

  it.effect("without abandonTimeout, a crash restart abandons a stuck sibling after the shutdown_timeout GUC", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const release = yield* Deferred.make<void>()
      const command = { current: "nap" as "nap" | "die" }
      const crasher = yield* Supervisor.register(commanded("crasher", { shmem: true, command }))
      yield* Supervisor.register(stuckOnce("stuck", release))
      yield* untilQuiet
      yield* tell(crasher, command, "die")
      yield* TestClock.adjust("1999 millis")
      assert.strictEqual(yield* Supervisor.state, "recovering")
      yield* TestClock.adjust("1 millis")
      yield* untilState("running")
      assert.strictEqual(yield* Supervisor.state, "running")
      assert.isTrue(logs.lines.some((l) => l.includes(`background worker "stuck" (PID 2) did not end within 2s`)))
      yield* Deferred.succeed(release, undefined)
    }).pipe(
      withSupervisor(),
      Effect.provide(Guc.layer({ overrides: { shutdown_timeout: 2000 } })),
      Effect.provide(logs.layer)
    )
  })

  it.effect("closing the supervisor's scope abandons a worker whose finalizer never ends after abandonTimeout", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const release = yield* Deferred.make<void>()
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        Supervisor.layer({ abandonTimeout: "3 seconds" }),
        scope
      )
      const supervisor = Context.get(context, Supervisor.Supervisor)
      yield* Effect.provide(Supervisor.register(stuckOnce("stuck", release)), context)
      yield* Effect.provide(untilQuiet, context)
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* Effect.provide(untilState("dead"), context)
      yield* TestClock.adjust("2999 millis")
      assert.isUndefined(closing.pollUnsafe(), "the scope closed before the timeout")
      yield* TestClock.adjust("1 millis")
      yield* eventually("the scope close returns", Effect.sync(() => closing.pollUnsafe() !== undefined))
      assert.isDefined(closing.pollUnsafe(), "the scope close still waits for the stuck finalizer")
      assert.isTrue(
        logs.lines.some((l) => l.startsWith(`WARN background worker "stuck" (PID 1) did not end within 3s`)),
        logs.lines.join("\n")
      )
      assert.strictEqual(liveFibers(supervisor), 1)
      yield* Deferred.succeed(release, undefined)
      yield* eventually("the abandoned worker has ended", Effect.sync(() => liveFibers(supervisor) === 0))
      assert.strictEqual(liveFibers(supervisor), 0)
    }).pipe(Effect.provide(logs.layer))
  })

  it.effect("a fast shutdown with a stuck finalizer ends within shutdownTimeout plus abandonTimeout, and the scope then closes at once", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const release = yield* Deferred.make<void>()
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        Supervisor.layer({ shutdownTimeout: "2 seconds", abandonTimeout: "1 second" }),
        scope
      )
      yield* Effect.provide(Supervisor.register(stuckOnce("stuck", release)), context)
      yield* Effect.provide(untilQuiet, context)
      const stopping = yield* Effect.forkChild(Effect.provide(Supervisor.shutdown("fast"), context))
      yield* TestClock.adjust("2999 millis")
      assert.isUndefined(stopping.pollUnsafe())
      yield* TestClock.adjust("1 millis")
      yield* eventually("the shutdown returns", Effect.sync(() => stopping.pollUnsafe() !== undefined))
      assert.isDefined(stopping.pollUnsafe(), "the shutdown still waits")
      assert.isTrue(logs.lines.some((l) => l.includes(`background worker "stuck" (PID 1) did not end within 1s`)))
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* eventually("the scope close returns", Effect.sync(() => closing.pollUnsafe() !== undefined))
      assert.isDefined(closing.pollUnsafe(), "the scope close waited again for the abandoned worker")
      yield* Deferred.succeed(release, undefined)
    }).pipe(Effect.provide(logs.layer))
  })

  it.effect("a shared-state finalizer that never ends holds a crash restart up for abandonTimeout at most", () => {
    const logs = captureLogs()
    let generation = 0
    // Never released while the test looks; released at its end, so that nothing outlives the test.
    const release = Deferred.makeUnsafe<void>()
    const struct = Shmem.struct(
      "sticky",
      Effect.gen(function*() {
        if (++generation === 1) yield* Effect.addFinalizer(() => Deferred.await(release))
        return generation
      })
    )
    return Effect.gen(function*() {
      const command = { current: "nap" as "nap" | "die" }
      const crasher = yield* Supervisor.register(
        commanded("crasher", { shmem: true, restart: BackgroundWorker.restartAfter("1 minute"), command })
      )
      yield* untilQuiet
      yield* tell(crasher, command, "die")
      command.current = "nap"
      assert.strictEqual(yield* Supervisor.state, "recovering")
      yield* TestClock.adjust("2 seconds")
      yield* untilState("running")
      assert.strictEqual(yield* Supervisor.state, "running")
      assert.strictEqual(generation, 2)
      assert.isTrue(
        logs.lines.some((l) => l.includes(`shared state "sticky"`) && l.includes("abandoned")),
        logs.lines.join("\n")
      )
      yield* Deferred.succeed(release, undefined)
    }).pipe(withSupervisor({ abandonTimeout: "2 seconds", shmem: [struct] }), Effect.provide(logs.layer))
  })

  it.effect("a shared-state struct that fails to be re-created after a crash ends the supervisor with ShmemInitFailed", () => {
    let generation = 0
    const struct = Shmem.struct(
      "registry",
      Effect.suspend(() =>
        ++generation === 1 ? Effect.succeed(generation) : Effect.die(new Error("out of shared memory"))
      )
    )
    return Effect.gen(function*() {
      const command = { current: "nap" as "nap" | "die" }
      const crasher = yield* Supervisor.register(
        commanded("crasher", { shmem: true, restart: BackgroundWorker.restartAfter("1 minute"), command })
      )
      yield* untilQuiet
      const termination = yield* Effect.forkChild(Supervisor.awaitTermination)
      yield* tell(crasher, command, "die")
      yield* eventually("awaitTermination returns", Effect.sync(() => termination.pollUnsafe() !== undefined))
      const error = failureOf(termination.pollUnsafe()) as SupervisorError
      assert.strictEqual(error._tag, "SupervisorError")
      assert.strictEqual(error.reason._tag, "ShmemInitFailed")
      assert.include(error.message, `could not initialize shared memory structure "registry"`)
      assert.include(error.message, "out of shared memory")
      assert.strictEqual(yield* Supervisor.state, "dead")
      assert.deepStrictEqual(yield* Supervisor.status(crasher), { _tag: "PostmasterDied" })
    }).pipe(withSupervisor({ shmem: [struct] }))
  })

  it.effect("a shared-state struct whose re-creation never finishes ends the supervisor with ShmemInitFailed after abandonTimeout", () => {
    let generation = 0
    // Never released while the test looks; released at its end, so that nothing outlives the test.
    const release = Deferred.makeUnsafe<void>()
    const struct = Shmem.struct(
      "slow",
      Effect.suspend(() => ++generation === 1 ? Effect.succeed(1) : Effect.as(Deferred.await(release), 2))
    )
    return Effect.gen(function*() {
      const command = { current: "nap" as "nap" | "die" }
      const crasher = yield* Supervisor.register(commanded("crasher", { shmem: true, command }))
      yield* untilQuiet
      const termination = yield* Effect.forkChild(Supervisor.awaitTermination)
      yield* tell(crasher, command, "die")
      yield* TestClock.adjust("4 seconds")
      assert.isUndefined(termination.pollUnsafe())
      yield* TestClock.adjust("1 second")
      yield* eventually("awaitTermination returns", Effect.sync(() => termination.pollUnsafe() !== undefined))
      const error = failureOf(termination.pollUnsafe()) as SupervisorError
      assert.strictEqual(error.reason._tag, "ShmemInitFailed")
      assert.include(error.message, "did not finish within 5s")
      yield* Deferred.succeed(release, undefined)
    }).pipe(withSupervisor({ shmem: [struct], abandonTimeout: "5 seconds" }))
  })

  it.effect("a shared-state struct that fails at start fails the layer with ShmemInitFailed, not a defect", () =>
    Effect.gen(function*() {
      const struct = Shmem.struct("broken", Effect.die(new Error("no memory")))
      const exit = yield* Effect.exit(Layer.build(Supervisor.layer({ shmem: [struct] })))
      const error = failureOf(exit) as SupervisorError
      assert.strictEqual(error.reason._tag, "ShmemInitFailed")
    }))
})

describe("Supervisor: waiters resume only after a transition is over", () => {
  it.effect("a registrant that replaces a crashed worker as soon as awaitShutdown returns gets its replacement run after recovery", () =>
    Effect.gen(function*() {
      const command = { current: "nap" as "nap" | "die" }
      const crasher = yield* Supervisor.register(commanded("crasher", { shmem: true, command }))
      yield* untilQuiet
      const replacing = yield* Effect.forkChild(
        Supervisor.awaitShutdown(crasher).pipe(
          Effect.andThen(Supervisor.register(BackgroundWorker.make({ name: "replacement", main: () => napForever() })))
        )
      )
      yield* tell(crasher, command, "die")
      const replacement = yield* Fiber.join(replacing)
      yield* untilState("running")
      assert.strictEqual(yield* Supervisor.state, "running")
      assert.strictEqual((yield* Supervisor.status(replacement))._tag, "Started")
      const row = Option.getOrThrow(yield* Supervisor.info(replacement))
      assert.strictEqual(row.lastExit, null, "the replacement was killed by the crash restart it reacted to")
      assert.strictEqual(row.restartCount, 0)
    }).pipe(withSupervisor()))

  it.effect("a waiter that shuts the supervisor down as soon as awaitStartup returns stops that worker cleanly", () =>
    Effect.gen(function*() {
      const finalized = yield* Deferred.make<void>()
      const gated = BackgroundWorker.make({
        name: "gated",
        startTime: "recoveryFinished",
        main: () => Effect.andThen(Effect.addFinalizer(() => Deferred.succeed(finalized, undefined)), napForever())
      })
      const h = yield* Supervisor.register(gated)
      const waiter = yield* Effect.forkChild(
        Supervisor.awaitStartup(h).pipe(Effect.tap(() => Supervisor.shutdown("fast")))
      )
      yield* DatabaseState.set("ready")
      const exit = yield* Fiber.await(waiter)
      assert.isTrue(Exit.isSuccess(exit), Exit.isFailure(exit) ? Cause.pretty(exit.cause) : "")
      assert.strictEqual((exit as Exit.Success<WorkerStatus>).value._tag, "Started")
      assert.isTrue(yield* Deferred.isDone(finalized))
      assert.strictEqual(yield* Supervisor.state, "stopped")
      assert.deepStrictEqual(yield* Supervisor.status(h), { _tag: "Stopped" })
      assert.strictEqual(liveFibers(yield* supervisorService), 0)
    }).pipe(withSupervisor(), Effect.provide(DatabaseState.layerMemory("consistent"))))
})

describe("Supervisor: termination and final statuses", () => {
  it.effect("an immediate shutdown completes awaitTermination", () =>
    Effect.gen(function*() {
      yield* Supervisor.register(BackgroundWorker.make({ name: "napper", main: () => napForever() }))
      yield* untilQuiet
      const termination = yield* Effect.forkChild(Supervisor.awaitTermination)
      yield* Supervisor.shutdown("immediate")
      yield* eventually("awaitTermination returns", Effect.sync(() => termination.pollUnsafe() !== undefined))
      const exit = termination.pollUnsafe()
      assert.isDefined(exit, "awaitTermination never returned")
      assert.isTrue(Exit.isSuccess(exit!))
    }).pipe(withSupervisor()))

  it.effect("a slow consumer of the status stream of a worker in a restartAfter(0) loop still gets the final status", () =>
    Effect.gen(function*() {
      const command = { current: "nap" as "nap" | "fail" }
      const h = yield* Supervisor.register(commanded("looping", { restart: BackgroundWorker.restartAfter(0), command }))
      yield* untilQuiet
      const seen: Array<WorkerStatus> = []
      const consumer = yield* Effect.forkChild(
        Stream.runForEach(
          Supervisor.changes(h),
          (status) => Effect.andThen(Effect.sync(() => seen.push(status)), Effect.sleep("1 hour"))
        )
      )
      yield* eventually("the consumer has read the first status", Effect.sync(() => seen.length === 1))
      for (let i = 0; i < 100; i++) {
        yield* tell(h, command, "fail")
        command.current = "nap"
        yield* TestClock.adjust(0)
        yield* untilStatus(h, `runs pid ${i + 2}`, (s) => s._tag === "Started" && s.pid === i + 2)
      }
      assert.deepStrictEqual(yield* Supervisor.status(h), { _tag: "Started", pid: 101 })
      yield* Supervisor.terminate(h)
      yield* untilStatus(h, "is Stopped", (s) => s._tag === "Stopped")
      for (let i = 0; i < 100 && consumer.pollUnsafe() === undefined; i++) {
        yield* TestClock.adjust("1 hour")
      }
      assert.isDefined(consumer.pollUnsafe(), "the stream never ended")
      assert.deepStrictEqual(seen.at(-1), { _tag: "Stopped" }, JSON.stringify(seen.slice(-3)))
      assert.deepStrictEqual(seen[0], { _tag: "Started", pid: 1 })
      // 200 changes happened while it slept on the first; it caught up instead of reading them all.
      assert.isBelow(seen.length, 70)
      for (let i = 1; i < seen.length; i++) assert.notDeepEqual(seen[i], seen[i - 1], "a status was repeated")
    }).pipe(withSupervisor()))

  it.effect("a slow consumer of the status stream still gets PostmasterDied when the scope closes", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(layerLeakChecked(), scope)
      const command = { current: "nap" as "nap" | "fail" }
      const h = yield* Effect.provide(
        Supervisor.register(commanded("looping", { restart: BackgroundWorker.restartAfter(0), command })),
        context
      )
      yield* Effect.provide(untilQuiet, context)
      const seen: Array<WorkerStatus> = []
      const consumer = yield* Effect.forkChild(
        Stream.runForEach(
          Context.get(context, Supervisor.Supervisor).changes(h),
          (status) => Effect.andThen(Effect.sync(() => seen.push(status)), Effect.sleep("1 hour"))
        )
      )
      yield* eventually("the consumer has read the first status", Effect.sync(() => seen.length === 1))
      for (let i = 0; i < 80; i++) {
        command.current = "fail"
        yield* Effect.provide(Supervisor.setLatch(h), context)
        yield* Effect.provide(untilEnded(h, i + 1), context)
        command.current = "nap"
        yield* TestClock.adjust(0)
        yield* Effect.provide(
          untilStatus(h, `runs pid ${i + 2}`, (s) => s._tag === "Started" && s.pid === i + 2),
          context
        )
      }
      yield* Scope.close(scope, Exit.void)
      for (let i = 0; i < 100 && consumer.pollUnsafe() === undefined; i++) {
        yield* TestClock.adjust("1 hour")
      }
      assert.isDefined(consumer.pollUnsafe(), "the stream never ended")
      assert.deepStrictEqual(seen.at(-1), { _tag: "PostmasterDied" })
    }))
})

describe("Supervisor: a crash during a smart shutdown (PostgreSQL's HandleChildCrash with Shutdown > NoShutdown)", () => {
  it.effect("interrupts every other worker at once, restarts nothing, and ends the supervisor with SupervisorCrashed", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const log: Array<string> = []
      let recreated = 0
      const busy = BackgroundWorker.make({
        name: "busy",
        restart: BackgroundWorker.restartAfter(0),
        main: () =>
          Effect.gen(function*() {
            yield* Effect.addFinalizer(() => Effect.sync(() => log.push("busy finalized")))
            while (true) {
              yield* ProcLatch.wait({ timeout: "1 second", onPostmasterDeath: "exit" })
              yield* ProcLatch.reset
              log.push("busy cycle started")
              yield* Effect.sleep("5 seconds") // a long transaction
              log.push("busy cycle finished")
            }
          })
      })
      const crasher = BackgroundWorker.make({
        name: "crasher",
        shmem: true,
        restart: BackgroundWorker.restartAfter(0),
        main: () =>
          Effect.gen(function*() {
            yield* Shmem.get(struct)
            yield* ProcLatch.wait({ timeout: "1 second", onPostmasterDeath: "exit" })
            yield* Effect.sleep("2 seconds") // its cycle ends in a crash, after the shutdown began
            return yield* Effect.die(new Error("segfault"))
          })
      })
      const struct = Shmem.struct("s", Effect.sync(() => ++recreated))
      yield* Supervisor.register(busy)
      const c = yield* Supervisor.register(crasher)
      yield* untilStatus(c, "has started", (s) => s._tag === "Started")
      yield* TestClock.adjust("1 second")
      const termination = yield* Effect.forkChild(Effect.exit(Supervisor.awaitTermination))
      const stopping = yield* Effect.forkChild(Supervisor.shutdown("smart"))
      yield* untilState("smart")
      assert.deepStrictEqual(log, ["busy cycle started"])
      yield* TestClock.adjust("2 seconds") // the crash
      yield* eventually("the sibling has ended", Effect.sync(() => log.includes("busy finalized")))
      assert.deepStrictEqual(log, ["busy cycle started", "busy finalized"], "the sibling finished its cycle")
      yield* Fiber.join(stopping)
      const exit = yield* Fiber.join(termination)
      const error = failureOf(exit) as Supervisor.SupervisorCrashed
      assert.strictEqual(error._tag, "SupervisorCrashed")
      assert.isTrue(Supervisor.isSupervisorCrashed(error))
      assert.isFalse(Supervisor.isSupervisorCrashed(new Error("SupervisorCrashed")))
      assert.isFalse(error.isRetryable)
      assert.strictEqual(error.worker, "crasher")
      assert.include(error.message, "during a smart shutdown")
      assert.strictEqual(recreated, 1, "shared state was re-created")
      assert.deepStrictEqual(yield* Supervisor.status(c), { _tag: "PostmasterDied" })
      yield* TestClock.adjust("1 minute")
      assert.deepStrictEqual(log, ["busy cycle started", "busy finalized"])
      const order = logs.lines.filter((l) =>
        l.includes("crashed:") || l.includes("terminating any other") || l.includes("abnormal database system shutdown")
      )
      assert.lengthOf(order, 3, logs.lines.join("\n"))
      assert.include(order[0]!, `background worker "crasher" (PID 2) crashed: segfault`)
      assert.include(order[1]!, "terminating any other active server processes")
      assert.include(order[2]!, "abnormal database system shutdown")
    }).pipe(withSupervisor({ shutdownTimeout: "1 minute" }), Effect.provide(logs.layer))
  })
})
