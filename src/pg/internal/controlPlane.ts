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
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Migrator from "effect/sql/Migrator"
import { SqlClient } from "effect/sql/SqlClient"
import { SqlError, UnknownError } from "effect/sql/SqlError"
import * as Stream from "effect/Stream"
import { createHash, randomBytes, randomUUID, timingSafeEqual } from "node:crypto"
import * as os from "node:os"
import * as path from "node:path"
import type { ActivityRow } from "../../Activity.ts"
import * as Guc from "../../Guc.ts"
import { escapeBounded } from "../../internal/logText.ts"
import { Supervisor } from "../../Supervisor.ts"
import type { SupervisorApi } from "../../Supervisor.ts"
import * as WorkerHandle from "../../WorkerHandle.ts"
import { PgServer } from "../PgServer.ts"
import * as Sql from "./controlPlaneSql.ts"
import { serverText } from "./serverText.ts"

export interface ResolvedOptions {
  readonly schema: string
  /** This process's channel: random unless the options fixed one. */
  readonly channel: string
  readonly maxArgumentBytes: number
  readonly retention: Duration.Duration
  readonly pollInterval: Duration.Duration
  readonly publishInterval: Duration.Duration
  /** How `start` commits a launch on a session of its own: a libpq string, `false` for never, else derived. */
  readonly loopback: string | false | undefined
  /** How often this process's row in `_processes` is refreshed. */
  readonly heartbeatInterval: Duration.Duration
  /** How old a heartbeat must be before its process, if its liveness lock is free, is marked dead. */
  readonly deadAfter: Duration.Duration
}

const logAnnotations = { module: "effect-bgworker/pg/ControlPlane" }

/** The server's text of a cause's first failure or defect. */
const causeText = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.findErrorOption(cause)
  return serverText(error._tag === "Some" ? error.value : Cause.squash(cause))
}

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
      ? Effect.logWarning(`${what}: ${escapeBounded(serverText(error.value), 500)}; retrying`)
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
        "0001_init": Effect.forEach(Sql.init(schema), (statement) => sql.unsafe(statement), { discard: true }),
        "0002_security": Effect.forEach(Sql.security(schema), (statement) => sql.unsafe(statement), { discard: true }),
        "0003_fidelity": Effect.forEach(Sql.fidelity(schema), (statement) => sql.unsafe(statement), { discard: true }),
        "0004_processes": Effect.forEach(Sql.processes(schema), (statement) => sql.unsafe(statement), {
          discard: true
        })
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

/**
 * A request as the consumer reads it: every text cut to its limit and the argument left out when large,
 * so that no row, whatever was stored in it (by an older version, by hand), can make a page too big to
 * read. The sizes say whether anything was cut.
 */
interface PendingRow {
  readonly id: bigint
  readonly kind: "launch" | "terminate" | "set_latch" | "reload"
  readonly library: string | null
  readonly library_bytes: number | null
  readonly function: string | null
  readonly function_bytes: number | null
  /** Present when at most {@link inlineArgumentBytes}; fetched alone otherwise. */
  readonly arg: unknown
  readonly no_arg: boolean
  readonly arg_bytes: number | null
  /** `bgw_name` / `bgw_type` given to `launch`, else the entry point's. */
  readonly name: string | null
  readonly name_bytes: number | null
  readonly type: string | null
  readonly type_bytes: number | null
  readonly requested_by: string
  readonly target: bigint | null
  /** The process the caller named (NULL: any process with a free slot). */
  readonly process: string | null
  /** Processes that had no free slot for this (unnamed) launch. */
  readonly tried: ReadonlyArray<string>
}

const activityRecord = (row: ActivityRow) => ({
  worker_handle: WorkerHandle.format(row),
  slot: row.slot,
  pid: row.pid,
  incarnation: row.incarnation,
  usename: row.role,
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

/** Arguments up to this size come with the page of requests; larger ones are read one at a time. */
const inlineArgumentBytes = 64 * 1024

/**
 * Large arguments are read in pieces of this many characters, so that the driver never grows its read
 * buffer far: a large buffer, once freed, stays with the allocator and the process (measured by
 * `npm run bench -- abuse`: 40 arguments of 1 MiB leave 2-5 MB of RSS in pieces of 64 Ki characters, 25-40 MB
 * in pieces of 256 Ki or as bytes, up to 75 MB in one piece). The cost is time: `substr` scans UTF-8 text by
 * character, about 80 ms for a 1 MiB argument.
 */
const argumentPieceChars = 64 * 1024

/**
 * The request a fast-path notification carries (`launch` in controlPlaneSql.ts): the SHA-256 of the key
 * followed by the body, in hex, then the body. `undefined` for anything else: a plain wake-up (the request
 * id), a forgery (wrong signature: the key is this supervisor's secret), or a request claimed for another
 * supervisor.
 */
const signedLaunch = (payload: string, key: string, me: string): PendingRow | undefined => {
  if (payload.length <= 64) return undefined
  const signature = Buffer.from(payload.slice(0, 64), "hex")
  const body = payload.slice(64)
  const expected = createHash("sha256").update(key + body, "utf8").digest()
  if (signature.length !== expected.length || !timingSafeEqual(signature, expected)) return undefined
  let request: {
    readonly i: number | string
    readonly s: string
    readonly l: string
    readonly f: string
    readonly a: unknown
    /** Whether the argument is SQL NULL (no argument), rather than JSON `null`. */
    readonly x: boolean
    readonly n: string | null
    readonly t: string | null
    readonly r: string
    /** The process the caller named, if any. */
    readonly p?: string | null
  }
  try {
    request = JSON.parse(body)
  } catch {
    return undefined
  }
  if (request.s !== me) return undefined
  const bytes = (text: string | null) => (text === null ? null : Buffer.byteLength(text, "utf8"))
  return {
    id: BigInt(request.i),
    kind: "launch",
    library: request.l,
    library_bytes: bytes(request.l),
    function: request.f,
    function_bytes: bytes(request.f),
    arg: request.a,
    no_arg: request.x,
    arg_bytes: request.x ? null : Buffer.byteLength(JSON.stringify(request.a), "utf8"),
    name: request.n,
    name_bytes: bytes(request.n),
    type: request.t,
    type_bytes: bytes(request.t),
    requested_by: request.r,
    target: null,
    process: request.p ?? null,
    tried: []
  }
}

/** Requests deleted per statement by the retention. */
const purgeBatch = 1000

/** How often the retention runs: every half retention, between one poll interval and one minute. */
const purgeEvery = (retention: Duration.Duration, pollInterval: Duration.Duration): Duration.Duration =>
  Duration.max(pollInterval, Duration.min(Duration.minutes(1), Duration.divideUnsafe(retention, 2)))

/** Requests read per page. */
const pageSize = 100

const ms = (column: string) => `CASE WHEN x.${column} IS NULL THEN NULL ELSE to_timestamp(x.${column} / 1000.0) END`

/** libpq's quoting of a connection-string value. */
const libpqValue = (value: string): string => `'${value.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`

/**
 * How `start` reaches this database on a session of its own: the given string, or one derived from the
 * embedded server (its owner-only Unix socket, no password) or the server's URL (with its password, which
 * is then kept in the private `_config` table). Checked by connecting once; dblink is installed, in a schema
 * of its own closed to PUBLIC, when it is missing and this role may. `null` when any of it fails (logged
 * once, at Info: `start` still works, at commit).
 */
const resolveLoopback = (sql: SqlClient, schema: string, option: string | false | undefined) =>
  Effect.gen(function*() {
    if (option === false) return yield* Effect.fail("turned off with ControlPlane.layer({ loopback: false })")
    const server = yield* Effect.serviceOption(PgServer)
    const [here] = yield* sql<{ db: string; who: string; ext: string | null }>`
      SELECT pg_catalog.current_database() AS db, session_user::text AS who,
             (SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
              WHERE e.extname = 'dblink') AS ext`
    let ext = here!.ext
    if (ext === null) {
      ext = `${schema}_dblink`
      yield* sql.withTransaction(Effect.gen(function*() {
        yield* sql.unsafe(`CREATE SCHEMA IF NOT EXISTS ${ext}`)
        yield* sql.unsafe(`REVOKE ALL ON SCHEMA ${ext} FROM PUBLIC`)
        yield* sql.unsafe(`CREATE EXTENSION IF NOT EXISTS dblink SCHEMA ${ext}`)
        // It can reach other hosts: nobody else's, as closed as its schema.
        yield* sql.unsafe(`REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ${ext} FROM PUBLIC`)
      }))
    }
    let connection = option
    if (connection === undefined) {
      if (server._tag === "None") return yield* Effect.fail("no PgServer to derive a loopback connection from")
      const s = server.value
      const parts = s.localSocket !== undefined
        ? [`host=${libpqValue(path.dirname(s.localSocket))}`, `port=${s.port}`, `user=${libpqValue(here!.who)}`]
        : [
          `host=${libpqValue(s.host)}`,
          `port=${s.port}`,
          `user=${libpqValue(here!.who)}`,
          ...(here!.who === s.user && Redacted.value(s.password) !== ""
            ? [`password=${libpqValue(Redacted.value(s.password))}`]
            : [])
        ]
      connection = [...parts, `dbname=${libpqValue(here!.db)}`, `application_name='bgworker launch'`].join(" ")
    }
    // One connection now, so that a refused login says so here rather than at each call.
    yield* sql.unsafe(`SELECT ${ext}.dblink_connect('bgworker_loopback_check', $1)`, [connection])
    yield* sql.unsafe(`SELECT ${ext}.dblink_disconnect('bgworker_loopback_check')`)
    return connection
  }).pipe(
    Effect.catchCause((cause) => {
      const error = Cause.findErrorOption(cause)
      const why = error._tag === "Some"
        ? typeof error.value === "string" ? error.value : serverText(error.value)
        : Cause.pretty(cause)
      return Effect.as(
        Effect.logInfo(
          `SELECT ${schema}.start(...) launches at the caller's commit and returns NULL: ` +
            `no session of its own to commit a launch at once (${escapeBounded(why, 300)})`
        ).pipe(Effect.annotateLogs(logAnnotations)),
        null
      )
    })
  )

export const make = (
  options: ResolvedOptions
): Effect.Effect<void, SqlError | Migrator.MigrationError, Scope.Scope | Supervisor | PgClient.PgClient | SqlClient> =>
  Effect.gen(function*() {
    const { channel, maxArgumentBytes, pollInterval, publishInterval, retention, schema } = options
    const sql = yield* SqlClient
    const pg = yield* PgClient.PgClient
    const supervisor = yield* Supervisor
    const gucs = yield* Effect.serviceOption(Guc.Gucs)
    const me = idOf(supervisor)
    const table = (name: string) => sql(`${schema}.${name}`)

    yield* migrate(schema)

    /**
     * The connection string `start` commits launches with (dblink, as this supervisor's role), once checked;
     * NULL when there is none: `start` then launches at the caller's commit, and says so.
     */
    const loopback = yield* Effect.cached(resolveLoopback(sql, schema, options.loopback))

    /** Open while this process holds the lock: only then are requests processed and views written. */
    const attached = yield* Latch.make(false)
    const wake = yield* Queue.sliding<void>(1)
    const activityDirty = yield* Queue.sliding<void>(1)
    const settingsDirty = yield* Queue.sliding<void>(1)
    const followers = yield* FiberMap.make<string>()
    /** Launched, but the row could not be marked yet: never launch these twice. */
    const unrecorded = new Map<string, WorkerHandle.WorkerHandle>()
    /** Whether rows claimed by this supervisor may be left unfinished (at attach, after a failed drain). */
    let recoverClaims = true
    /** The key `launch` signs its fast-path notifications with (kept in `_config`, readable by no caller). */
    const wakeKey = randomBytes(32).toString("hex")
    /** Launches that came whole in a signed notification, in arrival order, for the consumer. */
    let direct: Array<PendingRow> = []
    /**
     * Requests this consumer has handled lately: a notification replayed, or a row recovered while its
     * notification was on its way, is never launched twice.
     */
    const handled = new Set<string>()
    const remember = (id: bigint) => {
      handled.add(String(id))
      if (handled.size > 10_000) handled.delete(handled.values().next().value!)
    }
    const written = { activity: undefined as string | undefined, settings: undefined as string | undefined }
    const signal = (queue: Queue.Queue<void>) => Queue.offer(queue, undefined)

    // --- handle statuses ---

    /** A worker that stopped: how it ended, for wait_for_startup's detail (a start that failed, say). */
    const stoppedBecause = (handle: WorkerHandle.WorkerHandle, status: WorkerHandle.WorkerStatus) =>
      status._tag === "Stopped"
        ? Effect.map(
          supervisor.lastExit(handle),
          (exit) => exit._tag === "Some" ? exit.value.message.slice(0, 2000) : null
        )
        : Effect.succeed(null)

    const writeStatus = (id: bigint, handle: WorkerHandle.WorkerHandle, status: WorkerHandle.WorkerStatus) =>
      Effect.flatMap(
        stoppedBecause(handle, status),
        (because) =>
          sql`UPDATE ${table("_requests")}
        SET status = ${statusText(status)}, pid = ${status._tag === "Started" ? status.pid : null},
            error = coalesce(error, ${because})
        WHERE id = ${id} AND supervisor_id = ${me}`
      ).pipe(
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
        supervisor.changes(handle).pipe(Stream.runForEach((status) => writeStatus(id, handle, status))),
        { onlyIfMissing: true }
      )

    // --- attachment ---

    /**
     * What a newly attached supervisor finds. Another supervisor that is gone (its liveness lock is free and,
     * if it is registered, its heartbeat has lapsed) is dead, and so are its workers: their statuses say so, its views go, and what it claimed but never
     * launched is queued again (at least once). Another that still lives (it lost its lock session, not its
     * process) keeps its workers and its rows. Its own workers are followed again.
     */
    const takeOver = Effect.gen(function*() {
      // A registered process whose heartbeat is fresh lives, even while its liveness session is being
      // reconnected: it is left to the heartbeat's marking (`buryProcess`), which needs both to lapse.
      const dead = `${Sql.deadSupervisor("supervisor_id")} AND NOT EXISTS (
        SELECT 1 FROM ${schema}._processes p WHERE p.id = supervisor_id AND p.dead_at IS NULL
          AND p.heartbeat_at >= now() - interval '${Math.ceil(Duration.toMillis(options.deadAfter))} milliseconds')`
      yield* sql.unsafe(
        `UPDATE ${schema}._requests SET status = 'postmaster died', pid = NULL
         WHERE kind = 'launch' AND supervisor_id <> $1 AND status IN ('not yet started', 'started') AND ${dead}`,
        [me]
      )
      yield* sql.unsafe(
        `UPDATE ${schema}._requests SET state = 'requested', supervisor_id = NULL, processed_at = NULL
         WHERE state = 'processing' AND supervisor_id <> $1 AND ${dead}`,
        [me]
      )
      yield* sql.unsafe(`DELETE FROM ${schema}._activity WHERE supervisor_id <> $1 AND ${dead}`, [me])
      yield* sql.unsafe(`DELETE FROM ${schema}._settings WHERE supervisor_id <> $1 AND ${dead}`, [me])
      recoverClaims = true
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

    // --- the process registry ---

    /** Slots this process has free, as far as its activity (`rows`) tells (a launch still decides). */
    const freeOf = (rows: ReadonlyArray<unknown>) => Math.max(0, supervisor.maxWorkerProcesses() - rows.length)
    const freeSlots = Effect.map(supervisor.activity, freeOf)
    /** When this OS process started (`bgworker.processes.started_at`). */
    const startedAt = Date.now() - Math.round(process.uptime() * 1000)
    const register = sql.unsafe(Sql.register(schema), [
      me,
      os.hostname(),
      process.pid,
      startedAt,
      channel,
      wakeKey,
      supervisor.maxWorkerProcesses()
    ])

    /** How old a heartbeat must be, with the liveness lock free, for its process to be gone (an interval). */
    const deadAfter = `${Duration.toMillis(options.deadAfter)} milliseconds`

    /**
     * A process that died without detaching: its heartbeat lapsed and its liveness lock is free. Its workers
     * are gone with it (their launches say `postmaster died`), its rows leave the views, a request assigned to
     * it goes back to the attached supervisor (or, when the caller named it, is refused or done with the
     * reason), and what it claimed but never launched is queued again. Marked and buried in one transaction:
     * a burial cut short leaves it unmarked, to be buried at the next heartbeat, never marked dead with
     * requests still assigned to it; another process that marks it first leaves nothing to do here.
     */
    const buryProcess = (dead: string) =>
      Effect.gen(function*() {
        const marked = yield* sql.withTransaction(Effect.gen(function*() {
          if ((yield* sql.unsafe(Sql.markDead(schema), [deadAfter, dead])).length === 0) return false
          yield* sql`UPDATE ${table("_requests")} SET status = 'postmaster died', pid = NULL
            WHERE kind = 'launch' AND supervisor_id = ${dead} AND status IN ('not yet started', 'started')`
          yield* sql`UPDATE ${table("_requests")}
            SET state = CASE WHEN kind = 'launch' THEN 'refused' ELSE 'done' END, processed_at = now(),
                error = ${`supervisor process ${dead} died before it processed the request`}
            WHERE state IN ('requested', 'processing') AND process = ${dead}`
          yield* sql`UPDATE ${table("_requests")} SET state = 'requested', supervisor_id = NULL, processed_at = NULL,
              assigned_to = NULL
            WHERE state IN ('requested', 'processing') AND (assigned_to = ${dead} OR supervisor_id = ${dead})`
          yield* sql`DELETE FROM ${table("_activity")} WHERE supervisor_id = ${dead}`
          yield* sql`DELETE FROM ${table("_settings")} WHERE supervisor_id = ${dead}`
          return true
        }))
        if (!marked) return
        yield* Effect.logWarning(`supervisor process ${escapeBounded(dead, 64)} is gone: marked dead`)
        yield* signal(wake)
      })

    /** Completed once the liveness lock is first held. */
    const alive = yield* Deferred.make<void>()
    /**
     * The liveness lock: held for this supervisor's whole life on a session of its own, so that another
     * supervisor taking over can tell a supervisor that lost its lock session (alive) from one that is gone.
     */
    yield* Effect.gen(function*() {
      const connection = yield* sql.reserve
      yield* connection.execute(Sql.livenessLock(), [me], undefined)
      yield* Deferred.succeed(alive, undefined)
      // The session goes back to the pool: a session-level lock would stay with it.
      yield* Effect.addFinalizer(() => Effect.ignore(connection.execute(Sql.livenessUnlock(), [me], undefined)))
      return yield* Effect.forever(
        Effect.andThen(Effect.sleep(pollInterval), connection.execute("SELECT 1", [], undefined))
      )
    }).pipe(
      Effect.scoped,
      survive(`lost the liveness session on schema "${schema}"`),
      Effect.andThen(Effect.sleep(pollInterval)),
      Effect.forever,
      Effect.annotateLogs(logAnnotations),
      Effect.forkScoped
    )

    // Registered only once the liveness lock is held: a registered process is never without it while it lives.
    yield* Deferred.await(alive)
    yield* register
    // A process that is not attached publishes its workers too: from the start, not only on a change.
    yield* signal(activityDirty)
    // Detaching (the layer closed) takes the process out of the registry; its workers leave the views.
    yield* Effect.addFinalizer(() =>
      Effect.ignore(sql`DELETE FROM ${table("_processes")} WHERE id = ${me}`).pipe(Effect.withTracerEnabled(false))
    )
    yield* Effect.gen(function*() {
      yield* Effect.sleep(options.heartbeatInterval)
      const beat = yield* sql.unsafe<{ readonly was_dead: boolean }>(Sql.heartbeat(schema), [me, yield* freeSlots])
      if (beat.length === 0 || beat[0]!.was_dead) {
        // Marked dead while alive but cut off (no heartbeat, no liveness lock): registered and published again.
        yield* register
        written.activity = undefined
        yield* Effect.all([signal(wake), signal(activityDirty)], { discard: true })
      }
      const gone = yield* sql.unsafe<{ readonly id: string }>(Sql.lapsed(schema), [deadAfter])
      for (const { id } of gone) yield* buryProcess(id)
    }).pipe(
      survive(`could not refresh this process's heartbeat on schema "${schema}"`),
      Effect.forever,
      Effect.annotateLogs(logAnnotations),
      Effect.forkScoped
    )

    /**
     * The attachment's own session while attached: requests are claimed on it, so a claim is fenced by the
     * lock by construction (a lost session fails the claim; nobody else's session holds the lock).
     */
    let lockSession:
      | ((text: string, params: ReadonlyArray<unknown>) => Effect.Effect<ReadonlyArray<any>, SqlError>)
      | undefined = undefined

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
        // Not a fault: every process serves the requests addressed to it; only the coordinator's duties
        // (unaddressed requests, the channel) wait for that session to end.
        yield* Effect.logInfo(
          `another supervisor is attached to schema "${schema}" as coordinator; this one serves its own workers and the launches addressed to it, and takes over when that session ends`
        )
        yield* Deferred.succeed(ready, undefined)
        yield* run(Sql.lock(schema))
      }
      yield* Effect.addFinalizer(() => Effect.ignore(run(Sql.unlock(schema))))
      yield* run(Sql.attach(schema), [me])
      // Only now, holding the lock: a standby must not move the channel from under the attached supervisor.
      yield* run(Sql.configure(schema), [channel, maxArgumentBytes, wakeKey])
      yield* run(Sql.configureLoopback(schema), [yield* loopback])
      yield* takeOver
      lockSession = run
      yield* attached.open
      yield* Effect.all([signal(wake), signal(activityDirty), signal(settingsDirty)], { discard: true })
      yield* Deferred.succeed(ready, undefined)
      yield* Effect.logDebug(`attached to schema "${schema}"`)
      // Holding the session is holding the lock: a failed ping means both are gone.
      return yield* Effect.forever(Effect.andThen(Effect.sleep(pollInterval), run("SELECT 1")))
    }).pipe(
      Effect.scoped,
      Effect.ensuring(Effect.andThen(Effect.sync(() => void (lockSession = undefined)), attached.close))
    )

    yield* session.pipe(
      survive(`lost the supervisor session on schema "${schema}"`),
      Effect.andThen(Deferred.succeed(ready, undefined)),
      Effect.andThen(Effect.sleep(pollInterval)),
      Effect.forever,
      Effect.annotateLogs(logAnnotations),
      Effect.forkScoped
    )

    // --- requests ---

    /** The role that asked, as it can be logged: escaped and bounded (it came from SQL). */
    const who = (row: PendingRow) => escapeBounded(row.requested_by, 64)

    /** Records a refusal; `refusal` carries the SQLSTATE, detail and hint `wait_for_startup` raises with. */
    const refuse = (
      row: PendingRow,
      refusal: {
        readonly message: string
        readonly sqlstate?: string
        readonly detail?: string
        readonly hint?: string
      },
      state: "refused" | "no_slot" = "refused"
    ) =>
      Effect.andThen(
        Effect.annotateCurrentSpan({
          "bgworker.request.outcome": state,
          "bgworker.request.error": escapeBounded(refusal.message, 500)
        }),
        sql`UPDATE ${table("_requests")}
        SET state = ${state}, processed_at = now(), supervisor_id = ${me}, error = ${refusal.message.slice(0, 2000)},
            sqlstate = ${refusal.sqlstate ?? null}, detail = ${refusal.detail ?? null}, hint = ${refusal.hint ?? null}
        WHERE id = ${row.id} AND state = 'processing' AND supervisor_id = ${me}`
      )

    const markLaunched = (row: { readonly id: bigint }, handle: WorkerHandle.WorkerHandle) =>
      Effect.gen(function*() {
        const status = yield* supervisor.status(handle)
        const info = yield* supervisor.info(handle)
        const runAs = info._tag === "Some" ? info.value.role : null
        const because = yield* stoppedBecause(handle, status)
        const marked = yield* sql`UPDATE ${table("_requests")}
          SET state = 'launched', processed_at = now(), supervisor_id = ${me},
              handle = ${WorkerHandle.format(handle)}, status = ${statusText(status)},
              pid = ${status._tag === "Started" ? status.pid : null}, run_as = ${runAs}, error = ${because}
          WHERE id = ${row.id} AND supervisor_id = ${me} AND state = 'processing'
          RETURNING id`
        unrecorded.delete(String(row.id))
        yield* Effect.annotateCurrentSpan({
          "bgworker.request.outcome": marked.length === 0 ? "not claimed" : "launched",
          "bgworker.handle": WorkerHandle.format(handle)
        })
        if (marked.length === 0) {
          // Not a claim of this supervisor's (a fast-path notification replayed long after): stop the worker.
          yield* supervisor.terminate(handle)
          return yield* Effect.logWarning(
            `request ${row.id} was not claimed for this supervisor; its worker ${
              WorkerHandle.format(handle)
            } was stopped`
          )
        }
        yield* follow(row.id, handle)
      })

    /**
     * Why a row cannot be launched as stored, if it cannot: the limits `launch` checks at the call, for rows
     * that did not come through it (stored by hand, by an older version, or before a lower limit).
     */
    const overLimit = (row: PendingRow) => {
      const long = (field: string, bytes: number | null, limit: number) =>
        bytes !== null && bytes >= limit
          ? {
            message: `background worker ${field} is too long (${bytes} bytes)`,
            sqlstate: "22001",
            detail: `It holds at most ${limit - 1} bytes.`,
            hint: "More details may be available in the server log."
          }
          : undefined
      return long("library name", row.library_bytes, Sql.maxLibraryLen) ??
        long("function name", row.function_bytes, Sql.bgwMaxLen) ??
        long("name", row.name_bytes, Sql.bgwMaxLen) ??
        long("type", row.type_bytes, Sql.bgwMaxLen) ??
        (row.arg_bytes !== null && row.arg_bytes > maxArgumentBytes
          ? {
            message: `background worker argument is too large (${row.arg_bytes} bytes)`,
            sqlstate: "54000",
            detail: `The limit is ${maxArgumentBytes} bytes of JSON text (ControlPlane option maxArgumentBytes).`,
            hint: "Pass a key to data the worker reads itself, rather than the data."
          }
          : undefined)
    }

    /**
     * The row's argument: from the page when small, else read alone, in pieces of `argumentPieceChars`
     * characters of its JSON text. One large message would make the driver grow its read buffer to twice
     * the message, memory the allocator keeps after it is freed; pieces keep every message small.
     */
    const argumentOf = (row: PendingRow): Effect.Effect<unknown, SqlError> =>
      row.no_arg
        ? Effect.succeed(undefined)
        : row.arg_bytes !== null && row.arg_bytes > inlineArgumentBytes
        ? Effect.gen(function*() {
          // One conversion to text on the server, returned as rows of at most `argumentPieceChars` characters.
          const pieces = yield* sql<{ readonly piece: string }>`
            WITH x AS MATERIALIZED (SELECT arg::text AS t FROM ${table("_requests")} WHERE id = ${row.id})
            SELECT substr(x.t, g, ${argumentPieceChars}) AS piece
            FROM x, generate_series(1, length(x.t), ${argumentPieceChars}) g
            ORDER BY g`
          return yield* Effect.try({
            try: () => JSON.parse(pieces.map((p) => p.piece).join("")) as unknown,
            catch: (cause) =>
              new SqlError({
                reason: new UnknownError({ cause, message: `the stored argument is not valid JSON: ${String(cause)}` })
              })
          })
        })
        : Effect.succeed(row.arg)

    const launch = (row: PendingRow) =>
      Effect.gen(function*() {
        const known = unrecorded.get(String(row.id))
        if (known !== undefined) return yield* markLaunched(row, known)
        const entry = escapeBounded(`${row.library}.${row.function}`)
        const limit = overLimit(row)
        if (limit !== undefined) {
          yield* Effect.logWarning(
            `refused request ${row.id} by role "${who(row)}" to launch "${entry}": ${limit.message}`
          )
          return yield* refuse(row, limit)
        }
        const result = yield* Effect.result(supervisor.launch({
          library: row.library!,
          function: row.function!,
          argument: yield* argumentOf(row),
          name: row.name ?? undefined,
          type: row.type ?? undefined,
          caller: row.requested_by
        }))
        if (result._tag === "Failure") {
          const reason = result.failure.reason
          yield* Effect.logWarning(
            `could not launch "${entry}" for request ${row.id} by role "${who(row)}": ` +
              escapeBounded(reason.message, 500)
          )
          if (reason._tag === "PermissionDenied") {
            return yield* refuse(row, {
              message: reason.message,
              sqlstate: reason.code,
              detail: reason.detail ?? `Role "${reason.caller}" asked to launch background worker "${reason.worker}".`,
              hint: reason.hint ?? "More details may be available in the server log."
            })
          }
          if (reason._tag === "NoFreeSlot" && row.process === null) {
            // An unnamed launch: any live process with a free slot may take it; no_slot only when none can.
            const [other] = yield* sql.unsafe<{ readonly id: string; readonly channel: string }>(
              Sql.otherProcess(schema),
              [me, [...row.tried, me]]
            )
            if (other !== undefined) return yield* forward(row, other.id, { tried: true })
          }
          return yield* refuse(row, { message: reason.message }, reason._tag === "NoFreeSlot" ? "no_slot" : "refused")
        }
        const handle = result.success
        unrecorded.set(String(row.id), handle)
        yield* Effect.logInfo(
          `launched "${entry}" as background worker ${WorkerHandle.format(handle)} for request ${row.id} by role "${
            who(row)
          }"`
        )
        yield* markLaunched(row, handle)
      })

    const signalWorker = (row: PendingRow) =>
      Effect.gen(function*() {
        // The launch was processed first (lower id, same consumer): its row says where the worker is.
        const [target] = yield* sql<{
          readonly supervisor_id: string | null
          readonly handle: string | null
          readonly state: string
          readonly assigned_to: string | null
          readonly live: boolean
        }>`
          SELECT r.supervisor_id, r.handle, r.state, r.assigned_to,
                 EXISTS (SELECT 1 FROM ${table("_processes")} p WHERE p.dead_at IS NULL AND p.id =
                   CASE WHEN r.state IN ('launched', 'processing') THEN r.supervisor_id ELSE r.assigned_to END) AS live
          FROM ${table("_requests")} r WHERE r.id = ${row.target}`
        // Another live process runs the worker (or is to launch it): the signal goes there.
        const where = target === undefined
          ? null
          : target.state === "launched" || target.state === "processing"
          ? target.supervisor_id
          : target.assigned_to
        if (where !== null && where !== me && target?.live === true) return yield* forward(row, where)
        if (where === null && target?.state === "requested" && lockSession === undefined) {
          return yield* forward(row, null)
        }
        const handle = target?.supervisor_id === me && target.handle !== null
          ? WorkerHandle.parse(target.handle)
          : undefined
        const action = row.kind === "terminate" ? "terminate" : "set_latch"
        if (handle !== undefined) {
          yield* action === "terminate" ? supervisor.terminate(handle) : supervisor.setLatch(handle)
        }
        yield* Effect.logInfo(
          `${action} of background worker handle ${row.target} requested by role "${who(row)}"${
            handle === undefined ? " (no worker of this supervisor)" : ""
          }`
        )
        yield* Effect.annotateCurrentSpan("bgworker.request.outcome", handle === undefined ? "no worker" : "done")
        yield* sql`UPDATE ${table("_requests")}
          SET state = 'done', processed_at = now(), supervisor_id = ${me},
              error = ${handle === undefined ? "the handle has no worker of this supervisor" : null}
          WHERE id = ${row.id} AND supervisor_id = ${me}`
      })

    const reload = (row: PendingRow) =>
      Effect.gen(function*() {
        yield* Effect.logInfo(`reload requested by role "${who(row)}"`)
        yield* supervisor.reload
        yield* Effect.annotateCurrentSpan("bgworker.request.outcome", "done")
        yield* sql`UPDATE ${table("_requests")} SET state = 'done', processed_at = now(), supervisor_id = ${me}
          WHERE id = ${row.id} AND supervisor_id = ${me}`
      })

    /**
     * Claims the next page of requests: while attached, on the lock's session (fenced: see `lockSession` and
     * `Sql.claim`) the unassigned ones and those assigned to this process; otherwise only those assigned to
     * this process (`Sql.claimAssigned`), on any session.
     */
    const claimPage = (after: bigint): Effect.Effect<ReadonlyArray<PendingRow>, SqlError> =>
      (lockSession === undefined
        ? sql.unsafe(Sql.claimAssigned(schema), [me, after, inlineArgumentBytes, pageSize])
        : lockSession(Sql.claim(schema), [me, after, inlineArgumentBytes, pageSize])) as Effect.Effect<
          ReadonlyArray<PendingRow>,
          SqlError
        >

    /**
     * Hands a claimed request to another process (`to`; `null`: the attached supervisor) and wakes it: an
     * unnamed launch this process has no slot for (`tried`), or a signal for a worker that runs there.
     */
    const forward = (row: PendingRow, to: string | null, options: { readonly tried?: boolean } = {}) =>
      Effect.gen(function*() {
        yield* Effect.annotateCurrentSpan("bgworker.request.outcome", "forwarded")
        yield* sql`UPDATE ${table("_requests")}
          SET state = 'requested', supervisor_id = NULL, processed_at = NULL, assigned_to = ${to},
              tried = CASE WHEN ${options.tried === true} THEN array_append(tried, ${me}::text) ELSE tried END
          WHERE id = ${row.id} AND state = 'processing' AND supervisor_id = ${me}`
        yield* sql.unsafe(`SELECT ${schema}._notify($1)`, [row.id])
        yield* Effect.logDebug(
          `request ${row.id} handed to ${to === null ? "the attached supervisor" : `process ${escapeBounded(to, 64)}`}`
        )
      })

    /**
     * Rows this supervisor claimed but did not finish (a lost connection in the middle of a page): a launch
     * that ran is recorded, the others are queued again.
     */
    const recover = Effect.gen(function*() {
      // Claimed by `launch` for this supervisor a moment ago: its notification may still be on its way.
      const stuck = yield* sql<{ readonly id: bigint }>`
        SELECT id FROM ${table("_requests")} WHERE state = 'processing' AND supervisor_id = ${me}
          AND processed_at < now() - interval '2 seconds'`
      for (const { id } of stuck) {
        const launched = unrecorded.get(String(id))
        if (launched !== undefined) yield* markLaunched({ id }, launched)
        else if (!handled.has(String(id))) {
          yield* sql`UPDATE ${table("_requests")} SET state = 'requested', supervisor_id = NULL, processed_at = NULL
            WHERE id = ${id} AND state = 'processing' AND supervisor_id = ${me}`
        }
      }
      recoverClaims = false
    })

    /**
     * One request, never stalling the ones after it: a request that fails for its own content (an argument
     * the driver cannot read, a value the database rejects) is marked refused with the reason. A lost
     * connection is not the request's fault: it propagates, and the drain is tried again.
     */
    const processRow = (row: PendingRow) =>
      (row.kind === "launch" ? launch(row) : row.kind === "reload" ? reload(row) : signalWorker(row)).pipe(
        Effect.catch((error) =>
          // A lost connection is retried; so is a launch that ran but is not yet recorded (never launched twice).
          error.reason._tag === "ConnectionError" || unrecorded.has(String(row.id))
            ? Effect.fail(error)
            : Effect.andThen(
              Effect.logWarning(
                `refused request ${row.id} by role "${who(row)}": it could not be processed: ${
                  escapeBounded(error.message, 500)
                }`
              ),
              refuse(row, { message: `the request could not be processed: ${error.message.slice(0, 1000)}` })
            )
        ),
        // One span per request; a worker it launches starts its first incarnation's span under it.
        Effect.withSpan(`bgworker.request ${row.kind}`, {
          kind: "consumer",
          attributes: {
            "bgworker.request.id": String(row.id),
            "bgworker.request.kind": row.kind,
            "bgworker.request.requested_by": who(row),
            ...(row.kind === "launch"
              ? { "bgworker.request.entry_point": escapeBounded(`${row.library}.${row.function}`, 128) }
              : {})
          }
        }, { captureStackTrace: false }),
        // The consumer's loop runs with tracing off (its polls would be a trace each): a request is traced.
        Effect.withTracerEnabled(true)
      )

    /** Every unprocessed request, in id order (one consumer: the lock holder). */
    const drain = Effect.gen(function*() {
      // Launches that came whole in their notification first: they are already claimed for this supervisor.
      while (direct.length > 0) {
        const rows = direct
        direct = []
        for (const row of rows) {
          if (handled.has(String(row.id))) continue
          remember(row.id)
          yield* processRow(row)
        }
      }
      if (recoverClaims) yield* recover
      let after = 0n
      while (true) {
        recoverClaims = true // until the page is done: a failure in the middle leaves claimed rows
        const rows = yield* claimPage(after)
        for (const row of rows) {
          remember(row.id)
          yield* processRow(row)
          after = row.id
        }
        recoverClaims = false
        // A short page was the last one: rows committed meanwhile come with a notification (or the poll),
        // which wakes the consumer again, so asking once more would only cost a round trip.
        if (rows.length < pageSize) return
      }
    })

    yield* Effect.gen(function*() {
      yield* drain.pipe(survive("could not process requests"))
      // A notification, or the poll interval: a missed notification costs at most this long. A poll also
      // looks for fast-path claims whose notification never arrived.
      const woken = yield* Effect.timeoutOption(Queue.take(wake), pollInterval)
      if (woken._tag === "None") recoverClaims = true
    }).pipe(Effect.forever, Effect.annotateLogs(logAnnotations), Effect.forkScoped)

    // --- retention ---

    /** Processed requests older than `retention` go, in batches, while attached (one writer: the lock holder). */
    const purge = Effect.gen(function*() {
      const interval = `${Duration.toMillis(retention)} milliseconds`
      for (const statement of Sql.purge(schema)) {
        while (true) {
          const deleted = yield* sql.unsafe(`${statement} RETURNING 1`, [interval, purgeBatch])
          if (deleted.length < purgeBatch) break
        }
      }
    })
    yield* Effect.gen(function*() {
      yield* attached.await
      yield* purge.pipe(survive("could not delete old requests"))
      yield* Effect.sleep(purgeEvery(retention, pollInterval))
    }).pipe(Effect.forever, Effect.annotateLogs(logAnnotations), Effect.forkScoped)

    // LISTEN only wakes the consumer: after each (re)connection it drains, so nothing sent meanwhile is lost.
    yield* Effect.scoped(Effect.gen(function*() {
      const notifications = yield* pg.listen(channel)
      yield* signal(wake)
      while (true) {
        // Everything that arrived at once is one wake-up: a flood of notifications never piles up here.
        for (const notification of yield* Queue.takeAll(notifications)) {
          const row = signedLaunch(notification.payload, wakeKey, me)
          if (row !== undefined) direct.push(row)
        }
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
      const rows = yield* supervisor.activity
      const json = JSON.stringify(rows.map(activityRecord))
      if (json === written.activity) return
      yield* sql.withTransaction(Effect.gen(function*() {
        yield* sql`UPDATE ${table("_processes")}
          SET free_slots = ${freeOf(rows)} WHERE id = ${me}`
        yield* sql`DELETE FROM ${table("_activity")} WHERE supervisor_id = ${me}`
        yield* sql.unsafe(
          `INSERT INTO ${schema}._activity
           SELECT $1, x.worker_handle, x.slot, x.pid, x.name, x.backend_type, x.origin, x.registration, x.state,
                  x.query, ${ms("backend_start")}, ${ms("state_change")}, x.wait_event_type, x.wait_event,
                  x.restart_count, x.last_exit_kind, x.last_exit_message, ${ms("last_exit_at")},
                  ${ms("next_restart_at")}, x.given_up_reason, x.incarnation, x.usename
           FROM jsonb_to_recordset($2::jsonb) AS x(
             worker_handle text, slot integer, pid integer, name text, backend_type text, origin text,
             registration text, state text, query text, backend_start float8, state_change float8,
             wait_event_type text, wait_event text, restart_count integer, last_exit_kind text,
             last_exit_message text, last_exit_at float8, next_restart_at float8, given_up_reason text,
             incarnation integer, usename text)`,
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
    const publisher = (
      dirty: Queue.Queue<void>,
      write: Effect.Effect<void, SqlError>,
      what: string,
      onlyAttached: boolean
    ) =>
      Effect.gen(function*() {
        yield* Queue.take(dirty)
        if (onlyAttached) yield* attached.await
        // Every cause but this fiber's own interruption is retried: effect/sql turns a ROLLBACK that fails
        // (the session died in the write's transaction) into a defect, which must not end the publisher.
        yield* write.pipe(
          Effect.catchCause((cause) =>
            Cause.hasInterruptsOnly(cause) ? Effect.failCause(cause) : Effect.andThen(
              Effect.logWarning(`could not publish ${what}: ${escapeBounded(causeText(cause), 500)}; retrying`),
              Effect.andThen(Effect.sleep(pollInterval), signal(dirty))
            )
          )
        )
        yield* Effect.sleep(publishInterval)
      }).pipe(Effect.forever, Effect.annotateLogs(logAnnotations), Effect.forkScoped)

    yield* supervisor.activityChanges.pipe(Stream.runForEach(() => signal(activityDirty)), Effect.forkScoped)
    // Every registered process publishes its workers; the settings view is the attached supervisor's.
    yield* publisher(activityDirty, writeActivity, "the activity view", false)
    if (gucs._tag === "Some") {
      yield* gucs.value.changes.pipe(Stream.runForEach(() => signal(settingsDirty)), Effect.forkScoped)
      yield* publisher(settingsDirty, writeSettings, "the settings view", true)
    }

    // Built once the first attempt to attach has finished (attached, waiting as a standby, or failed).
    yield* Deferred.await(ready)
  })
