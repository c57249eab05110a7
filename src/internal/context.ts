/**
 * The service keys shared by the public modules. They live here, not in the modules that document them,
 * so that the internals can use them without import cycles; each public module re-exports its own.
 *
 * @internal
 */
import * as Context from "effect/Context"
import type * as BackgroundWorker from "../BackgroundWorker.ts"
import type * as Preload_ from "../Preload.ts"
import type * as Shmem_ from "../Shmem.ts"
import type * as Supervisor_ from "../Supervisor.ts"

/**
 * The running worker's view of itself (`MyBgworkerEntry`, `MyProcPid`, `MyLatch`). Provided by the
 * supervisor inside every worker; it does not exist anywhere else.
 *
 * @category services
 * @since 0.1.0
 */
export class CurrentWorker extends Context.Service<CurrentWorker, BackgroundWorker.WorkerInfo>()(
  "effect-bgworker/CurrentWorker"
) {}

/**
 * The supervisor: the postmaster analogue.
 *
 * @category services
 * @since 0.1.0
 */
export class Supervisor extends Context.Service<Supervisor, Supervisor_.SupervisorApi>()(
  "effect-bgworker/Supervisor"
) {}

/**
 * Shared state, available only to workers declared with `shmem: true`.
 *
 * @category services
 * @since 0.1.0
 */
export class Shmem extends Context.Service<Shmem, Shmem_.ShmemApi>()("effect-bgworker/Shmem") {}

/**
 * Static registration, available only while a preload runs (`_PG_init` under
 * `shared_preload_libraries`).
 *
 * @category services
 * @since 0.1.0
 */
export class Preload extends Context.Service<Preload, Preload_.PreloadApi>()("effect-bgworker/Preload") {}
