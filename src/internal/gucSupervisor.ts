/**
 * The supervisor's own parameters, which every registry defines when it is built (PostgreSQL's built-in
 * `max_worker_processes`, `restart_after_crash` and a shutdown timeout in guc_tables.c).
 *
 * They live here, apart from `Guc.ts`, so that the supervisor can read them and the registry can define them
 * without either importing the other's public module; `Guc.ts` re-exports them as `Guc.maxWorkerProcesses`,
 * `Guc.restartAfterCrash` and `Guc.shutdownTimeout`.
 *
 * @internal
 */
import type * as Guc from "../Guc.ts"
import * as parameter from "./gucParameter.ts"

/** `max_worker_processes`: how many workers may run at once; read at start (`postmaster`). */
export const maxWorkerProcesses: Guc.Parameter<number> = parameter.make("max_worker_processes", "integer", {
  context: "postmaster",
  description: "Maximum number of concurrent worker processes.",
  default: 8
}, { min: 0, max: 262_143 })

/** `restart_after_crash`: whether a worker's crash restarts the others (`sighup`). */
export const restartAfterCrash: Guc.Parameter<boolean> = parameter.make("restart_after_crash", "bool", {
  context: "sighup",
  description: "Reinitialize server after backend crash.",
  default: true
}, {})

/** `shutdown_timeout`: how long a shutdown waits for workers before interrupting them (`sighup`, in ms). */
export const shutdownTimeout: Guc.Parameter<number> = parameter.make("shutdown_timeout", "integer", {
  context: "sighup",
  description: "Time a shutdown waits for workers before interrupting them by force.",
  default: 5000
}, { min: 0, max: 2_147_483_647, unit: "ms" })

/** All three, in the order the registry defines them. */
export const all: ReadonlyArray<Guc.Any> = [maxWorkerProcesses, restartAfterCrash, shutdownTimeout]
