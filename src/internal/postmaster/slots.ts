/**
 * The slot table (`BackgroundWorkerSlot[max_worker_processes]`), what a handle reports, and the waits on a
 * handle (`GetBackgroundWorkerPid`, `WaitForBackgroundWorkerStartup`, `WaitForBackgroundWorkerShutdown`,
 * and the `bgw_notify_pid` role as a stream).
 *
 * A slot holds at most one registration. Taking a slot bumps its generation, so a handle whose slot was
 * freed, or reused by another registration, reports `Stopped` and never another worker's pid. A freed
 * slot keeps how its registration last ended for a while (the latest 1024), so that a caller can still ask
 * why a worker it launched is gone.
 *
 * @internal
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import type { LastExit } from "../../Activity.ts"
import type { SupervisorState } from "../../Supervisor.ts"
import * as Handle from "../../WorkerHandle.ts"
import { CurrentWorker } from "../context.ts"
import { type Proc, withWaitEvent } from "../proc.ts"
import type { Postmaster } from "./postmaster.ts"
import { RegisteredWorker, type RegistrationOptions, type StatusListener } from "./registration.ts"

/** Unread statuses a `changes` stream holds before it conflates to the newest. */
const statusBuffer = 64

/** How many forgotten registrations' last exits are kept. */
const recentExitsKept = 1024

export class SlotTable {
  readonly registrations: Array<RegisteredWorker | undefined>
  private readonly freeSlots: Array<number>
  private readonly generations: Array<number>
  /** How forgotten registrations last ended, by handle: the latest {@link recentExitsKept}. */
  private readonly recentExits = new Map<string, LastExit>()
  /**
   * `recentExits`' keys in the order they came, a ring: the oldest is dropped in constant time. (Dropping a
   * Map's first key instead costs a walk over the deleted entries before it, about half a microsecond per
   * forgotten registration at 1024 kept: a tenth of a launch cycle.)
   */
  private readonly recentExitsOrder = new Array<string | undefined>(recentExitsKept).fill(undefined)
  private recentExitsNext = 0

  constructor(maxWorkerProcesses: number) {
    this.registrations = new Array(maxWorkerProcesses).fill(undefined)
    // Lowest slot first at the start; afterwards the most recently freed one.
    this.freeSlots = Array.from({ length: maxWorkerProcesses }, (_, i) => maxWorkerProcesses - 1 - i)
    this.generations = new Array(maxWorkerProcesses).fill(0)
  }

  /** Takes a free slot for a new registration; `undefined` when every slot is in use. */
  allocate(options: Omit<RegistrationOptions, "slot" | "generation">): RegisteredWorker | undefined {
    const slot = this.freeSlots.pop()
    if (slot === undefined) return undefined
    const generation = ++this.generations[slot]!
    const registered = new RegisteredWorker({ ...options, slot, generation })
    this.registrations[slot] = registered
    return registered
  }

  /** The registration `handle` names, if it still holds its slot. */
  lookup(handle: Handle.WorkerHandle): RegisteredWorker | undefined {
    const registered = this.registrations[handle.slot]
    return registered !== undefined && registered.generation === handle.generation ? registered : undefined
  }

  /** Frees the registration's slot, keeping its last exit; `false` when it no longer holds it. */
  free(registered: RegisteredWorker): boolean {
    if (this.registrations[registered.slot] !== registered) return false
    if (registered.lastExit !== undefined) {
      const key = Handle.format(registered.handle)
      const oldest = this.recentExitsOrder[this.recentExitsNext]
      if (oldest !== undefined) this.recentExits.delete(oldest)
      this.recentExitsOrder[this.recentExitsNext] = key
      this.recentExitsNext = (this.recentExitsNext + 1) % recentExitsKept
      this.recentExits.set(key, registered.lastExit)
    }
    this.registrations[registered.slot] = undefined
    this.freeSlots.push(registered.slot)
    return true
  }

  /** How the handle's registration last ended: while registered, and for the latest forgotten ones. */
  lastExit(handle: Handle.WorkerHandle): LastExit | undefined {
    const registered = this.lookup(handle)
    return registered === undefined ? this.recentExits.get(Handle.format(handle)) : registered.lastExit
  }
}

/** `GetBackgroundWorkerPid`: what `handle` reports, given the registration in its slot. */
export const statusOf = (
  state: SupervisorState,
  registered: RegisteredWorker | undefined,
  handle: Handle.WorkerHandle
): Handle.WorkerStatus => {
  if (state === "dead") return Handle.PostmasterDied
  if (registered === undefined || registered.generation !== handle.generation) return Handle.Stopped
  if (registered.phase === "running") {
    // A database worker starts when its session opens: its pid is then the session's backend pid.
    return registered.proc!.awaitingSession ? Handle.NotYetStarted : Handle.Started(registered.proc!.pid)
  }
  if (registered.phase === "pending" && !registered.everStarted) return Handle.NotYetStarted
  return Handle.Stopped
}

const isFinal = (status: Handle.WorkerStatus) => status._tag === "PostmasterDied"

/** Tells the registration's listeners its status as it is now, once the transition is over. */
export const notifyListeners = (postmaster: Postmaster, registered: RegisteredWorker): void => {
  if (registered.listeners === undefined || registered.listeners.size === 0) return
  const status = postmaster.statusOf(registered, registered.handle)
  const listeners = Array.from(registered.listeners)
  postmaster.post(() => {
    for (const listener of listeners) listener(status, false)
  })
}

/** Tells the registration's listeners it is forgotten (`Stopped`, final), and detaches them. */
export const notifyListenersForgotten = (postmaster: Postmaster, registered: RegisteredWorker): void => {
  detachListeners(postmaster, registered, Handle.Stopped)
}

/** Tells every listener of every registration that the supervisor died, and detaches them. */
export const notifyPostmasterDied = (postmaster: Postmaster): void => {
  for (const registered of postmaster.slots.registrations) {
    if (registered !== undefined) detachListeners(postmaster, registered, Handle.PostmasterDied)
  }
}

const detachListeners = (postmaster: Postmaster, registered: RegisteredWorker, status: Handle.WorkerStatus): void => {
  const listeners = registered.listeners
  registered.listeners = undefined
  if (listeners === undefined || listeners.size === 0) return
  const detached = Array.from(listeners)
  postmaster.post(() => {
    for (const listener of detached) listener(status, true)
  })
}

/**
 * Waits until `done(status)` or a final status; inside a worker the wait shows the `IPC` wait event
 * `waitEvent` (`BgWorkerStartup`, `BgWorkerShutdown`).
 */
export const awaitStatus = (
  postmaster: Postmaster,
  handle: Handle.WorkerHandle,
  done: (status: Handle.WorkerStatus) => boolean,
  waitEvent: string
): Effect.Effect<Handle.WorkerStatus> => {
  const wait = Effect.callback<Handle.WorkerStatus>((resume) => {
    const registered = postmaster.slots.lookup(handle)
    const now = postmaster.statusOf(registered, handle)
    if (done(now) || registered === undefined) return resume(Effect.succeed(now))
    const listener: StatusListener = (status) => {
      if (done(status) || isFinal(status)) {
        registered.listeners?.delete(listener)
        resume(Effect.succeed(status))
      }
    }
    ;(registered.listeners ??= new Set()).add(listener)
    return Effect.sync(() => registered.listeners?.delete(listener))
  })
  return Effect.withFiber((fiber) => {
    const proc = Context.getOrUndefined(fiber.context, CurrentWorker) as Proc | undefined
    return proc === undefined ? wait : withWaitEvent(proc, "IPC", waitEvent, wait)
  })
}

/** Whether two statuses say the same (the status stream skips repeats). */
const sameStatus = (a: Handle.WorkerStatus, b: Handle.WorkerStatus): boolean =>
  a._tag === b._tag && (a._tag !== "Started" || a.pid === (b as { readonly pid: number }).pid)

/** The handle's statuses: the current one, then each change, ending after a final or forgotten one. */
export const statusChanges = (
  postmaster: Postmaster,
  handle: Handle.WorkerHandle
): Stream.Stream<Handle.WorkerStatus> =>
  // A consumer that keeps up gets every change. One that falls a whole buffer behind is conflated: what it
  // has not read is dropped and the newest status kept, so it catches up at once, and the final status
  // (followed by the end of the queue) is always delivered.
  Stream.callback<Handle.WorkerStatus>((queue) =>
    Effect.acquireRelease(
      Effect.sync(() => {
        const registered = postmaster.slots.lookup(handle)
        const now = postmaster.statusOf(registered, handle)
        Queue.offerUnsafe(queue, now)
        if (registered === undefined || isFinal(now)) {
          Queue.endUnsafe(queue)
          return undefined
        }
        const listener: StatusListener = (status, forgotten) => {
          if (Queue.isFullUnsafe(queue)) { while (Queue.takeUnsafe(queue) !== undefined); }
          Queue.offerUnsafe(queue, status)
          if (forgotten || isFinal(status)) Queue.endUnsafe(queue)
        }
        ;(registered.listeners ??= new Set()).add(listener)
        return { registered, listener }
      }),
      (attached) => Effect.sync(() => attached?.registered.listeners?.delete(attached.listener))
    ), { bufferSize: statusBuffer, strategy: "sliding" }).pipe(Stream.changesWith(sameStatus))
