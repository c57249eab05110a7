/**
 * The PostgreSQL server's own configuration as a source of the supervisor's parameters: `ALTER SYSTEM SET
 * worker_spi.naptime = 5; SELECT pg_reload_conf();` in psql reaches the workers, as it would reach
 * worker_spi inside the server.
 *
 * PostgreSQL: custom placeholder variables (`add_placeholder_variable`, `MarkGUCPrefixReserved` in
 * src/backend/utils/misc/guc.c), `ProcessConfigFile(PGC_SIGHUP)` (guc-file.l), `pg_reload_conf`,
 * `pg_conf_load_time`, the `pg_file_settings` and `pg_db_role_setting` catalogs, `current_setting`.
 *
 * **What is read.** Every setting whose name has a dot (`prefix.name`) at the server level: from
 * `postgresql.conf`, its includes and `postgresql.auto.conf` (what `ALTER SYSTEM` writes), and, for
 * parameters the supervisor has defined, the server's command line (`postgres -c worker_spi.naptime=5`).
 * Plain names never: `max_worker_processes` on the server is the server's own parameter, not the
 * supervisor's. PostgreSQL lists a custom setting whose library the server has not loaded (a placeholder)
 * nowhere with its source: not in `pg_settings`, not in `SHOW ALL`; `current_setting(name, true)` gives the
 * session's value (with `ALTER ROLE`/`ALTER DATABASE` settings applied), and only `pg_file_settings` gives
 * the files' entries, with file and line. The values become the registry's external
 * source, `server configuration` (see `Guc.replaceExternal`), with the server's file and line when the
 * server tells them: `Guc.settings` (and the control plane's `bgworker.settings`) then shows
 * `5 | server configuration | /…/postgresql.auto.conf | 3` where `SHOW worker_spi.naptime` says `5`.
 * A name the server holds for a parameter the supervisor never defines stays a placeholder, as in
 * PostgreSQL; one under a reserved prefix (`Guc.reservePrefix`) that no parameter has is refused at each
 * reload with `invalid configuration parameter name`.
 *
 * **Precedence**, lowest to highest: the default < the supervisor's configuration file and its auto file
 * (`Guc.layer({ configFile })`) < the server's configuration < environment variables (`BGW_*`) < `overrides`
 * < `Guc.set`. The server's configuration beats the supervisor's files as `ALTER SYSTEM` beats
 * `postgresql.conf`, and the environment beats it as the server's command line beats `ALTER SYSTEM`.
 *
 * **When.** PostgreSQL does not tell clients about a reload, but every backend processes a pending SIGHUP
 * before its next query and records when in `pg_conf_load_time()`. {@link layer} asks for that time every
 * `interval` (250 ms by default: one tiny query). When it moves on (or when the supervisor defines new
 * parameters), it reads the values in one transaction. When they differ from the last ones, it hands them
 * to the registry and runs `Supervisor.reload`, as SIGHUP does: the registry re-reads the supervisor's
 * files and validates everything, then every worker's reload flag and latch are set, so a napping worker
 * runs a cycle with the new values at once. An unrelated `pg_reload_conf()` changes nothing and wakes
 * nobody.
 *
 * **Validation** is the registry's, as for the supervisor's own files: an invalid value (the server accepts
 * anything for a placeholder, `ALTER SYSTEM SET worker_spi.naptime = 'abc'` included) keeps the old one and
 * is logged with the server's file and line (`invalid value for parameter "worker_spi.naptime": "abc" in file
 * "/…/postgresql.auto.conf" line 3`); a changed `postmaster` parameter keeps its value, is marked
 * `pending_restart` and logged (`parameter "worker_spi.total_workers" cannot be changed without restarting
 * the server`); a setting removed from the server's configuration (`ALTER SYSTEM RESET`) falls back to the
 * supervisor's files, else the default. A syntax error in the supervisor's own files holds back every
 * change, the server's included, until a reload finds them valid (PostgreSQL: a syntax error anywhere
 * changes nothing).
 *
 * **At start.** {@link layer} sits above the supervisor, which it needs to wake the workers; by then the
 * preloads have defined their parameters with the files' values. Values found by its first read apply with
 * a reload, so a `postmaster` parameter set on the server would be pending restart forever. Put
 * {@link layerStartup} below the supervisor as well: it reads the server's configuration once before the
 * preloads run, so parameters are defined with the server's values, `postmaster` ones included, as
 * PostgreSQL reads `postgresql.auto.conf` at start.
 *
 * **Privileges.** `pg_conf_load_time()`, `current_setting` and `pg_db_role_setting` are open to every role.
 * The files' view, `pg_file_settings`, is for superusers only by default (not even `pg_read_all_settings`
 * members); grant it to the supervisor's role with `GRANT SELECT ON pg_catalog.pg_file_settings TO r; GRANT
 * EXECUTE ON FUNCTION pg_catalog.pg_show_all_file_settings() TO r;`. Without it (logged once at info level)
 * only parameters the supervisor has defined are followed, through its session's `current_setting`, without
 * file and line, and a setting that `ALTER ROLE` or `ALTER DATABASE` gives the supervisor's own session
 * hides the server-level value, so that name is left out (logged once at warning level) and falls back to
 * the supervisor's files.
 *
 * **Outages.** A check that fails (the server down, a query that takes longer than `timeout`) is logged once
 * at warning level; the values last read stay in force, the checks go on every `interval`, and the first
 * one that succeeds logs the end at info level and reads everything again. Nothing crashes.
 *
 * **Deliberate differences**
 *
 * - Only server-level configuration counts. Values from `ALTER DATABASE ... SET` and `ALTER ROLE ... SET`
 *   are per-session in PostgreSQL; the supervisor is one process for every database and role, so they never
 *   reach it (with the files' view they are not even looked at).
 * - The supervisor sees a reload up to `interval` after the server, not at once.
 * - A value is the one the supervisor's session has loaded, with the file and line `pg_file_settings` gives
 *   when the file still holds that value. A file edited (or `ALTER SYSTEM`) without `pg_reload_conf()`
 *   counts only after the reload, as in the server; the files' view reads the files when queried, so a
 *   value set for the supervisor's session by `ALTER ROLE`/`ALTER DATABASE` is replaced by the file's value
 *   as it is on disk, reloaded or not.
 * - An empty value from `current_setting` counts as unset: PostgreSQL leaves a placeholder removed from the
 *   files at `''` rather than unsetting it. An explicit empty value is seen only with the files' view.
 *
 * @since 0.2.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { SqlClient } from "effect/sql/SqlClient"
import type * as SqlError from "effect/sql/SqlError"
import * as Guc from "../Guc.ts"
import { Supervisor } from "../Supervisor.ts"
import { serverText } from "./internal/serverText.ts"

const logAnnotations = { module: "effect-bgworker/pg/ServerSettings" }

/**
 * Options for {@link layer} and {@link layerStartup}.
 *
 * @category models
 * @since 0.2.0
 */
export interface Options {
  /** Time between two checks of `pg_conf_load_time()`. Default 250 milliseconds. */
  readonly interval?: Duration.Input | undefined
  /** Bound on one check, and on one read of the values. Default 2 seconds. */
  readonly timeout?: Duration.Input | undefined
}

/**
 * How {@link read} reads the server's configuration: `"files"` through `pg_file_settings` (superusers, or
 * roles granted it), `"session"` through the session's `current_setting` (every other role).
 *
 * @category models
 * @since 0.2.0
 */
export type Mode = "files" | "session"

/**
 * One read of the server's configuration.
 *
 * @category models
 * @since 0.2.0
 */
export interface ServerConfiguration {
  readonly mode: Mode
  /** `pg_conf_load_time()` of the session that read the values, in microseconds since the Unix epoch. */
  readonly loadTime: bigint
  /** The values, in name order, ready for `Guc.replaceExternal`. */
  readonly settings: ReadonlyArray<Guc.ExternalSetting>
  /** Names left out in `"session"` mode: `ALTER ROLE`/`ALTER DATABASE` set them for this session. */
  readonly hidden: ReadonlyArray<string>
}

/** `prefix.name`, as the registry accepts custom names; the only names ever put into SQL text. */
const customName = /^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)+$/

const loadTimeQuery = (sql: SqlClient) =>
  Effect.map(
    sql<{ readonly t: string }>`SELECT (extract(epoch FROM pg_catalog.pg_conf_load_time()) * 1000000)::int8::text AS t`,
    (rows) => BigInt(rows[0]?.t ?? "0")
  )

interface FileRow {
  readonly name: string
  readonly setting: string
  readonly sourcefile: string | null
  readonly sourceline: number | null
}

interface SessionRow {
  readonly name: string
  readonly setting: string | null
  readonly shadowed: boolean
}

/** The last entry of each dotted name in the server's files (later entries win, as in the server). */
const fileRows = (sql: SqlClient) =>
  sql<FileRow>`
    SELECT name, setting, sourcefile, sourceline
    FROM pg_catalog.pg_file_settings
    WHERE error IS NULL AND name LIKE '%.%'
    ORDER BY seqno`

/**
 * Each name's value in this session, and whether `ALTER ROLE`/`ALTER DATABASE` sets it for this session
 * (then the session's value is not the server-level one).
 */
const sessionRows = (sql: SqlClient, names: ReadonlyArray<string>) =>
  sql<SessionRow>`
    SELECT n.name, pg_catalog.current_setting(n.name, true) AS setting,
      EXISTS (
        SELECT 1 FROM pg_catalog.pg_db_role_setting s, pg_catalog.unnest(s.setconfig) AS c(entry)
        WHERE s.setdatabase IN
            (0, (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()))
          AND s.setrole IN (0, (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = session_user))
          AND pg_catalog.lower(pg_catalog.split_part(c.entry, '=', 1)) = pg_catalog.lower(n.name)
      ) AS shadowed
    FROM pg_catalog.unnest(pg_catalog.string_to_array(${names.join(",")}::text, ',')) AS n(name)`

/**
 * The session's values, name by name when the batch fails (`current_setting` refuses a real server
 * parameter the role may not read): such a name is left out.
 */
const sessionValues = (sql: SqlClient, names: ReadonlyArray<string>) =>
  names.length === 0
    ? Effect.succeed<ReadonlyArray<SessionRow>>([])
    : sql.withTransaction(sessionRows(sql, names)).pipe(
      Effect.catchIf(
        (e: SqlError.SqlError) => e.reason._tag !== "ConnectionError",
        () =>
          Effect.map(
            Effect.forEach(names, (name) => Effect.result(sql.withTransaction(sessionRows(sql, [name])))),
            (results) => results.flatMap((r) => r._tag === "Success" ? r.success : [])
          )
      )
    )

/**
 * Reads the server-level configuration once, in one transaction (so the values and `loadTime` are the
 * same session's): every dotted name of the server's files, and `names` (the parameters the supervisor
 * defined). See the module doc for what counts.
 *
 * **Details**
 *
 * With `pg_file_settings` readable (`"files"` mode), a name the files hold gets the file's value with its
 * file and line, unless the session has loaded another value (the file was edited since the last reload, or
 * the server's command line sets it: then the loaded value, without file and line); `ALTER ROLE`/`ALTER
 * DATABASE` settings of the session are skipped in favour of the file. Otherwise (`"session"` mode) only
 * `names` are read, through `current_setting`, and those the session's role or database sets are left out
 * (listed in `hidden`).
 *
 * @category reading
 * @since 0.2.0
 */
export const read = (
  names: ReadonlyArray<string>
): Effect.Effect<ServerConfiguration, SqlError.SqlError, SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    return yield* sql.withTransaction(Effect.gen(function*() {
      const loadTime = yield* loadTimeQuery(sql)
      // A nested transaction is a savepoint: a refusal leaves the outer transaction usable.
      const files = yield* sql.withTransaction(fileRows(sql)).pipe(
        Effect.map((rows): ReadonlyArray<FileRow> | undefined => rows),
        Effect.catchIf((e) => e.reason._tag === "AuthorizationError", () => Effect.succeed(undefined))
      )
      const defined = new Map<string, string>()
      for (const name of names) if (customName.test(name)) defined.set(name.toLowerCase(), name)
      const inFiles = new Map<string, FileRow>()
      for (const row of files ?? []) {
        if (customName.test(row.name)) inFiles.set(row.name.toLowerCase(), row)
      }
      const all = new Set<string>([...defined.keys(), ...inFiles.keys()])
      const rows = yield* sessionValues(sql, Array.from(all))
      const settings: Array<Guc.ExternalSetting> = []
      const hidden: Array<string> = []
      for (const row of rows) {
        const key = row.name.toLowerCase()
        const name = defined.get(key) ?? key
        const file = inFiles.get(key)
        const fromFile = (f: FileRow): Guc.ExternalSetting => ({
          name,
          value: f.setting,
          ...(f.sourcefile === null ? {} : { file: f.sourcefile }),
          ...(f.sourceline === null ? {} : { line: f.sourceline })
        })
        if (row.shadowed) {
          // The session's value is the role's or the database's: only the files can say the server's.
          if (file !== undefined) settings.push(fromFile(file))
          else if (files === undefined) hidden.push(name)
          continue
        }
        const loaded = row.setting
        // A placeholder removed from the files reads '' (PostgreSQL resets it rather than removing it).
        if (loaded === null || (loaded === "" && file?.setting !== "")) continue
        settings.push(file !== undefined && file.setting === loaded ? fromFile(file) : { name, value: loaded })
      }
      settings.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
      hidden.sort()
      const mode: Mode = files === undefined ? "session" : "files"
      return { mode, loadTime, settings, hidden }
    }))
  })

/** The dotted names of the registry's parameters, sorted. */
const definedNames = (gucs: Guc.GucsApi): ReadonlyArray<string> =>
  gucs.parameterNames().filter((name) => name.includes(".")).sort()

/** What the checks of one registry remember, shared by {@link layerStartup} and {@link layer}. */
interface FollowerState {
  /** `pg_conf_load_time()` of the last read; undefined: read at the next check. */
  loaded: bigint | undefined
  /** The defined names of the last read. */
  names: string
  mode: Mode | undefined
  /** Hidden names already logged. */
  readonly hidden: Set<string>
  /** Why the last check failed; undefined while checks succeed. */
  down: string | undefined
}

const states = new WeakMap<Guc.GucsApi, FollowerState>()

const stateOf = (gucs: Guc.GucsApi): FollowerState => {
  let state = states.get(gucs)
  if (state === undefined) {
    state = { loaded: undefined, names: "", mode: undefined, hidden: new Set(), down: undefined }
    states.set(gucs, state)
  }
  return state
}

/**
 * One check: read when `pg_conf_load_time()` moved on, when the defined names changed, or after a
 * failure; hand changed values to the registry; `onStored` runs the reload.
 */
const makeFollower = (options: Options, onStored: Effect.Effect<void>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const gucs = yield* Guc.Gucs
    const timeout = Duration.fromInputUnsafe(options.timeout ?? "2 seconds")
    const state = stateOf(gucs)

    const bounded = <A, R>(effect: Effect.Effect<A, SqlError.SqlError, R>) =>
      effect.pipe(
        Effect.mapError(serverText),
        Effect.timeoutOrElse({
          duration: timeout,
          orElse: () => Effect.fail(`no answer within ${Duration.format(timeout)}`)
        })
      )

    const checkOnce: Effect.Effect<void, string> = Effect.gen(function*() {
      const names = definedNames(gucs)
      const key = names.join(",")
      const now = yield* bounded(loadTimeQuery(sql))
      if (state.loaded !== undefined && now <= state.loaded && key === state.names) return
      const configuration = yield* bounded(Effect.provideService(read(names), SqlClient, sql))
      if (configuration.mode !== state.mode) {
        state.mode = configuration.mode
        if (state.mode === "session") {
          yield* Effect.logInfo(
            "the server's configuration is read through this session's current_setting, for defined parameters " +
              "only and without file and line: this role may not read pg_file_settings (grant SELECT on it and " +
              "EXECUTE on pg_show_all_file_settings() to read the files)"
          )
        }
      }
      for (const name of configuration.hidden) {
        if (state.hidden.has(name)) continue
        state.hidden.add(name)
        yield* Effect.logWarning(
          `parameter "${name}" is set for this session by ALTER ROLE or ALTER DATABASE, which hides the server's ` +
            "configuration from a role that may not read pg_file_settings; the server's value is not used"
        )
      }
      const update = yield* gucs.replaceExternal(configuration.settings)
      state.loaded = configuration.loadTime
      state.names = key
      if (update === "stored") yield* onStored
    })

    /** One check; a failure is logged once (at warning level) until a check succeeds again. */
    const check: Effect.Effect<void> = checkOnce.pipe(
      Effect.matchEffect({
        onFailure: (message) => {
          state.loaded = undefined // everything is read again once the server answers
          if (state.down !== undefined) return Effect.void
          state.down = message
          return Effect.logWarning(
            `cannot read the server's configuration: ${message}; the values last read stay in force, ` +
              "checking again until it answers"
          )
        },
        onSuccess: () => {
          if (state.down === undefined) return Effect.void
          state.down = undefined
          return Effect.logInfo("the server's configuration is readable again")
        }
      })
    )
    return { check: Effect.annotateLogs(check, logAnnotations) }
  })

/**
 * Follows the server's configuration for the life of the layer (see the module doc): a check of
 * `pg_conf_load_time()` every `interval`, and `Supervisor.reload` when the server's values change.
 *
 * **Details**
 *
 * Building the layer runs the first check (bounded by `timeout`; a failure is logged and the checks go on).
 * Needs the registry (`Guc.Gucs`), a `SqlClient` on the server (`EmbeddedPostgres.clientLayer`; the checks
 * share its pool) and the supervisor, so it goes above `Supervisor.layer` in the stack; add
 * {@link layerStartup} below the supervisor so that preloads define their parameters with the server's
 * values.
 *
 * **Gotchas**
 *
 * - The reload is the supervisor's: it re-reads the supervisor's own files too, logs every change, and does
 *   nothing during a fast or immediate shutdown (the values then wait for the next reload).
 * - Sleeps on the `Clock` in context: under a `TestClock` it checks once and then waits for the clock.
 *
 * @category layers
 * @since 0.2.0
 */
export const layer = (
  options: Options = {}
): Layer.Layer<never, never, SqlClient | Guc.Gucs | Supervisor> =>
  Layer.effectDiscard(Effect.gen(function*() {
    const supervisor = yield* Supervisor
    const interval = Duration.fromInputUnsafe(options.interval ?? "250 millis")
    const { check } = yield* makeFollower(
      options,
      Effect.logInfo("the server's configuration changed: asking every worker to reload").pipe(
        Effect.annotateLogs(logAnnotations),
        Effect.andThen(supervisor.reload)
      )
    )
    yield* check
    // A check every 250 ms would be a trace each: the poll makes no spans.
    yield* Effect.forkScoped(
      Effect.forever(Effect.andThen(Effect.sleep(interval), check)).pipe(Effect.withTracerEnabled(false))
    )
  }))

/**
 * Reads the server's configuration once, for the supervisor's start: put it below `Supervisor.layer` (and
 * above the registry and the `SqlClient`), so that the preloads define their parameters with the server's
 * values, `postmaster` ones included (see `Guc.replaceExternal`). {@link layer} follows the changes after
 * that.
 *
 * **Details**
 *
 * A server that does not answer within `timeout` is logged at warning level and the supervisor starts
 * without the server's values; {@link layer} brings them once the server answers (then a `postmaster`
 * parameter is pending restart). Built after the supervisor instead, it applies the values with the
 * registry's reload (`Guc.reload`), without waking the workers.
 *
 * @category layers
 * @since 0.2.0
 */
export const layerStartup = (
  options: Options = {}
): Layer.Layer<never, never, SqlClient | Guc.Gucs> =>
  Layer.effectDiscard(Effect.gen(function*() {
    const gucs = yield* Guc.Gucs
    const { check } = yield* makeFollower(options, Effect.asVoid(gucs.reload))
    yield* check
  }))
