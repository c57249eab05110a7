/**
 * Shared pieces for the unit tests: worker bodies, a log capture, and waits for an observable condition (a status,
 * a wait event, a registration, the supervisor's state) instead of a number of scheduler turns.
 */
import { Effect, Layer, Logger, References } from "effect"
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Activity from "../src/Activity.ts"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import { liveFibers } from "../src/internal/postmaster/postmaster.ts"
import * as ProcLatch from "../src/ProcLatch.ts"
import * as Supervisor from "../src/Supervisor.ts"
import type { SupervisorError } from "../src/SupervisorError.ts"
import type { WorkerHandle, WorkerStatus } from "../src/WorkerHandle.ts"
import * as Handle from "../src/WorkerHandle.ts"

/**
 * Waits until `condition` holds: polls it, letting the other fibers run between polls, without the clock (so it
 * works on the `TestClock`, which never advances by itself). The test then waits for what it expects, never for a
 * number of scheduler turns; `maxPolls` only bounds a wait that would otherwise hang, and a test that reaches it
 * fails naming `what`.
 */
export const eventually = <E, R>(
  what: string,
  condition: Effect.Effect<boolean, E, R>,
  maxPolls = 10_000
): Effect.Effect<void, E, R> =>
  Effect.gen(function*() {
    for (let polls = 0; polls < maxPolls; polls++) {
      if (yield* condition) return
      yield* Effect.yieldNow
    }
    return yield* Effect.die(new Error(`still waiting until ${what} after ${maxPolls} polls`))
  })

/** Waits until the handle's status satisfies `predicate` (`Supervisor.status`, polled). */
export const untilStatus = (
  h: WorkerHandle,
  what: string,
  predicate: (status: WorkerStatus) => boolean
): Effect.Effect<void, never, Supervisor.Supervisor> =>
  eventually(`${Handle.format(h)} ${what}`, Effect.map(Supervisor.status(h), predicate))

/** Waits until the worker runs and sits in a named wait (its activity row shows a wait event, e.g. `TestNap`). */
export const untilWaiting = (h: WorkerHandle): Effect.Effect<void, never, Supervisor.Supervisor> =>
  eventually(
    `${Handle.format(h)} waits on its latch`,
    Effect.map(Supervisor.info(h), (row) => row._tag === "Some" && row.value.waitEvent !== null)
  )

/** Waits until every running worker sits in a named wait (nothing left to run until a latch, signal or the clock). */
export const untilQuiet: Effect.Effect<void, never, Supervisor.Supervisor> = eventually(
  "every running worker waits on its latch",
  Effect.map(
    Supervisor.Supervisor.use((s) => s.activity),
    (rows) => rows.every((r) => r.registration !== "running" || r.waitEvent !== null)
  )
)

/**
 * Waits until the handle's activity row is in one of `registrations` (and, if given, shows `restartCount`
 * restarts): e.g. a failed restartable worker is `"waiting for restart"`.
 */
export const untilRegistration = (
  h: WorkerHandle,
  registrations: Activity.Registration | ReadonlyArray<Activity.Registration>,
  restartCount?: number
): Effect.Effect<void, never, Supervisor.Supervisor> => {
  const wanted: ReadonlyArray<string> = typeof registrations === "string" ? [registrations] : registrations
  return eventually(
    `${Handle.format(h)} is ${wanted.join(" or ")}${
      restartCount === undefined ? "" : ` after ${restartCount} restart(s)`
    }`,
    Effect.map(Supervisor.info(h), (row) =>
      row._tag === "Some" && wanted.includes(row.value.registration) &&
      (restartCount === undefined || row.value.restartCount === restartCount))
  )
}

/** Waits until the supervisor is in `state`. */
export const untilState = (state: Supervisor.SupervisorState): Effect.Effect<void, never, Supervisor.Supervisor> =>
  eventually(`the supervisor is ${state}`, Effect.map(Supervisor.state, (s) => s === state))

/** Waits until the incarnation `pid` has ended: the status is no longer `Started(pid)`. */
export const untilEnded = (h: WorkerHandle, pid: number): Effect.Effect<void, never, Supervisor.Supervisor> =>
  untilStatus(h, `ends pid ${pid}`, (s) => s._tag !== "Started" || s.pid !== pid)

/** A worker loop that naps on its latch forever (worker_spi's shape without the work). */
export const napForever = (timeout?: Duration.Input) =>
  Effect.gen(function*() {
    while (true) {
      yield* ProcLatch.wait({ timeout, onPostmasterDeath: "exit", waitEvent: "TestNap" })
      yield* ProcLatch.reset
    }
  })

/**
 * A supervisor for one test: provide it around the test body; the end of the test closes its scope. Once it
 * has closed (postmaster death), no worker or supervisor fiber may be left alive: the test then fails with
 * how many are (graphile-worker's leak check after each test).
 */
export const withSupervisor = (options: Supervisor.Options = {}) => Effect.provide(layerLeakChecked(options))

/**
 * `Supervisor.layer(options)` with the leak check of {@link withSupervisor}: for tests that build their own
 * layers around the supervisor.
 */
export const layerLeakChecked = (
  options: Supervisor.Options = {}
): Layer.Layer<Supervisor.Supervisor, SupervisorError> =>
  Layer.effect(
    Supervisor.Supervisor,
    Effect.gen(function*() {
      let supervisor: Supervisor.SupervisorApi | undefined
      // Added before the supervisor exists, so it runs after the supervisor's own finalizer (its death).
      yield* Effect.addFinalizer(() =>
        Effect.suspend(() => {
          const live = supervisor === undefined ? 0 : liveFibers(supervisor)
          return live === 0
            ? Effect.void
            : Effect.die(new Error(`leak: ${live} fiber(s) still alive after the supervisor's scope closed`))
        })
      )
      supervisor = yield* Supervisor.make(options)
      return supervisor
    })
  )

/** Worker and supervisor fibers still alive (see `liveFibers` in src/internal/postmaster/postmaster.ts). */
export const liveFibersOf: Effect.Effect<number, never, Supervisor.Supervisor> = Supervisor.Supervisor.useSync(
  liveFibers
)

/** Captures log lines as `"LEVEL message"` strings; provide `layer` outside the supervisor's layer. */
export const captureLogs = () => {
  const lines: Array<string> = []
  const logger = Logger.make((o) => {
    const message = Array.isArray(o.message) ? o.message.join(" ") : String(o.message)
    lines.push(`${o.logLevel.toUpperCase()} ${message}`)
  })
  const layer = Layer.mergeAll(
    Logger.layer([logger]),
    Layer.succeed(References.MinimumLogLevel, "Debug")
  )
  return { lines, layer }
}

/** The supervisor service itself. */
export const supervisorService: Effect.Effect<Supervisor.SupervisorApi, never, Supervisor.Supervisor> = Supervisor
  .Supervisor.useSync((s) => s)

export type Ctx = Context.Context<never>

/**
 * A worker that does what its latch-driven command says: the test sets `command.current`, then the latch
 * (see {@link tell}). `starts` collects the pid of each incarnation.
 */
export const commanded = (name: string, options: {
  restart?: BackgroundWorker.RestartPolicy
  shmem?: boolean
  command: { current: "nap" | "return" | "fail" | "die" }
  starts?: Array<number>
}) =>
  BackgroundWorker.make({
    name,
    restart: options.restart,
    shmem: options.shmem ?? false,
    main: () =>
      Effect.gen(function*() {
        const me = yield* BackgroundWorker.current
        options.starts?.push(me.pid)
        while (true) {
          yield* ProcLatch.wait({ onPostmasterDeath: "exit", waitEvent: "TestCommand" })
          yield* ProcLatch.reset
          const command = options.command.current
          if (command === "return") return
          if (command === "fail") return yield* Effect.fail(new Error("boom"))
          if (command === "die") return yield* Effect.die(new Error("segfault"))
        }
      })
  })

/** Sets a {@link commanded} worker's command, wakes it, and waits until it acted (every command ends the incarnation). */
export const tell = (h: WorkerHandle, command: { current: string }, what: string) =>
  Effect.gen(function*() {
    const before = yield* Supervisor.status(h)
    command.current = what
    yield* Supervisor.setLatch(h)
    if (before._tag === "Started") yield* untilEnded(h, before.pid)
  })
