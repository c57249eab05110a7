/**
 * Shared pieces for the unit tests: worker bodies, a log capture, and a way to let started fibers run.
 */
import { Effect, Layer, Logger, References } from "effect"
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import * as ProcLatch from "../src/ProcLatch.ts"
import type { WorkerHandle } from "../src/WorkerHandle.ts"
import * as Supervisor from "../src/Supervisor.ts"

/** Lets freshly started workers run to their first wait (workers start after one `yieldNow`). */
export const settle: Effect.Effect<void> = Effect.yieldNow.pipe(Effect.repeat({ times: 20 }))

/** A worker loop that naps on its latch forever (worker_spi's shape without the work). */
export const napForever = (timeout?: Duration.Input) =>
  Effect.gen(function*() {
    while (true) {
      yield* ProcLatch.wait({ timeout, onPostmasterDeath: "exit", waitEvent: "TestNap" })
      yield* ProcLatch.reset
    }
  })

/** A supervisor for one test: provide it around the test body; the end of the test closes its scope. */
export const withSupervisor = (options: Supervisor.Options = {}) => Effect.provide(Supervisor.layer(options))

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

/** The supervisor service itself (for `liveFibers`). */
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
          yield* ProcLatch.wait({ onPostmasterDeath: "exit" })
          yield* ProcLatch.reset
          const command = options.command.current
          if (command === "return") return
          if (command === "fail") return yield* Effect.fail(new Error("boom"))
          if (command === "die") return yield* Effect.die(new Error("segfault"))
        }
      })
  })

/** Sets a {@link commanded} worker's command, wakes it, and lets it act. */
export const tell = (h: WorkerHandle, command: { current: string }, what: string) =>
  Effect.gen(function*() {
    command.current = what
    yield* Supervisor.setLatch(h)
    yield* settle
  })

