/**
 * One incarnation of a registered worker: its start (`do_start_bgworker`), how it ended (one tagged
 * {@link IncarnationEnd}), and the requests a running incarnation receives (terminate, reload, a latch set).
 *
 * An incarnation is a `Proc` plus a root fiber started with the worker's context. Its end is classified
 * once, by its exit observer, from the fiber's exit and what the supervisor asked of it before
 * (`Proc.endRequest`); the core's `incarnationEnded` records it and derives everything else from it.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as References from "effect/References"
import * as Schema from "effect/Schema"
import * as Tracer from "effect/Tracer"
import type { LastExit } from "../../Activity.ts"
import * as BackgroundWorker from "../../BackgroundWorker.ts"
import * as DatabaseState from "../../DatabaseState.ts"
import type { WorkerSignal } from "../../Supervisor.ts"
import { SessionInfo, SessionLost, WorkerConnector } from "../../WorkerConnector.ts"
import type * as Handle from "../../WorkerHandle.ts"
import { withRootCause } from "../causeChain.ts"
import { CurrentWorker, Shmem, Supervisor } from "../context.ts"
import { escape } from "../logText.ts"
import { type KillReason, Proc } from "../proc.ts"
import { endIncarnationSpan, startIncarnationSpan } from "../tracing.ts"
import type { Postmaster } from "./postmaster.ts"
import type { RegisteredWorker } from "./registration.ts"

/** A worker that could not start: an unknown entry point, an argument that does not decode, no session. */
export class StartupFailure extends Schema.TaggedError<StartupFailure>()("StartupFailure", {
  message: Schema.String
}) {}

// --- how an incarnation ended ---

/** Returned (exit 0): the registration is forgotten. */
export interface Done {
  readonly _tag: "Done"
}

/** Exit 1: a typed failure, a terminate request, a failed start, or a defect without shared state. */
export interface Failed {
  readonly _tag: "Failed"
  /** What the restart schedule is stepped with. */
  readonly failure: BackgroundWorker.WorkerFailure
}

/** A defect in a worker with shared-state access: every worker is restarted (a crash restart). */
export interface Crashed {
  readonly _tag: "Crashed"
  readonly message: string
  readonly defect: unknown
}

/** Ended by the supervisor: a crash restart of another worker, a shutdown, or postmaster death. */
export interface Killed {
  readonly _tag: "Killed"
  readonly by: KillReason
}

/** Interrupted, but did not end within `abandonTimeout` after `after`: its registration moves on without it. */
export interface Abandoned {
  readonly _tag: "Abandoned"
  readonly after: string
}

/**
 * How an incarnation ended: the one vocabulary from which the activity view's `LastExit`, the log line and
 * the next step (restart, forget, crash restart) are derived.
 */
export type IncarnationEnd = Done | Failed | Crashed | Killed | Abandoned

const failed = (
  reason: BackgroundWorker.WorkerFailure["reason"],
  message: string,
  error: unknown
): Failed => ({ _tag: "Failed", failure: { reason, message, error } })

/** Classifies the incarnation's exit (`CleanupBackgroundWorker`'s exit-status test, extended). */
export const classifyExit = (
  registered: RegisteredWorker,
  proc: Proc,
  exit: Exit.Exit<void, unknown>
): IncarnationEnd => {
  if (Exit.isSuccess(exit)) return { _tag: "Done" }
  const request = proc.endRequest
  if (request !== undefined && request !== "terminate") return { _tag: "Killed", by: request }
  const error = Cause.findErrorOption(exit.cause)
  if (Option.isSome(error)) {
    const e = error.value
    if (e instanceof StartupFailure) return failed("startup", e.message, e)
    return failed("error", withRootCause(e), e)
  }
  const defect = Cause.findDefect(exit.cause)
  if (defect._tag === "Success") {
    const message = withRootCause(defect.success)
    if (registered.definition.shmem) return { _tag: "Crashed", message, defect: defect.success }
    return failed("defect", message, defect.success)
  }
  if (request === "terminate" || proc.terminatePending) {
    return failed(
      "terminated",
      `terminating background worker "${registered.definition.type}" due to administrator command`,
      undefined
    )
  }
  return failed("interrupted", "interrupted", undefined)
}

/** The activity view's `lastExit` for `end`. */
export const lastExitOf = (end: IncarnationEnd, at: number, query: string): LastExit => {
  switch (end._tag) {
    case "Done":
      return { kind: "done", message: "exited with exit code 0", at, query }
    case "Failed":
      return { kind: "failed", message: end.failure.message, at, query }
    case "Crashed":
      return { kind: "crashed", message: end.message, at, query }
    case "Killed":
      return { kind: "killed", message: `terminated by ${end.by}`, at, query }
    case "Abandoned":
      return { kind: "killed", message: `abandoned after ${end.after}`, at, query }
  }
}

/** The postmaster's log line for `end` (`LogChildExit`); nothing for a worker the supervisor ended itself. */
export const logEnd = (postmaster: Postmaster, registered: RegisteredWorker, proc: Proc, end: IncarnationEnd): void => {
  const type = registered.definition.type
  const annotations = { worker: registered.definition.name, type, pid: proc.pid }
  switch (end._tag) {
    case "Done":
      return postmaster.log(
        "Debug",
        `background worker "${type}" (PID ${proc.pid}) exited with exit code 0`,
        annotations
      )
    case "Failed":
      return postmaster.log(
        "Info",
        `background worker "${type}" (PID ${proc.pid}) exited with exit code 1: ${end.failure.message}`,
        annotations
      )
    case "Crashed":
      return postmaster.log(
        "Error",
        `background worker "${type}" (PID ${proc.pid}) crashed: ${end.message}` +
          (proc.query === "" ? "" : `; failed process was running: ${proc.query}`),
        annotations
      )
    case "Killed":
    case "Abandoned":
      return
  }
}

// --- starting ---

const gateOpen = (postmaster: Postmaster, definition: BackgroundWorker.Any): boolean =>
  postmaster.state === "running" && DatabaseState.allows(postmaster.databaseState, definition.startTime)

/** Starts the registration if it waits (`pending`) and its gate is open (`bgworker_should_start_now`). */
export const tryStart = (postmaster: Postmaster, registered: RegisteredWorker): void => {
  if (registered.phase !== "pending" || !gateOpen(postmaster, registered.definition)) return
  // A transition of its own: the `Started` notification is delivered once the fiber is recorded.
  postmaster.transition(() => startIncarnation(postmaster, registered))
}

const startIncarnation = (postmaster: Postmaster, registered: RegisteredWorker): void => {
  const proc = new Proc(postmaster, {
    incarnation: postmaster.nextIncarnation++,
    handle: registered.handle,
    origin: registered.origin,
    extra: registered.extra,
    encodedArgument: registered.encodedArgument,
    definition: registered.definition
  })
  // Known before the fiber runs, so that the status published below already says "not yet started".
  proc.awaitingSession = startsWithSession(postmaster, registered)
  registered.proc = proc
  const metrics = registered.metrics
  if (metrics !== undefined) {
    proc.metrics = metrics
    metrics.starts.count++
    metrics.startLatency.observeMillis(proc.backendStart - registered.pendingSince)
  }
  registered.phase = "running"
  registered.everStarted = true
  registered.nextRestartAt = undefined
  let context = Context.add(registered.context, CurrentWorker, proc)
  if (postmaster.options.tracing) {
    const tracer = postmaster.tracerFor(registered.context)
    if (tracer !== undefined) {
      // The incarnation's span is the parent of everything the worker does (internal/tracing.ts).
      proc.span = startIncarnationSpan(tracer, {
        name: proc.name,
        type: proc.type,
        pid: proc.pid,
        registeredUnder: registered.registeredUnder,
        previous: registered.lastSpan,
        startTime: postmaster.spanClock.nanos(proc.backendStart)
      })
      context = Context.add(context, Tracer.ParentSpan, proc.span)
    }
  }
  if (Context.getOrUndefined(context, Supervisor) !== postmaster) context = Context.add(context, Supervisor, postmaster)
  if (registered.definition.shmem) context = Context.add(context, Shmem, postmaster.sharedState.api())
  // Every line the worker logs says who wrote it (log_line_prefix's %a, %b and %p): in the context the
  // fiber starts with, rather than a wrapper, which would copy the context once more per worker.
  context = Context.add(context, References.CurrentLogAnnotations, {
    ...Context.get(context, References.CurrentLogAnnotations),
    worker: proc.name,
    type: proc.type,
    pid: proc.pid
  })
  // Everything about the start is recorded before the fiber runs: it runs at once, up to its first wait,
  // and may even end before `runForkWith` returns. So the fiber binds itself to its incarnation as its
  // very first step, before any of the worker's code can ask the supervisor about it. Waiters hear of
  // the start when the transition ends (`tryStart`), by which time the fiber is recorded.
  postmaster.changed(registered)
  Effect.runForkWith(context)(Effect.withFiber((fiber) => {
    proc.fiber = fiber as Fiber.Fiber<void, unknown>
    postmaster.live.add(proc)
    fiber.addObserver((exit) => onExit(postmaster, registered, proc, exit as Exit.Exit<void, unknown>))
    return runIncarnation(postmaster, registered, proc)
  }))
}

/** Whether the incarnation about to start opens a database session before its `main` runs. */
const startsWithSession = (postmaster: Postmaster, registered: RegisteredWorker): boolean => {
  const name = registered.lateBoundEntryPoint
  const definition = name === undefined
    ? registered.definition
    : postmaster.options.entryPoints.get(BackgroundWorker.entryPointKey(name))
  return definition?.database !== undefined
}

/** The worker's session is open: the incarnation has started, under its backend's pid. */
const sessionOpened = (
  postmaster: Postmaster,
  registered: RegisteredWorker,
  proc: Proc,
  backendPid: number | undefined
): void => {
  if (proc.endRequest !== undefined || registered.proc !== proc) return
  postmaster.transition(() => {
    proc.backendPid = backendPid
    proc.awaitingSession = false
    if (proc.span !== undefined && backendPid !== undefined) {
      proc.span.attribute("bgworker.pid", backendPid)
      proc.span.attribute("bgworker.incarnation", proc.incarnation)
    }
    postmaster.changed(registered)
  })
}

/**
 * What the incarnation's fiber runs (`StartBackgroundWorker`): resolve a late-bound entry point, decode the
 * argument, open the database session if the worker asks for one, then `main`.
 */
const runIncarnation = (
  postmaster: Postmaster,
  registered: RegisteredWorker,
  proc: Proc
): Effect.Effect<void, unknown> => {
  // Plain combinators rather than a generator: the startup closure lives as long as the worker does.
  const run = (worker: BackgroundWorker.Any, argument: unknown): Effect.Effect<void, unknown> => {
    const database = worker.database === undefined || worker.databaseFor === undefined
      ? worker.database
      : { ...worker.database, ...worker.databaseFor(argument) }
    if (database?.user !== undefined) registered.role = database.user
    if (database === undefined) {
      proc.report("active", undefined)
      return Effect.scoped(worker.main(argument)) as Effect.Effect<void, unknown>
    }
    // BackgroundWorkerInitializeConnection: the session belongs to this incarnation's scope.
    return Effect.withFiber((fiber) => {
      const connector = Context.getOrUndefined(fiber.context, WorkerConnector)
      if (connector === undefined) {
        return Effect.fail(
          new StartupFailure({ message: "database connection requested, but no WorkerConnector is installed" })
        )
      }
      return Effect.scoped(Effect.flatMap(
        Effect.mapError(connector.connect(proc, database), (e) =>
          new StartupFailure({
            // The server's text may quote names that came from outside: one log line, whatever they hold.
            message: escape(e.hint === undefined ? e.message : `${e.message} (hint: ${e.hint})`)
          })),
        (session) => {
          sessionOpened(postmaster, registered, proc, Context.getOrUndefined(session, SessionInfo)?.backendPid)
          proc.report("idle", undefined)
          const main = Effect.annotateLogs(
            Effect.updateContext(worker.main(argument), (c: Context.Context<never>) => Context.merge(c, session)),
            "pid",
            proc.pid
          )
          // A session that ends under the worker ends the worker, napping or not (exit 1: its policy applies).
          const lost = Context.getOrUndefined(session, SessionLost)
          return lost === undefined ? main : Effect.raceFirst(main, lost)
        }
      )) as Effect.Effect<void, unknown>
    })
  }
  const decodeAndRun = (worker: BackgroundWorker.Any): Effect.Effect<void, unknown> =>
    worker.argument === undefined ? run(worker, undefined) : Effect.flatMap(
      Effect.mapError(
        Schema.decodeUnknownEffect(worker.argument)(registered.encodedArgument),
        (error) => new StartupFailure({ message: `invalid argument: ${error.message}` })
      ),
      (argument) => run(worker, argument)
    )
  return Effect.suspend(() => {
    const name = registered.lateBoundEntryPoint
    if (name === undefined) return decodeAndRun(registered.definition)
    const found = postmaster.options.entryPoints.get(BackgroundWorker.entryPointKey(name))
    return found === undefined
      ? Effect.fail(
        new StartupFailure({ message: `could not find function "${name.function}" in library "${name.library}"` })
      )
      : decodeAndRun(found)
  })
}

// --- the end ---

/** The incarnation's fiber has ended: classify its end, once, and hand it to the core. */
const onExit = (
  postmaster: Postmaster,
  registered: RegisteredWorker,
  proc: Proc,
  exit: Exit.Exit<void, unknown>
): void => {
  if (postmaster.isAbandoned(proc)) {
    // Given up on earlier: its registration has moved on, so its end only stops it being counted.
    postmaster.abandoned.delete(proc)
    if (postmaster.logEnabled("Debug")) {
      postmaster.log("Debug", `abandoned background worker "${proc.name}" (PID ${proc.pid}) has ended`, {
        worker: proc.name,
        pid: proc.pid
      })
    }
    return
  }
  postmaster.live.delete(proc)
  if (proc.forceTimer !== undefined) proc.forceTimer.interruptUnsafe()
  postmaster.transition(() => postmaster.incarnationEnded(registered, proc, classifyExit(registered, proc, exit), exit))
}

/**
 * Ends the incarnation's span with how it ended (`lastExit`, just recorded, gives its message and time); the
 * next incarnation of the registration links to it.
 */
export const endSpan = (
  postmaster: Postmaster,
  registered: RegisteredWorker,
  proc: Proc,
  end: IncarnationEnd,
  exit: Exit.Exit<unknown, unknown> | undefined,
  outcome: string,
  lastExit: LastExit
): void => {
  const span = proc.span!
  endIncarnationSpan(
    span,
    {
      outcome,
      reason: end._tag === "Failed" ? end.failure.reason : undefined,
      message: end._tag === "Done" ? undefined : lastExit.message
    },
    exit,
    postmaster.spanClock.nanos(lastExit.at)
  )
  registered.lastSpan = span
}

// --- requests to a running incarnation ---

/**
 * A terminate request (`die()` through `SIGTERM`), as the caller's last act: flag and latch; a worker that
 * has not honoured it within `terminateTimeout` is interrupted.
 */
const requestTerminate = (postmaster: Postmaster, proc: Proc): void => {
  proc.requestTerminateDirect()
  const fiber = proc.fiber
  if (proc.forceTimer !== undefined || fiber === undefined || fiber.pollUnsafe() !== undefined) return
  // Most workers honour the request as soon as they run (it woke their wait), so look again one scheduler
  // turn later, after the worker's own wake-up, and only then pay for a timer.
  fiber.currentDispatcher.scheduleTask(() => armForceTimer(postmaster, proc), 0)
}

const armForceTimer = (postmaster: Postmaster, proc: Proc): void => {
  if (proc.forceTimer !== undefined || proc.fiber === undefined || proc.fiber.pollUnsafe() !== undefined) return
  if (postmaster.state === "dead") return
  const timeout = postmaster.options.terminateTimeout()
  proc.forceTimer = postmaster.forkSupervisorFiber(
    Effect.andThen(
      Effect.sleep(timeout),
      Effect.sync(() => {
        if (proc.fiber !== undefined && proc.fiber.pollUnsafe() === undefined) {
          postmaster.log(
            "Warn",
            `background worker "${proc.name}" ignored a terminate request for ${Duration.format(timeout)}: ` +
              "interrupting it"
          )
          proc.requestEnd("terminate")
          proc.fiber.interruptUnsafe()
        }
      })
    )
  )
}

/** `TerminateBackgroundWorker`: see `Supervisor.terminate`. */
export const terminate = (postmaster: Postmaster, handle: Handle.WorkerHandle): Effect.Effect<void> =>
  Effect.sync(() => {
    const registered = postmaster.slots.lookup(handle)
    if (registered === undefined || postmaster.state === "dead") return
    registered.terminate = true
    const proc = registered.proc
    if (proc !== undefined) requestTerminate(postmaster, proc) // the request is this effect's last act
    else postmaster.transition(() => postmaster.forget(registered))
  })

/** `pg_terminate_backend` or a SIGHUP to one worker: see `Supervisor.signal`. */
export const signal = (
  postmaster: Postmaster,
  handle: Handle.WorkerHandle,
  signal: WorkerSignal
): Effect.Effect<void> =>
  Effect.sync(() => {
    const proc = postmaster.slots.lookup(handle)?.proc
    if (proc === undefined) return
    if (signal === "terminate") requestTerminate(postmaster, proc)
    else proc.requestReload()
  })

/** SIGHUP: the configuration's re-read, then every running worker's reload flag and latch. */
export const reload = (postmaster: Postmaster): Effect.Effect<void> => {
  // PostgreSQL forwards SIGHUP to its children only up to a smart shutdown.
  const state = postmaster.state
  if (state !== "running" && state !== "smart" && state !== "recovering") return Effect.void
  return Effect.andThen(
    postmaster.options.beforeReload,
    Effect.sync(() => {
      for (const registered of postmaster.slots.registrations) registered?.proc?.requestReload()
    })
  )
}
