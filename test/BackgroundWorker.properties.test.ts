/**
 * Property tests of the restart policy: `BackgroundWorker.restartAfter(d)` brings a failed worker back exactly d
 * later, on the TestClock. Each run fails one worker repeatedly (a typed failure, a terminate signal, a defect
 * without shared state, or a return) and times its restarts.
 *
 * PROPERTY_RUNS=n (default 100) and PROPERTY_SEED=s tune the search.
 */
import { describe, it } from "@effect/vitest"
import { Clock, Duration, Effect, Option, References, Schema } from "effect"
import { TestClock } from "effect/testing"
import * as Supervisor from "../src/Supervisor.ts"
import * as Handle from "../src/WorkerHandle.ts"
import {
  CurrentJournal,
  fail,
  Int,
  Journal,
  makeWorker,
  propOptions,
  sameStatus,
  show,
  untilIdle,
  withCountingScheduler
} from "./propertyWorkers.ts"

const RestartScenario = Schema.Struct({
  delayMs: Int(0, 10_000),
  incarnations: Schema.Array(Schema.Struct({
    /** How long the incarnation runs (waking every second) before it ends. */
    runMs: Int(0, 5000),
    /** How it ends: a typed failure, `pg_terminate_backend`, a defect (no shared state), or a return. */
    end: Schema.Literals(["fail", "signal-terminate", "defect", "return"])
  })).check(Schema.isMinLength(1), Schema.isMaxLength(8))
})
type RestartScenario = typeof RestartScenario.Type

const runRestartScenario = (scenario: RestartScenario) =>
  Effect.gen(function*() {
    const out: Array<string> = []
    const journal = new Journal()
    const d = scenario.delayMs
    const worker = makeWorker({
      label: `restart-after-${d}ms`,
      restartMs: d,
      shmem: false,
      onPostmasterDeath: "exit",
      finalizerMs: 0
    })
    const sup = yield* Supervisor.make({ maxWorkerProcesses: 2 }).pipe(Effect.orDie)
    const handle = yield* Supervisor.register(worker).pipe(
      Effect.provideService(Supervisor.Supervisor, sup),
      Effect.provideService(CurrentJournal, journal),
      Effect.orDie
    )
    const startsOf = (pid: number) => journal.entries.filter((e) => e.kind === "start" && e.pid === pid)
    const newStartsAfter = (seq: number) => journal.entries.filter((e) => e.kind === "start" && e.seq > seq)
    yield* untilIdle
    let status = yield* sup.status(handle)
    if (status._tag !== "Started") return [`right after registration: ${show(status)}`]
    let pid = status.pid
    let restarts = 0
    for (const [i, incarnation] of scenario.incarnations.entries()) {
      const where = `incarnation ${i} (pid ${pid}, ends by ${incarnation.end})`
      yield* TestClock.adjust(Duration.millis(incarnation.runMs))
      yield* untilIdle
      status = yield* sup.status(handle)
      if (!sameStatus(status, Handle.Started(pid))) {
        out.push(`${where}: ${show(status)} after running ${incarnation.runMs} ms`)
        break
      }
      if (incarnation.end === "signal-terminate") yield* sup.signal(handle, "terminate")
      else {
        journal.orders.set(pid, incarnation.end === "defect" ? "crash" : incarnation.end)
        yield* sup.setLatch(handle)
      }
      yield* untilIdle
      const endedAt = yield* Clock.currentTimeMillis
      const mark = journal.seq
      status = yield* sup.status(handle)
      const row = yield* sup.info(handle)
      // restartAfter(0) restarts at once: by now it may run again.
      if (status._tag !== "Stopped" && !(d === 0 && incarnation.end !== "return")) {
        out.push(`${where}: ${show(status)} after it ended, not Stopped`)
      }
      if (incarnation.end === "return") {
        // Exit 0: done, forgotten, never restarted.
        if (Option.isSome(row)) out.push(`${where}: still registered after returning`)
        yield* TestClock.adjust(Duration.millis(d + 5000))
        yield* untilIdle
        status = yield* sup.status(handle)
        if (status._tag !== "Stopped") out.push(`${where}: ${show(status)} ${d + 5000} ms after returning`)
        for (const e of newStartsAfter(mark)) out.push(`${where}: restarted (pid ${e.pid}) after returning`)
        break
      }
      if (Option.isNone(row)) {
        out.push(`${where}: forgotten after a failure, although restartable`)
        break
      }
      const r = row.value
      if (d > 0 && r.registration !== "waiting for restart") out.push(`${where}: registration "${r.registration}"`)
      if (d > 0 && r.nextRestartAt !== endedAt + d) {
        out.push(`${where}: nextRestartAt ${r.nextRestartAt}, expected ${endedAt} + ${d}`)
      }
      if (r.lastExit?.kind !== "failed" || r.lastExit.at !== endedAt) {
        out.push(`${where}: lastExit ${JSON.stringify(r.lastExit)}, expected failed at ${endedAt}`)
      }
      if (d > 0) {
        yield* TestClock.adjust(Duration.millis(d - 1))
        yield* untilIdle
        status = yield* sup.status(handle)
        if (status._tag !== "Stopped") out.push(`${where}: ${show(status)} ${d - 1} ms after the failure`)
        for (const e of newStartsAfter(mark)) {
          out.push(`${where}: pid ${e.pid} started ${e.at - endedAt} ms after the failure, before ${d}`)
        }
        yield* TestClock.adjust(Duration.millis(1))
        yield* untilIdle
      }
      status = yield* sup.status(handle)
      if (status._tag !== "Started" || status.pid <= pid) {
        out.push(`${where}: ${show(status)} ${d} ms after the failure, expected a new Started`)
        break
      }
      pid = status.pid
      restarts++
      const starts = startsOf(pid)
      if (starts.length !== 1 || starts[0]!.at !== endedAt + d) {
        out.push(`${where}: pid ${pid} started at ${starts.map((e) => e.at).join(",")}, expected ${endedAt} + ${d}`)
      }
      const after = yield* sup.info(handle)
      if (Option.isNone(after) || after.value.restartCount !== restarts) {
        out.push(`${where}: restartCount ${Option.map(after, (a) => a.restartCount)} after ${restarts} restart(s)`)
      }
    }
    return out
  }).pipe(Effect.provideService(References.MinimumLogLevel, "None"), withCountingScheduler)

describe("Restart policy properties", () => {
  it.effect.prop(
    "a restartable worker with restartAfter(d) that fails (typed error, terminate signal, defect without shared state) is Stopped for exactly d and comes back d later with a new pid; one that returns never comes back",
    [RestartScenario],
    ([scenario]) => Effect.map(runRestartScenario(scenario), (violations) => fail("restart policy", violations)),
    propOptions
  )
})
