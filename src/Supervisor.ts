/**
 * The supervisor: the postmaster analogue. It owns `maxWorkerProcesses` slots, starts workers when their
 * start gate opens, decides what happens when one ends, and stops them all.
 *
 * PostgreSQL: src/backend/postmaster/bgworker.c and postmaster.c (`RegisterDynamicBackgroundWorker`,
 * `GetBackgroundWorkerPid`, `WaitForBackgroundWorkerStartup/Shutdown`, `TerminateBackgroundWorker`,
 * `CleanupBackgroundWorker`, `HandleChildCrash`, the shutdown modes).
 *
 * **Lifecycle rules (PostgreSQL's, kept)**
 *
 * - A worker that returns is done: forgotten, never restarted.
 * - A typed failure, a terminate signal, or a failed start is a failure: restarted when its `restart`
 *   schedule says so, forgotten if it is `"never"`. A restartable worker waiting for its restart keeps its
 *   slot and its handle reports `Stopped`.
 * - A defect in a worker declared with `shmem: true` is a crash: every worker is interrupted, shared state is
 *   created afresh, restartable workers come back at once (their schedules start over) and never-restart
 *   ones are forgotten. With `restartAfterCrash: false` the supervisor ends instead (`awaitTermination`
 *   fails).
 * - `terminate` unregisters whatever the exit; `signal(handle, "terminate")` (`pg_terminate_backend`) only
 *   ends the current incarnation, so the restart policy applies.
 * - No restart happens during shutdown.
 * - A crash (a defect in a `shmem: true` worker) during a smart or fast shutdown follows PostgreSQL's rule
 *   for siblings (`HandleChildCrash` once `Shutdown > NoShutdown`): every other worker is interrupted at once
 *   instead of finishing its cycle, nothing is re-created or restarted, and once they have ended the
 *   supervisor logs `abnormal database system shutdown` and ends: `awaitTermination` fails with
 *   `SupervisorCrashed` (its `shutdown` field says which mode; `NodeSupervisor.runMain` exits with code 1),
 *   `shutdown` returns, and handles report `PostmasterDied`. This holds whatever `restartAfterCrash` says,
 *   as in PostgreSQL. During an immediate shutdown a crash changes nothing.
 * - Waits are bounded where PostgreSQL sends SIGKILL (`SIGKILL_CHILDREN_AFTER_SECS`, 5 seconds): after a
 *   crash restart's interruption, after a shutdown's forced interruption, and at postmaster death, a worker
 *   whose finalizers have not finished within `abandonTimeout` is abandoned (see {@link Options}); so are a
 *   shared-state struct's finalizers. A crash restart always completes, and so does the scope's close.
 * - Shared state that cannot be re-created after a crash restart (its initialiser dies, or takes longer than
 *   `abandonTimeout`) ends the supervisor, as a failed shared-memory re-initialisation is FATAL to the
 *   postmaster: `awaitTermination` fails with a `SupervisorError` whose reason is `ShmemInitFailed`. At start
 *   the same failure fails the layer.
 *
 * **Waiters and transitions**
 *
 * Status waiters (`awaitStartup`, `awaitShutdown`, `changes`), activity streams, `shutdown` and
 * `awaitTermination` are resumed only once the supervisor's state change is complete: a waiter that hears of
 * a crash and registers a replacement finds the crash restart recorded (its replacement starts when the
 * recovery is over); one that hears of a start finds the worker's fiber recorded (it may terminate it or
 * shut down at once). PostgreSQL gives the same guarantee by handling one signal at a time in the
 * postmaster's loop.
 *
 * **Deliberate differences**
 *
 * - A defect in a worker *without* shared-state access ends that worker alone, as failed. It cannot have
 *   corrupted anything shared, and restarting every worker for it is what PostgreSQL's users complain
 *   about.
 * - Restart schedules can back off, jitter, be capped, reset after a stable run, and give up after an OTP
 *   restart intensity; a given-up worker keeps its slot and shows `given up` with its last error until it is
 *   terminated.
 * - Registration during shutdown fails with `ShuttingDown` (PostgreSQL returns true, then never runs the
 *   worker).
 * - Postmaster death (the close of the supervisor's scope) interrupts workers that are not waiting, instead
 *   of orphaning them.
 * - Where PostgreSQL would SIGKILL a process, a fiber cannot be killed: a worker whose finalizer never ends
 *   is abandoned instead, still running, and logged by name. Whatever its finalizer holds stays held.
 * - There is no per-pass launch cap (`MAX_BGWORKERS_TO_LAUNCH`): a start is a fiber fork that runs up to the
 *   worker's first suspension, so starting many workers never holds up other supervisor work.
 *
 * @since 0.1.0
 */
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { ActivityEvent, ActivityRow, LastExit, WaitEventInfo } from "./Activity.ts"
import type * as BackgroundWorker from "./BackgroundWorker.ts"
import { type Preload, Supervisor } from "./internal/context.ts"
import * as main from "./internal/postmaster/main.ts"
import * as restart from "./internal/postmaster/restart.ts"
import type { ShmemStruct } from "./Shmem.ts"
import * as Errors from "./SupervisorError.ts"
import type { WorkerConnector } from "./WorkerConnector.ts"
import type { WorkerHandle, WorkerStatus } from "./WorkerHandle.ts"

export { Supervisor } from "./internal/context.ts"

/**
 * @category errors
 * @since 0.1.0
 */
export const SupervisorCrashed = restart.CrashedError

/**
 * @category errors
 * @since 0.1.0
 */
export type SupervisorCrashed = restart.CrashedError

/**
 * Whether `u` is a {@link SupervisorCrashed}.
 *
 * @category guards
 * @since 0.2.0
 */
export const isSupervisorCrashed: (u: unknown) => u is SupervisorCrashed = restart.isCrashedError

/**
 * `starting` (preloads run), `running`, `recovering` (crash restart in progress), a shutdown in progress
 * (`smart`, `fast`, `immediate`), `stopped` (shut down), `dead` (scope closed, or ended by a crash).
 *
 * @category models
 * @since 0.1.0
 */
export type SupervisorState = "starting" | "running" | "recovering" | ShutdownMode | "stopped" | "dead"

/**
 * - `smart`: refuse registrations, ask every worker to terminate (it ends at its next wait or check, so it
 *   finishes its current cycle), wait; after `shutdownTimeout`, interrupt the rest and wait up to
 *   `abandonTimeout` for them, then abandon the stragglers.
 * - `fast` (SIGTERM, SIGINT): as smart, and interrupt every worker at once (finalizers run); wait up to
 *   `shutdownTimeout`, then interrupt again and wait up to `abandonTimeout` before abandoning.
 * - `immediate`: interrupt every worker and return without waiting; the supervisor is `stopped` at once and
 *   `awaitTermination` completes. Unlike PostgreSQL's SIGQUIT, the workers' finalizers still run (Effect
 *   interruption always runs them); the scope's close waits for them up to `abandonTimeout`, as PostgreSQL
 *   waits 5 seconds before SIGKILL.
 *
 * All three cancel unstarted registrations (their waiters get `Stopped`) and restart nothing. A crash during
 * a smart or fast shutdown ends the supervisor with `SupervisorCrashed` (see the module doc).
 *
 * @category models
 * @since 0.1.0
 */
export type ShutdownMode = "smart" | "fast" | "immediate"

/**
 * What `signal` delivers: `"terminate"` (`pg_terminate_backend`), `"reload"` (SIGHUP to one worker).
 *
 * @category models
 * @since 0.1.0
 */
export type WorkerSignal = "terminate" | "reload"

/**
 * Launching by name (`bgw_library_name` + `bgw_function_name`), with an argument already in its encoded,
 * serialisable form (for example JSON from SQL).
 *
 * @category models
 * @since 0.1.0
 */
export interface LaunchRequest extends BackgroundWorker.EntryPointName {
  readonly argument?: unknown
  /** Overrides the entry point's name (`bgw_name`). */
  readonly name?: string | undefined
  readonly type?: string | undefined
  readonly restart?: BackgroundWorker.RestartPolicy | undefined
  readonly extra?: Uint8Array | undefined
  /**
   * PostgreSQL resolves the function inside the new worker: an unknown name is accepted at registration and
   * the start fails (exit 1, so the restart policy applies). `true` keeps that behaviour; by default an
   * unknown name or an argument that does not decode fails the launch and nothing is registered.
   */
  readonly resolveAtStart?: boolean | undefined
  /**
   * The role on whose behalf the worker is launched: set it whenever the request comes from outside this
   * program (SQL, HTTP, a CLI, another process). A database worker launched for a caller runs as a role the
   * caller could become itself (the caller's own role when the definition names none), on a database that
   * role may connect to; the `WorkerConnector` checks this before anything is registered, and the launch
   * fails with `PermissionDenied` otherwise. The resolved role and database are kept for every restart.
   * Without a caller the launch is trusted, like a registration from code.
   */
  readonly caller?: string | undefined
}

/**
 * The service's shape.
 *
 * @category models
 * @since 0.1.0
 */
export interface SupervisorApi {
  readonly maxWorkerProcesses: () => number
  register(
    worker: BackgroundWorker.Any,
    argument: unknown,
    options: { readonly extra?: Uint8Array | undefined } | undefined,
    context: Context.Context<never>
  ): Effect.Effect<WorkerHandle, Errors.SupervisorError>
  launch(request: LaunchRequest): Effect.Effect<WorkerHandle, Errors.SupervisorError>
  status(handle: WorkerHandle): Effect.Effect<WorkerStatus>
  info(handle: WorkerHandle): Effect.Effect<Option.Option<ActivityRow>>
  /**
   * How the registration's last incarnation ended, while it is registered and, once forgotten, for the
   * latest 1024 forgotten ones (what `could not start background process` can then name as its cause).
   */
  lastExit(handle: WorkerHandle): Effect.Effect<Option.Option<LastExit>>
  awaitStartup(handle: WorkerHandle): Effect.Effect<WorkerStatus>
  awaitShutdown(handle: WorkerHandle): Effect.Effect<WorkerStatus>
  changes(handle: WorkerHandle): Stream.Stream<WorkerStatus>
  terminate(handle: WorkerHandle): Effect.Effect<void>
  signal(handle: WorkerHandle, signal: WorkerSignal): Effect.Effect<void>
  setLatch(handle: WorkerHandle): Effect.Effect<void>
  readonly reload: Effect.Effect<void>
  shutdown(mode: ShutdownMode): Effect.Effect<void>
  readonly awaitTermination: Effect.Effect<void, Errors.SupervisorError | SupervisorCrashed>
  readonly currentState: Effect.Effect<SupervisorState>
  readonly activity: Effect.Effect<ReadonlyArray<ActivityRow>>
  readonly activityChanges: Stream.Stream<ActivityEvent>
  readonly waitEvents: Effect.Effect<ReadonlyArray<WaitEventInfo>>
}

/**
 * @category models
 * @since 0.1.0
 */
export interface Options<E = never, R = never> {
  /** Slots shared by static and dynamic workers (`max_worker_processes`). Default: the GUC, or 8. */
  readonly maxWorkerProcesses?: number | undefined
  /** `restart_after_crash`. Default: the GUC (read at each crash), or true. */
  readonly restartAfterCrash?: boolean | undefined
  /**
   * How long a shutdown waits before interrupting by force, and how long death waits. Default: the
   * `shutdown_timeout` GUC (read at each shutdown), or 5 seconds.
   */
  readonly shutdownTimeout?: Duration.Input | undefined
  /** How long a terminated worker may take to reach its next wait or check. Default `shutdownTimeout`. */
  readonly terminateTimeout?: Duration.Input | undefined
  /**
   * How long the supervisor waits for an interrupted worker to end (its finalizers to finish) before it
   * abandons it, and for a shared-state struct's finalizers or initialiser. Applies where PostgreSQL sends
   * SIGKILL (`SIGKILL_CHILDREN_AFTER_SECS`, 5 seconds): to a crash restart's interruption of every worker, to
   * a shutdown's forced interruption after `shutdownTimeout`, and to postmaster death (the scope's close).
   * Default `shutdownTimeout` (the `shutdown_timeout` GUC, read at each use, or 5 seconds).
   *
   * An abandoned worker is logged by name (`background worker "x" (PID n) did not end within 5s after ...;
   * abandoned`), its registration moves on (restarted after a crash restart if its schedule says so,
   * forgotten at shutdown), and its fiber is left to end whenever it does: Effect cannot kill a fiber whose
   * finalizer will not return, so whatever that finalizer holds stays held. It counts among the supervisor's live fibers
   * (the leak check of the tests) until it ends.
   *
   * @since 0.2.0
   */
  readonly abandonTimeout?: Duration.Input | undefined
  /** Run at start, before any worker: where static workers are registered (`shared_preload_libraries`). */
  readonly preload?: ReadonlyArray<Effect.Effect<void, E, R | Preload>> | undefined
  /** Workers that can be launched by `(library, function)`. Each needs an `entryPoint`. */
  readonly entryPoints?: ReadonlyArray<BackgroundWorker.BackgroundWorker<any, any, R>> | undefined
  /** Shared state created before any worker starts (and again after every crash restart). */
  readonly shmem?: ReadonlyArray<ShmemStruct<any>> | undefined
  /**
   * Whether the supervisor keeps metrics (`effect`'s `Metric`, in the `MetricRegistry` of the context
   * it is built in). Default `true`; `false` makes every update site a single `undefined` test (the
   * launch benchmark compares both). Read them with `Metric.snapshot`, serve them as Prometheus text with
   * `NodeSupervisor.layerMetrics`, or push them over OTLP with `NodeOtlp.layer()` (which
   * `NodeSupervisor.runMain` installs when `OTEL_EXPORTER_OTLP_ENDPOINT` is set). When the supervisor's scope closes its gauges leave the registry
   * and its counters and histograms stay, final, for an exporter's last flush; two supervisors sharing one
   * registry write the same series (the last one built wins).
   *
   * Every metric carries the label `worker_type` (the definition's `type`), except the slot gauges.
   * Prometheus names (counters get `_total`, histograms `_bucket`/`_sum`/`_count`):
   *
   * | name | type | labels | meaning | PostgreSQL analogue |
   * |---|---|---|---|---|
   * | `bgworker_starts` | counter | `worker_type` | incarnations started | `do_start_bgworker` calls |
   * | `bgworker_exits` | counter | `worker_type`, `outcome` = `done` \| `failed` \| `crashed` \| `killed` \| `abandoned` | how incarnations ended (`IncarnationEnd`) | `CleanupBackgroundWorker`'s exit status test |
   * | `bgworker_restarts` | counter | `worker_type` | restarts (after an exit or a crash restart) | `bgw_restart_time` restarts |
   * | `bgworker_crash_restarts` | counter | `worker_type` (of the crashed worker) | crash restarts of every worker | `HandleChildCrash` with `restart_after_crash` |
   * | `bgworker_give_ups` | counter | `worker_type` | registrations given up by their restart policy | — |
   * | `bgworker_launches_accepted` | counter | `worker_type` | `register` / `launch` calls accepted | `RegisterDynamicBackgroundWorker` returning true |
   * | `bgworker_launches_refused` | counter | `worker_type`, `reason` (a `SupervisorError` reason tag, e.g. `NoFreeSlot`) | `register` / `launch` calls refused | `RegisterDynamicBackgroundWorker` returning false |
   * | `bgworker_slots_used` | gauge | — | slots in use | `BackgroundWorkerData->total_slots` in use |
   * | `bgworker_slots_free` | gauge | — | free slots (`maxWorkerProcesses` − used) | `max_worker_processes` headroom |
   * | `bgworker_workers` | gauge | `worker_type`, `state` = `pending` \| `running` \| `restartWait` \| `givenUp` | registrations by state | `pg_stat_activity` rows with `backend_type` |
   * | `bgworker_start_latency_seconds` | histogram | `worker_type` | registration (or restart due) to start | `WaitForBackgroundWorkerStartup` time |
   * | `bgworker_spi_transaction_seconds` | histogram | `worker_type` | outermost `Spi.transaction` duration | `xact_commit` timing in `pg_stat_database` |
   * | `bgworker_latch_wait_seconds` | histogram | `worker_type` | time spent in `ProcLatch.wait` | `WaitLatch` (wait event time) |
   *
   * The gauges are computed from the slot table when the metrics are read, and removed from the registry
   * when the supervisor ends; counters and histograms stay.
   *
   * @since 0.2.0
   */
  readonly metrics?: boolean | undefined
  /**
   * Whether the supervisor makes spans (`effect`'s `Tracer`: whatever tracer the context holds, for example
   * `NodeOtlp.layer()` from `effect-bgworker/node`, which exports them over OTLP). Default `true`; spans
   * are made only when a tracer that records them is installed (not `effect`'s native default) and
   * `References.TracerEnabled` is on, so without one a start pays one test. `false` turns them off (the
   * launch benchmark compares both).
   *
   * | span | kind | parent | attributes |
   * |---|---|---|---|
   * | `bgworker <type>`: one incarnation, from its start to its end | internal | the span current where the worker was registered (a control-plane request's span, the caller's of `register`), for the first incarnation; a restart is a new trace linked to the previous incarnation (`bgworker.link` = `previous incarnation`) and to that span (`registered by`) | `bgworker.name`, `bgworker.type`, `bgworker.pid` (the supervisor's number of the incarnation; a database worker's backend pid once its session opens, and then `bgworker.incarnation` that number); at its end `bgworker.exit` (`done` \| `failed` \| `crashed` \| `killed` \| `abandoned`, as the `bgworker_exits` metric), `bgworker.exit.reason` (a failure's: `error`, `defect`, `startup`, `terminated`, `interrupted`), `bgworker.exit.message` |
   * | `spi.transaction`: one `Spi.transaction` (a nested one is a savepoint, and a child span) | internal | the worker's current span: its incarnation's unless the worker opened its own | `bgworker.name`, `bgworker.type`, `bgworker.pid`, `spi.depth`, `spi.outcome` (`commit` \| `rollback`), and the session's (`db.system.name`, `db.namespace`, `db.user` from `WorkerConnection`); effect/sql's `sql.transaction` and statement spans are its children |
   *
   * The worker's own spans (`Effect.withSpan` in `main`) are children of its incarnation's span. The span's
   * status follows the incarnation's exit: an error for a failure or a crash, unset for an interruption.
   *
   * **Gotchas** The span of an incarnation that runs for days is exported when it ends: a tracing backend
   * shows it then, not while it runs. A trace's spans are sent in batches (every 5 seconds by default).
   *
   * @since 0.2.0
   */
  readonly tracing?: boolean | undefined
}

/**
 * The supervisor as a layer. Building it runs the preloads, registers the static workers and starts the
 * ones whose gate is open; closing its scope is postmaster death.
 *
 * **Details**
 *
 * Reads `DatabaseState` when one is provided (see `DatabaseState.layerMemory`) to open the
 * `consistentState` and `recoveryFinished` gates; without it every gate is open.
 *
 * **Gotchas**
 *
 * Closing the scope is not a shutdown: waiters get `PostmasterDied`. Call {@link shutdown} first for a clean
 * stop (`NodeSupervisor` does it on SIGTERM and SIGINT).
 *
 * A preloaded worker or an entry point declared with `database` needs a `WorkerConnector` in this layer's
 * context (`Layer.provide(WorkerConnection.layer())` from `effect-bgworker/pg`): the layer's type requires
 * it, and without it building fails with `InvalidDefinition` (field `database`, with that hint) rather than
 * starting a supervisor whose database workers could never run.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = <E = never, R = never>(
  options: Options<E, R> = {}
): Layer.Layer<Supervisor, E | Errors.SupervisorError, Exclude<R, Preload>> => Layer.effect(Supervisor, make(options))

/**
 * Builds a supervisor in the current scope (the layer's constructor): `PostmasterMain`.
 *
 * **Details**
 *
 * In order: reads the settings (the options, else the `Gucs` registry's parameters, else the defaults),
 * checks the entry points, runs the preloads and registers their workers, freezes postmaster-context
 * parameters, creates the listed shared state, follows `DatabaseState` when one is provided, and starts
 * every worker whose gate is open. Closing the scope is postmaster death.
 *
 * @category constructors
 * @since 0.1.0
 */
export const make: <E = never, R = never>(
  options?: Options<E, R>
) => Effect.Effect<Supervisor["Service"], E | Errors.SupervisorError, Exclude<R, Preload> | Scope.Scope> = main.make

/**
 * Registers a dynamic worker (`RegisterDynamicBackgroundWorker`) and returns its handle.
 *
 * **Details**
 *
 * Validates the definition (`InvalidDefinition` names the field), encodes the argument with the worker's
 * schema (`InvalidArgument`), takes a free slot (`NoFreeSlot` when none) and starts the worker as soon as
 * its gate is open. The worker runs with the supervisor's services plus the caller's (`R`): the worker is
 * not tied to the caller's lifetime, and keeps running and restarting after the caller is gone until it
 * is terminated (PG-23).
 *
 * **Gotchas**
 *
 * Fails with `ShuttingDown` during a shutdown. The returned handle may already report `Stopped` if the
 * worker was quick.
 *
 * A database worker (`database: {...}`) needs a `WorkerConnector` (`WorkerConnection.layer()` from
 * `effect-bgworker/pg`) in the supervisor's context or the caller's: without one the registration fails
 * with `InvalidDefinition` (field `database`, with that hint) and nothing is registered. Unlike the
 * definition's other requirements it is not demanded from the caller's type, since the supervisor's layer
 * usually holds it; a preload registration (`Preload.register`) does demand it, so a `Supervisor.layer`
 * that preloads a database worker does not compile until the connector is provided to it.
 *
 * @see {@link awaitStartup}
 * @see {@link terminate}
 * @see {@link launch}
 * @category registration
 * @since 0.1.0
 */
export const register = <A, E, R>(
  worker: BackgroundWorker.BackgroundWorker<A, E, R>,
  ...[argument, options]: void extends A ? [argument?: A, options?: { readonly extra?: Uint8Array | undefined }]
    : [argument: A, options?: { readonly extra?: Uint8Array | undefined }]
): Effect.Effect<WorkerHandle, Errors.SupervisorError, Supervisor | Exclude<R, WorkerConnector>> =>
  // A database worker's `WorkerConnector` may come from the supervisor's layer rather than the caller's
  // context: it is checked when the worker is registered (`InvalidDefinition`, field `database`).
  Effect.flatMap(
    Effect.context<Exclude<R, WorkerConnector>>(),
    (context) => Supervisor.use((s) => s.register(worker, argument, options, context))
  )

/**
 * Launches a registered entry point by name with an encoded argument.
 *
 * **Details**
 *
 * Only entry points listed in `Supervisor.layer({ entryPoints })` can be launched, and the argument must
 * decode with the entry point's schema. With a `caller`, a database worker's role and database are resolved
 * and checked by the `WorkerConnector` first ({@link LaunchRequest.caller}). Names and types that come from
 * outside are stored with their control characters escaped (`\n`, `\x1b`), so they cannot forge log
 * lines.
 *
 * **Gotchas**
 *
 * A worker without `database` runs in this process with this program's rights whoever the caller is: an
 * entry point that reaches the database through the supervisor's own services (rather than its own
 * session) acts with the supervisor's role, not the caller's.
 *
 * @see {@link register}
 * @see {@link awaitStartup}
 * @category registration
 * @since 0.1.0
 */
export const launch = (request: LaunchRequest): Effect.Effect<WorkerHandle, Errors.SupervisorError, Supervisor> =>
  Supervisor.use((s) => s.launch(request))

/**
 * `GetBackgroundWorkerPid`: the handle's status now.
 *
 * @see {@link awaitStartup}
 * @see {@link awaitShutdown}
 * @see {@link info}
 * @category handles
 * @since 0.1.0
 */
export const status = (handle: WorkerHandle): Effect.Effect<WorkerStatus, never, Supervisor> =>
  Supervisor.use((s) => s.status(handle))

/**
 * The registration's activity row (restart count, last exit, next restart, why it was given up), or
 * `None` once it is forgotten.
 *
 * @category handles
 * @since 0.1.0
 */
export const info = (handle: WorkerHandle): Effect.Effect<Option.Option<ActivityRow>, never, Supervisor> =>
  Supervisor.use((s) => s.info(handle))

/**
 * `WaitForBackgroundWorkerStartup`: waits until the worker starts, and returns `Started(pid)`, `Stopped`
 * or `PostmasterDied`, never `NotYetStarted`. `Started` means the fiber runs, not that it finished its own
 * initialisation. Interrupting the caller abandons the wait. Inside a worker the wait shows the wait
 * event `BgWorkerStartup`.
 *
 * **Gotchas**
 *
 * A worker whose gate is open starts inside `register`, as `Effect.forkChild` runs a child up to its first
 * suspension; one that ends before it ever suspends (an unknown entry point, an immediate failure) is
 * already `Stopped` here. PostgreSQL allows that order too; `info` keeps the last exit while the
 * registration exists.
 *
 * @see {@link status}
 * @see {@link changes}
 * @category handles
 * @since 0.1.0
 */
export const awaitStartup = (handle: WorkerHandle): Effect.Effect<WorkerStatus, never, Supervisor> =>
  Supervisor.use((s) => s.awaitStartup(handle))

/**
 * `WaitForBackgroundWorkerShutdown`: waits until the worker is not running and returns `Stopped` or
 * `PostmasterDied`. A restartable worker's exit satisfies it, though the worker will come back.
 *
 * @see {@link terminate}
 * @see {@link status}
 * @category handles
 * @since 0.1.0
 */
export const awaitShutdown = (handle: WorkerHandle): Effect.Effect<WorkerStatus, never, Supervisor> =>
  Supervisor.use((s) => s.awaitShutdown(handle))

/**
 * The handle's statuses as a stream (the `bgw_notify_pid` role): the current one first, then each change.
 * Ends after `Stopped` when the registration is forgotten, or after `PostmasterDied`.
 *
 * **Details**
 *
 * Never two equal statuses in a row. The final status is always delivered, however slow the consumer.
 *
 * **Gotchas**
 *
 * Conflated when the consumer falls behind: up to 64 unread statuses are kept; past that, the unread ones
 * are dropped and only the newest is kept, so a slow consumer of a worker in a tight restart loop catches
 * up with the current status instead of reading history (PostgreSQL's `bgw_notify_pid` signals coalesce the
 * same way). Poll {@link info} for restart counts and the last exit.
 *
 * @category handles
 * @since 0.1.0
 */
export const changes = (handle: WorkerHandle): Stream.Stream<WorkerStatus, never, Supervisor> =>
  Stream.unwrap(Supervisor.useSync((s) => s.changes(handle)))

/**
 * `TerminateBackgroundWorker`: unregisters the worker whatever its exit. A running worker gets a terminate
 * request (it ends at its next wait or check; interrupted after `terminateTimeout`); an unstarted or
 * restart-waiting one is forgotten at once and never runs again.
 *
 * **Details**
 *
 * Safe whether the worker is running, has exited, or was never started; calling it twice is harmless; a
 * handle whose slot was reused is ignored. Returns before the worker has stopped: follow with
 * {@link awaitShutdown}.
 *
 * @see {@link awaitShutdown}
 * @see {@link signal}
 * @category handles
 * @since 0.1.0
 */
export const terminate = (handle: WorkerHandle): Effect.Effect<void, never, Supervisor> =>
  Supervisor.use((s) => s.terminate(handle))

/**
 * Sends a signal to the worker's current incarnation: `"terminate"` ends it as failed and its restart
 * policy applies (`pg_terminate_backend`); `"reload"` sets its reload flag and latch. No-op when it is not
 * running.
 *
 * @see {@link terminate}
 * @see {@link setLatch}
 * @category handles
 * @since 0.1.0
 */
export const signal: {
  (signal: WorkerSignal): (handle: WorkerHandle) => Effect.Effect<void, never, Supervisor>
  (handle: WorkerHandle, signal: WorkerSignal): Effect.Effect<void, never, Supervisor>
} = dual(
  2,
  (handle: WorkerHandle, signal: WorkerSignal): Effect.Effect<void, never, Supervisor> =>
    Supervisor.use((s) => s.signal(handle, signal))
)

/**
 * Sets the worker's latch (`SetLatch(&proc->procLatch)`). No-op when it is not running.
 *
 * @see {@link ProcLatch.wait}
 * @category handles
 * @since 0.1.0
 */
export const setLatch = (handle: WorkerHandle): Effect.Effect<void, never, Supervisor> =>
  Supervisor.use((s) => s.setLatch(handle))

/**
 * SIGHUP: re-reads the configuration (when a `Gucs` registry is present, see `Guc.reload`), then sets every
 * running worker's reload flag and latch, so a napping worker wakes at once. Nothing happens during a fast or
 * immediate shutdown, as PostgreSQL forwards SIGHUP only up to a smart shutdown.
 *
 * @see {@link Interrupts.reloadPending}
 * @category reload
 * @since 0.1.0
 */
export const reload: Effect.Effect<void, never, Supervisor> = Supervisor.use((s) => s.reload)

/**
 * Shuts down (see {@link ShutdownMode}); returns when the workers have ended or been abandoned (at once for
 * `immediate`). Idempotent: a second call waits for the first; `immediate` during a smart or fast shutdown
 * escalates it.
 *
 * **Gotchas**
 *
 * Takes at most `shutdownTimeout` plus `abandonTimeout`. A worker that ignores interruption beyond that (a
 * finalizer that never ends) is abandoned with a log line naming it, and keeps running.
 *
 * @category lifecycle
 * @since 0.1.0
 */
export const shutdown = (mode: ShutdownMode = "fast"): Effect.Effect<void, never, Supervisor> =>
  Supervisor.use((s) => s.shutdown(mode))

/**
 * Completes when the supervisor has stopped after a shutdown of any mode (`immediate` included).
 *
 * **Details**
 *
 * Fails with `SupervisorCrashed` when the supervisor ended because of a crash with `restartAfterCrash: false`
 * or during a smart or fast shutdown (then `shutdown` is set), and with a `SupervisorError` whose reason is
 * `ShmemInitFailed` when shared state could not be re-created after a crash restart. Completes when the
 * scope closes without a shutdown (postmaster death).
 *
 * @category lifecycle
 * @since 0.1.0
 */
export const awaitTermination: Effect.Effect<void, Errors.SupervisorError | SupervisorCrashed, Supervisor> = Supervisor
  .use((s) => s.awaitTermination)

/**
 * @category lifecycle
 * @since 0.1.0
 */
export const state: Effect.Effect<SupervisorState, never, Supervisor> = Supervisor.use((s) => s.currentState)
