/**
 * Handles to registered workers and the status a handle reports.
 *
 * PostgreSQL: `BackgroundWorkerHandle` (`{slot, generation}`) and `BgwHandleStatus`
 * (`BGWH_STARTED`, `BGWH_NOT_YET_STARTED`, `BGWH_STOPPED`, `BGWH_POSTMASTER_DIED`), from
 * src/backend/postmaster/bgworker.c.
 *
 * A handle is plain, serialisable data: it can be stored, sent over a queue, or returned from SQL. The
 * supervisor compares the handle's generation with the slot's on every call, so a handle whose slot was
 * freed, or reused by another worker, reports `Stopped` and never another worker's pid. A handle follows
 * its own worker across restarts: after a restart it reports the new pid.
 *
 * @since 0.1.0
 */

/**
 * `{slot, generation}`: which slot, and which registration of that slot.
 *
 * @category models
 * @since 0.1.0
 */
export interface WorkerHandle {
  readonly slot: number
  readonly generation: number
}

/**
 * @category constructors
 * @since 0.1.0
 */
export const make = (slot: number, generation: number): WorkerHandle => ({ slot, generation })

/**
 * A stable text form, `"slot:generation"`, for logs and for the SQL control plane.
 *
 * @category formats
 * @since 0.1.0
 */
export const format = (handle: WorkerHandle): string => `${handle.slot}:${handle.generation}`

/**
 * Parses {@link format}'s output; `undefined` for anything else.
 *
 * @category constructors
 * @since 0.1.0
 */
export const parse = (text: string): WorkerHandle | undefined => {
  const match = /^(\d{1,9}):(\d{1,15})$/.exec(text)
  return match === null ? undefined : make(Number(match[1]), Number(match[2]))
}

/**
 * What a handle reports, exactly PostgreSQL's four answers.
 *
 * - `NotYetStarted`: registered, not started yet (waiting for a start gate, or for the supervisor to start).
 * - `Started`: running, with the pid of the current incarnation.
 * - `Stopped`: not running. As in PostgreSQL this is ambiguous on purpose: the worker may be waiting for a
 *   restart, may have ended for good, or may never have started (terminated early, shut down, slot reused).
 *   `Supervisor.info` tells these apart.
 * - `PostmasterDied`: the supervisor is gone (its scope closed, or it ended after a crash).
 *
 * @category models
 * @since 0.1.0
 */
export type WorkerStatus =
  | { readonly _tag: "NotYetStarted" }
  | { readonly _tag: "Started"; readonly pid: number }
  | { readonly _tag: "Stopped" }
  | { readonly _tag: "PostmasterDied" }

/**
 * @category constructors
 * @since 0.1.0
 */
export const NotYetStarted: WorkerStatus = { _tag: "NotYetStarted" }

/**
 * @category constructors
 * @since 0.1.0
 */
export const Stopped: WorkerStatus = { _tag: "Stopped" }

/**
 * @category constructors
 * @since 0.1.0
 */
export const PostmasterDied: WorkerStatus = { _tag: "PostmasterDied" }

/**
 * @category constructors
 * @since 0.1.0
 */
export const Started = (pid: number): WorkerStatus => ({ _tag: "Started", pid })
