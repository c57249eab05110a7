/**
 * The activity view: what every worker is doing, like `pg_stat_activity`, plus what PostgreSQL cannot show.
 *
 * PostgreSQL: `pgstat_report_activity` (src/backend/utils/activity/backend_status.c) and the
 * `pg_stat_activity` view; `pg_wait_events` for the wait-event catalogue.
 *
 * One row per registration. Running workers fill PostgreSQL's columns (`pid`, `backendType`, `name`,
 * `state`, `query`, `backendStart`, `stateChange`, `waitEventType`, `waitEvent`). Rows also exist for
 * workers that are registered but not running, which PostgreSQL does not list: `registration` says
 * why (`not yet started`, `waiting for restart`, `given up`), with `restartCount`, `lastExit` and
 * `nextRestartAt`.
 *
 * Times are milliseconds since the epoch, read from Effect's `Clock` (so a `TestClock` drives them).
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import type * as Stream from "effect/Stream"
import { CurrentWorker, Supervisor } from "./internal/context.ts"
import * as proc from "./internal/proc.ts"
import { alignedTable } from "./internal/table.ts"

/**
 * `pg_stat_activity.state`.
 *
 * @category models
 * @since 0.1.0
 */
export type BackendState =
  | "starting"
  | "active"
  | "idle"
  | "idle in transaction"
  | "idle in transaction (aborted)"
  | "fastpath function call"
  | "disabled"

/**
 * Where a registration is in its life.
 *
 * @category models
 * @since 0.1.0
 */
export type Registration = "running" | "not yet started" | "waiting for restart" | "given up"

/**
 * How an incarnation ended.
 *
 * - `done`: returned (exit 0): the registration is forgotten.
 * - `failed`: a typed failure, a terminate signal, a failed start, or a defect in a worker without shared
 *   state (exit 1): restarted per its schedule. `message` is the `WorkerFailure` message its schedule was
 *   stepped with.
 * - `crashed`: a defect in a worker with shared-state access: a crash restart of every worker.
 * - `killed`: ended by the supervisor: `terminated by crash restart`, `terminated by shutdown`,
 *   `terminated by death` (postmaster death), or `abandoned after ...` (it did not end within
 *   `abandonTimeout` after being interrupted).
 *
 * The supervisor classifies each end once; this row, the postmaster's log line and the restart decision
 * are all derived from that one classification.
 *
 * @category models
 * @since 0.1.0
 */
export interface LastExit {
  readonly kind: "done" | "failed" | "crashed" | "killed"
  readonly message: string
  readonly at: number
  /** The last query the worker reported (`Failed process was running: ...`). */
  readonly query: string
}

/**
 * @category models
 * @since 0.1.0
 */
export interface ActivityRow {
  readonly slot: number
  readonly generation: number
  /**
   * `null` unless running. A database worker's pid is its session's backend pid (it joins
   * `pg_stat_activity.pid`), and `null` until that session is open; other workers show their
   * {@link incarnation}.
   */
  readonly pid: number | null
  /** The supervisor's own number for the running incarnation; `null` unless running. */
  readonly incarnation: number | null
  readonly name: string
  readonly backendType: string
  readonly origin: "static" | "dynamic"
  readonly registration: Registration
  /** `null` unless running. */
  readonly state: BackendState | null
  readonly query: string
  readonly backendStart: number | null
  readonly stateChange: number | null
  readonly waitEventType: string | null
  readonly waitEvent: string | null
  readonly restartCount: number
  readonly lastExit: LastExit | null
  readonly nextRestartAt: number | null
  /** Why a `given up` worker was given up. */
  readonly givenUpReason: string | null
  /**
   * The database role the worker's session runs as (`pg_stat_activity.usename`): the role a launch for a
   * caller resolved, else the one its definition named at its last start; `null` for a worker without a
   * database or one that runs as the connector's own login.
   */
  readonly role: string | null
}

/**
 * A change to the view: a row changed (or appeared), or a registration was forgotten.
 *
 * @category models
 * @since 0.1.0
 */
export type ActivityEvent =
  | { readonly _tag: "Updated"; readonly row: ActivityRow }
  | { readonly _tag: "Removed"; readonly slot: number; readonly generation: number; readonly name: string }

/**
 * One entry of the wait-event catalogue (`pg_wait_events`).
 *
 * @category models
 * @since 0.1.0
 */
export interface WaitEventInfo {
  readonly type: "Extension" | "IPC"
  readonly name: string
  readonly id: number
}

/**
 * Reports what the current worker is doing (`pgstat_report_activity(state, query)`): sets `state`, and
 * `query` when given.
 *
 * @category reporting
 * @since 0.1.0
 */
export const report = (state: BackendState, query?: string): Effect.Effect<void, never, CurrentWorker> =>
  CurrentWorker.useSync((worker) => proc.procOf(worker).report(state, query))

/**
 * The whole view now, in slot order.
 *
 * @see {@link changes}
 * @see {@link report}
 * @category views
 * @since 0.1.0
 */
export const snapshot: Effect.Effect<ReadonlyArray<ActivityRow>, never, Supervisor> = Supervisor.use((s) => s.activity)

/**
 * Every change from now on, as it happens. Ends when the supervisor dies.
 *
 * @category views
 * @since 0.1.0
 */
export const changes: Effect.Effect<Stream.Stream<ActivityEvent>, never, Supervisor> = Supervisor.useSync((s) =>
  s.activityChanges
)

/**
 * The wait events seen so far (`pg_wait_events`, the `Extension` and bgworker `IPC` entries).
 *
 * @category views
 * @since 0.1.0
 */
export const waitEvents: Effect.Effect<ReadonlyArray<WaitEventInfo>, never, Supervisor> = Supervisor.use((s) =>
  s.waitEvents
)

/**
 * Renders rows as an aligned text table, for logs and examples. Control characters in names, wait events and
 * messages are escaped (`\n`, `\x1b`): a worker's name comes from whoever registered it, and must not add a
 * row or reach the terminal.
 *
 * @category formats
 * @since 0.1.0
 */
export const formatTable = (rows: ReadonlyArray<ActivityRow>, now: number): string => {
  const header = ["pid", "name", "type", "registration", "state", "wait_event", "restarts", "last_exit", "next_restart"]
  const body = rows.map((r) => [
    r.pid === null ? "" : String(r.pid),
    r.name,
    r.backendType,
    r.registration,
    r.state ?? "",
    r.waitEvent ?? "",
    String(r.restartCount),
    r.lastExit === null ? "" : `${r.lastExit.kind}: ${r.lastExit.message}`.slice(0, 48),
    r.nextRestartAt === null ? "" : `in ${Math.max(0, r.nextRestartAt - now)} ms`
  ])
  return alignedTable(header, body)
}
