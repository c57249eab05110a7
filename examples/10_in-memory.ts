/**
 * @title An in-memory supervisor: static and dynamic workers, latches, a crash restart, a terminate
 *
 * A whole supervisor in one process, with no database: the postmaster's life cycle seen from the outside.
 *
 * - Static workers (`ticker`, `monitor`) are registered in a preload, as a library in
 *   `shared_preload_libraries` does in `_PG_init`.
 * - A registrant (`session`, a plain fiber standing for a SQL session calling `worker_spi_launch`) then
 *   registers dynamic workers with `Supervisor.register` and drives the scenario:
 *   1. it sets the latch of `napper`, which naps for a minute, and wakes it at once (`SetLatch`);
 *   2. `flaky`, a worker with shared-state access, dies with a defect in the first shared-memory generation:
 *      that is a crash, so every worker is interrupted, the shared counters are created afresh, and every
 *      restartable worker comes back (`restart_after_crash`);
 *   3. it terminates `sampler` and waits until it has stopped (`TerminateBackgroundWorker` +
 *      `WaitForBackgroundWorkerShutdown`).
 * - `monitor` prints the activity view (`pg_stat_activity`) every three seconds.
 * - Ctrl-C (SIGINT) or SIGTERM is a fast shutdown: every worker's finalizer runs and the process exits with
 *   code 130. `kill -HUP <pid>` asks every worker to reload; `ticker` and `napper` log that they saw it.
 *
 * Run: `npm run example:memory`, stop with Ctrl-C. With `EXAMPLE_EXIT_AFTER_MS=8000` the session shuts the
 * supervisor down by itself after eight seconds (never before its scenario is done, about four) and the
 * process exits with code 0.
 *
 * PostgreSQL: src/test/modules/worker_spi (the worker loop), src/backend/postmaster/bgworker.c (registration,
 * handles) and postmaster.c (crash restart, shutdown).
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Activity from "../src/Activity.ts"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import * as Interrupts from "../src/Interrupts.ts"
import { NodeSupervisor } from "../src/node/index.ts"
import * as Preload from "../src/Preload.ts"
import * as ProcLatch from "../src/ProcLatch.ts"
import * as Shmem from "../src/Shmem.ts"
import * as Supervisor from "../src/Supervisor.ts"

// --- Shared state ---

/**
 * Counters shared by the shmem workers (`ShmemInitStruct`). Created before any worker starts, and created
 * afresh, starting from zero, after every crash restart: its release logs when a generation is discarded.
 */
const Counters = Shmem.struct(
  "demo.counters",
  Effect.acquireRelease(
    Effect.sync(() => ({ ticks: 0 })),
    (counters) => Effect.logInfo(`shared counters discarded at ticks=${counters.ticks}`)
  ).pipe(Effect.tap(() => Effect.logInfo("shared counters created")), Effect.annotateLogs({ worker: "shmem" }))
)

// --- Workers ---

/** Logs when the current incarnation ends, whatever ended it: the finalizers run on every kind of stop. */
const logOnStop = Effect.gen(function*() {
  const me = yield* BackgroundWorker.current
  yield* Effect.addFinalizer((exit) =>
    Effect.logInfo(`finalizer ran (pid ${me.pid}, ${exit._tag === "Success" ? "returned" : "stopped"})`)
  )
})

/** A static worker in worker_spi's shape: nap on the latch, reset it, handle a reload, do one unit of work. */
const Ticker = BackgroundWorker.make({
  name: "ticker",
  shmem: true,
  restart: BackgroundWorker.restartAfter("1 second"),
  main: () =>
    Effect.gen(function*() {
      yield* logOnStop
      const counters = yield* Shmem.get(Counters)
      yield* Effect.logInfo(`started in shared-memory generation ${yield* Shmem.generation}`)
      while (true) {
        yield* Activity.report("idle")
        yield* ProcLatch.wait({ timeout: "1 second", onPostmasterDeath: "exit", waitEvent: "TickerNap" })
        yield* ProcLatch.reset
        if (yield* Interrupts.reloadPending) yield* Effect.logInfo("reload requested (SIGHUP): re-reading settings")
        yield* Activity.report("active", "UPDATE demo.counters SET ticks = ticks + 1")
        counters.ticks++
        if (counters.ticks % 5 === 0) yield* Effect.logInfo(`ticks=${counters.ticks}`)
      }
    })
})

/** A static worker that reads the activity view, as a monitoring extension would query `pg_stat_activity`. */
const Monitor = BackgroundWorker.make({
  name: "monitor",
  restart: BackgroundWorker.restartAfter("1 second"),
  main: () =>
    Effect.gen(function*() {
      yield* ProcLatch.wait({ timeout: "1 second", onPostmasterDeath: "exit", waitEvent: "MonitorNap" })
      while (true) {
        yield* ProcLatch.reset
        yield* Activity.report("active", "SELECT * FROM pg_stat_activity")
        const rows = yield* Activity.snapshot
        const now = yield* Clock.currentTimeMillis
        yield* Effect.logInfo(`activity view (${rows.length} registrations)\n${Activity.formatTable(rows, now)}`)
        yield* Activity.report("idle")
        yield* ProcLatch.wait({ timeout: "3 seconds", onPostmasterDeath: "exit", waitEvent: "MonitorNap" })
      }
    })
})

/** A dynamic worker that naps for `napSeconds` unless its latch is set: the registrant wakes it early. */
const Napper = BackgroundWorker.make({
  name: "napper",
  restart: BackgroundWorker.restartAfter("1 second"),
  argument: Schema.Number,
  main: (napSeconds) =>
    Effect.gen(function*() {
      yield* logOnStop
      while (true) {
        yield* Activity.report("idle")
        const start = yield* Clock.currentTimeMillis
        const woke = yield* ProcLatch.wait({
          timeout: `${napSeconds} seconds`,
          onPostmasterDeath: "exit",
          waitEvent: "NapperNap"
        })
        yield* ProcLatch.reset
        const slept = (yield* Clock.currentTimeMillis) - start
        if (yield* Interrupts.reloadPending) yield* Effect.logInfo("reload requested (SIGHUP)")
        else if (woke.latchSet) {
          yield* Effect.logInfo(`woken early by its latch after ${slept} ms of a ${napSeconds} s nap`)
        } else yield* Effect.logInfo(`slept the whole ${napSeconds} s`)
      }
    })
})

/**
 * A dynamic worker with shared-state access that finds the shared counters "corrupt" in the first
 * generation and dies with a defect: a crash. After the crash restart the generation is new and it runs.
 */
const Flaky = BackgroundWorker.make({
  name: "flaky",
  shmem: true,
  restart: BackgroundWorker.restartAfter("1 second"),
  main: () =>
    Effect.gen(function*() {
      yield* logOnStop
      const generation = yield* Shmem.generation
      const counters = yield* Shmem.get(Counters)
      yield* Activity.report("active", "SELECT check_counters()")
      yield* ProcLatch.wait({ timeout: "1 second", onPostmasterDeath: "exit", waitEvent: "FlakyCheck" })
      if (generation === 0) {
        return yield* Effect.die(new Error(`shared counters look corrupt at ticks=${counters.ticks} (simulated)`))
      }
      yield* Effect.logInfo(`shared counters are consistent in generation ${generation} (ticks=${counters.ticks})`)
      while (true) {
        yield* Activity.report("idle")
        yield* ProcLatch.wait({ onPostmasterDeath: "exit", waitEvent: "FlakyIdle" })
        yield* ProcLatch.reset
        yield* Interrupts.reloadPending
      }
    })
})

/** A dynamic worker that the registrant terminates: it ends at its next wait, and its finalizer runs. */
const Sampler = BackgroundWorker.make({
  name: "sampler",
  restart: BackgroundWorker.restartAfter("1 second"),
  main: () =>
    Effect.gen(function*() {
      yield* logOnStop
      let samples = 0
      while (true) {
        yield* Activity.report("active", `INSERT INTO demo.samples VALUES (${++samples})`)
        yield* Activity.report("idle")
        yield* ProcLatch.wait({ timeout: "500 millis", onPostmasterDeath: "exit", waitEvent: "SamplerNap" })
        yield* ProcLatch.reset
      }
    })
})

// --- The supervisor ---

/** `_PG_init` of a preloaded library: the static registrations. */
const preload = Effect.gen(function*() {
  yield* Preload.register(Ticker)
  yield* Preload.register(Monitor)
})

/** A client session: registers the dynamic workers and drives the scenario. Not a worker itself. */
const session = Effect.gen(function*() {
  const napper = yield* Supervisor.register(Napper, 60)
  yield* Supervisor.register(Flaky)
  const sampler = yield* Supervisor.register(Sampler)
  yield* Effect.logInfo("registered napper, flaky and sampler")

  yield* Effect.sleep("1500 millis")
  yield* Effect.logInfo("setting napper's latch")
  yield* Supervisor.setLatch(napper)

  yield* Effect.sleep("2500 millis")
  yield* Effect.logInfo("terminating sampler")
  yield* Supervisor.terminate(sampler)
  const status = yield* Supervisor.awaitShutdown(sampler)
  yield* Effect.logInfo(`sampler is ${status._tag}; its slot is free again`)

  const exitAfter = Number(process.env["EXAMPLE_EXIT_AFTER_MS"] ?? "")
  if (Number.isFinite(exitAfter) && exitAfter > 0) {
    yield* Effect.sleep(Math.max(0, exitAfter - 4000))
    yield* Effect.logInfo(`EXAMPLE_EXIT_AFTER_MS=${exitAfter} reached: shutting down`)
    yield* Supervisor.shutdown("fast")
  } else {
    yield* Effect.logInfo("scenario done; the workers keep running until Ctrl-C (SIGINT) or SIGTERM")
  }
}).pipe(
  Effect.tapCause((cause) => Effect.logError("session failed", cause)),
  Effect.annotateLogs({ worker: "session" })
)

// --- The program ---

const supervisor = Supervisor.layer({
  maxWorkerProcesses: 8,
  shutdownTimeout: "3 seconds",
  preload: [preload],
  shmem: [Counters]
})

const app = Layer.effectDiscard(Effect.forkScoped(session)).pipe(Layer.provideMerge(supervisor))

// runMain logs with NodeLogger: each worker's lines carry its name, type and pid (BGWORKER_LOG_FORMAT=json).
NodeSupervisor.runMain(app)
