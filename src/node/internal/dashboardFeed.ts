/**
 * The dashboard's model: the activity rows, a bounded timeline of starts, exits and restarts derived from
 * the activity stream, and the settings; every change is published, numbered, to the open pages.
 *
 * One fiber follows `Activity.changes` and keeps the rows; each event's row is compared with the row kept
 * for that registration, and the difference becomes timeline entries (a new incarnation is a start, or a
 * restart once the registration has restarted; a new `lastExit` is an exit; `given up`; a forgotten
 * registration is `removed`). The timeline keeps the newest `historySize` entries, so a page opened later
 * sees the recent past.
 *
 * **Ordering**
 *
 * Every published message carries `seq`, one more than the previous message's. A page starts from a
 * {@link Snapshot} (state as of its `seq`) and applies the messages after it in order; a message it did not
 * expect (a gap: its subscription fell behind and lost the oldest) makes it start again from a snapshot.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { ActivityEvent, ActivityRow, LastExit } from "../../Activity.ts"
import * as Guc from "../../Guc.ts"
import * as Supervisor from "../../Supervisor.ts"
import * as WorkerHandle from "../../WorkerHandle.ts"

/** What happened to a worker, as the timeline shows it. */
export type TimelineEvent = "registered" | "started" | "restarted" | "exited" | "given up" | "removed"

/** One mark on a worker's lane. */
export interface TimelineEntry {
  readonly seq: number
  /** Milliseconds since the epoch (the supervisor's `Clock`). */
  readonly at: number
  /** The registration's handle, `"slot:generation"`. */
  readonly worker: string
  readonly name: string
  readonly type: string
  readonly event: TimelineEvent
  /** For `exited`: how the incarnation ended. */
  readonly outcome: LastExit["kind"] | null
  /** The exit's message, the pid of a start, why it was given up. */
  readonly detail: string
}

/** Slots in use (one per registration, running or not) and free. */
export interface Slots {
  readonly used: number
  readonly free: number
  readonly max: number
}

/** A change, as sent to the pages. */
export type Message =
  | { readonly type: "row"; readonly seq: number; readonly row: ActivityRow; readonly slots: Slots }
  | { readonly type: "removed"; readonly seq: number; readonly worker: string; readonly slots: Slots }
  | { readonly type: "timeline"; readonly seq: number; readonly entries: ReadonlyArray<TimelineEntry> }
  | { readonly type: "settings"; readonly seq: number; readonly settings: ReadonlyArray<Guc.SettingRow> }

/** The whole state, as of message `seq`. */
export interface Snapshot {
  readonly type: "snapshot"
  readonly seq: number
  /** The server's clock now, so a page can show `next restart in 3 s` whatever its own clock says. */
  readonly now: number
  readonly slots: Slots
  readonly rows: ReadonlyArray<ActivityRow>
  readonly timeline: ReadonlyArray<TimelineEntry>
  /** `null` without a `Gucs` registry. */
  readonly settings: ReadonlyArray<Guc.SettingRow> | null
}

/**
 * The timeline entries (without `seq`) that the change from `previous` to `next` of one registration
 * stands for, in the order they happened: an exit before the start that follows it.
 */
export const entriesOf = (
  previous: ActivityRow | undefined,
  next: ActivityRow,
  now: number
): Array<Omit<TimelineEntry, "seq">> => {
  const base = { worker: WorkerHandle.format(next), name: next.name, type: next.backendType }
  const entries: Array<Omit<TimelineEntry, "seq">> = []
  if (previous === undefined) {
    // The row does not say when the registration was made; no later than its first start or exit.
    const at = Math.min(now, next.backendStart ?? now, next.lastExit?.at ?? now)
    entries.push({ ...base, at, event: "registered", outcome: null, detail: "" })
  }
  const exit = next.lastExit
  if (
    exit !== null &&
    (previous?.lastExit == null || previous.lastExit.at !== exit.at || previous.lastExit.message !== exit.message ||
      previous.lastExit.kind !== exit.kind)
  ) {
    entries.push({ ...base, at: exit.at, event: "exited", outcome: exit.kind, detail: exit.message })
  }
  if (next.incarnation !== null && next.incarnation !== previous?.incarnation) {
    entries.push({
      ...base,
      at: next.backendStart ?? now,
      event: next.restartCount > 0 ? "restarted" : "started",
      outcome: null,
      detail: next.pid === null ? "" : `pid ${next.pid}`
    })
  }
  if (next.registration === "given up" && previous?.registration !== "given up") {
    entries.push({ ...base, at: now, event: "given up", outcome: null, detail: next.givenUpReason ?? "" })
  }
  return entries
}

/** The feed's interface to the server. */
export interface Feed {
  /** The state now. */
  readonly snapshot: () => Snapshot
  /** The messages after the returned snapshot, as a stream that ends with the caller's scope. */
  readonly subscribe: Effect.Effect<
    { readonly snapshot: Snapshot; readonly messages: Stream.Stream<Message> },
    never,
    Scope.Scope
  >
  readonly rows: () => ReadonlyArray<ActivityRow>
  readonly row: (worker: string) => ActivityRow | undefined
  readonly timeline: () => ReadonlyArray<TimelineEntry>
  readonly settings: () => ReadonlyArray<Guc.SettingRow> | null
  readonly slots: () => Slots
}

/** Unread messages a page's subscription holds before it drops the oldest (and the page starts over). */
const subscriberBuffer = 1024

/**
 * Starts following the supervisor (and the `Gucs` registry, when there is one) in the current scope.
 */
export const make = Effect.fnUntraced(function*(options: { readonly historySize: number }) {
  const supervisor = yield* Supervisor.Supervisor
  const clock = yield* Effect.clockWith(Effect.succeed)
  const gucs = yield* Effect.serviceOption(Guc.Gucs)
  const pubsub = yield* PubSub.sliding<Message>(subscriberBuffer)
  const rows = new Map<string, ActivityRow>()
  const timeline: Array<TimelineEntry> = []
  let settings: ReadonlyArray<Guc.SettingRow> | null = null
  let seq = 0

  const slots = (): Slots => {
    const max = supervisor.maxWorkerProcesses()
    return { used: rows.size, free: Math.max(0, max - rows.size), max }
  }
  const publish = (message: Message) => {
    PubSub.publishUnsafe(pubsub, message)
  }
  const record = (entries: ReadonlyArray<Omit<TimelineEntry, "seq">>) => {
    if (entries.length === 0) return
    const numbered = entries.map((entry) => ({ ...entry, seq: ++seq }))
    timeline.push(...numbered)
    if (timeline.length > options.historySize) timeline.splice(0, timeline.length - options.historySize)
    publish({ type: "timeline", seq: numbered[numbered.length - 1]!.seq, entries: numbered })
  }

  // Messages are numbered one by one: a timeline message takes the numbers of its entries, and the page
  // checks continuity on the message's last number (see `seq` in the module doc).
  const apply = (event: ActivityEvent, now: number, lastExit: LastExit | undefined) => {
    if (event._tag === "Updated") {
      const key = WorkerHandle.format(event.row)
      const entries = entriesOf(rows.get(key), event.row, now)
      rows.set(key, event.row)
      publish({ type: "row", seq: ++seq, row: event.row, slots: slots() })
      record(entries)
    } else {
      const key = WorkerHandle.format(event)
      const previous = rows.get(key)
      rows.delete(key)
      publish({ type: "removed", seq: ++seq, worker: key, slots: slots() })
      const base = { worker: key, name: event.name, type: previous?.backendType ?? "" }
      // A registration forgotten as its incarnation ends (done, terminated, never restarted) has no row
      // with that exit: the supervisor keeps it for a while after.
      const exit = lastExit
      record([
        ...(exit !== undefined && (previous?.lastExit == null || previous.lastExit.at !== exit.at)
          ? [{ ...base, at: exit.at, event: "exited" as const, outcome: exit.kind, detail: exit.message }]
          : []),
        { ...base, at: Math.max(now, exit?.at ?? now), event: "removed", outcome: null, detail: "" }
      ])
    }
  }

  // Subscribed before the snapshot is read, in the same step: every change after the snapshot arrives as an
  // event (the supervisor delivers them once its transitions are over, never in the middle of this step).
  yield* supervisor.activityChanges.pipe(
    Stream.runForEach((event) =>
      event._tag === "Removed"
        ? Effect.flatMap(
          supervisor.lastExit(WorkerHandle.make(event.slot, event.generation)),
          (exit) => Effect.sync(() => apply(event, clock.currentTimeMillisUnsafe(), Option.getOrUndefined(exit)))
        )
        : Effect.sync(() => apply(event, clock.currentTimeMillisUnsafe(), undefined))
    ),
    Effect.forkScoped({ startImmediately: true })
  )
  const initial = yield* supervisor.activity
  const now = clock.currentTimeMillisUnsafe()
  for (const row of initial) {
    const key = WorkerHandle.format(row)
    if (!rows.has(key)) {
      rows.set(key, row)
      record(entriesOf(undefined, row, row.backendStart ?? now))
    }
  }

  if (Option.isSome(gucs)) {
    const registry = gucs.value
    settings = yield* registry.settings
    yield* registry.changes.pipe(
      Stream.runForEach(() =>
        Effect.map(registry.settings, (next) => {
          settings = next
          publish({ type: "settings", seq: ++seq, settings: next })
        })
      ),
      Effect.forkScoped
    )
  }

  const snapshot = (): Snapshot => ({
    type: "snapshot",
    seq,
    now: clock.currentTimeMillisUnsafe(),
    slots: slots(),
    rows: Array.from(rows.values()).sort((a, b) => a.slot - b.slot),
    timeline: timeline.slice(),
    settings
  })

  const feed: Feed = {
    snapshot,
    subscribe: Effect.map(PubSub.subscribe(pubsub), (subscription) => ({
      snapshot: snapshot(),
      messages: Stream.fromSubscription(subscription)
    })),
    rows: () => Array.from(rows.values()).sort((a, b) => a.slot - b.slot),
    row: (worker) => rows.get(worker),
    timeline: () => timeline.slice(),
    settings: () => settings,
    slots
  }
  return feed
})
