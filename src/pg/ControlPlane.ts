/**
 * The SQL control plane: launch, wait for, signal and watch background workers from SQL, as
 * `worker_spi_launch`, `pg_terminate_backend`, `pg_reload_conf`, `pg_stat_activity` and `pg_settings` do.
 *
 * PostgreSQL: `worker_spi_launch` (src/test/modules/worker_spi/worker_spi.c),
 * `RegisterDynamicBackgroundWorker` and `WaitForBackgroundWorkerStartup` (src/backend/postmaster/bgworker.c),
 * `pg_terminate_backend` (src/backend/storage/ipc/signalfuncs.c).
 *
 * **The SQL API** (schema `bgworker` by default, installed and versioned by {@link layer}):
 *
 * | function | does |
 * |---|---|
 * | `bgworker.launch(library text, function text, arg jsonb DEFAULT NULL, name text DEFAULT NULL, type text DEFAULT NULL, process text DEFAULT NULL) RETURNS bigint` | asks for a launch (`name`/`type` are `bgw_name`/`bgw_type`, else the entry point's) on the named supervisor process, else on any with a free slot; returns the handle |
 * | `bgworker.wait_for_startup(handle bigint, timeout interval DEFAULT '10 seconds') RETURNS integer` | the pid (a database worker's backend pid); NULL when no slot was free (on the named process; on every live one for an unnamed launch) |
 * | `bgworker.start(library text, function text, arg jsonb DEFAULT NULL, name text DEFAULT NULL, type text DEFAULT NULL, timeout interval DEFAULT '10 seconds', process text DEFAULT NULL) RETURNS integer` | `launch` committed at once on a session of its own, then `wait_for_startup`: the pid, in one call, inside any transaction (see below) |
 * | `bgworker.cancel(handle bigint) RETURNS boolean` | withdraws a launch no supervisor has claimed yet: true when it will never start |
 * | `bgworker.terminate(handle bigint) RETURNS void` | `Supervisor.terminate`, on the process that runs the worker |
 * | `bgworker.set_latch(handle bigint) RETURNS void` | `Supervisor.setLatch`, on the process that runs the worker |
 * | `bgworker.reload() RETURNS void` | `Supervisor.reload` (SIGHUP) on every live process, as `pg_reload_conf` reaches every backend; superusers only unless granted |
 * | `bgworker.reload(process text) RETURNS void` | the same on the named process only (NULL: every live one, as `reload()`); whoever may call `reload()` |
 * | `bgworker.process_of(handle bigint) RETURNS text` | the process a launch runs on (or is to run on) |
 * | view `bgworker.activity` | `Activity.snapshot` of every live process, with the SQL `handle`, `requested_by` and `process` |
 * | view `bgworker.processes` | the supervisor processes attached to the control plane: `process` (id), `host`, `os_pid`, `started_at`, `attached_at`, `heartbeat_at`, `dead_at`, `live`, `coordinator` (the attached one), `max_workers`, `free_slots` |
 * | view `bgworker.settings` | `Guc.settings` (`pg_settings`' columns); empty without a `Gucs` registry |
 *
 * **From code** ({@link launch}, {@link waitForStartup}, {@link start}, {@link terminate}, {@link setLatch}):
 * the same functions, called on the `SqlClient` in context, so with its session's role and rights. A
 * program launches on any supervisor process on the database (it needs no supervisor of its own): on the
 * one `process` names (unknown or dead: {@link ProcessNotRunning}), or on any live one with a free slot;
 * {@link NoFreeSlot} only when every live process is full (or the named one is). {@link Started} names the
 * process the worker runs on. `Supervisor.launch`, by contrast, is local: it starts the worker in this
 * process's supervisor, with its slots, and returns a `WorkerHandle`.
 *
 * ```ts
 * import { ControlPlane } from "effect-bgworker/pg"
 * import * as Effect from "effect/Effect"
 *
 * // On the process whose id is in bgworker.processes, else on any with a free slot:
 * const onB = (process?: string) =>
 *   ControlPlane.start({ library: "demo", function: "napper", argument: { naptimeMs: 500 }, process }).pipe(
 *     Effect.tap((started) => Effect.log(`pid ${started.pid} on ${started.process}`)),
 *     Effect.catchTag("NoFreeSlot", (e) => Effect.logWarning(`${e.message}; ${e.hint}`))
 *   )
 * ```
 *
 * **How a request travels**
 *
 * Every call inserts a row into `bgworker._requests` and sends a `NOTIFY` on the supervisor's channel. The supervisor
 * side processes every unprocessed row in id order: at start, on each notification, and every
 * `pollInterval` (1 second by default) in case a notification was missed (the listener reconnecting, a row
 * inserted by hand). The row records the outcome: `launched` (with the worker's `slot:generation` handle,
 * its pid and status, kept up to date), `refused` (unknown entry point, argument that does not decode,
 * shutdown; with the message), `no_slot`, or `done` for signals. Delivery is at least once: a supervisor
 * that dies between launching and recording launches again when it comes back.
 *
 * **With several processes.** Every supervisor process on the database (each with its own `ControlPlane.layer`)
 * registers in `bgworker.processes` and publishes its workers into `bgworker.activity`; one of them is
 * attached (the *coordinator*, see "One consumer, fenced"). A request names where it runs
 * (`_requests.assigned_to`): a launch naming a process is assigned to it at the call (a process that is not
 * running fails the call: 22023), and the notification goes to that process's channel; an unnamed launch goes
 * to the coordinator, which starts it when it has a free slot and otherwise hands it to a live process that
 * has not tried it yet (`_requests.tried`; those reporting the most free slots first, a report that only
 * orders, since it may be stale), until one starts it or none is left (`no_slot`). A `terminate` or
 * `set_latch` is assigned to the process that launched the worker (or is to launch it); a process that
 * receives a signal for a worker that runs elsewhere hands it on. `reload()`
 * stores one request per live process. Each process claims only what is assigned to it, the coordinator also
 * what is assigned to nobody, in id order.
 *
 * **Liveness.** Each process refreshes its `heartbeat_at` every `heartbeatInterval` (1 second) and holds its
 * liveness lock (below) for its whole life. Every process marks dead, at each heartbeat, the processes whose
 * heartbeat is older than `deadAfter` (10 seconds) **and** whose liveness lock is free: a live process holds
 * its lock, so a late heartbeat (a process under load) never marks it. A dead process's workers leave
 * `bgworker.activity`, their launches say `postmaster died` (`wait_for_startup` raises `without postmaster`),
 * requests assigned to it go back to the coordinator, or are refused when the caller named it. A process
 * marked dead that comes back (it had lost its sessions, not its life) registers and publishes again. A
 * process whose layer closes (detaches) leaves `bgworker.processes` and its workers leave the view.
 *
 * **Traces.** With a tracer in the layer's context (`NodeOtlp.layer()`), processing one request is a span,
 * `bgworker.request <kind>` (kind `consumer`), with `bgworker.request.id`, `.kind`, `.requested_by` (escaped),
 * `.entry_point` (a launch's) and `.outcome` (`launched`, `refused`, `no_slot`, `done`, `no worker`,
 * `forwarded`: handed to another process); the
 * statements it runs are its children, and so is the first incarnation span of the worker it launches
 * (`Supervisor.Options.tracing`). The consumer's polls, the publishers and the followers make no spans.
 *
 * **Who may call** (each row is tested in test/pg/Security.test.ts)
 *
 * | right | who, by default | as PostgreSQL |
 * |---|---|---|
 * | `launch`, `start` | members of `bgworker_launcher` (`<schema>_launcher`, created `NOLOGIN` if missing), superusers | `worker_spi_launch`'s EXECUTE |
 * | the role a launched worker runs as | a role the caller could `SET ROLE` to itself (`pg_has_role(caller, role, 'SET')`; `'MEMBER'` before PostgreSQL 16); a superuser role only for a superuser; the caller's own role when the argument names none | `SET ROLE` |
 * | the database it connects to | one its role may `CONNECT` to | login |
 * | `wait_for_startup`, `terminate`, `set_latch`, `process_of` on a worker | roles with the privileges of the role the worker runs as, or of `pg_signal_backend`; a worker that runs as a superuser only by superusers | `pg_terminate_backend` |
 * | `reload`, `reload(process)` | superusers, and roles explicitly granted `EXECUTE` on `bgworker.reload()` (`reload(process)` checks that grant itself) | `pg_reload_conf` |
 * | name a `process` in `launch`, `start` | whoever may launch: naming a process changes where, not what or as whom | - |
 * | read `bgworker.activity`, `bgworker.processes` | `bgworker_launcher`, `pg_read_all_stats` | `pg_stat_activity` (restricted) |
 * | read `bgworker.settings` | `bgworker_launcher`, `pg_read_all_settings` | `pg_settings` (restricted) |
 *
 * The functions are `SECURITY DEFINER` with `search_path = pg_catalog, pg_temp`, revoked from `PUBLIC`; the
 * private tables are closed to `PUBLIC`. "The caller" is the role the calling session acts as: `SET
 * ROLE`'s role, else the session user (not the owner of a `SECURITY DEFINER` function the call is made
 * from: do not call `launch` from such functions owned by less trusted roles). Only entry points registered
 * with `Supervisor.layer({ entryPoints })` can be launched, and the argument must decode with the entry
 * point's schema. A refused launch (a permission, a role or database that does not exist) is recorded
 * with its SQLSTATE, detail and hint, which `wait_for_startup` raises as PostgreSQL would (42501 for a
 * permission). Every launch, refusal and signal is logged with the role that asked (`requested_by`), its
 * text escaped.
 *
 * **Limits at the boundary.** `launch` fails at the call, before anything is stored: a `name`, `type` or
 * `function` of 96 bytes or more (PostgreSQL's `BGW_MAXLEN`, SQLSTATE 22001), a `library` of 1024 bytes
 * or more (`MAXPGPATH`), an argument over `maxArgumentBytes` of JSON text (1 MiB by default, SQLSTATE
 * 54000). The consumer reads rows with their texts cut to those limits and large arguments one at a time,
 * so a row stored around the functions cannot stall it: it is refused with the reason, and the requests
 * after it are served. Notifications wake the consumer on a channel named at random by each supervisor and
 * kept in the private `_config` table, so no other role can flood it.
 *
 * **Deliberate differences from `worker_spi_launch`**
 *
 * - A launch takes effect when the calling transaction commits (NOTIFY is delivered at commit, and the
 *   supervisor cannot see the row before). `worker_spi_launch` registers at once and waits in the same
 *   call; here `launch` returns a handle and `wait_for_startup` must be called after `COMMIT`. Called in
 *   the launching transaction it fails with `cannot wait for a background worker launched in the same
 *   transaction` (SQLSTATE 25001). In autocommit, `SELECT bgworker.launch(...)` and then
 *   `SELECT bgworker.wait_for_startup(...)` behaves like `worker_spi_launch`.
 * - `start` is the exception, and what `worker_spi_launch` is built on: it commits the launch on a session
 *   of its own, opened with dblink as the schema's owner (the `loopback` option; the caller's identity is
 *   passed by the function itself, never by the caller, to an internal `_launch` only the owner may call),
 *   so that `SELECT start(...)` returns the pid like PostgreSQL's function, whatever the caller's
 *   transaction does afterwards. Without that session (no dblink, `loopback: false`, a loopback login
 *   refused; the supervisor logs which at attach) it launches in the caller's transaction and returns
 *   NULL with a notice naming the handle. So it does for a caller (not a superuser) who may call dblink
 *   itself: it could otherwise reach the owner's session while it is open. dblink installed by the
 *   supervisor lives in `<schema>_dblink`, closed to `PUBLIC` (schema and functions).
 * - A worker's pid is its session's backend pid for a database worker (it joins `pg_stat_activity.pid`),
 *   the supervisor's own number otherwise; `bgworker.activity.incarnation` is the supervisor's number for
 *   every worker.
 * - `wait_for_startup` polls the request row (every 5 ms) and needs READ COMMITTED: under REPEATABLE READ
 *   or SERIALIZABLE its snapshot never sees the outcome, and it times out.
 * - A handle is a `bigint` that outlives the session, and any role with the right privileges may use it.
 * - `terminate` and `set_latch` are requests too: they take effect after commit, in id order, so a
 *   `terminate` in the launching transaction applies to the worker it launches.
 * - Slots, latches, shared state and crash restarts are per process, as they are per server in PostgreSQL:
 *   `no_slot` for an unnamed launch means no live process had one. A handle is cluster-wide (a request id);
 *   the worker's `slot:generation` and pid are its process's (`process_of`, `bgworker.activity.process`).
 * - `bgworker.settings` shows the coordinator's parameters only; each process reads its own configuration.
 * - The migration that adds `process` to `launch` and `start` replaces them (a default argument cannot be
 *   added beside the old function): grants of `EXECUTE` on the old ones are carried over to the new ones.
 *
 * Errors raised by `wait_for_startup` follow PostgreSQL's, and always agree with the request's fate:
 *
 * - `could not start background process` (SQLSTATE 53000, hint `More details may be available in the
 *   server log.`, the refusal in the detail) when the worker was refused or stopped before it was seen
 *   running; a refusal with its own SQLSTATE (42501, 22001, 54000, ...) is raised with it. It never starts.
 * - `cannot start background processes without postmaster` (53000) when the supervisor that launched the
 *   worker is gone, and the worker with it.
 * - `background worker launch N is pending: no supervisor is attached` (53000), or `... did not start
 *   within T: it is still pending` (57014) when the timeout passes before a supervisor claimed it: the
 *   request is still queued and **will** start when a supervisor reaches it. The hint says how to withdraw
 *   it: `SELECT bgworker.cancel(N)` returns true when it was withdrawn (it then never starts), false when a
 *   supervisor has claimed it already (wait again). An error cannot withdraw it by itself: it would be
 *   rolled back with the caller's transaction.
 * - `... did not start within T: it is registered` (57014) when the worker is registered but waits for its
 *   start time; `terminate` stops it.
 *
 * **One consumer, fenced.** The coordinator claims a page of requests assigned to nobody (or to it) in one
 * statement (`state` becomes `processing`), run on the session that holds the lock and only while it is the
 * one recorded in `_config`, so a process that is not attached, or lost its lock session, claims none of
 * them. Any other process claims only the requests assigned to it by id, and only while it is registered
 * and not marked dead.
 *
 * **The fast path.** While a supervisor is attached, `launch` claims a launch with a small argument (at most
 * 2 KiB of JSON text) for it in the caller's transaction, and sends the whole request in the notification,
 * signed with a key only that supervisor (and the schema's owner) knows (each process has its own key and
 * channel, in the private `_processes`; a launch naming a process is claimed for it and signed with its
 * key): the supervisor starts the worker
 * without reading the row, a round trip less (`npm run bench -- sql`); such a launch may start before older
 * requests that are still queued (stored by hand, or while no supervisor was attached), though never before
 * a signal it is the target of. A notification that is not signed
 * with the key is only a wake-up; a replayed one is ignored; a claim whose notification never arrives is
 * queued again by the next poll. Each supervisor also holds a liveness lock
 * for its whole life: a supervisor that takes over treats another one's workers as dead, and queues again
 * what it claimed but never launched, only once that one's liveness lock is free (and, for a registered
 * process, its heartbeat has lapsed: see Liveness).
 *
 * **Retention.** Processed requests older than `retention` (24 hours by default) are deleted by the
 * attached supervisor, except launches whose worker may still run.
 *
 * **Tables** (private; the views and functions are the interface)
 *
 * - `_requests`: `id bigserial`, `kind` (`launch` | `terminate` | `set_latch` | `reload`), `library`,
 *   `function`, `arg jsonb`, `target` (the launch a signal is for), `requested_by`, `requested_at`,
 *   `requested_xact`, `state` (`requested` | `processing` | `launched` | `refused` | `no_slot` | `done` |
 *   `cancelled`), `processed_at`,
 *   `supervisor_id`, `handle` (`"slot:generation"`), `pid`, `status` (`not yet started` | `started` |
 *   `stopped` | `postmaster died`), `error`, and for a refusal `sqlstate`, `detail`, `hint`; `run_as`, the
 *   role a launched worker runs as.
 * - `_activity`, `_settings`: the supervisor's rows, replaced on change (at most every `publishInterval`,
 *   50 ms by default, so the views are fresh within about 100 ms).
 * - `_config`: the notification channel, the argument limit, and which supervisor session is attached.
 * - `_processes`: one row per registered process: `id`, `host`, `os_pid`, `started_at`, `attached_at`,
 *   `heartbeat_at`, `dead_at`, its `channel` and `wake_key`, `max_workers`, `free_slots` (migration 4, which
 *   also gives `_requests` the columns `process` (the one the caller named), `assigned_to` and `tried`).
 * - `_migrations`: effect's `Migrator` table.
 *
 * **One attached supervisor per schema, any number of processes.** The coordinator holds an advisory lock
 * on a session of its own while it is attached; the views are empty and `wait_for_startup` reports `without
 * postmaster` while no one holds it. Every other process waits for that lock (and attaches when the
 * coordinator's session ends, treating a dead one's workers as dead) while it serves the requests assigned
 * to it and publishes its workers.
 *
 * @since 0.1.0
 */
import type * as PgClient from "@effect/sql-pg/PgClient"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Migrator from "effect/sql/Migrator"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { randomBytes } from "node:crypto"
import { causeChain } from "../internal/causeChain.ts"
import type { Supervisor } from "../Supervisor.ts"
import * as internal from "./internal/controlPlane.ts"
import * as Sql from "./internal/controlPlaneSql.ts"

/**
 * @category models
 * @since 0.1.0
 */
export interface Options {
  /**
   * The schema holding the API (lowercase letters, digits and underscores, at most 54 characters). The
   * launcher role is `<schema>_launcher`. Default `"bgworker"`.
   */
  readonly schema?: string | undefined
  /**
   * The NOTIFY channel the functions wake the supervisor with. Default: a random name chosen by each
   * supervisor when it attaches, kept in the private `_config` table, so that no other role can learn it
   * and flood the supervisor with notifications. A fixed name is for tests and for tools that must know it.
   */
  readonly channel?: string | undefined
  /**
   * The largest argument `launch` accepts, in bytes of its JSON text (`arg::text`); a larger one fails at
   * the call with SQLSTATE 54000. At most 8 MiB. Default 1 MiB.
   *
   * @since 0.2.0
   */
  readonly maxArgumentBytes?: number | undefined
  /**
   * How long processed requests stay in `_requests` (the audit trail of launches, refusals and signals)
   * before the attached supervisor deletes them. A launch whose worker may still run is kept whatever its
   * age. Default 24 hours.
   *
   * @since 0.2.0
   */
  readonly retention?: Duration.Input | undefined
  /** How often unprocessed requests are looked for without a notification. Default 1 second. */
  readonly pollInterval?: Duration.Input | undefined
  /** The shortest time between two writes of a view (bursts of changes are coalesced). Default 50 ms. */
  readonly publishInterval?: Duration.Input | undefined
  /**
   * How `start` (and so `worker_spi_launch`) commits a launch at once, on a session of its own: a libpq
   * connection string dblink opens as the schema's owner on this database; `false` for never (launches
   * through `start` then take effect at the caller's commit, and it returns NULL with a notice). Default:
   * derived from `EmbeddedPostgres.PgServer` (an embedded server's owner-only socket; a URL's host, port,
   * user and password, the password then being kept in the private `_config` table), checked once when the
   * supervisor attaches. dblink is created, in a schema `<schema>_dblink` closed to `PUBLIC`, when it is
   * missing and the role may create it.
   *
   * @since 0.2.0
   */
  readonly loopback?: string | false | undefined
  /**
   * How often this process refreshes its row in `bgworker.processes` (its heartbeat, and its free slots).
   * Default 1 second.
   *
   * @since 0.2.0
   */
  readonly heartbeatInterval?: Duration.Input | undefined
  /**
   * How old the heartbeat of a process must be before it is marked dead, its workers leaving
   * `bgworker.activity`, provided its liveness lock is free too: a process that lives is never marked dead,
   * however late its heartbeat. Default 10 seconds.
   *
   * @since 0.2.0
   */
  readonly deadAfter?: Duration.Input | undefined
}

/**
 * The highest `maxArgumentBytes`: an argument is read in one message, and the driver's messages stop at
 * 16 MiB; half of that leaves room for the row around it and for JSON's escapes.
 */
const maxArgumentLimit = 8 * 1024 * 1024

/** An invalid schema, channel name or limit is a programming error: a defect. */
const resolve = (options: Options): Effect.Effect<internal.ResolvedOptions> =>
  Effect.suspend(() => {
    const schema = options.schema ?? "bgworker"
    const channel = options.channel ?? `bgw_${randomBytes(16).toString("hex")}`
    const maxArgumentBytes = options.maxArgumentBytes ?? Sql.defaultMaxArgumentBytes
    const problem = Sql.checkSchema(schema) ?? Sql.checkChannel(channel) ??
      (Number.isInteger(maxArgumentBytes) && maxArgumentBytes > 0 && maxArgumentBytes <= maxArgumentLimit
        ? undefined
        : `invalid maxArgumentBytes ${maxArgumentBytes}: use a whole number from 1 to ${maxArgumentLimit}`)
    if (problem !== undefined) return Effect.die(new Error(problem))
    return Effect.succeed({
      schema,
      channel,
      maxArgumentBytes,
      retention: Duration.fromInputUnsafe(options.retention ?? "24 hours"),
      pollInterval: Duration.fromInputUnsafe(options.pollInterval ?? "1 second"),
      publishInterval: Duration.fromInputUnsafe(options.publishInterval ?? "50 millis"),
      loopback: options.loopback,
      heartbeatInterval: Duration.fromInputUnsafe(options.heartbeatInterval ?? "1 second"),
      deadAfter: Duration.fromInputUnsafe(options.deadAfter ?? "10 seconds")
    })
  })

/**
 * Installs or upgrades the schema (effect's `Migrator`, table `<schema>._migrations`) and returns the
 * migrations it ran. {@link layer} does it too; call it on its own to install at deploy time.
 *
 * **Gotchas**
 *
 * Needs the right to create schemas, and roles if the launcher role does not exist yet. The supervisor's
 * database role must own the schema (or have the privileges of its owner) to write the private tables.
 *
 * @category migrations
 * @since 0.1.0
 */
export const migrate = (
  options: Pick<Options, "schema"> = {}
): Effect.Effect<ReadonlyArray<readonly [id: number, name: string]>, SqlError | Migrator.MigrationError, SqlClient> =>
  Effect.flatMap(resolve(options), (resolved) => internal.migrate(resolved.schema))

/**
 * The supervisor side of the control plane.
 *
 * **Details**
 *
 * Building it runs the migrations, attaches to the schema (takes its advisory lock on a pooled session
 * it keeps), and starts, in its scope: the request consumer (LISTEN on the channel, a poll every
 * `pollInterval`), one status follower per launched worker, and the publishers of `bgworker.activity`
 * (from `Activity.changes`) and `bgworker.settings` (from the `Gucs` registry's changes, when one is
 * provided), and the retention of processed requests. It holds three pooled connections for its lifetime
 * (LISTEN, the attachment lock, and a liveness lock that tells other supervisors this one still runs), so
 * size the pool for them. It registers the process in `bgworker.processes` and refreshes its heartbeat.
 *
 * **Gotchas**
 *
 * - Closing the layer detaches: requests wait in the table until a supervisor attaches again, and are then
 *   processed in id order. Workers keep running; the same supervisor attaching again follows them again.
 * - With a second supervisor already attached, building still succeeds: this one serves the launches and
 *   signals assigned to it and publishes its workers, and waits to attach (it logs that, at info level).
 * - An invalid `schema` or `channel` is a defect, raised before any SQL runs.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = (
  options: Options = {}
): Layer.Layer<never, SqlError | Migrator.MigrationError, Supervisor | PgClient.PgClient | SqlClient> =>
  // Its background loops (polls, publishers, followers) make no spans: only a request's processing does.
  Layer.effectDiscard(Effect.flatMap(resolve(options), internal.make).pipe(Effect.withTracerEnabled(false)))

/**
 * The role granted EXECUTE on the functions for a schema: `"bgworker_launcher"` by default.
 *
 * @category naming
 * @since 0.1.0
 */
export const launcherRole = (options: Pick<Options, "schema"> = {}): string =>
  Sql.launcherRole(options.schema ?? "bgworker")

// --- Launching from code, across processes ---

/**
 * A launch from code through the SQL control plane: what `bgworker.launch` takes.
 *
 * @category launching
 * @since 0.2.0
 */
export interface LaunchRequest {
  /** The entry point's library (`bgw_library_name`), as registered with `Supervisor.layer({ entryPoints })`. */
  readonly library: string
  /** The entry point's function (`bgw_function_name`). */
  readonly function: string
  /** The worker's argument: a JSON value (sent as `jsonb`), decoded by the supervisor with the entry point's schema. */
  readonly argument?: unknown
  /** `bgw_name`; default the entry point's. */
  readonly name?: string | undefined
  /** `bgw_type`; default the entry point's. */
  readonly type?: string | undefined
  /**
   * The supervisor process to run on (its id, `bgworker.processes.process`); default: any live process with
   * a free slot (the coordinator first).
   */
  readonly process?: string | undefined
  /** The control plane's schema. Default `"bgworker"`. */
  readonly schema?: string | undefined
}

/**
 * What {@link launch} returns: the cluster-wide handle (the request's id, as `bgworker.launch` returns it),
 * and the process it was named for (`undefined` when the control plane chooses: {@link Started} names it).
 *
 * @category launching
 * @since 0.2.0
 */
export interface Launched {
  readonly handle: bigint
  readonly process: string | undefined
  readonly schema: string
}

/**
 * A launched worker that runs: its pid (a database worker's backend pid) and the process it runs on.
 *
 * @category launching
 * @since 0.2.0
 */
export interface Started {
  readonly handle: bigint
  readonly pid: number
  readonly process: string
}

/**
 * No slot was free: on the process the launch named, or (unnamed) on every live process
 * (`bgworker.wait_for_startup` returned NULL; the request's state is `no_slot`).
 *
 * @category errors
 * @since 0.2.0
 */
export class NoFreeSlot extends Schema.TaggedError<NoFreeSlot>()("NoFreeSlot", {
  handle: Schema.BigInt,
  /** The process the launch named; absent when every live process was tried. */
  process: Schema.optionalKey(Schema.String)
}) {
  override get message(): string {
    return this.process === undefined
      ? `no free background worker slot on any live supervisor process (launch ${this.handle})`
      : `no free background worker slot on supervisor process "${this.process}" (launch ${this.handle})`
  }
  get hint(): string {
    return this.process === undefined
      ? "Terminate workers that are no longer needed, raise maxWorkerProcesses, or start another supervisor process."
      : "Launch without naming a process to use any live process with a free slot, or terminate workers on it."
  }
  /** A slot frees up when some worker ends, so trying later can succeed. */
  get isRetryable(): boolean {
    return true
  }
}

/**
 * The launch named a process that is not running: unknown, detached, or marked dead (SQLSTATE 22023 from
 * `bgworker.launch`). Nothing was stored.
 *
 * @category errors
 * @since 0.2.0
 */
export class ProcessNotRunning extends Schema.TaggedError<ProcessNotRunning>()("ProcessNotRunning", {
  process: Schema.String
}) {
  override get message(): string {
    return `supervisor process "${this.process}" is not running`
  }
  get hint(): string {
    return "SELECT process FROM bgworker.processes WHERE live lists the processes a launch may name."
  }
}

const checkedSchema = (schema: string | undefined): Effect.Effect<string> =>
  Effect.suspend(() => {
    const name = schema ?? "bgworker"
    const problem = Sql.checkSchema(name)
    return problem === undefined ? Effect.succeed(name) : Effect.die(new Error(problem))
  })

const notRunning = (error: unknown): boolean =>
  causeChain(error).some((link) => {
    const { code, message } = link as { readonly code?: unknown; readonly message?: unknown }
    return code === "22023" && typeof message === "string" && message.endsWith("is not running")
  })

/**
 * Asks for a launch through the SQL control plane (`bgworker.launch`), on the named process or on any live
 * one with a free slot: the cluster-wide counterpart of `Supervisor.launch`. Each statement runs on the
 * `SqlClient` in context with its session's role, so the caller's rights are those of the SQL functions
 * (membership in `bgworker_launcher`, the worker's role, see "Who may call").
 *
 * **Details**
 *
 * - `Supervisor.launch` starts a worker in this process's own supervisor, with its slots, and returns its
 *   `WorkerHandle`. `ControlPlane.launch` works from any program with a session on the database (it needs no
 *   supervisor in its own process), reaches every supervisor process on it, and returns a request id.
 * - The launch takes effect when its transaction commits: outside `sql.withTransaction` at once. Call
 *   {@link waitForStartup} after the commit (in the same transaction it fails with SQLSTATE 25001).
 *
 * **Example** (Launch on any process with a free slot)
 *
 * ```ts
 * import { ControlPlane } from "effect-bgworker/pg"
 * import * as Effect from "effect/Effect"
 *
 * const program = Effect.gen(function*() {
 *   const started = yield* ControlPlane.start({ library: "worker_spi", function: "worker_spi_main", argument: { index: 5 } })
 *   yield* Effect.log(`pid ${started.pid} on ${started.process}`)
 *   yield* ControlPlane.terminate(started.handle)
 * })
 * ```
 *
 * @category launching
 * @since 0.2.0
 */
export const launch = (
  request: LaunchRequest
): Effect.Effect<Launched, ProcessNotRunning | SqlError, SqlClient> =>
  Effect.gen(function*() {
    const schema = yield* checkedSchema(request.schema)
    const sql = yield* SqlClient
    const argument = request.argument === undefined ? null : JSON.stringify(request.argument)
    const [row] = yield* sql.unsafe<{ readonly handle: bigint | number | string }>(
      `SELECT ${schema}.launch($1, $2, $3::jsonb, $4, $5, $6) AS handle`,
      [request.library, request.function, argument, request.name ?? null, request.type ?? null, request.process ?? null]
    ).pipe(
      Effect.catchIf(
        // `_live_process`'s error (22023, "... is not running"), raised before anything is stored.
        (error) => request.process !== undefined && notRunning(error),
        () => Effect.fail(new ProcessNotRunning({ process: request.process! }))
      )
    )
    return { handle: BigInt(row!.handle), process: request.process, schema }
  })

/**
 * Waits until a launch runs (`bgworker.wait_for_startup`, `WaitForBackgroundWorkerStartup`) and returns its
 * pid and the process it runs on; {@link NoFreeSlot} when no slot was free. A refusal, a timeout or a
 * launching process that died fails with the server's error (see the errors of `wait_for_startup`).
 *
 * @category launching
 * @since 0.2.0
 */
export const waitForStartup = (
  launched: Launched,
  options: { readonly timeout?: Duration.Input | undefined } = {}
): Effect.Effect<Started, NoFreeSlot | SqlError, SqlClient> =>
  Effect.gen(function*() {
    const schema = yield* checkedSchema(launched.schema)
    const sql = yield* SqlClient
    const timeout = Duration.toMillis(Duration.fromInputUnsafe(options.timeout ?? "10 seconds"))
    // One round trip: the wait (in FROM, so it runs first), then the process it started on.
    const [started] = yield* sql.unsafe<{ readonly pid: number | null; readonly process: string | null }>(
      `SELECT w.pid, CASE WHEN w.pid IS NOT NULL THEN ${schema}.process_of($1) END AS process
       FROM ${schema}.wait_for_startup($1, $2::interval) AS w(pid)`,
      [launched.handle, `${timeout} milliseconds`]
    )
    if (started!.pid === null) {
      return yield* new NoFreeSlot({
        handle: launched.handle,
        ...(launched.process === undefined ? {} : { process: launched.process })
      })
    }
    return { handle: launched.handle, pid: started!.pid, process: started!.process! }
  })

/**
 * {@link launch}, then {@link waitForStartup}: `worker_spi_launch` from code. Outside a transaction (each
 * statement commits at once); inside `sql.withTransaction` use `launch` and wait after the commit.
 *
 * @category launching
 * @since 0.2.0
 */
export const start = (
  request: LaunchRequest & { readonly timeout?: Duration.Input | undefined }
): Effect.Effect<Started, NoFreeSlot | ProcessNotRunning | SqlError, SqlClient> =>
  Effect.flatMap(launch(request), (launched) => waitForStartup(launched, { timeout: request.timeout }))

const signal = (kind: "terminate" | "set_latch") =>
(
  handle: bigint,
  options: { readonly schema?: string | undefined } = {}
): Effect.Effect<void, SqlError, SqlClient> =>
  Effect.gen(function*() {
    const schema = yield* checkedSchema(options.schema)
    const sql = yield* SqlClient
    yield* sql.unsafe(`SELECT ${schema}.${kind}($1)`, [handle])
  })

/**
 * `bgworker.terminate`: stops a launched worker on whichever process runs it (`pg_terminate_backend`),
 * after the calling transaction commits. Needs the worker's role, or `pg_signal_backend`.
 *
 * @category launching
 * @since 0.2.0
 */
export const terminate: (
  handle: bigint,
  options?: { readonly schema?: string | undefined }
) => Effect.Effect<void, SqlError, SqlClient> = signal("terminate")

/**
 * `bgworker.set_latch`: sets a launched worker's latch on whichever process runs it.
 *
 * @category launching
 * @since 0.2.0
 */
export const setLatch: (
  handle: bigint,
  options?: { readonly schema?: string | undefined }
) => Effect.Effect<void, SqlError, SqlClient> = signal("set_latch")
