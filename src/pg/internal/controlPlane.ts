/**
 * The supervisor side of the control plane: the attachment (an advisory lock on a session of its own),
 * the request consumer (LISTEN plus a periodic poll), the status followers, and the view publishers.
 *
 * @internal
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberMap from "effect/FiberMap"
import * as Latch from "effect/Latch"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Migrator from "effect/sql/Migrator"
import { SqlClient } from "effect/sql/SqlClient"
import { SqlError, UnknownError } from "effect/sql/SqlError"
import * as Stream from "effect/Stream"
import { randomUUID } from "node:crypto"
import type { ActivityRow } from "../../Activity.ts"
import * as Guc from "../../Guc.ts"
import { Supervisor } from "../../Supervisor.ts"
import type { SupervisorApi } from "../../Supervisor.ts"
import * as WorkerHandle from "../../WorkerHandle.ts"
import * as Sql from "./controlPlaneSql.ts"

export interface ResolvedOptions {
  readonly schema: string
  readonly channel: string
  readonly pollInterval: Duration.Duration
  readonly publishInterval: Duration.Duration
}

const logAnnotations = { module: "effect-bgworker/pg/ControlPlane" }

/**
 * Keeps a background loop alive: a SQL failure is logged as a warning and a defect as an error, and the
 * caller retries. An interruption-only cause (a listen queue closed under us) is retried silently; if this
 * fiber itself is being interrupted, the retry's sleep ends it.
 */
const survive = (what: string) => <A, E extends { readonly message: string }, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.catchCause(effect, (cause) => {
    if (Cause.hasInterruptsOnly(cause)) return Effect.void
    const error = Cause.findErrorOption(cause)
    return error._tag === "Some"
      ? Effect.logWarning(`${what}: ${error.value.message}; retrying`)
      : Effect.logError(`${what}; retrying`, cause)
  })

/** Creates the schema if needed, then runs the pending migrations (recorded in `<schema>._migrations`). */
export const migrate = (
  schema: string
): Effect.Effect<ReadonlyArray<readonly [id: number, name: string]>, SqlError | Migrator.MigrationError, SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    // Two processes creating it at once: one of them fails, and its second try finds it.
    yield* sql.unsafe(`CREATE SCHEMA IF NOT EXISTS ${schema}`).pipe(Effect.retry({ times: 1 }))
    return yield* Migrator.make({})({
      loader: Migrator.fromRecord({
        "0001_init": Effect.forEach(Sql.init(schema), (statement) => sql.unsafe(statement), { discard: true })
      }),
      table: `${schema}._migrations`
    })
  })

/**
 * Each supervisor gets one id for its whole life, so a control plane that detaches and attaches again (a
 * lost session, a layer rebuilt) still recognises the workers it launched.
 */
const supervisorIds = new WeakMap<SupervisorApi, string>()
const idOf = (supervisor: SupervisorApi): string => {
  let id = supervisorIds.get(supervisor)
  if (id === undefined) {
    id = randomUUID()
    supervisorIds.set(supervisor, id)
  }
  return id
}

const statusText = (status: WorkerHandle.WorkerStatus): string => {
  switch (status._tag) {
    case "NotYetStarted":
      return "not yet started"
    case "Started":
      return "started"
    case "Stopped":
      return "stopped"
    case "PostmasterDied":
      return "postmaster died"
  }
}

interface PendingRow {
  readonly id: bigint
  readonly kind: "launch" | "terminate" | "set_latch" | "reload"
  readonly library: string | null
  readonly function: string | null
  readonly arg: unknown
  readonly no_arg: boolean
  /** `bgw_name` / `bgw_type` given to `launch`, else the entry point's. */
  readonly name: string | null
  readonly type: string | null
  readonly requested_by: string
  readonly target: bigint | null
  readonly target_state: string | null
  readonly target_supervisor: string | null
  readonly target_handle: string | null
}

const activityRecord = (row: ActivityRow) => ({
  worker_handle: WorkerHandle.format(row),
  slot: row.slot,
  pid: row.pid,
  name: row.name,
  backend_type: row.backendType,
  origin: row.origin,
  registration: row.registration,
  state: row.state,
  query: row.query,
  backend_start: row.backendStart,
  state_change: row.stateChange,
  wait_event_type: row.waitEventType,
  wait_event: row.waitEvent,
  restart_count: row.restartCount,
  last_exit_kind: row.lastExit?.kind ?? null,
  last_exit_message: row.lastExit?.message ?? null,
  last_exit_at: row.lastExit?.at ?? null,
  next_restart_at: row.nextRestartAt,
  given_up_reason: row.givenUpReason
})

const ms = (column: string) => `CASE WHEN x.${column} IS NULL THEN NULL ELSE to_timestamp(x.${column} / 1000.0) END`

export const make = (
  options: ResolvedOptions
): Effect.Effect<void, SqlError | Migrator.MigrationError, Scope.Scope | Supervisor | PgClient.PgClient | SqlClient> =>
  Effect.gen(function*() {
    const { channel, pollInterval, publishInterval, schema } = options
    const sql = yield* SqlClient
    const pg = yield* PgClient.PgClient
    const supervisor = yield* Supervisor
    const gucs = yield* Effect.serviceOption(Guc.Gucs)
    const me = idOf(supervisor)
    const table = (name: string) => sql(`${schema}.${name}`)

    yield* migrate(schema)
    yield* sql`UPDATE ${table("_config")} SET channel = ${channel}`

    /** Open while this process holds the lock: only then are requests processed and views written. */
    const attached = yield* Latch.make(false)
    const wake = yield* Queue.sliding<void>(1)
    const activityDirty = yield* Queue.sliding<void>(1)
    const settingsDirty = yield* Queue.sliding<void>(1)
    const followers = yield* FiberMap.make<string>()
    /** Launched, but the row could not be marked yet: never launch these twice. */
    const unrecorded = new Map<string, WorkerHandle.WorkerHandle>()
    const written = { activity: undefined as string | undefined, settings: undefined as string | undefined }
    const signal = (queue: Queue.Queue<void>) => Queue.offer(queue, undefined)

    // --- handle statuses ---

    const writeStatus = (id: bigint, status: WorkerHandle.WorkerStatus) =>
      sql`UPDATE ${table("_requests")}
        SET status = ${statusText(status)}, pid = ${status._tag === "Started" ? status.pid : null}
        WHERE id = ${id} AND supervisor_id = ${me}`.pipe(
        Effect.retry({ times: 5, schedule: Schedule.exponential("20 millis") }),
        Effect.catch((error) =>
          Effect.logWarning(`could not record the status of background worker handle ${id}: ${error.message}`)
        )
      )

    /** Mirrors a launched worker's status into its request row until the registration is forgotten. */
    const follow = (id: bigint, handle: WorkerHandle.WorkerHandle) =>
      FiberMap.run(
        followers,
        String(id),
        supervisor.changes(handle).pipe(Stream.runForEach((status) => writeStatus(id, status))),
        { onlyIfMissing: true }
      )

    // --- attachment ---

    /** What a newly attached supervisor finds: other supervisors' workers are gone, its own are followed again. */
    const takeOver = Effect.gen(function*() {
      yield* sql`UPDATE ${table("_requests")} SET status = 'postmaster died', pid = NULL
        WHERE kind = 'launch' AND supervisor_id IS DISTINCT FROM ${me} AND status IN ('not yet started', 'started')`
      yield* sql`DELETE FROM ${table("_activity")} WHERE supervisor_id <> ${me}`
      yield* sql`DELETE FROM ${table("_settings")} WHERE supervisor_id <> ${me}`
      const mine = yield* sql<{ readonly id: bigint; readonly handle: string }>`
        SELECT id, handle FROM ${table("_requests")}
        WHERE kind = 'launch' AND supervisor_id = ${me} AND status IN ('not yet started', 'started')`
      for (const row of mine) {
        const handle = WorkerHandle.parse(row.handle)
        if (handle !== undefined) yield* follow(row.id, handle)
      }
      written.activity = undefined
      written.settings = undefined
    })

    const ready = yield* Deferred.make<void>()
    const session = Effect.gen(function*() {
      const connection = yield* sql.reserve
      const run = (text: string, params: ReadonlyArray<unknown> = []) => connection.execute(text, params, undefined)
      const [row] = yield* run(Sql.tryLock(schema))
      if (row === undefined) {
        return yield* new SqlError({
          reason: new UnknownError({ cause: undefined, message: `schema "${schema}" does not exist` })
        })
      }
      if (row.locked !== true) {
        yield* Effect.logWarning(
          `another supervisor is attached to schema "${schema}"; this one waits until that session ends`
        )
        yield* Deferred.succeed(ready, undefined)
        yield* run(Sql.lock(schema))
      }
      yield* Effect.addFinalizer(() => Effect.ignore(run(Sql.unlock(schema))))
      yield* run(Sql.attach(schema), [me])
      yield* takeOver
      yield* attached.open
      yield* Effect.all([signal(wake), signal(activityDirty), signal(settingsDirty)], { discard: true })
      yield* Deferred.succeed(ready, undefined)
      yield* Effect.logDebug(`attached to schema "${schema}"`)
      // Holding the session is holding the lock: a failed ping means both are gone.
      return yield* Effect.forever(Effect.andThen(Effect.sleep(pollInterval), run("SELECT 1")))
    }).pipe(Effect.scoped, Effect.ensuring(attached.close))

    yield* session.pipe(
      survive(`lost the supervisor session on schema "${schema}"`),
      Effect.andThen(Deferred.succeed(ready, undefined)),
      Effect.andThen(Effect.sleep(pollInterval)),
      Effect.forever,
      Effect.annotateLogs(logAnnotations),
      Effect.forkScoped
    )

    // --- requests ---

    const markLaunched = (row: PendingRow, handle: WorkerHandle.WorkerHandle) =>
      Effect.gen(function*() {
        const status = yield* supervisor.status(handle)
        yield* sql`UPDATE ${table("_requests")}
          SET state = 'launched', processed_at = now(), supervisor_id = ${me},
              handle = ${WorkerHandle.format(handle)}, status = ${statusText(status)},
              pid = ${status._tag === "Started" ? status.pid : null}
          WHERE id = ${row.id}`
        unrecorded.delete(String(row.id))
        yield* follow(row.id, handle)
      })

    const launch = (row: PendingRow) =>
      Effect.gen(function*() {
        const known = unrecorded.get(String(row.id))
        if (known !== undefined) return yield* markLaunched(row, known)
        const entry = `${row.library}.${row.function}`
        const result = yield* Effect.result(supervisor.launch({
          library: row.library!,
          function: row.function!,
          argument: row.no_arg ? undefined : row.arg,
          name: row.name ?? undefined,
          type: row.type ?? undefined
        }))
        if (result._tag === "Failure") {
          const error = result.failure
          const state = error.reason._tag === "NoFreeSlot" ? "no_slot" : "refused"
          yield* Effect.logWarning(
            `could not launch "${entry}" for request ${row.id} by role "${row.requested_by}": ${error.message}`
          )
          return yield* sql`UPDATE ${table("_requests")}
            SET state = ${state}, processed_at = now(), supervisor_id = ${me}, error = ${error.message}
            WHERE id = ${row.id}`
        }
        const handle = result.success
        unrecorded.set(String(row.id), handle)
        yield* Effect.logInfo(
          `launched "${entry}" as background worker ${
            WorkerHandle.format(handle)
          } for request ${row.id} by role "${row.requested_by}"`
        )
        yield* markLaunched(row, handle)
      })

    const signalWorker = (row: PendingRow) =>
      Effect.gen(function*() {
        // The launch is processed first (lower id); if it failed to be marked, try again later.
        if (row.target_state === "requested") return
        const handle = row.target_supervisor === me && row.target_handle !== null
          ? WorkerHandle.parse(row.target_handle)
          : undefined
        const action = row.kind === "terminate" ? "terminate" : "set_latch"
        if (handle !== undefined) {
          yield* action === "terminate" ? supervisor.terminate(handle) : supervisor.setLatch(handle)
        }
        yield* Effect.logInfo(
          `${action} of background worker handle ${row.target} requested by role "${row.requested_by}"${
            handle === undefined ? " (no worker of this supervisor)" : ""
          }`
        )
        yield* sql`UPDATE ${table("_requests")}
          SET state = 'done', processed_at = now(), supervisor_id = ${me},
              error = ${handle === undefined ? "the handle has no worker of this supervisor" : null}
          WHERE id = ${row.id}`
      })

    const reload = (row: PendingRow) =>
      Effect.gen(function*() {
        yield* Effect.logInfo(`reload requested by role "${row.requested_by}"`)
        yield* supervisor.reload
        yield* sql`UPDATE ${table("_requests")} SET state = 'done', processed_at = now(), supervisor_id = ${me}
          WHERE id = ${row.id}`
      })

    const pending = (after: bigint) =>
      sql<PendingRow>`
        SELECT r.id, r.kind, r.library, r.function, r.arg, r.arg IS NULL AS no_arg, r.name, r.type, r.requested_by,
               t.id AS target, t.state AS target_state, t.supervisor_id AS target_supervisor,
               t.handle AS target_handle
        FROM ${table("_requests")} r LEFT JOIN ${table("_requests")} t ON t.id = r.target
        WHERE r.state = 'requested' AND r.id > ${after}
        ORDER BY r.id
        LIMIT 100`

    /** Every unprocessed request, in id order (one consumer: the lock holder). */
    const drain = Effect.gen(function*() {
      let after = 0n
      while (true) {
        const rows = yield* pending(after)
        for (const row of rows) {
          yield* row.kind === "launch" ? launch(row) : row.kind === "reload" ? reload(row) : signalWorker(row)
          after = row.id
        }
        // A short page was the last one: rows committed meanwhile come with a notification (or the poll),
        // which wakes the consumer again, so asking once more would only cost a round trip.
        if (rows.length < 100) return
      }
    })

    yield* Effect.gen(function*() {
      yield* attached.await
      yield* drain.pipe(survive("could not process requests"))
      // A notification, or the poll interval: a missed notification costs at most this long.
      yield* Effect.timeoutOption(Queue.take(wake), pollInterval)
    }).pipe(Effect.forever, Effect.annotateLogs(logAnnotations), Effect.forkScoped)

    // LISTEN only wakes the consumer: after each (re)connection it drains, so nothing sent meanwhile is lost.
    yield* Effect.scoped(Effect.gen(function*() {
      const notifications = yield* pg.listen(channel)
      yield* signal(wake)
      while (true) {
        yield* Queue.take(notifications)
        yield* signal(wake)
      }
    })).pipe(
      survive(`LISTEN ${channel} failed`),
      Effect.andThen(Effect.sleep(pollInterval)),
      Effect.forever,
      Effect.annotateLogs(logAnnotations),
      Effect.forkScoped
    )

    // --- views ---

    const writeActivity = Effect.gen(function*() {
      const json = JSON.stringify((yield* supervisor.activity).map(activityRecord))
      if (json === written.activity) return
      yield* sql.withTransaction(Effect.gen(function*() {
        yield* sql`DELETE FROM ${table("_activity")} WHERE supervisor_id = ${me}`
        yield* sql.unsafe(
          `INSERT INTO ${schema}._activity
           SELECT $1, x.worker_handle, x.slot, x.pid, x.name, x.backend_type, x.origin, x.registration, x.state,
                  x.query, ${ms("backend_start")}, ${ms("state_change")}, x.wait_event_type, x.wait_event,
                  x.restart_count, x.last_exit_kind, x.last_exit_message, ${ms("last_exit_at")},
                  ${ms("next_restart_at")}, x.given_up_reason
           FROM jsonb_to_recordset($2::jsonb) AS x(
             worker_handle text, slot integer, pid integer, name text, backend_type text, origin text,
             registration text, state text, query text, backend_start float8, state_change float8,
             wait_event_type text, wait_event text, restart_count integer, last_exit_kind text,
             last_exit_message text, last_exit_at float8, next_restart_at float8, given_up_reason text)`,
          [me, json]
        )
      }))
      written.activity = json
    })

    const writeSettings = Effect.gen(function*() {
      if (gucs._tag === "None") return
      const json = JSON.stringify(yield* gucs.value.settings)
      if (json === written.settings) return
      yield* sql.withTransaction(Effect.gen(function*() {
        yield* sql`DELETE FROM ${table("_settings")} WHERE supervisor_id = ${me}`
        yield* sql.unsafe(
          `INSERT INTO ${schema}._settings
           SELECT $1, x.name, x.setting, x.unit, x.category, x.short_desc, x.extra_desc, x.context, x.vartype,
                  x.source, x.min_val, x.max_val, x.enumvals, x.boot_val, x.reset_val, x.sourcefile,
                  x.sourceline, x.pending_restart
           FROM jsonb_to_recordset($2::jsonb) AS x(
             name text, setting text, unit text, category text, short_desc text, extra_desc text, context text,
             vartype text, source text, min_val text, max_val text, enumvals text[], boot_val text,
             reset_val text, sourcefile text, sourceline integer, pending_restart boolean)`,
          [me, json]
        )
      }))
      written.settings = json
    })

    /** Writes after a change, at most once per `publishInterval`: a burst of changes costs one write. */
    const publisher = (dirty: Queue.Queue<void>, write: Effect.Effect<void, SqlError>, what: string) =>
      Effect.gen(function*() {
        yield* Queue.take(dirty)
        yield* attached.await
        yield* write.pipe(
          Effect.catch((error) =>
            Effect.andThen(
              Effect.logWarning(`could not publish ${what}: ${error.message}; retrying`),
              Effect.andThen(Effect.sleep(pollInterval), signal(dirty))
            )
          )
        )
        yield* Effect.sleep(publishInterval)
      }).pipe(Effect.forever, Effect.annotateLogs(logAnnotations), Effect.forkScoped)

    yield* supervisor.activityChanges.pipe(Stream.runForEach(() => signal(activityDirty)), Effect.forkScoped)
    yield* publisher(activityDirty, writeActivity, "the activity view")
    if (gucs._tag === "Some") {
      yield* gucs.value.changes.pipe(Stream.runForEach(() => signal(settingsDirty)), Effect.forkScoped)
      yield* publisher(settingsDirty, writeSettings, "the settings view")
    }

    // Built once the first attempt to attach has finished (attached, waiting as a standby, or failed).
    yield* Deferred.await(ready)
  })
