import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Option, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as Activity from "../src/Activity.ts"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import * as DatabaseState from "../src/DatabaseState.ts"
import * as ProcLatch from "../src/ProcLatch.ts"
import * as Supervisor from "../src/Supervisor.ts"
import {
  eventually,
  layerLeakChecked,
  napForever,
  supervisorService,
  untilQuiet,
  untilWaiting,
  withSupervisor
} from "./fixtures.ts"

const reporter = BackgroundWorker.make({
  name: "reporter 1",
  type: "reporter",
  restart: BackgroundWorker.restartAfter("30 seconds"),
  main: () =>
    Effect.gen(function*() {
      while (true) {
        yield* ProcLatch.wait({ timeout: "10 seconds", onPostmasterDeath: "exit", waitEvent: "ReporterMain" })
        yield* ProcLatch.reset
        yield* Activity.report("active", "SELECT 1")
        yield* Effect.sleep("1 second")
        yield* Activity.report("idle")
      }
    })
})

describe("Activity", () => {
  it.effect("lastExit says how each incarnation ended: returned, failed with its error, or ended by the supervisor", () =>
    Effect.gen(function*() {
      const supervisor = yield* supervisorService
      const done = yield* Supervisor.register(BackgroundWorker.make({ name: "done", main: () => Effect.void }))
      const failing = yield* Supervisor.register(
        BackgroundWorker.make({ name: "failing", main: () => Effect.fail(new Error("boom")) })
      )
      const napping = yield* Supervisor.register(BackgroundWorker.make({ name: "napping", main: () => napForever() }))
      yield* untilWaiting(napping)
      yield* Supervisor.shutdown("fast")
      const exits = yield* Effect.forEach([done, failing, napping], (h) => supervisor.lastExit(h))
      assert.deepStrictEqual(
        exits.map((exit) => Option.map(exit, ({ kind, message }) => `${kind}: ${message}`)),
        [
          Option.some("done: exited with exit code 0"),
          Option.some("failed: boom"),
          Option.some("killed: terminated by shutdown")
        ]
      )
    }).pipe(withSupervisor()))

  it.effect("a running worker has PostgreSQL's columns: pid, type, name, state, query, backend start, state change", () =>
    Effect.gen(function*() {
      yield* TestClock.adjust("1 second")
      const h = yield* Supervisor.register(reporter)
      yield* untilWaiting(h)
      let [row] = yield* Activity.snapshot
      assert.deepStrictEqual(
        [row!.pid, row!.name, row!.backendType, row!.state, row!.query, row!.backendStart, row!.waitEvent],
        [1, "reporter 1", "reporter", "active", "", 1000, "ReporterMain"]
      )
      yield* TestClock.adjust("10 seconds")
      ;[row] = yield* Activity.snapshot
      assert.strictEqual(row!.state, "active")
      assert.strictEqual(row!.query, "SELECT 1")
      assert.isNull(row!.waitEvent)
      yield* TestClock.adjust("1 second")
      ;[row] = yield* Activity.snapshot
      assert.strictEqual(row!.state, "idle")
      assert.strictEqual(row!.query, "SELECT 1") // the last query stays, as in pg_stat_activity
      assert.strictEqual(row!.stateChange, 12000)
      assert.deepStrictEqual(row!.slot, h.slot)
    }).pipe(withSupervisor()))

  it.effect("registered workers that are not running are listed, with why, restarts, last exit and next restart", () =>
    Effect.gen(function*() {
      const gated = yield* Supervisor.register(
        BackgroundWorker.make({ name: "gated", startTime: "recoveryFinished", main: () => napForever() })
      )
      const h = yield* Supervisor.register(reporter)
      yield* untilWaiting(h)
      yield* TestClock.adjust("10 seconds") // the reporter is now inside its query
      yield* Supervisor.signal(h, "terminate")
      yield* TestClock.adjust("1 second")
      const rows = yield* Activity.snapshot
      const byName = Object.fromEntries(rows.map((r) => [r.name, r]))
      assert.strictEqual(byName["gated"]!.registration, "not yet started")
      assert.isNull(byName["gated"]!.pid)
      const waiting = byName["reporter 1"]!
      assert.strictEqual(waiting.registration, "waiting for restart")
      assert.isNull(waiting.pid)
      assert.isNull(waiting.state)
      assert.strictEqual(waiting.lastExit?.kind, "failed")
      assert.strictEqual(waiting.lastExit?.query, "SELECT 1")
      assert.strictEqual(waiting.nextRestartAt, 11000 + 30000)
      yield* TestClock.adjust("30 seconds")
      const [, restarted] = yield* Activity.snapshot
      assert.strictEqual(restarted!.registration, "running")
      assert.strictEqual(restarted!.restartCount, 1)
      assert.strictEqual(restarted!.pid, 2)
      assert.isTrue(gated.slot === 0)
    }).pipe(withSupervisor(), Effect.provide(DatabaseState.layerMemory("consistent"))))

  it.effect("the change stream reports starts, state changes and forgotten registrations", () =>
    Effect.gen(function*() {
      const events = yield* Activity.changes
      const collected = yield* Effect.forkChild(Stream.runCollect(Stream.take(events, 5)), { startImmediately: true })
      const h = yield* Supervisor.register(
        BackgroundWorker.make({
          name: "short",
          main: () => Effect.andThen(Activity.report("active", "VACUUM"), ProcLatch.wait({ onPostmasterDeath: "exit" }))
        })
      )
      yield* eventually(
        "the worker has reported its query",
        Effect.map(Supervisor.info(h), (row) => row._tag === "Some" && row.value.query === "VACUUM")
      )
      yield* Supervisor.terminate(h)
      const all = yield* Fiber.join(collected)
      const summary = all.map((e) =>
        e._tag === "Removed" ? "removed" : `${e.row.registration}/${e.row.state}/${e.row.query}`
      )
      assert.deepStrictEqual(summary, [
        "not yet started/null/",
        "running/starting/",
        "running/active/",
        "running/active/VACUUM",
        "removed"
      ])
    }).pipe(withSupervisor()))

  it.effect("the change stream ends when the supervisor's scope closes", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(layerLeakChecked(), scope)
      const events = yield* Effect.provide(Activity.changes, context)
      const collected = yield* Effect.forkChild(Stream.runCollect(events), { startImmediately: true })
      const h = yield* Effect.provide(
        Supervisor.register(BackgroundWorker.make({ name: "last", main: () => napForever() })),
        context
      )
      yield* Effect.provide(untilWaiting(h), context)
      yield* Scope.close(scope, Exit.void)
      const all = yield* Fiber.join(collected)
      assert.isAbove(all.length, 0)
    }))

  it.effect("the table rendering lists every row with its registration and last exit", () =>
    Effect.gen(function*() {
      yield* Supervisor.register(BackgroundWorker.make({ name: "one", main: () => napForever() }))
      yield* untilQuiet
      const table = Activity.formatTable(yield* Activity.snapshot, 0)
      const lines = table.split("\n")
      assert.lengthOf(lines, 3)
      assert.match(lines[0]!, /^pid +\| name +\| type/)
      assert.match(lines[2]!, /^1 +\| one +\| one +\| running/)
    }).pipe(withSupervisor()))

  it.effect("the table rendering escapes control characters in names and messages, so a name cannot rewrite the terminal", () =>
    Effect.gen(function*() {
      const h = yield* Supervisor.register(
        BackgroundWorker.make({
          name: "evil\u001b[2J\nfake row",
          main: () => Effect.fail("gone\r\u001b[31m"),
          restart: BackgroundWorker.restartAfter("1 hour")
        })
      )
      assert.deepStrictEqual(yield* Supervisor.awaitStartup(h), { _tag: "Stopped" })
      yield* untilQuiet
      const table = Activity.formatTable(yield* Activity.snapshot, 0)
      assert.notMatch(table, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/, "no control character but the line breaks")
      const lines = table.split("\n")
      assert.lengthOf(lines, 3, "a newline in a name does not add a row")
      assert.include(lines[2]!, "evil\\x1b[2J\\nfake row")
      assert.include(lines[2]!, "gone\\r\\x1b[31m")
    }).pipe(withSupervisor()))
})
