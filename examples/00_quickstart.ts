/**
 * @title Quick start: one static worker that naps on its latch, counts, and reloads on SIGHUP
 *
 * The README's quick start, kept here so that it type-checks and runs: `npm run example:quickstart`.
 * Ctrl-C (SIGINT) or SIGTERM stops it cleanly; `kill -HUP <pid>` makes the worker log a reload request.
 */
import { Effect, Schema } from "effect"
import { BackgroundWorker, Interrupts, Preload, ProcLatch, Supervisor } from "effect-bgworker"
import { NodeSupervisor } from "effect-bgworker/node"

const counter = BackgroundWorker.make({
  name: "counter",
  argument: Schema.Number, // bgw_main_arg, typed
  restart: BackgroundWorker.restartAfter("5 seconds"), // bgw_restart_time
  main: (every) =>
    Effect.gen(function*() {
      for (let n = 0;; n++) {
        yield* ProcLatch.wait({ timeout: `${every} seconds`, onPostmasterDeath: "exit", waitEvent: "CounterMain" })
        yield* ProcLatch.reset
        if (yield* Interrupts.reloadPending) yield* Effect.log("reload requested")
        yield* Effect.log(`count is now ${n}`)
      }
    })
})

const App = Supervisor.layer({ maxWorkerProcesses: 8, preload: [Preload.register(counter, 2)] })

NodeSupervisor.runMain(App) // SIGHUP: reload; SIGINT/SIGTERM: fast shutdown, finalizers run
