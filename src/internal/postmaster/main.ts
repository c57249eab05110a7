/**
 * The supervisor's start sequence (`PostmasterMain`), in order:
 *
 * 1. Read the settings: the options, else the GUC registry's parameters (`max_worker_processes` at start,
 *    `restart_after_crash` and `shutdown_timeout` live), else the defaults.
 * 2. Check the entry points (`bgw_library_name` + `bgw_function_name`) and that a database entry point has
 *    a connector.
 * 3. Create the postmaster; the scope's close is its death.
 * 4. Run every preload (`_PG_init` under `shared_preload_libraries`), collecting static registrations, then
 *    register them in order.
 * 5. Preloading is over: postmaster-context parameters are frozen.
 * 6. Create the listed shared state (`CreateSharedMemoryAndSemaphores`).
 * 7. Follow the database's state (the start gates) and its loss.
 * 8. `PM_RUN`: start every worker whose gate is open.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as BackgroundWorker from "../../BackgroundWorker.ts"
import * as DatabaseState from "../../DatabaseState.ts"
import * as Guc from "../../Guc.ts"
import type { Options, SupervisorApi } from "../../Supervisor.ts"
import * as Errors from "../../SupervisorError.ts"
import { Preload } from "../context.ts"
import { markStarted } from "../gucRegistry.ts"
import { Postmaster } from "./postmaster.ts"
import * as Registration from "./registration.ts"

/** The largest `max_worker_processes` PostgreSQL accepts (`MAX_BACKENDS`). */
const maxWorkerProcessesLimit = 262_143

/** Builds a supervisor in the current scope: see `Supervisor.make`. */
export const make: <E = never, R = never>(
  options?: Options<E, R>
) => Effect.Effect<SupervisorApi, E | Errors.SupervisorError, Exclude<R, Preload> | Scope.Scope> = Effect.fnUntraced(
  function*<E, R>(options: Options<E, R> = {}) {
    // 1. With a GUC registry, its parameters are the defaults: max_worker_processes at start, the others live.
    const gucs = yield* Effect.serviceOption(Guc.Gucs)
    const settings = { restartAfterCrash: true, shutdownTimeoutMs: 5000 }
    if (gucs._tag === "Some") {
      const read = (snapshot: Guc.Snapshot) => {
        settings.restartAfterCrash = snapshot.get(Guc.restartAfterCrash)
        settings.shutdownTimeoutMs = snapshot.get(Guc.shutdownTimeout)
      }
      read(yield* gucs.value.snapshot)
      yield* gucs.value.changes.pipe(
        Stream.runForEach((snapshot) => Effect.sync(() => read(snapshot))),
        Effect.forkScoped
      )
    }
    const maxWorkerProcesses = options.maxWorkerProcesses ??
      (gucs._tag === "Some" ? yield* gucs.value.get(Guc.maxWorkerProcesses) : 8)
    if (
      !Number.isInteger(maxWorkerProcesses) || maxWorkerProcesses < 0 || maxWorkerProcesses > maxWorkerProcessesLimit
    ) {
      return yield* Errors.fail(
        new Errors.InvalidDefinition({
          worker: "supervisor",
          field: "maxWorkerProcesses",
          detail: `${maxWorkerProcesses} is outside the valid range for parameter "max_worker_processes" ` +
            `(0 .. ${maxWorkerProcessesLimit})`
        })
      )
    }
    const fixedShutdown = options.shutdownTimeout === undefined
      ? undefined
      : Duration.fromInputUnsafe(options.shutdownTimeout)
    const shutdownTimeout = () => fixedShutdown ?? Duration.millis(settings.shutdownTimeoutMs)
    const fixedTerminate = options.terminateTimeout === undefined
      ? undefined
      : Duration.fromInputUnsafe(options.terminateTimeout)
    const fixedAbandon = options.abandonTimeout === undefined
      ? undefined
      : Duration.fromInputUnsafe(options.abandonTimeout)

    // 2. The entry points, each checked, once each.
    const entryPoints = yield* checkEntryPoints(options.entryPoints ?? [])
    const context = yield* Effect.context<never>()
    // An entry point that asks for a session can only be launched with a connector in the supervisor's context.
    for (const worker of entryPoints.values()) {
      const missing = Registration.noConnector(worker, context)
      if (missing !== undefined) return yield* Errors.fail(missing)
    }

    // 3. The postmaster; closing the scope is its death.
    const postmaster = new Postmaster({
      maxWorkerProcesses,
      restartAfterCrash: () => options.restartAfterCrash ?? settings.restartAfterCrash,
      shutdownTimeout,
      terminateTimeout: () => fixedTerminate ?? shutdownTimeout(),
      abandonTimeout: () => fixedAbandon ?? shutdownTimeout(),
      beforeReload: gucs._tag === "Some" ? Effect.asVoid(gucs.value.reload) : Effect.void,
      entryPoints,
      shmem: options.shmem ?? [],
      metrics: options.metrics ?? true,
      tracing: options.tracing ?? true
    }, context)
    yield* Effect.addFinalizer(() =>
      Effect.ensuring(postmaster.die(), Effect.sync(() => postmaster.metrics?.unregister()))
    )

    // 4. _PG_init of every preloaded library, then the static registrations in order.
    const pending: Array<Registration.StaticRegistration> = []
    const preload = Preload.of(Registration.preloadApi(pending))
    for (const init of options.preload ?? []) {
      yield* Effect.provideService(init, Preload, preload)
    }
    yield* Registration.registerStatic(postmaster, pending)

    // 5. Preloading is over: from now on a postmaster-context parameter can no longer be defined.
    if (gucs._tag === "Some") markStarted(gucs.value)

    // 6. Shared state listed in the options exists before any worker starts.
    yield* postmaster.sharedState.initialize()

    // 7. The start gates follow the database's state; a database gone for good ends the supervisor.
    const database = yield* Effect.serviceOption(DatabaseState.DatabaseState)
    if (database._tag === "Some") {
      postmaster.databaseState = yield* database.value.get
      yield* database.value.changes.pipe(
        Stream.runForEach((state) => Effect.sync(() => postmaster.setDatabaseState(state))),
        Effect.forkScoped
      )
      const lost = database.value.lost
      if (lost !== undefined) {
        yield* lost.pipe(
          Effect.flatMap((detail) =>
            postmaster.die(Errors.fail(
              new Errors.DatabaseLost({
                detail,
                hint: "Every worker was stopped with it. Start the program again; a server given by " +
                  "DATABASE_URL is not owned by the program, and its outages are waited out instead."
              })
            ))
          ),
          Effect.forkScoped
        )
      }
    }

    // 8. PM_RUN.
    postmaster.enterRunning()
    return postmaster
  }
)

/** Checks every entry point and indexes it by `library.function`; the first problem fails the start. */
const checkEntryPoints = (
  workers: ReadonlyArray<BackgroundWorker.Any>
): Effect.Effect<Map<string, BackgroundWorker.Any>, Errors.SupervisorError> =>
  Effect.suspend(() => {
    const entryPoints = new Map<string, BackgroundWorker.Any>()
    for (const worker of workers) {
      const problem = BackgroundWorker.check(worker) ??
        (worker.entryPoint === undefined
          ? new Errors.InvalidDefinition({ worker: worker.name, field: "entryPoint", detail: "missing" })
          : entryPoints.has(BackgroundWorker.entryPointKey(worker.entryPoint))
          ? new Errors.InvalidDefinition({
            worker: worker.name,
            field: "entryPoint",
            detail: `"${BackgroundWorker.entryPointKey(worker.entryPoint)}" is registered twice`
          })
          : undefined)
      if (problem !== undefined) return Effect.fail(Errors.fail(problem))
      entryPoints.set(BackgroundWorker.entryPointKey(worker.entryPoint!), worker)
    }
    return Effect.succeed(entryPoints)
  })
