/**
 * What each control-plane command does on its session: the statements, and how their results are printed.
 * The commands' flags and help are in `Cli.ts`.
 *
 * @internal
 */
import type * as PgClient from "@effect/sql-pg/PgClient"
import * as Console from "effect/Console"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { SqlError } from "effect/sql/SqlError"
import { escape } from "../../internal/logText.ts"
import { connect, resolve } from "./connection.ts"
import { cell, cut, json, table } from "./format.ts"
import { CliFailure, queryFailure } from "./report.ts"
import { checkSchemaName } from "./validate.ts"

/** The flags every command shares. */
export interface Common {
  readonly databaseUrl: string | undefined
  readonly schema: string
  readonly json: boolean
}

/**
 * Runs `f` on one session of the server `common` names, with the validated schema; a statement's failure
 * becomes psql's `ERROR:` lines, and every failure is printed to stderr here.
 */
export const withSession = <A>(
  common: Common,
  f: (sql: PgClient.PgClient, schema: string) => Effect.Effect<A, SqlError | CliFailure>
): Effect.Effect<A, CliFailure> =>
  Effect.gen(function*() {
    const schema = yield* checkSchemaName(common.schema)
    const target = yield* resolve(common.databaseUrl)
    const sql = yield* connect(target)
    return yield* f(sql, schema).pipe(
      Effect.catchTag("SqlError", (error) => Effect.fail(queryFailure(error, schema)))
    )
  }).pipe(Effect.scoped, reported)

/** Prints a failure to stderr once, then fails with it (its exit code, marked as reported). */
export const reported = <A, R>(effect: Effect.Effect<A, CliFailure, R>): Effect.Effect<A, CliFailure, R> =>
  Effect.tapError(effect, (failure) => Console.error(failure.render()))

// --- ps ---

interface ActivityRow {
  readonly handle: bigint | number | null
  readonly pid: number | null
  readonly name: string
  readonly backend_type: string
  readonly registration: string
  readonly state: string | null
  readonly wait_event_type: string | null
  readonly wait_event: string | null
  readonly restart_count: number
  readonly last_exit_kind: string | null
  readonly last_exit_message: string | null
  readonly next_restart_in_ms: number | null
  /** The supervisor process the worker runs in (a UUID; absent from schemas before migration 4). */
  readonly process?: string | null
}

const psHeader = [
  "handle",
  "pid",
  "name",
  "type",
  "registration",
  "state",
  "wait_event",
  "restarts",
  "last_exit",
  "next_restart",
  "process"
]

const psRow = (r: ActivityRow): ReadonlyArray<string> => [
  cell(r.handle),
  cell(r.pid),
  r.name,
  r.backend_type,
  r.registration,
  cell(r.state),
  r.wait_event === null ? "" : r.wait_event_type === null ? r.wait_event : `${r.wait_event_type}:${r.wait_event}`,
  String(r.restart_count),
  r.last_exit_kind === null ? "" : cut(`${r.last_exit_kind}: ${r.last_exit_message ?? ""}`, 48),
  r.next_restart_in_ms === null ? "" : `in ${Math.max(0, r.next_restart_in_ms)} ms`,
  // The first 8 characters of its id, as `bgworker.processes.process` starts (enough to tell a few apart).
  r.process === undefined || r.process === null ? "" : r.process.slice(0, 8)
]

/** Every worker, as `bgworker.activity` has them (all its columns, and the time to the next restart). */
const activity = (sql: PgClient.PgClient, schema: string) =>
  sql.unsafe<ActivityRow & Record<string, unknown>>(
    `SELECT a.*, (extract(epoch FROM a.next_restart_at - pg_catalog.clock_timestamp()) * 1000)::integer
       AS next_restart_in_ms
     FROM ${schema}.activity a`
  )

/** `bgworker ps`: once, or every `watch` seconds (psql's `\watch`: a time line above each table). */
export const ps = (common: Common, watch: number | undefined) =>
  withSession(common, (sql, schema) => {
    const print = (rows: ReadonlyArray<ActivityRow & Record<string, unknown>>) =>
      common.json
        ? Console.log(json(rows.map(({ next_restart_in_ms: _, ...row }) => row)))
        : Console.log(table(psHeader, rows.map(psRow)))
    if (watch === undefined) return Effect.flatMap(activity(sql, schema), print)
    return Effect.gen(function*() {
      const now = yield* DateTime.now
      const rows = yield* activity(sql, schema)
      if (!common.json) yield* Console.log(`${DateTime.formatIso(now)} (every ${watch}s)\n`)
      yield* print(rows)
      if (!common.json) yield* Console.log("")
      yield* Effect.sleep(Duration.seconds(watch))
    }).pipe(Effect.forever)
  })

// --- launch and signals ---

export interface LaunchOptions {
  readonly library: string
  readonly function: string
  readonly arg: string | undefined
  readonly name: string | undefined
  readonly type: string | undefined
  /** Seconds to wait for the worker's start; `undefined`: do not wait. */
  readonly wait: number | undefined
  /** `--process`: a live process's id, or the start of one (as `bgworker ps` shows it); `undefined`: any. */
  readonly process: string | undefined
}

/**
 * The live process `--process` names: its exact id, else the only live process whose id starts with it (as
 * `ps` and `processes` show the first 8 characters). No match: the text as given, so that the server
 * raises its own error (`supervisor process "..." is not running`, SQLSTATE 22023).
 */
const resolveProcess = (sql: PgClient.PgClient, schema: string, given: string) =>
  Effect.gen(function*() {
    const rows = yield* sql.unsafe<{ readonly process: string }>(
      `SELECT process FROM ${schema}.processes
       WHERE live AND (process = $1 OR pg_catalog.left(process, pg_catalog.length($1)) = $1)
       ORDER BY process = $1 DESC, process`,
      [given]
    )
    if (rows.length === 0) return given
    if (rows[0]!.process === given || rows.length === 1) return rows[0]!.process
    return yield* new CliFailure({
      lines: [`bgworker: error: process "${escape(given)}" is ambiguous: it starts ${rows.length} live process ids`],
      hint: "bgworker processes lists them: give more of the id.",
      exitCode: 1,
      prefix: false
    })
  })

/**
 * `bgworker launch`: `launch` (committed at once: the session autocommits), then with `--wait`
 * `wait_for_startup`, as `worker_spi_launch` does in psql's autocommit: both the handle and the pid.
 */
export const launch = (common: Common, options: LaunchOptions) =>
  withSession(common, (sql, schema) =>
    Effect.gen(function*() {
      const process = options.process === undefined ? null : yield* resolveProcess(sql, schema, options.process)
      const [launched] = yield* sql.unsafe<{ readonly handle: bigint | number }>(
        // Without --process, the five-argument call: it works on a schema before migration 4 too.
        process === null
          ? `SELECT ${schema}.launch($1, $2, $3::jsonb, $4, $5) AS handle`
          : `SELECT ${schema}.launch($1, $2, $3::jsonb, $4, $5, $6) AS handle`,
        [
          options.library,
          options.function,
          options.arg ?? null,
          options.name ?? null,
          options.type ?? null,
          ...(process === null ? [] : [process])
        ]
      )
      const handle = launched!.handle
      if (options.wait === undefined) {
        if (common.json) return yield* Console.log(json(process === null ? { handle } : { handle, process }))
        return yield* Console.log(process === null ? `handle ${handle}` : `handle ${handle} process ${escape(process)}`)
      }
      const [started] = yield* sql.unsafe<{ readonly pid: number | null }>(
        `SELECT ${schema}.wait_for_startup($1, $2::interval) AS pid`,
        [handle, `${options.wait} seconds`]
      )
      const pid = started!.pid
      if (pid === null) {
        // RegisterDynamicBackgroundWorker found no free slot: worker_spi_launch's error.
        return yield* new CliFailure({
          lines: [
            "ERROR:  could not register background process",
            process === null
              ? "DETAIL:  No live supervisor process had a free slot."
              : `DETAIL:  Supervisor process ${escape(process)} had no free slot.`
          ],
          hint: process === null
            ? `You may need to increase "max_worker_processes" (the supervisors'), or start another supervisor process.`
            : `Launch without --process to use any live process with a free slot.`,
          exitCode: 1,
          prefix: false
        })
      }
      // The process it runs on (process_of, migration 4); absent on an older schema.
      const where = yield* sql.unsafe<{ readonly process: string | null }>(
        `SELECT ${schema}.process_of($1) AS process`,
        [handle]
      ).pipe(
        Effect.map((rows) => rows[0]?.process ?? null),
        Effect.catchTag("SqlError", () => Effect.succeed(null))
      )
      if (common.json) {
        return yield* Console.log(json(where === null ? { handle, pid } : { handle, pid, process: where }))
      }
      yield* Console.log(
        where === null ? `handle ${handle} pid ${pid}` : `handle ${handle} pid ${pid} process ${escape(where)}`
      )
    }))

/** `bgworker terminate` and `set-latch`: a request, applied by the supervisor after this session commits. */
export const signal = (common: Common, kind: "terminate" | "set_latch", handle: bigint) =>
  withSession(common, (sql, schema) =>
    Effect.gen(function*() {
      yield* sql.unsafe(`SELECT ${schema}.${kind}($1)`, [handle])
      const what = kind === "terminate" ? "terminate" : "set latch"
      yield* Console.log(
        common.json ? json({ handle, requested: kind }) : `${what} requested for handle ${handle}`
      )
    }))

/**
 * `bgworker reload`: `bgworker.reload()`, the SIGHUP of every live supervisor process; with `--process`,
 * `bgworker.reload(process)`, of that one only.
 */
export const reload = (common: Common, given: string | undefined) =>
  withSession(common, (sql, schema) =>
    Effect.gen(function*() {
      if (given === undefined) {
        yield* sql.unsafe(`SELECT ${schema}.reload()`)
        return yield* Console.log(common.json ? json({ requested: "reload" }) : "reload requested")
      }
      const process = yield* resolveProcess(sql, schema, given)
      yield* sql.unsafe(`SELECT ${schema}.reload($1::text)`, [process])
      yield* Console.log(
        common.json ? json({ requested: "reload", process }) : `reload requested for process ${escape(process)}`
      )
    }))

// --- processes ---

interface ProcessRow {
  readonly process: string
  readonly host: string
  readonly os_pid: number
  readonly started_at: Date
  readonly heartbeat_at: Date
  readonly live: boolean
  readonly coordinator: boolean
}

/** `bgworker processes`: the `bgworker.processes` view, the coordinator first, then by start time. */
export const processes = (common: Common) =>
  withSession(common, (sql, schema) =>
    Effect.gen(function*() {
      const rows = yield* sql.unsafe<ProcessRow & Record<string, unknown>>(
        `SELECT * FROM ${schema}.processes ORDER BY coordinator DESC, started_at, process`
      )
      if (common.json) return yield* Console.log(json(rows))
      yield* Console.log(table(
        ["process", "host", "pid", "started", "heartbeat", "live", "coordinator"],
        rows.map((r) => [
          r.process,
          cut(r.host, 40),
          String(r.os_pid),
          cell(r.started_at),
          cell(r.heartbeat_at),
          r.live ? "t" : "f",
          r.coordinator ? "t" : "f"
        ])
      ))
    }))

// --- settings ---

interface SettingRow {
  readonly name: string
  readonly setting: string | null
  readonly unit: string | null
  readonly context: string
  readonly source: string
  readonly pending_restart: boolean
  readonly short_desc: string | null
}

/** `bgworker settings [pattern]`: the `bgworker.settings` view, filtered by a psql-style pattern. */
export const settings = (common: Common, regex: string | undefined) =>
  withSession(common, (sql, schema) =>
    Effect.gen(function*() {
      const rows = yield* sql.unsafe<SettingRow & Record<string, unknown>>(
        regex === undefined
          ? `SELECT * FROM ${schema}.settings ORDER BY name`
          : `SELECT * FROM ${schema}.settings WHERE name OPERATOR(pg_catalog.~) $1 ORDER BY name`,
        regex === undefined ? [] : [regex]
      )
      if (common.json) return yield* Console.log(json(rows))
      yield* Console.log(table(
        ["name", "setting", "unit", "context", "source", "pending_restart", "description"],
        rows.map((r) => [
          r.name,
          cell(r.setting),
          cell(r.unit),
          r.context,
          r.source,
          r.pending_restart ? "t" : "f",
          cut(r.short_desc ?? "", 60)
        ])
      ))
    }))

/**
 * The parameter's row in `bgworker.settings`: `settings set` and `reset` change only parameters the
 * supervisor defines (so a typo is an error here, not a silent placeholder on the server).
 */
const defined = (sql: PgClient.PgClient, schema: string, name: string) =>
  Effect.flatMap(
    sql.unsafe<{ readonly context: string }>(`SELECT context FROM ${schema}.settings WHERE name = $1`, [name]),
    (rows) =>
      rows.length === 1 ? Effect.succeed(rows[0]!) : Effect.fail(
        new CliFailure({
          lines: [`ERROR:  unrecognized configuration parameter "${escape(name)}"`],
          hint: `bgworker settings lists the supervisor's parameters (empty while no supervisor is attached).`,
          exitCode: 1,
          prefix: false
        })
      )
  )

/** The parameter's name quoted part by part (`"worker_spi"."naptime"`), by the server. */
const quotedName = `(SELECT pg_catalog.string_agg(pg_catalog.quote_ident(p), '.')
   FROM pg_catalog.unnest(pg_catalog.string_to_array($1, '.')) AS p)`

/**
 * `bgworker settings set` / `reset`: `ALTER SYSTEM SET name TO 'value'` (or `RESET name`), quoted by the
 * server's `format`, then `pg_reload_conf()`, as a DBA would in psql; the supervisor's `ServerSettings`
 * layer picks it up. ALTER SYSTEM needs a superuser (or `GRANT ALTER SYSTEM ON PARAMETER`).
 */
export const alterSystem = (common: Common, name: string, value: string | undefined) =>
  withSession(common, (sql, schema) =>
    Effect.gen(function*() {
      const { context } = yield* defined(sql, schema, name)
      const [built] = yield* sql.unsafe<{ readonly statement: string }>(
        value === undefined
          ? `SELECT pg_catalog.format('ALTER SYSTEM RESET %s', ${quotedName}) AS statement`
          : `SELECT pg_catalog.format('ALTER SYSTEM SET %s TO %L', ${quotedName}, $2::text) AS statement`,
        value === undefined ? [name] : [name, value]
      )
      // ALTER SYSTEM cannot run in a transaction block: one statement, in autocommit.
      yield* sql.unsafe(built!.statement)
      yield* sql.unsafe("SELECT pg_catalog.pg_reload_conf()")
      if (common.json) {
        return yield* Console.log(json({ name, value: value ?? null, reset: value === undefined, context }))
      }
      yield* Console.log("ALTER SYSTEM")
      if (context === "postmaster") {
        yield* Console.error(
          `NOTICE:  parameter "${escape(name)}" cannot be changed without restarting the supervisor`
        )
      }
    }))
