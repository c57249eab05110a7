/**
 * The restart policy: what an incarnation's end means for its registration (`CleanupBackgroundWorker`),
 * the restart schedule with its intensity and reset (`bgw_restart_time`, extended), and the crash restart
 * of every worker (`HandleChildCrash` with `restart_after_crash`).
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as BackgroundWorker from "../../BackgroundWorker.ts"
import type { SupervisorState } from "../../Supervisor.ts"
import type { Proc } from "../proc.ts"
import type { IncarnationEnd } from "./incarnation.ts"
import type { Postmaster } from "./postmaster.ts"
import type { RegisteredWorker } from "./registration.ts"

/**
 * What comes after an incarnation's end:
 *
 * - `postmaster dead`: nothing (the supervisor is dying).
 * - `stay registered`: killed or abandoned while running or recovering: the crash restart (or the
 *   shutdown) that ended it decides what comes next.
 * - `forget`: done, terminated, never-restart, or ended during a shutdown.
 * - `crash restart`: a crash while running: every worker is restarted.
 * - `crash during shutdown`: a crash during a smart or fast shutdown: the supervisor ends.
 * - `restart`: a failure of a restartable worker: restarted when its schedule says.
 */
export type AfterEnd =
  | "postmaster dead"
  | "stay registered"
  | "forget"
  | "crash restart"
  | "crash during shutdown"
  | "restart"

/** Decides {@link AfterEnd} from how the incarnation ended, its registration, and the supervisor's state. */
export const afterEnd = (end: IncarnationEnd, registered: RegisteredWorker, state: SupervisorState): AfterEnd => {
  if (state === "dead") return "postmaster dead"
  switch (end._tag) {
    case "Killed":
    case "Abandoned":
      return state === "running" || state === "recovering" ? "stay registered" : "forget"
    case "Done":
      return "forget"
    case "Crashed":
      return state === "running"
        ? "crash restart"
        : state === "smart" || state === "fast"
        ? "crash during shutdown"
        : "forget"
    case "Failed":
      return registered.terminate || state !== "running" && state !== "recovering" ||
          registered.definition.restart === "never"
        ? "forget"
        : "restart"
  }
}

/**
 * The registration's restart is due (its delay has passed, or a crash restart is over): counted, and
 * started if its gate is open (else it waits, `pending`, for the gate).
 */
const restartNow = (postmaster: Postmaster, registered: RegisteredWorker): void => {
  if (registered.everStarted) {
    registered.restartCount++
    if (registered.metrics !== undefined) registered.metrics.restarts.count++
  }
  if (postmaster.metrics !== undefined) registered.pendingSince = postmaster.clock.currentTimeMillisUnsafe()
  registered.phase = "pending"
  registered.nextRestartAt = undefined
  postmaster.tryStart(registered)
  if (registered.phase === "pending") postmaster.changed(registered)
}

/**
 * Waits for the restart schedule's delay, stepped with `failure`, then restarts; gives the worker up when
 * the schedule completes or its restart intensity is exceeded. The registration keeps its slot meanwhile.
 */
export const scheduleRestart = (
  postmaster: Postmaster,
  registered: RegisteredWorker,
  proc: Proc,
  failure: BackgroundWorker.WorkerFailure
): void => {
  registered.phase = "restartWait"
  const definition = registered.definition
  const policy = definition.restart as Schedule.Schedule<unknown, BackgroundWorker.WorkerFailure>
  const clock = postmaster.clock
  const ranFor = clock.currentTimeMillisUnsafe() - proc.backendStart
  registered.restartTimer = postmaster.forkSupervisorFiber(
    Effect.gen(function*() {
      const now = clock.currentTimeMillisUnsafe()
      if (definition.resetAfter !== undefined && ranFor >= Duration.toMillis(definition.resetAfter)) {
        registered.restartStep = undefined
        registered.restartTimes = []
      }
      const intensity = definition.intensity
      if (intensity !== undefined) {
        const since = now - Duration.toMillis(intensity.within)
        registered.restartTimes = registered.restartTimes.filter((t) => t >= since)
        registered.restartTimes.push(now)
        if (registered.restartTimes.length > intensity.maxRestarts) {
          return giveUp(
            postmaster,
            registered,
            `more than ${intensity.maxRestarts} restarts within ${Duration.format(intensity.within)}`
          )
        }
      }
      registered.restartStep ??= yield* Schedule.toStep(policy)
      const next = yield* Effect.exit(registered.restartStep(now, failure))
      if (Exit.isFailure(next)) return giveUp(postmaster, registered, "restart schedule exhausted")
      const delay = next.value[1]
      registered.nextRestartAt = now + Duration.toMillis(delay)
      postmaster.changed(registered)
      yield* Effect.sleep(delay)
      registered.restartTimer = undefined
      if (postmaster.slots.registrations[registered.slot] !== registered || registered.phase !== "restartWait") return
      postmaster.transition(() => restartNow(postmaster, registered))
    }),
    (fiber) => {
      if (registered.restartTimer === fiber) registered.restartTimer = undefined
    }
  )
  postmaster.changed(registered)
}

const giveUp = (postmaster: Postmaster, registered: RegisteredWorker, reason: string): void => {
  registered.phase = "givenUp"
  registered.restartTimer = undefined
  registered.nextRestartAt = undefined
  registered.givenUpReason = reason
  if (registered.metrics !== undefined) registered.metrics.giveUps.count++
  postmaster.log(
    "Warn",
    `background worker "${registered.definition.name}": given up: ${reason}; ` +
      `last exit: ${registered.lastExit?.message}`,
    { worker: registered.definition.name }
  )
  postmaster.changed(registered)
}

// --- crash restart ---

/**
 * `HandleChildCrash`: interrupts every worker, waits for them (abandoning the ones that outlive
 * `abandonTimeout`), re-creates shared state, then restarts the restartable workers at once (their
 * schedules start over) and forgets the never-restart ones. With `restartAfterCrash` off, postmaster death
 * with `SupervisorCrashed` instead.
 */
export const crashRestart = (postmaster: Postmaster, crashed: RegisteredWorker): void => {
  if (crashed.metrics !== undefined) crashed.metrics.crashRestarts.count++
  if (!postmaster.options.restartAfterCrash()) {
    postmaster.log(
      "Error",
      "terminating any other active server processes; restartAfterCrash is off: the supervisor ends"
    )
    postmaster.fork(postmaster.die(
      new CrashedError({ worker: crashed.definition.name, detail: crashed.lastExit?.message ?? "" })
    ))
    return
  }
  postmaster.state = "recovering"
  postmaster.log("Warn", "terminating any other active server processes", { worker: crashed.definition.name })
  // The crash rules apply to the registrations that existed at the crash; ones made during the recovery
  // simply start when it is over.
  const atCrash = new Set(postmaster.slots.registrations.filter((registered) => registered !== undefined))
  for (const registered of atCrash) {
    if (registered.restartTimer !== undefined) {
      registered.restartTimer.interruptUnsafe()
      registered.restartTimer = undefined
    }
    const proc = registered.proc
    if (proc !== undefined) {
      proc.requestEnd("crash restart")
      proc.fiber!.interruptUnsafe()
    }
  }
  postmaster.forkSupervisorFiber(Effect.gen(function*() {
    // PostgreSQL sends SIGKILL to the stragglers after 5 seconds; here they are abandoned.
    yield* postmaster.awaitOrAbandon(Array.from(postmaster.live), "the crash restart's interruption")
    if (postmaster.state !== "recovering") return
    const reset = yield* Effect.exit(postmaster.sharedState.reset())
    if (postmaster.state !== "recovering") return
    if (Exit.isFailure(reset)) {
      const error = Cause.findErrorOption(reset.cause)
      if (Option.isSome(error)) {
        postmaster.log("Error", `${error.value.message}: the supervisor ends`, { worker: crashed.definition.name })
        postmaster.fork(postmaster.die(error.value))
        return
      }
      return yield* Effect.failCause(reset.cause as Cause.Cause<never>)
    }
    postmaster.log("Warn", "all server processes terminated; reinitializing")
    postmaster.transition(() => {
      postmaster.state = "running"
      for (const registered of postmaster.slots.registrations) {
        if (registered === undefined || registered.phase === "givenUp") continue
        if (!atCrash.has(registered)) {
          postmaster.tryStart(registered)
          continue
        }
        if (registered.terminate || registered.definition.restart === "never") {
          postmaster.forget(registered)
          continue
        }
        // Restartable workers come back at once: the crash delay is reset.
        registered.restartStep = undefined
        restartNow(postmaster, registered)
      }
    })
  }))
}

/**
 * A crash while a smart or fast shutdown is under way (`HandleChildCrash` with `Shutdown > NoShutdown`):
 * PostgreSQL sends SIGQUIT to every other child at once instead of letting it finish, re-initialises
 * nothing, and exits with `abnormal database system shutdown` once they are gone. Here: postmaster death
 * with a `SupervisorCrashed` error.
 */
export const crashDuringShutdown = (postmaster: Postmaster, crashed: RegisteredWorker): void => {
  const mode = postmaster.state
  postmaster.log("Error", "terminating any other active server processes", { worker: crashed.definition.name })
  postmaster.fork(postmaster.die(
    new CrashedError({ worker: crashed.definition.name, detail: crashed.lastExit?.message ?? "", shutdown: mode })
  ))
}

/**
 * The supervisor ended because a worker with shared-state access crashed and either `restartAfterCrash` is
 * off (PostgreSQL exits when `restart_after_crash = off`) or a smart or fast shutdown was under way (PostgreSQL
 * exits with `abnormal database system shutdown`; then `shutdown` names the mode, since 0.2.0).
 *
 * @category errors
 * @since 0.1.0
 */
const CrashedTypeId = "~effect-bgworker/SupervisorCrashed" as const

/**
 * Whether `u` is a {@link CrashedError} (`Supervisor.SupervisorCrashed`).
 *
 * @category guards
 * @since 0.2.0
 */
export const isCrashedError = (u: unknown): u is CrashedError => Predicate.hasProperty(u, CrashedTypeId)

export class CrashedError extends Schema.TaggedError<CrashedError>()("SupervisorCrashed", {
  worker: Schema.String,
  detail: Schema.String,
  /**
   * Set when the crash happened during a shutdown (`"smart"` or `"fast"`): the supervisor ended as
   * PostgreSQL does then (`abnormal database system shutdown`), whatever `restartAfterCrash` says.
   */
  shutdown: Schema.optionalKey(Schema.String)
}) {
  /** @since 0.2.0 */
  get [CrashedTypeId](): typeof CrashedTypeId {
    return CrashedTypeId
  }
  /** Never: the supervisor has ended. */
  get isRetryable(): boolean {
    return false
  }
  override get message(): string {
    return this.shutdown === undefined
      ? `background worker "${this.worker}" crashed and restart_after_crash is off: ${this.detail}`
      : `background worker "${this.worker}" crashed during a ${this.shutdown} shutdown: ${this.detail}`
  }
  get hint(): string {
    return this.shutdown === undefined
      ? "Turn restart_after_crash on to restart every worker after a crash instead."
      : "Nothing restarts during a shutdown: every other worker was interrupted at once, as shared state may be " +
        "corrupt. The worker's crash is logged with its cause."
  }
}
