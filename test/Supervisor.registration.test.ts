import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Option, Schema, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as Activity from "../src/Activity.ts"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import * as DatabaseState from "../src/DatabaseState.ts"
import * as Preload from "../src/Preload.ts"
import * as Supervisor from "../src/Supervisor.ts"
import type { SupervisorError } from "../src/SupervisorError.ts"
import { captureLogs, napForever, untilQuiet, untilState, untilStatus, withSupervisor } from "./fixtures.ts"

const napper = BackgroundWorker.make({ name: "napper", main: () => napForever() })

const restartable = BackgroundWorker.make({
  name: "restartable",
  restart: BackgroundWorker.restartAfter("5 seconds"),
  main: () => napForever()
})

const reasonOf = <A>(exit: Exit.Exit<A, SupervisorError | unknown>) => {
  if (Exit.isSuccess(exit)) return "success"
  const error = exit.cause.reasons.find((r) => r._tag === "Fail")
  return error?._tag === "Fail" ? (error.error as SupervisorError).reason._tag : "defect"
}

describe("Supervisor: slots and registration", () => {
  it.effect("static workers past maxWorkerProcesses are dropped with a warning and the supervisor still starts", () => {
    const logs = captureLogs()
    const init = Effect.gen(function*() {
      for (let i = 1; i <= 3; i++) {
        yield* Preload.register(BackgroundWorker.make({ name: `static ${i}`, main: () => napForever() }))
      }
    })
    return Effect.gen(function*() {
      yield* untilQuiet
      const rows = yield* Activity.snapshot
      assert.deepStrictEqual(rows.map((r) => [r.name, r.registration]), [["static 1", "running"], [
        "static 2",
        "running"
      ]])
      const warnings = logs.lines.filter((l) => l.includes("too many background workers"))
      assert.strictEqual(warnings.length, 1)
      assert.include(warnings[0]!, "static 3")
      assert.include(warnings[0]!, "Up to 2 background workers")
    }).pipe(withSupervisor({ maxWorkerProcesses: 2, preload: [init] }), Effect.provide(logs.layer))
  })

  it.effect("an invalid static definition is logged and skipped while the others start", () => {
    const logs = captureLogs()
    const init = Effect.gen(function*() {
      yield* Preload.register(BackgroundWorker.make({ name: "", main: () => napForever() }))
      yield* Preload.register(napper)
    })
    return Effect.gen(function*() {
      yield* untilQuiet
      const rows = yield* Activity.snapshot
      assert.deepStrictEqual(rows.map((r) => r.name), ["napper"])
      assert.isTrue(logs.lines.some((l) => l.startsWith("WARN") && l.includes("invalid name")))
    }).pipe(withSupervisor({ preload: [init] }), Effect.provide(logs.layer))
  })

  it.effect("dynamic registration past capacity fails with NoFreeSlot, a typed error", () =>
    Effect.gen(function*() {
      yield* Supervisor.register(napper)
      yield* Supervisor.register(napper)
      const exit = yield* Effect.exit(Supervisor.register(napper))
      assert.strictEqual(reasonOf(exit), "NoFreeSlot")
      const error = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
      assert.strictEqual(error?._tag, "Fail")
      assert.include(String((error as any).error.hint), "maxWorkerProcesses")
    }).pipe(withSupervisor({ maxWorkerProcesses: 2 })))

  it.effect("static and dynamic workers share one pool of slots", () =>
    Effect.gen(function*() {
      const h = yield* Supervisor.register(napper)
      assert.strictEqual(h.slot, 1)
      const exit = yield* Effect.exit(Supervisor.register(napper))
      assert.strictEqual(reasonOf(exit), "NoFreeSlot")
    }).pipe(withSupervisor({ maxWorkerProcesses: 2, preload: [Preload.register(napper)] })))

  it.effect("a slot is freed when its worker is forgotten and can be taken again", () =>
    Effect.gen(function*() {
      const h = yield* Supervisor.register(napper)
      yield* Supervisor.terminate(h)
      yield* Supervisor.awaitShutdown(h)
      const again = yield* Supervisor.register(napper)
      assert.deepStrictEqual(again, { slot: 0, generation: 2 })
    }).pipe(withSupervisor({ maxWorkerProcesses: 1 })))

  it.effect("registration during a shutdown fails with ShuttingDown and the worker never runs", () =>
    Effect.gen(function*() {
      let ran = false
      yield* Supervisor.shutdown("fast")
      const exit = yield* Effect.exit(
        Supervisor.register(BackgroundWorker.make({ name: "late", main: () => Effect.sync(() => (ran = true)) }))
      )
      yield* untilState("stopped")
      assert.strictEqual(reasonOf(exit), "ShuttingDown")
      assert.isFalse(ran)
    }).pipe(withSupervisor()))

  it.effect("an invalid dynamic definition fails with InvalidDefinition naming the field", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.flip(
        Supervisor.register(BackgroundWorker.make({ name: "x".repeat(96), main: () => Effect.void }))
      )
      assert.strictEqual(exit.reason._tag, "InvalidDefinition")
      assert.strictEqual((exit.reason as any).field, "name")
      assert.strictEqual(exit.message, `background worker "${"x".repeat(96)}": invalid name: longer than 95 characters`)
    }).pipe(withSupervisor()))

  it.effect("a worker's own definition, name, type, pid, extra and argument are visible to it", () =>
    Effect.gen(function*() {
      const seen: Array<BackgroundWorker.WorkerInfo> = []
      const w = BackgroundWorker.make({
        name: "w 1",
        type: "w",
        argument: Schema.Struct({ n: Schema.Number }),
        main: () => Effect.flatMap(BackgroundWorker.current, (info) => Effect.sync(() => seen.push(info)))
      })
      const extra = new Uint8Array(128).map((_, i) => i)
      const h = yield* Supervisor.register(w, { n: 4 }, { extra })
      yield* untilStatus(h, "has run and ended", (s) => s._tag === "Stopped")
      assert.strictEqual(seen.length, 1)
      assert.strictEqual(seen[0]!.name, "w 1")
      assert.strictEqual(seen[0]!.type, "w")
      assert.deepStrictEqual(seen[0]!.handle, h)
      assert.deepStrictEqual(Array.from(seen[0]!.extra!), Array.from(extra))
      assert.deepStrictEqual(seen[0]!.encodedArgument, { n: 4 })
    }).pipe(withSupervisor()))

  it.effect("mutating the argument after registering does not change what the worker receives", () =>
    Effect.gen(function*() {
      const received: Array<ReadonlyArray<number>> = []
      const w = BackgroundWorker.make({
        name: "copy",
        argument: Schema.Array(Schema.Number),
        main: (xs) => Effect.sync(() => received.push(xs))
      })
      const arg = [1, 2, 3]
      const h = yield* Supervisor.register(w, arg)
      arg.push(4)
      yield* untilStatus(h, "has run and ended", (s) => s._tag === "Stopped")
      assert.deepStrictEqual(received, [[1, 2, 3]])
    }).pipe(withSupervisor()))

  it.effect("extra payloads over 128 bytes are refused at registration", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Supervisor.register(napper, undefined, { extra: new Uint8Array(129) }))
      assert.strictEqual(error.reason._tag, "InvalidDefinition")
      assert.strictEqual((error.reason as any).field, "extra")
    }).pipe(withSupervisor()))

  it.effect("an argument that does not match the worker's schema fails with InvalidArgument", () =>
    Effect.gen(function*() {
      const w = BackgroundWorker.make({ name: "typed", argument: Schema.Int, main: () => Effect.void })
      const error = yield* Effect.flip(Supervisor.register(w, 1.5))
      assert.strictEqual(error.reason._tag, "InvalidArgument")
    }).pipe(withSupervisor()))
})

const greeter = BackgroundWorker.make({
  name: "greeter",
  entryPoint: { library: "demo", function: "greet" },
  argument: Schema.Struct({ who: Schema.String }),
  main: ({ who }) => Effect.flatMap(BackgroundWorker.current, (me) => Effect.log(`hello ${who} from ${me.name}`))
})

describe("Supervisor: entry points", () => {
  it.effect("an entry point is launched by (library, function) with a serialisable argument", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const h = yield* Supervisor.launch({
        library: "demo",
        function: "greet",
        argument: { who: "postgres" },
        name: "greeter 7"
      })
      yield* Supervisor.awaitShutdown(h)
      assert.isTrue(logs.lines.includes("INFO hello postgres from greeter 7"))
    }).pipe(withSupervisor({ entryPoints: [greeter] }), Effect.provide(logs.layer))
  })

  it.effect("launching an unknown entry point fails with UnknownEntryPoint and registers nothing", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Supervisor.launch({ library: "demo", function: "nope" }))
      assert.strictEqual(error.reason._tag, "UnknownEntryPoint")
      assert.strictEqual(error.message, `could not find function "nope" in library "demo"`)
      assert.lengthOf(yield* Activity.snapshot, 0)
    }).pipe(withSupervisor({ entryPoints: [greeter] })))

  it.effect("launching with an argument the entry point's schema rejects fails and registers nothing", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Supervisor.launch({ library: "demo", function: "greet", argument: { who: 42 } }))
      assert.strictEqual(error.reason._tag, "InvalidArgument")
      assert.lengthOf(yield* Activity.snapshot, 0)
    }).pipe(withSupervisor({ entryPoints: [greeter] })))

  it.effect("with late binding an unknown entry point fails at start as a failed exit and the restart policy applies", () =>
    Effect.gen(function*() {
      const h = yield* Supervisor.launch({
        library: "demo",
        function: "missing",
        resolveAtStart: true,
        restart: BackgroundWorker.restartAfter("1 second")
      })
      // The lookup fails as soon as the worker starts, before launch has even returned.
      assert.deepStrictEqual(yield* Supervisor.awaitStartup(h), { _tag: "Stopped" })
      const row = Option.getOrThrow(yield* Supervisor.info(h))
      assert.strictEqual(row.lastExit?.kind, "failed")
      assert.strictEqual(row.lastExit?.message, `could not find function "missing" in library "demo"`)
      assert.strictEqual(row.registration, "waiting for restart")
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* Supervisor.info(h)).pipe(Option.getOrThrow).restartCount, 1)
    }).pipe(withSupervisor({ entryPoints: [greeter] })))

  it.effect("two entry points with the same name make the supervisor fail to start", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Layer.build(Supervisor.layer({ entryPoints: [greeter, greeter] })))
      assert.strictEqual(error.reason._tag, "InvalidDefinition")
      assert.include(error.message, "registered twice")
    }))
})

describe("Supervisor: handles", () => {
  it.effect("the last exits of the latest 1024 forgotten registrations stay known, and older ones are dropped", () =>
    Effect.gen(function*() {
      const quick = BackgroundWorker.make({ name: "quick", main: () => Effect.void })
      const handles = []
      for (let i = 0; i < 1030; i++) {
        const h = yield* Supervisor.register(quick)
        assert.deepStrictEqual(yield* Supervisor.awaitShutdown(h), { _tag: "Stopped" })
        handles.push(h)
      }
      for (const [i, h] of handles.entries()) {
        const exit = yield* Supervisor.Supervisor.use((s) => s.lastExit(h))
        if (i < 6) assert.isTrue(Option.isNone(exit), `registration ${i} is no longer remembered`)
        else assert.strictEqual(Option.getOrThrow(exit).kind, "done", `registration ${i} is remembered`)
      }
    }).pipe(withSupervisor({ maxWorkerProcesses: 2 })))

  it.effect("awaitStartup returns Started with the pid once the worker runs", () =>
    Effect.gen(function*() {
      const h = yield* Supervisor.register(napper)
      assert.deepStrictEqual(yield* Supervisor.status(h), { _tag: "Started", pid: 1 })
      assert.deepStrictEqual(yield* Supervisor.awaitStartup(h), { _tag: "Started", pid: 1 })
    }).pipe(withSupervisor()))

  it.effect("a handle whose slot was reused reports Stopped, never the new worker's pid", () =>
    Effect.gen(function*() {
      const first = yield* Supervisor.register(napper)
      yield* Supervisor.terminate(first)
      yield* Supervisor.awaitShutdown(first)
      const second = yield* Supervisor.register(napper)
      assert.strictEqual(second.slot, first.slot)
      assert.deepStrictEqual(yield* Supervisor.status(second), { _tag: "Started", pid: 2 })
      assert.deepStrictEqual(yield* Supervisor.status(first), { _tag: "Stopped" })
      yield* Supervisor.terminate(first) // must not touch the new worker
      yield* untilQuiet
      assert.deepStrictEqual(yield* Supervisor.status(second), { _tag: "Started", pid: 2 })
    }).pipe(withSupervisor({ maxWorkerProcesses: 1 })))

  it.effect("a handle follows its worker across restarts and reports the new pid", () =>
    Effect.gen(function*() {
      const h = yield* Supervisor.register(restartable)
      assert.deepStrictEqual(yield* Supervisor.awaitStartup(h), { _tag: "Started", pid: 1 })
      yield* Supervisor.signal(h, "terminate")
      assert.deepStrictEqual(yield* Supervisor.awaitShutdown(h), { _tag: "Stopped" })
      yield* TestClock.adjust("4999 millis")
      assert.deepStrictEqual(yield* Supervisor.status(h), { _tag: "Stopped" })
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(yield* Supervisor.status(h), { _tag: "Started", pid: 2 })
    }).pipe(withSupervisor()))

  it.effect("terminate before the worker starts means its body never runs and the waiter gets Stopped", () =>
    Effect.gen(function*() {
      let ran = false
      const gated = BackgroundWorker.make({
        name: "gated",
        startTime: "recoveryFinished",
        main: () => Effect.sync(() => (ran = true))
      })
      const h = yield* Supervisor.register(gated)
      assert.deepStrictEqual(yield* Supervisor.status(h), { _tag: "NotYetStarted" })
      const waiter = yield* Effect.forkChild(Supervisor.awaitStartup(h), { startImmediately: true })
      yield* Supervisor.terminate(h)
      assert.deepStrictEqual(yield* Fiber.join(waiter), { _tag: "Stopped" })
      yield* DatabaseState.set("ready")
      yield* untilQuiet
      assert.isFalse(ran)
    }).pipe(withSupervisor(), Effect.provide(DatabaseState.layerMemory("starting"))))

  it.effect("terminate unregisters a restartable worker, frees its slot, and is harmless when repeated", () =>
    Effect.gen(function*() {
      const h = yield* Supervisor.register(restartable)
      yield* Supervisor.terminate(h)
      yield* Supervisor.terminate(h)
      assert.deepStrictEqual(yield* Supervisor.awaitShutdown(h), { _tag: "Stopped" })
      yield* TestClock.adjust("1 minute")
      assert.deepStrictEqual(yield* Supervisor.status(h), { _tag: "Stopped" })
      assert.isTrue(Option.isNone(yield* Supervisor.info(h)))
      yield* Supervisor.terminate(h)
      yield* Supervisor.register(restartable)
    }).pipe(withSupervisor({ maxWorkerProcesses: 1 })))

  it.effect("a terminate signal ends the worker as failed and its restart policy brings it back", () =>
    Effect.gen(function*() {
      const h = yield* Supervisor.register(restartable)
      yield* untilQuiet
      yield* Supervisor.signal(h, "terminate")
      yield* Supervisor.awaitShutdown(h)
      const row = Option.getOrThrow(yield* Supervisor.info(h))
      assert.strictEqual(row.lastExit?.kind, "failed")
      assert.strictEqual(
        row.lastExit?.message,
        `terminating background worker "restartable" due to administrator command`
      )
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual((yield* Supervisor.status(h))._tag, "Started")
    }).pipe(withSupervisor()))

  it.effect("awaitShutdown is satisfied by a restartable worker's temporary exit", () =>
    Effect.gen(function*() {
      const h = yield* Supervisor.register(restartable)
      yield* untilQuiet
      const waiter = yield* Effect.forkChild(Supervisor.awaitShutdown(h))
      yield* Supervisor.signal(h, "terminate")
      assert.deepStrictEqual(yield* Fiber.join(waiter), { _tag: "Stopped" })
      assert.strictEqual(Option.getOrThrow(yield* Supervisor.info(h)).registration, "waiting for restart")
    }).pipe(withSupervisor()))

  it.effect("a worker that fails while starting was still Started for awaitStartup, then Stopped", () =>
    Effect.gen(function*() {
      // Started means the fiber runs, not that its own initialisation (here a connection attempt) succeeded.
      const connect = Effect.andThen(Effect.sleep("1 second"), Effect.fail("cannot connect"))
      const w = BackgroundWorker.make({ name: "flaky start", main: () => connect })
      const h = yield* Supervisor.register(w)
      assert.deepStrictEqual(yield* Supervisor.awaitStartup(h), { _tag: "Started", pid: 1 })
      const stopped = yield* Effect.forkChild(Supervisor.awaitShutdown(h))
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(yield* Fiber.join(stopped), { _tag: "Stopped" })
    }).pipe(withSupervisor()))

  it.effect("interrupting a caller blocked in awaitStartup abandons the wait", () =>
    Effect.gen(function*() {
      const gated = BackgroundWorker.make({ name: "gated", startTime: "consistentState", main: () => napForever() })
      const h = yield* Supervisor.register(gated)
      const waiter = yield* Effect.forkChild(Supervisor.awaitStartup(h), { startImmediately: true })
      yield* Fiber.interrupt(waiter)
      assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(waiter)))
      yield* DatabaseState.set("consistent")
      assert.strictEqual((yield* Supervisor.awaitStartup(h))._tag, "Started")
    }).pipe(withSupervisor(), Effect.provide(DatabaseState.layerMemory("starting"))))

  it.effect("the status stream shows each change and ends when the registration is forgotten", () =>
    Effect.gen(function*() {
      const gated = BackgroundWorker.make({
        name: "streamed",
        startTime: "consistentState",
        restart: BackgroundWorker.restartAfter("1 second"),
        main: () => napForever()
      })
      const h = yield* Supervisor.register(gated)
      const collected = yield* Effect.forkChild(Stream.runCollect(Supervisor.changes(h)), { startImmediately: true })
      yield* DatabaseState.set("consistent")
      yield* untilStatus(h, "has started", (s) => s._tag === "Started")
      yield* Supervisor.signal(h, "terminate")
      yield* Supervisor.awaitShutdown(h)
      yield* TestClock.adjust("1 second")
      yield* Supervisor.terminate(h)
      const statuses = yield* Fiber.join(collected)
      assert.deepStrictEqual(statuses, [
        { _tag: "NotYetStarted" },
        { _tag: "Started", pid: 1 },
        { _tag: "Stopped" },
        { _tag: "Started", pid: 2 },
        { _tag: "Stopped" }
      ])
    }).pipe(withSupervisor(), Effect.provide(DatabaseState.layerMemory("starting"))))
})

describe("Supervisor: start gates", () => {
  it.effect("workers start when their gate opens, and a state change never restarts a running worker", () =>
    Effect.gen(function*() {
      const mk = (name: string, startTime: BackgroundWorker.StartTime) =>
        Supervisor.register(BackgroundWorker.make({ name, startTime, main: () => napForever() }))
      const early = yield* mk("early", "postmasterStart")
      const standby = yield* mk("standby", "consistentState")
      const primary = yield* mk("primary", "recoveryFinished")
      assert.strictEqual((yield* Supervisor.status(early))._tag, "Started")
      assert.strictEqual((yield* Supervisor.status(standby))._tag, "NotYetStarted")
      yield* DatabaseState.set("consistent")
      yield* untilStatus(standby, "has started", (s) => s._tag === "Started")
      const standbyPid = yield* Supervisor.status(standby)
      assert.strictEqual(standbyPid._tag, "Started")
      assert.strictEqual((yield* Supervisor.status(primary))._tag, "NotYetStarted")
      yield* DatabaseState.set("ready")
      yield* untilStatus(primary, "has started", (s) => s._tag === "Started")
      assert.strictEqual((yield* Supervisor.status(primary))._tag, "Started")
      assert.deepStrictEqual(yield* Supervisor.status(standby), standbyPid)
      yield* DatabaseState.set("starting")
      yield* untilQuiet
      assert.deepStrictEqual(yield* Supervisor.status(standby), standbyPid)
    }).pipe(withSupervisor(), Effect.provide(DatabaseState.layerMemory("starting"))))

  it.effect("without a database state service every gate is open when the supervisor starts", () =>
    Effect.gen(function*() {
      const h = yield* Supervisor.register(
        BackgroundWorker.make({ name: "late gate", startTime: "recoveryFinished", main: () => napForever() })
      )
      assert.strictEqual((yield* Supervisor.status(h))._tag, "Started")
    }).pipe(withSupervisor()))
})
