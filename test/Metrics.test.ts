import { assert, describe, it } from "@effect/vitest"
import { Effect, Metric } from "effect"
import { TestClock } from "effect/testing"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import * as Supervisor from "../src/Supervisor.ts"
import * as SupervisorError from "../src/SupervisorError.ts"
import { commanded, napForever, tell, untilQuiet, untilStatus, withSupervisor } from "./fixtures.ts"

/** The value of one series (matching `attributes` exactly) in the current registry. */
export const seriesValue = (name: string, attributes: Record<string, string>) =>
  Effect.map(Metric.snapshot, (snapshots) => {
    const found = snapshots.find((s) =>
      s.id === name &&
      JSON.stringify(Object.entries(s.attributes ?? {}).sort()) === JSON.stringify(Object.entries(attributes).sort())
    )
    if (found === undefined) return undefined
    switch (found.type) {
      case "Counter":
        return Number(found.state.count)
      case "Gauge":
        return Number(found.state.value)
      case "Histogram":
        return found.state.count
      default:
        return undefined
    }
  })

describe("Supervisor metrics", () => {
  it.effect("a scripted run: starts, exits by outcome, restarts, a refusal, the gauges and histograms", () =>
    Effect.gen(function*() {
      const done = { current: "nap" as "nap" | "return" | "fail" }
      const fails = { current: "nap" as "nap" | "return" | "fail" }
      const hDone = yield* Supervisor.register(commanded("done", { command: done }))
      const hFails = yield* Supervisor.register(
        commanded("fails", { restart: BackgroundWorker.restartAfter("2 seconds"), command: fails })
      )
      const hNap = yield* Supervisor.register(BackgroundWorker.make({ name: "napper", main: () => napForever() }))
      yield* untilQuiet
      // Every slot is taken: the fourth registration is refused.
      const refused = yield* Effect.flip(
        Supervisor.register(BackgroundWorker.make({ name: "extra", main: () => napForever() }))
      )
      assert.strictEqual(refused.reason._tag, "NoFreeSlot")
      assert.isTrue(SupervisorError.isSupervisorError(refused))
      assert.strictEqual(yield* seriesValue("bgworker_slots_used", {}), 3)
      assert.strictEqual(yield* seriesValue("bgworker_slots_free", {}), 0)
      assert.strictEqual(yield* seriesValue("bgworker_workers", { worker_type: "napper", state: "running" }), 1)

      yield* tell(hDone, done, "return")
      yield* tell(hFails, fails, "fail")
      fails.current = "nap"
      assert.strictEqual(yield* seriesValue("bgworker_workers", { worker_type: "fails", state: "restartWait" }), 1)
      yield* TestClock.adjust("2 seconds")
      yield* untilStatus(hFails, "restarted", (s) => s._tag === "Started")
      yield* Supervisor.terminate(hNap)
      yield* untilStatus(hNap, "stopped", (s) => s._tag === "Stopped")
      yield* untilQuiet

      const v = (name: string, attributes: Record<string, string>) => seriesValue(name, attributes)
      assert.strictEqual(yield* v("bgworker_starts", { worker_type: "done" }), 1)
      assert.strictEqual(yield* v("bgworker_starts", { worker_type: "fails" }), 2)
      assert.strictEqual(yield* v("bgworker_exits", { worker_type: "done", outcome: "done" }), 1)
      assert.strictEqual(yield* v("bgworker_exits", { worker_type: "fails", outcome: "failed" }), 1)
      assert.strictEqual(yield* v("bgworker_exits", { worker_type: "napper", outcome: "failed" }), 1)
      assert.strictEqual(yield* v("bgworker_restarts", { worker_type: "fails" }), 1)
      assert.strictEqual(yield* v("bgworker_launches_accepted", { worker_type: "done" }), 1)
      assert.strictEqual(yield* v("bgworker_launches_refused", { worker_type: "extra", reason: "NoFreeSlot" }), 1)
      assert.strictEqual(yield* v("bgworker_start_latency_seconds", { worker_type: "fails" }), 2)
      assert.isAtLeast((yield* v("bgworker_latch_wait_seconds", { worker_type: "done" })) ?? 0, 1)
      assert.strictEqual(yield* v("bgworker_slots_used", {}), 1)
      assert.strictEqual(yield* v("bgworker_slots_free", {}), 2)
      assert.strictEqual(yield* v("bgworker_workers", { worker_type: "fails", state: "running" }), 1)
    }).pipe(
      withSupervisor({ maxWorkerProcesses: 3 }),
      Effect.provideService(Metric.MetricRegistry, new Map())
    ))

  it.effect("after the supervisor ends its counters and histograms can still be read (a last export sees them), its gauges are gone", () =>
    Effect.gen(function*() {
      const registry = new Map()
      yield* Effect.gen(function*() {
        const handle = yield* Supervisor.register(BackgroundWorker.make({ name: "brief", main: () => napForever() }))
        yield* untilStatus(handle, "started", (s) => s._tag === "Started")
      }).pipe(withSupervisor(), Effect.provideService(Metric.MetricRegistry, registry))
      // The supervisor is gone: the exit its shutdown caused (killed) is counted and still readable.
      const v = (name: string, attributes: Record<string, string>) =>
        seriesValue(name, attributes).pipe(Effect.provideService(Metric.MetricRegistry, registry))
      assert.strictEqual(yield* v("bgworker_starts", { worker_type: "brief" }), 1)
      assert.strictEqual(yield* v("bgworker_exits", { worker_type: "brief", outcome: "killed" }), 1)
      assert.strictEqual(yield* v("bgworker_start_latency_seconds", { worker_type: "brief" }), 1)
      assert.isUndefined(yield* v("bgworker_slots_used", {}))
      assert.isUndefined(yield* v("bgworker_workers", { worker_type: "brief", state: "running" }))
    }))

  it.effect("metrics: false registers nothing", () =>
    Effect.gen(function*() {
      yield* Supervisor.register(BackgroundWorker.make({ name: "quiet", main: () => napForever() }))
      yield* untilQuiet
      assert.lengthOf(yield* Metric.snapshot, 0)
    }).pipe(
      withSupervisor({ metrics: false }),
      Effect.provideService(Metric.MetricRegistry, new Map())
    ))
})
