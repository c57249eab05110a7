/**
 * The activity view (`pg_stat_activity`, one row per registration) and its change stream, plus the
 * wait-event catalogue (`pg_wait_events`).
 *
 * A row is computed from the registration and its running incarnation when asked for; the feed only keeps
 * the open change streams. Events are posted through the postmaster's outbox, so a stream hears a change
 * once the transition that made it is over, in order.
 *
 * @internal
 */
import type * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import type { ActivityEvent, ActivityRow, Registration, WaitEventInfo } from "../../Activity.ts"
import type { RegisteredWorker } from "./registration.ts"

/** Custom wait event names accepted (`WaitEventExtensionNew` has a limit too). */
const maxWaitEvents = 128

/** Unread events an activity stream holds before it drops the oldest. */
const eventBuffer = 4096

export class ActivityFeed {
  /** The queues of open change streams: offered every event, ended at death. */
  private readonly streams = new Set<Queue.Queue<ActivityEvent, Cause.Done>>()
  private readonly waitEventIds = new Map<string, number>()
  private readonly post: (notification: () => void) => void

  /** `post`: delivers a notification once the current transition is over. */
  constructor(post: (notification: () => void) => void) {
    this.post = post
  }

  /** Whether any stream is open: when none is, nothing needs computing. */
  watched(): boolean {
    return this.streams.size > 0
  }

  /** The registration's row changed (or appeared). */
  updated(registered: RegisteredWorker): void {
    if (this.streams.size === 0) return
    this.publish({ _tag: "Updated", row: this.row(registered) })
  }

  /** The registration was forgotten. */
  removed(registered: RegisteredWorker): void {
    if (this.streams.size === 0) return
    this.publish({
      _tag: "Removed",
      slot: registered.slot,
      generation: registered.generation,
      name: registered.definition.name
    })
  }

  private publish(event: ActivityEvent): void {
    this.post(() => {
      for (const queue of this.streams) Queue.offerUnsafe(queue, event)
    })
  }

  /** Every change from now on; ends at once when `dead()`, else at {@link end}. */
  changes(dead: () => boolean): Stream.Stream<ActivityEvent> {
    return Stream.callback<ActivityEvent>((queue) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          if (dead()) Queue.endUnsafe(queue)
          else this.streams.add(queue)
        }),
        () => Effect.sync(() => this.streams.delete(queue))
      ), { bufferSize: eventBuffer, strategy: "sliding" })
  }

  /** Postmaster death: every worker has published its last change; the streams end. */
  end(): void {
    for (const queue of this.streams) Queue.endUnsafe(queue)
    this.streams.clear()
  }

  /** Registers a wait event name (idempotent); returns an error message when the name is not acceptable. */
  registerWaitEvent(name: string): string | undefined {
    if (this.waitEventIds.has(name)) return undefined
    if (this.waitEventIds.size >= maxWaitEvents) return "too many custom wait events"
    this.waitEventIds.set(name, this.waitEventIds.size + 1)
    return undefined
  }

  waitEventCatalogue(): ReadonlyArray<WaitEventInfo> {
    return [
      { type: "IPC", name: "BgWorkerShutdown", id: -2 },
      { type: "IPC", name: "BgWorkerStartup", id: -1 },
      ...Array.from(this.waitEventIds, ([name, id]) => ({ type: "Extension" as const, name, id }))
    ]
  }

  /** The registration's row in the view now. */
  row(registered: RegisteredWorker): ActivityRow {
    const p = registered.phase === "running" ? registered.proc : undefined
    const registration: Registration = registered.phase === "running"
      ? "running"
      : registered.phase === "givenUp"
      ? "given up"
      : registered.phase === "restartWait" || registered.everStarted
      ? "waiting for restart"
      : "not yet started"
    return {
      slot: registered.slot,
      generation: registered.generation,
      pid: p === undefined || p.awaitingSession ? null : p.pid,
      incarnation: p?.incarnation ?? null,
      name: registered.definition.name,
      backendType: registered.definition.type,
      origin: registered.origin,
      registration,
      state: p?.state ?? null,
      query: p?.query ?? "",
      backendStart: p?.backendStart ?? null,
      stateChange: p?.stateChange ?? null,
      waitEventType: p?.waitEventType ?? null,
      waitEvent: p?.waitEvent ?? null,
      restartCount: registered.restartCount,
      lastExit: registered.lastExit ?? null,
      nextRestartAt: registered.nextRestartAt ?? null,
      givenUpReason: registered.givenUpReason ?? null,
      role: registered.role ?? registered.definition.database?.user ?? null
    }
  }
}
