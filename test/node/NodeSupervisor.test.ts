import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as References from "effect/References"
import * as BackgroundWorker from "../../src/BackgroundWorker.ts"
import * as Interrupts from "../../src/Interrupts.ts"
import { NodeSupervisor } from "../../src/node/index.ts"
import * as ProcLatch from "../../src/ProcLatch.ts"
import * as Supervisor from "../../src/Supervisor.ts"
import { type Child, spawn } from "./fixtures/child.ts"

const fixture = "test/node/fixtures/signals.ts"

/** Starts the fixture and waits until both the worker and the SIGHUP listener are in place. */
const startFixture = (env: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const child = yield* spawn(fixture, env)
    yield* child.waitFor("supervisor ready")
    yield* child.waitFor("sleeper: ready")
    return child
  })

const assertLine = (child: Child, text: string) =>
  Effect.gen(function*() {
    const output = yield* child.output
    const found = output.some((line) => line.includes(text))
    assert.isTrue(found, `expected a line with "${text}" in:\n${output.join("\n")}`)
  })

/** Keeps the supervisor's info lines out of the test report. */
const quiet = Effect.provideService(References.MinimumLogLevel, "Warn")

describe("NodeSupervisor (in process)", () => {
  it.live("releasing the signal layer shuts the workers down fast before the supervisor dies", () =>
    Effect.gen(function*() {
      const ready = yield* Deferred.make<void>()
      const stateAtFinalizer = yield* Deferred.make<Supervisor.SupervisorState>()
      const sleeper = BackgroundWorker.make({
        name: "sleeper",
        main: () =>
          Effect.gen(function*() {
            yield* Effect.addFinalizer(() =>
              Effect.flatMap(Supervisor.state, (state) => Deferred.succeed(stateAtFinalizer, state))
            )
            yield* Deferred.succeed(ready, undefined)
            while (true) {
              yield* ProcLatch.wait({ onPostmasterDeath: "exit" })
              yield* ProcLatch.reset
            }
          })
      })
      yield* Supervisor.register(sleeper).pipe(
        Effect.andThen(Deferred.await(ready)),
        Effect.provide(NodeSupervisor.layerSignals.pipe(Layer.provideMerge(Supervisor.layer())))
      )
      // "fast": stopped by the shutdown; "dead" would mean the supervisor's own release (death) got there first.
      assert.strictEqual(yield* Deferred.await(stateAtFinalizer), "fast")
    }).pipe(quiet))

  it.live("a SIGHUP sets the reload flag of every running worker", () =>
    Effect.gen(function*() {
      const ready = yield* Deferred.make<void>()
      const reloaded = yield* Deferred.make<void>()
      const listener = BackgroundWorker.make({
        name: "listener",
        main: () =>
          Effect.gen(function*() {
            yield* Deferred.succeed(ready, undefined)
            while (true) {
              yield* ProcLatch.wait({ timeout: "10 seconds", onPostmasterDeath: "exit" })
              yield* ProcLatch.reset
              if (yield* Interrupts.reloadPending) yield* Deferred.succeed(reloaded, undefined)
            }
          })
      })
      const listenersBefore = process.listenerCount("SIGHUP")
      yield* Effect.gen(function*() {
        yield* Supervisor.register(listener)
        yield* Deferred.await(ready)
        process.emit("SIGHUP", "SIGHUP")
        yield* Deferred.await(reloaded).pipe(
          Effect.timeoutOrElse({ duration: "2 seconds", orElse: () => Effect.die("the worker never saw the reload") })
        )
      }).pipe(Effect.provide(NodeSupervisor.layerSignals.pipe(Layer.provideMerge(Supervisor.layer()))))
      assert.strictEqual(process.listenerCount("SIGHUP"), listenersBefore, "the SIGHUP listener outlived the layer")
    }).pipe(quiet))
})

describe("NodeSupervisor.runMain (child process)", () => {
  it.live(
    "a SIGHUP reaches the workers as a reload request and the process keeps running",
    () =>
      Effect.gen(function*() {
        const child = yield* startFixture()
        yield* child.signal("SIGHUP")
        yield* child.waitFor("received SIGHUP")
        yield* child.waitFor("sleeper: reload requested")
        // A second one proves the listener is still installed (Node's default action would kill the process).
        yield* child.signal("SIGHUP")
        yield* child.waitFor("sleeper: reload requested", { times: 2 })
        yield* Effect.sleep("200 millis")
        assert.isTrue(yield* child.isRunning, "the process ended after SIGHUP")
        assert.strictEqual(yield* child.count("finalizer ran"), 0)
      }).pipe(Effect.provide(NodeServices.layer)),
    15_000
  )

  it.live(
    "a SIGHUP during start-up is held until the supervisor runs instead of killing the process",
    () =>
      Effect.gen(function*() {
        const child = yield* spawn(fixture, { FIXTURE_MODE: "slowstart" })
        yield* child.waitFor("fixture: slow preload")
        yield* child.signal("SIGHUP")
        yield* child.waitFor("supervisor ready")
        yield* child.waitFor("sleeper: reload requested")
        assert.isTrue(yield* child.isRunning, "the process ended after SIGHUP")
      }).pipe(Effect.provide(NodeServices.layer)),
    15_000
  )

  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    it.live(
      `a ${signal} shuts the workers down fast, runs their finalizers and exits with code 130`,
      () =>
        Effect.gen(function*() {
          const child = yield* startFixture()
          yield* child.signal(signal)
          // The fixture's shutdownTimeout is 2 seconds: a fast shutdown that waited for it would still pass here,
          // a shutdown that hung would not.
          const exit = yield* child.awaitExit("4 seconds")
          assert.deepStrictEqual(exit, { code: 130 })
          yield* assertLine(child, "received fast shutdown request")
          yield* assertLine(child, "sleeper: finalizer ran")
        }).pipe(Effect.provide(NodeServices.layer)),
      15_000
    )
  }

  it.live("a supervisor that shuts down by itself ends the process with exit code 0", () =>
    Effect.gen(function*() {
      const child = yield* startFixture({ FIXTURE_MODE: "shutdown" })
      const exit = yield* child.awaitExit("5 seconds")
      assert.deepStrictEqual(exit, { code: 0 })
      yield* assertLine(child, "received smart shutdown request")
      yield* assertLine(child, "sleeper: finalizer ran")
    }).pipe(Effect.provide(NodeServices.layer)), 15_000)

  it.live(
    "a supervisor that shuts down immediately by itself ends the process with exit code 0",
    () =>
      Effect.gen(function*() {
        const child = yield* startFixture({ FIXTURE_MODE: "immediate" })
        const exit = yield* child.awaitExit("5 seconds")
        assert.deepStrictEqual(exit, { code: 0 })
        yield* assertLine(child, "received immediate shutdown request")
        yield* assertLine(child, "sleeper: finalizer ran")
      }).pipe(Effect.provide(NodeServices.layer)),
    15_000
  )

  it.live(
    "a SIGTERM ends the process even when a worker's finalizer never ends, and the log names that worker",
    () =>
      Effect.gen(function*() {
        const child = yield* startFixture({ FIXTURE_MODE: "stuck" })
        yield* child.waitFor("stuck: ready")
        yield* child.signal("SIGTERM")
        // shutdownTimeout (2 s) for the graceful stop, then abandonTimeout (1 s) after the forced interruption.
        const exit = yield* child.awaitExit("6 seconds")
        assert.deepStrictEqual(exit, { code: 130 })
        yield* assertLine(child, "stuck: finalizer started")
        yield* assertLine(child, `background worker "stuck"`)
        yield* assertLine(child, "abandoned")
        yield* assertLine(child, "sleeper: finalizer ran")
      }).pipe(Effect.provide(NodeServices.layer)),
    15_000
  )

  it.live(
    "a crash with restartAfterCrash off ends the process with exit code 1 and logs why",
    () =>
      Effect.gen(function*() {
        const child = yield* startFixture({ FIXTURE_MODE: "crash" })
        const exit = yield* child.awaitExit("5 seconds")
        assert.deepStrictEqual(exit, { code: 1 })
        yield* assertLine(child, "fixture crash")
        yield* assertLine(child, "crashed and restart_after_crash is off")
        yield* assertLine(child, "sleeper: finalizer ran")
      }).pipe(Effect.provide(NodeServices.layer)),
    15_000
  )
})
