/**
 * The end of the supervisor: the three shutdown modes (`pmdie` on SIGTERM, SIGINT, SIGQUIT), postmaster
 * death (the close of the supervisor's scope), and abandoning what does not end where PostgreSQL would
 * send SIGKILL (`SIGKILL_CHILDREN_AFTER_SECS`).
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import type { ShutdownMode } from "../../Supervisor.ts"
import type * as Errors from "../../SupervisorError.ts"
import type { Proc } from "../proc.ts"
import type { Postmaster } from "./postmaster.ts"
import type { CrashedError } from "./restart.ts"
import * as Slots from "./slots.ts"

/** The shutdown is over: the supervisor is `stopped`, and whoever awaits its termination hears so. */
const stopped = (postmaster: Postmaster, done: Deferred.Deferred<void>): void => {
  postmaster.state = "stopped"
  postmaster.post(() => {
    Deferred.doneUnsafe(done, Exit.void)
    Deferred.doneUnsafe(postmaster.terminated, Exit.void)
  })
}

/** See `Supervisor.shutdown` and `ShutdownMode`. */
export const shutdown = (postmaster: Postmaster, mode: ShutdownMode): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (postmaster.state === "dead") return Deferred.await(postmaster.deathDone)
    if (postmaster.state === "stopped") return Effect.void
    if (postmaster.shutdownDone !== undefined && mode !== "immediate") return Deferred.await(postmaster.shutdownDone)
    const done = postmaster.shutdownDone ??= Deferred.makeUnsafe<void>()
    const running: Array<Proc> = []
    postmaster.transition(() => {
      postmaster.state = mode
      postmaster.log("Info", `received ${mode} shutdown request`)
      for (const registered of postmaster.slots.registrations) {
        if (registered === undefined) continue
        // Capture the incarnation first: waking its latch may run it to its end synchronously.
        const proc = registered.proc
        if (proc !== undefined) {
          running.push(proc)
          if (mode !== "smart") proc.requestEnd("shutdown")
          if (mode !== "immediate") proc.requestTerminate()
          if (mode !== "smart") proc.fiber!.interruptUnsafe()
        } else {
          postmaster.forget(registered) // unstarted and restart-waiting registrations: cancelled, waiters get Stopped
        }
      }
      // Immediate: nothing to wait for.
      if (mode === "immediate") stopped(postmaster, done)
    })
    if (mode === "immediate") return Effect.void
    // The postmaster finishes the shutdown in a fiber of its own: the caller may be one of the workers it
    // stops (a worker that shuts the supervisor down), and the shutdown must complete all the same.
    postmaster.forkSupervisorFiber(Effect.gen(function*() {
      const finished = yield* Effect.timeoutOption(
        Fiber.awaitAll(running.map((p) => p.fiber!)),
        postmaster.options.shutdownTimeout()
      )
      if (Option.isNone(finished)) {
        const stragglers = running.filter((p) => !postmaster.isAbandoned(p) && p.fiber!.pollUnsafe() === undefined)
        postmaster.log("Warn", `shutdown timeout reached: interrupting ${stragglers.length} worker(s) by force`)
        for (const p of stragglers) {
          p.requestEnd("shutdown")
          p.fiber!.interruptUnsafe()
        }
        yield* awaitOrAbandon(postmaster, stragglers, "the shutdown's forced interruption")
      }
      if (postmaster.state === "dead") return
      postmaster.transition(() => stopped(postmaster, done))
    }))
    return Deferred.await(done)
  })

/**
 * Postmaster death: nothing is restarted, every waiter is told `PostmasterDied`, every wait ends the
 * worker or returns `postmasterDeath`, and the supervisor waits for its fibers to end, abandoning the ones
 * that outlive `abandonTimeout`. `error` is how `awaitTermination` fails: a crash with `restartAfterCrash`
 * off or during a shutdown, shared state that could not be re-created, or a database lost for good.
 *
 * Safe to call more than once: a later call waits for the first death to finish.
 */
export const die = (postmaster: Postmaster, error?: CrashedError | Errors.SupervisorError): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (postmaster.state === "dead") return Deferred.await(postmaster.deathDone)
    const returning: Array<Proc> = []
    postmaster.transition(() => {
      postmaster.state = "dead"
      for (const fiber of Array.from(postmaster.supervisorFibers)) fiber.interruptUnsafe()
      for (const registered of postmaster.slots.registrations) {
        const proc = registered?.proc
        // A worker whose wait returns on postmaster death ends on its own, within the timeout below.
        if (proc !== undefined && proc.postmasterDied() === "returns") returning.push(proc)
      }
      Slots.notifyPostmasterDied(postmaster)
      // A shutdown still in progress ends here: its waiters are released, the workers are dealt with below.
      const shutdownDone = postmaster.shutdownDone
      if (shutdownDone !== undefined) postmaster.post(() => Deferred.doneUnsafe(shutdownDone, Exit.void))
    })
    return Effect.gen(function*() {
      if (returning.length > 0) {
        const ended = yield* Effect.timeoutOption(
          Fiber.awaitAll(returning.map((p) => p.fiber!)),
          postmaster.options.shutdownTimeout()
        )
        if (Option.isNone(ended)) { for (const p of returning) p.fiber!.interruptUnsafe() }
      }
      yield* awaitOrAbandon(postmaster, Array.from(postmaster.live), "postmaster death")
      // The supervisor's own fibers were interrupted above and never block it: a bound all the same.
      yield* Effect.timeoutOption(
        Fiber.awaitAll(Array.from(postmaster.supervisorFibers)),
        postmaster.options.abandonTimeout()
      )
      // Every worker has ended (or been abandoned) and published its last change: the activity streams end here.
      postmaster.feed.end()
      yield* postmaster.sharedState.release("postmaster death")
      if (error !== undefined && error._tag === "SupervisorCrashed" && error.shutdown !== undefined) {
        postmaster.log("Error", "abnormal database system shutdown", { worker: error.worker })
      }
      Deferred.doneUnsafe(postmaster.terminated, error === undefined ? Exit.void : Exit.fail(error))
      Deferred.doneUnsafe(postmaster.deathDone, Exit.void)
    }).pipe(Effect.uninterruptible)
  })

// --- abandoning what does not end ---

/**
 * Waits for the incarnations' fibers (already interrupted) to end, for at most `abandonTimeout`, then
 * abandons the ones still running. `after` completes the log line: "did not end within 5s after ...".
 */
export const awaitOrAbandon = (
  postmaster: Postmaster,
  procs: ReadonlyArray<Proc>,
  after: string
): Effect.Effect<void> =>
  Effect.suspend(() => {
    const running = (p: Proc) =>
      !postmaster.isAbandoned(p) && p.fiber !== undefined && p.fiber.pollUnsafe() === undefined
    const pending = procs.filter(running)
    if (pending.length === 0) return Effect.void
    const timeout = postmaster.options.abandonTimeout()
    return Effect.flatMap(
      Effect.timeoutOption(Fiber.awaitAll(pending.map((p) => p.fiber!)), timeout),
      (ended) =>
        Option.isSome(ended) ? Effect.void : Effect.sync(() =>
          postmaster.transition(() => {
            for (const p of pending) if (running(p)) abandon(postmaster, p, timeout, after)
          })
        )
    )
  })

/** Gives up on an incarnation whose fiber will not end: its registration moves on as if it had ended. */
const abandon = (postmaster: Postmaster, proc: Proc, timeout: Duration.Duration, after: string): void => {
  postmaster.live.delete(proc)
  postmaster.abandoned.add(proc)
  if (proc.forceTimer !== undefined) proc.forceTimer.interruptUnsafe()
  postmaster.log(
    "Warn",
    `background worker "${proc.name}" (PID ${proc.pid}) did not end within ${Duration.format(timeout)} ` +
      `after ${after}; ` +
      `abandoned (its fiber keeps running, holding whatever it holds)`,
    { worker: proc.name, type: proc.type, pid: proc.pid }
  )
  const registered = postmaster.slots.registrations[proc.handle.slot]
  if (registered === undefined || registered.proc !== proc) return
  postmaster.incarnationEnded(registered, proc, { _tag: "Abandoned", after })
}
