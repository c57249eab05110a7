import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Option, Ref, Schedule } from "effect"
import { TestClock } from "effect/testing"
import * as Activity from "../src/Activity.ts"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import * as ProcLatch from "../src/ProcLatch.ts"
import * as Shmem from "../src/Shmem.ts"
import * as Supervisor from "../src/Supervisor.ts"
import type { WorkerHandle } from "../src/WorkerHandle.ts"
import {
  captureLogs,
  commanded,
  eventually,
  napForever,
  tell,
  untilQuiet,
  untilRegistration,
  untilState,
  untilStatus,
  withSupervisor
} from "./fixtures.ts"

const rowOf = (h: WorkerHandle) => Effect.map(Supervisor.info(h), Option.getOrThrow)

/** A worker that does what its latch-driven command says: the test sets `command`, then the latch. */
describe("Supervisor: how a worker's end decides what happens next", () => {
  it.effect("a worker that returns is done: forgotten and never restarted, whatever its schedule", () =>
    Effect.gen(function*() {
      const command = { current: "nap" as "nap" | "return" }
      const h = yield* Supervisor.register(commanded("done", { restart: BackgroundWorker.restartAfter(0), command }))
      yield* untilQuiet
      yield* tell(h, command, "return")
      assert.deepStrictEqual(yield* Supervisor.status(h), { _tag: "Stopped" })
      assert.isTrue(Option.isNone(yield* Supervisor.info(h)))
      yield* TestClock.adjust("1 hour")
      assert.lengthOf(yield* Activity.snapshot, 0)
    }).pipe(withSupervisor()))

  it.effect("a typed failure restarts the worker after its fixed interval, leaving the others untouched", () =>
    Effect.gen(function*() {
      const command = { current: "nap" as "nap" | "fail" }
      const starts: Array<number> = []
      const h = yield* Supervisor.register(
        commanded("fails", { restart: BackgroundWorker.restartAfter("2 seconds"), command, starts })
      )
      const bystander = yield* Supervisor.register(
        BackgroundWorker.make({ name: "bystander", main: () => napForever() })
      )
      yield* untilQuiet
      const bystanderPid = yield* Supervisor.status(bystander)
      yield* tell(h, command, "fail")
      command.current = "nap"
      const row = yield* rowOf(h)
      assert.strictEqual(row.lastExit?.kind, "failed")
      assert.strictEqual(row.lastExit?.message, "boom")
      assert.strictEqual(row.registration, "waiting for restart")
      assert.strictEqual(row.nextRestartAt, 2000)
      yield* TestClock.adjust("1999 millis")
      assert.deepStrictEqual(starts, [1])
      yield* TestClock.adjust("1 millis")
      yield* eventually("the worker has started again", Effect.sync(() => starts.length === 2))
      assert.deepStrictEqual(starts, [1, 3])
      assert.deepStrictEqual(yield* Supervisor.status(bystander), bystanderPid)
    }).pipe(withSupervisor()))

  it.effect("a never-restart worker that fails is forgotten and its handle reports Stopped", () =>
    Effect.gen(function*() {
      const command = { current: "nap" as "nap" | "fail" }
      const h = yield* Supervisor.register(commanded("once", { command }))
      yield* untilQuiet
      yield* tell(h, command, "fail")
      assert.deepStrictEqual(yield* Supervisor.status(h), { _tag: "Stopped" })
      assert.isTrue(Option.isNone(yield* Supervisor.info(h)))
    }).pipe(withSupervisor()))

  it.effect("restartAfter(0) relaunches at once", () =>
    Effect.gen(function*() {
      const command = { current: "nap" as "nap" | "fail" }
      const starts: Array<number> = []
      const h = yield* Supervisor.register(
        commanded("tight", { restart: BackgroundWorker.restartAfter(0), command, starts })
      )
      yield* untilQuiet
      yield* tell(h, command, "fail")
      command.current = "nap"
      yield* TestClock.adjust(0)
      yield* eventually("the worker has started again", Effect.sync(() => starts.length === 2))
      assert.deepStrictEqual(starts, [1, 2])
    }).pipe(withSupervisor()))

  it.effect("a worker failing every time is relaunched forever at its fixed interval", () =>
    Effect.gen(function*() {
      const starts: Array<number> = []
      const w = BackgroundWorker.make({
        name: "hopeless",
        restart: BackgroundWorker.restartAfter("1 second"),
        main: () => Effect.andThen(Effect.sync(() => starts.push(1)), Effect.fail("no"))
      })
      const h = yield* Supervisor.register(w)
      yield* untilRegistration(h, "waiting for restart", 0)
      for (let i = 0; i < 20; i++) {
        yield* TestClock.adjust("1 second")
        yield* untilRegistration(h, "waiting for restart", i + 1)
      }
      assert.strictEqual(starts.length, 21)
      assert.strictEqual((yield* rowOf(h)).restartCount, 20)
    }).pipe(withSupervisor()))

  it.effect("a defect in a worker without shared state ends that worker alone, as failed", () =>
    Effect.gen(function*() {
      const command = { current: "nap" as "nap" | "die" }
      const h = yield* Supervisor.register(
        commanded("no shmem", { restart: BackgroundWorker.restartAfter("1 second"), command })
      )
      const sibling = yield* Supervisor.register(BackgroundWorker.make({ name: "sibling", main: () => napForever() }))
      yield* untilQuiet
      const before = yield* Supervisor.status(sibling)
      yield* tell(h, command, "die")
      const row = yield* rowOf(h)
      assert.strictEqual(row.lastExit?.kind, "failed")
      assert.strictEqual(row.lastExit?.message, "segfault")
      assert.strictEqual(row.registration, "waiting for restart")
      assert.deepStrictEqual(yield* Supervisor.status(sibling), before)
    }).pipe(withSupervisor()))

  it.effect("a defect in a shmem worker restarts everything: restartable workers at once, never-restart ones forgotten", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const command = { current: "nap" as "nap" | "die" }
      const crasher = yield* Supervisor.register(
        commanded("crasher", { shmem: true, restart: BackgroundWorker.restartAfter("1 minute"), command })
      )
      const slowRestart = yield* Supervisor.register(
        BackgroundWorker.make({
          name: "slow",
          restart: BackgroundWorker.restartAfter("1 hour"),
          main: () => napForever()
        })
      )
      const never = yield* Supervisor.register(BackgroundWorker.make({ name: "never", main: () => napForever() }))
      yield* untilQuiet
      const slowBefore = yield* Supervisor.status(slowRestart)
      yield* tell(crasher, command, "die")
      command.current = "nap"
      yield* untilState("running")
      yield* untilQuiet
      assert.strictEqual((yield* Supervisor.status(never))._tag, "Stopped")
      assert.isTrue(Option.isNone(yield* Supervisor.info(never)))
      const crasherNow = yield* Supervisor.status(crasher)
      const slowNow = yield* Supervisor.status(slowRestart)
      assert.strictEqual(crasherNow._tag, "Started")
      assert.strictEqual(slowNow._tag, "Started")
      assert.notDeepEqual(slowNow, slowBefore)
      assert.strictEqual((yield* rowOf(crasher)).lastExit?.kind, "crashed")
      assert.strictEqual((yield* rowOf(slowRestart)).lastExit?.kind, "killed")
      assert.strictEqual((yield* rowOf(slowRestart)).lastExit?.message, "terminated by crash restart")
      const order = logs.lines.filter((l) =>
        l.includes("crashed") || l.includes("terminating any other") || l.includes("reinitializing")
      )
      assert.lengthOf(order, 3)
      assert.include(order[0]!, `background worker "crasher" (PID 1) crashed: segfault`)
      assert.include(order[1]!, "terminating any other active server processes")
      assert.include(order[2]!, "all server processes terminated; reinitializing")
    }).pipe(withSupervisor(), Effect.provide(logs.layer))
  })

  it.effect("a crash restart creates shared state afresh and runs the old generation's finalizers", () =>
    Effect.gen(function*() {
      const finalized = yield* Ref.make<Array<number>>([])
      let created = 0
      const counter = Shmem.struct(
        "counter",
        Effect.gen(function*() {
          const id = ++created
          yield* Effect.addFinalizer(() => Ref.update(finalized, (xs) => [...xs, id]))
          return { id, hits: 0 }
        })
      )
      const seen: Array<number> = []
      const command = { current: "nap" as "nap" | "die" }
      const user = BackgroundWorker.make({
        name: "user",
        shmem: true,
        restart: BackgroundWorker.restartAfter("1 second"),
        main: () =>
          Effect.gen(function*() {
            const state = yield* Shmem.get(counter)
            seen.push(state.id)
            yield* ProcLatch.wait({ onPostmasterDeath: "exit" })
            yield* ProcLatch.reset
            if (command.current === "die") return yield* Effect.die("corrupted")
            yield* napForever()
          })
      })
      const h = yield* Supervisor.register(user)
      yield* eventually("the worker has read its shared state", Effect.sync(() => seen.length === 1))
      assert.deepStrictEqual(seen, [1])
      yield* tell(h, command, "die")
      command.current = "nap"
      yield* eventually("the restarted worker has read its shared state", Effect.sync(() => seen.length === 2))
      assert.deepStrictEqual(seen, [1, 2])
      assert.deepStrictEqual(yield* Ref.get(finalized), [1])
    }).pipe(withSupervisor()))

  it.effect("a never-restart worker registered while a crash restart is under way starts once it is over", () =>
    Effect.gen(function*() {
      const release = yield* Deferred.make<void>()
      const command = { current: "nap" as "nap" | "die" }
      const crasher = yield* Supervisor.register(commanded("crasher", { shmem: true, command }))
      const slowToDie = BackgroundWorker.make({
        name: "slow to die",
        main: () => Effect.andThen(Effect.addFinalizer(() => Deferred.await(release)), napForever())
      })
      yield* Supervisor.register(slowToDie)
      yield* untilQuiet
      yield* tell(crasher, command, "die")
      assert.strictEqual(yield* Supervisor.state, "recovering")
      const late = yield* Supervisor.register(BackgroundWorker.make({ name: "late", main: () => napForever() }))
      assert.deepStrictEqual(yield* Supervisor.status(late), { _tag: "NotYetStarted" })
      yield* Deferred.succeed(release, undefined)
      yield* untilState("running")
      yield* untilStatus(late, "has started", (s) => s._tag === "Started")
      assert.strictEqual(yield* Supervisor.state, "running")
      assert.strictEqual((yield* Supervisor.status(late))._tag, "Started")
    }).pipe(withSupervisor()))

  it.effect("with restartAfterCrash off a crash ends the supervisor and waiters learn it died", () =>
    Effect.gen(function*() {
      const command = { current: "nap" as "nap" | "die" }
      const crasher = yield* Supervisor.register(commanded("crasher", { shmem: true, command }))
      const other = yield* Supervisor.register(
        BackgroundWorker.make({ name: "other", restart: BackgroundWorker.restartAfter(0), main: () => napForever() })
      )
      yield* untilQuiet
      const waiter = yield* Effect.forkChild(Supervisor.awaitShutdown(other))
      yield* tell(crasher, command, "die")
      const termination = yield* Effect.exit(Supervisor.awaitTermination)
      assert.isTrue(Exit.isFailure(termination))
      assert.deepStrictEqual(yield* Fiber.join(waiter), { _tag: "PostmasterDied" })
      assert.deepStrictEqual(yield* Supervisor.status(other), { _tag: "PostmasterDied" })
      assert.strictEqual(yield* Supervisor.state, "dead")
    }).pipe(withSupervisor({ restartAfterCrash: false })))

  it.effect("an exit with code 1 is logged with the worker's type; a return is quiet above debug level", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      yield* Supervisor.register(BackgroundWorker.make({ name: "w 1", type: "w", main: () => Effect.fail("bad") }))
      yield* Supervisor.register(BackgroundWorker.make({ name: "w 2", type: "w", main: () => Effect.void }))
      yield* eventually("both workers have exited", Effect.map(Activity.snapshot, (rows) => rows.length === 0))
      const exits = logs.lines.filter((l) => l.includes("exited with exit code"))
      assert.deepStrictEqual(exits.map((l) => l.split(" ")[0]).sort(), ["DEBUG", "INFO"])
      assert.isTrue(exits.some((l) => l.startsWith("INFO background worker \"w\" (PID 1) exited with exit code 1")))
    }).pipe(withSupervisor(), Effect.provide(logs.layer))
  })
})

describe("Supervisor: restart schedules", () => {
  const failing = (
    restart: BackgroundWorker.RestartPolicy,
    extra: Partial<BackgroundWorker.MakeOptions<void, string, never, false, undefined>> = {}
  ) => BackgroundWorker.make({ name: "failing", restart, ...extra, main: () => Effect.fail("again") })

  it.effect("any Schedule can drive restarts, such as an exponential backoff", () =>
    Effect.gen(function*() {
      const starts: Array<number> = []
      const w = BackgroundWorker.make({
        name: "backoff",
        restart: Schedule.exponential("100 millis"),
        main: () =>
          Effect.andThen(
            Effect.flatMap(Effect.clockWith((c) => c.currentTimeMillis), (t) => Effect.sync(() => starts.push(t))),
            Effect.fail("again")
          )
      })
      const h = yield* Supervisor.register(w)
      yield* untilRegistration(h, "waiting for restart", 0)
      yield* TestClock.adjust("3100 millis")
      yield* untilRegistration(h, "waiting for restart", 5)
      assert.deepStrictEqual(starts, [0, 100, 300, 700, 1500, 3100])
      assert.strictEqual((yield* rowOf(h)).nextRestartAt, 3100 + 3200)
    }).pipe(withSupervisor()))

  it.effect("a stable run resets the schedule", () =>
    Effect.gen(function*() {
      const command = { current: "nap" as "nap" | "fail" }
      const w = BackgroundWorker.make({
        name: "stable",
        restart: Schedule.exponential("1 second"),
        resetAfter: "1 minute",
        main: () =>
          Effect.gen(function*() {
            yield* ProcLatch.wait({ onPostmasterDeath: "exit" })
            yield* ProcLatch.reset
            if (command.current === "fail") return yield* Effect.fail("x")
          })
      })
      const h2 = yield* Supervisor.register(w)
      yield* untilStatus(h2, "has started", (s) => s._tag === "Started")
      command.current = "fail"
      yield* Supervisor.setLatch(h2)
      yield* untilRegistration(h2, "waiting for restart")
      const first = (yield* rowOf(h2)).nextRestartAt! // 1 s after now
      yield* TestClock.adjust("1 second")
      yield* Supervisor.setLatch(h2)
      yield* untilRegistration(h2, "waiting for restart", 1)
      const second = (yield* rowOf(h2)).nextRestartAt! // failed at 1 s, next start 2 s later: backoff grows
      assert.strictEqual(second - first, 2000)
      yield* TestClock.adjust("2 seconds")
      command.current = "nap"
      yield* TestClock.adjust("2 minutes") // a stable run
      command.current = "fail"
      yield* Supervisor.setLatch(h2)
      yield* untilRegistration(h2, "waiting for restart")
      const now = yield* Effect.clockWith((c) => c.currentTimeMillis)
      assert.strictEqual((yield* rowOf(h2)).nextRestartAt! - now, 1000)
    }).pipe(withSupervisor()))

  it.effect("more than maxRestarts within the period gives the worker up, with its last error, and it keeps its slot", () =>
    Effect.gen(function*() {
      const h = yield* Supervisor.register(
        failing(BackgroundWorker.restartAfter("1 second"), { intensity: { maxRestarts: 2, within: "10 seconds" } })
      )
      yield* untilRegistration(h, "waiting for restart", 0)
      yield* TestClock.adjust("1 second")
      yield* untilRegistration(h, "waiting for restart", 1)
      yield* TestClock.adjust("1 second")
      yield* untilRegistration(h, "given up")
      const row = yield* rowOf(h)
      assert.strictEqual(row.registration, "given up")
      assert.strictEqual(row.givenUpReason, "more than 2 restarts within 10s")
      assert.strictEqual(row.lastExit?.message, "again")
      assert.strictEqual(row.restartCount, 2)
      assert.deepStrictEqual(yield* Supervisor.status(h), { _tag: "Stopped" })
      const full = yield* Effect.flip(Supervisor.register(failing("never")))
      assert.strictEqual(full.reason._tag, "NoFreeSlot")
      yield* Supervisor.terminate(h)
      yield* Supervisor.register(failing("never"))
    }).pipe(withSupervisor({ maxWorkerProcesses: 1 })))

  it.effect("restarts spread wider than the intensity period never give the worker up", () =>
    Effect.gen(function*() {
      const h = yield* Supervisor.register(
        failing(BackgroundWorker.restartAfter("6 seconds"), { intensity: { maxRestarts: 1, within: "5 seconds" } })
      )
      for (let i = 0; i < 5; i++) {
        yield* untilRegistration(h, "waiting for restart", i)
        yield* TestClock.adjust("6 seconds")
      }
      const row = yield* rowOf(h)
      assert.strictEqual(row.registration, "waiting for restart")
      assert.strictEqual(row.restartCount, 5)
    }).pipe(withSupervisor()))

  it.effect("a schedule that completes gives the worker up", () =>
    Effect.gen(function*() {
      const h = yield* Supervisor.register(failing(Schedule.spaced("1 second").pipe(Schedule.upTo({ times: 2 }))))
      for (let i = 0; i < 4; i++) {
        yield* untilRegistration(h, ["waiting for restart", "given up"])
        yield* TestClock.adjust("1 second")
      }
      const row = yield* rowOf(h)
      assert.strictEqual(row.registration, "given up")
      assert.strictEqual(row.givenUpReason, "restart schedule exhausted")
    }).pipe(withSupervisor()))

  it.effect("a worker waiting for its restart keeps its slot", () =>
    Effect.gen(function*() {
      const h = yield* Supervisor.register(failing(BackgroundWorker.restartAfter("1 minute")))
      yield* untilRegistration(h, "waiting for restart")
      const error = yield* Effect.flip(Supervisor.register(failing("never")))
      assert.strictEqual(error.reason._tag, "NoFreeSlot")
    }).pipe(withSupervisor({ maxWorkerProcesses: 1 })))

  it.effect("the schedule sees the failure, so a policy can refuse to restart some errors", () =>
    Effect.gen(function*() {
      const policy = BackgroundWorker.restartAfter("1 second").pipe(
        Schedule.while(({ input }) => input.reason !== "error" || input.message !== "fatal")
      )
      const h = yield* Supervisor.register(
        BackgroundWorker.make({ name: "picky", restart: policy, main: () => Effect.fail(new Error("fatal")) })
      )
      yield* untilRegistration(h, ["waiting for restart", "given up"])
      yield* TestClock.adjust(0)
      assert.strictEqual((yield* rowOf(h)).registration, "given up")
    }).pipe(withSupervisor()))
})

describe("Supervisor: a dynamic worker outlives its registrant", () => {
  it.effect("a restartable worker keeps running after the fiber that registered it is gone", () =>
    Effect.gen(function*() {
      const handle = yield* Deferred.make<WorkerHandle>()
      const registrant = yield* Effect.forkChild(
        Effect.flatMap(
          Supervisor.register(
            BackgroundWorker.make({
              name: "orphan",
              restart: BackgroundWorker.restartAfter("1 second"),
              main: () => napForever()
            })
          ),
          (h) => Deferred.succeed(handle, h)
        )
      )
      yield* Fiber.join(registrant)
      const h = yield* Deferred.await(handle)
      yield* TestClock.adjust("1 minute")
      assert.strictEqual((yield* Supervisor.status(h))._tag, "Started")
    }).pipe(withSupervisor()))
})
