/**
 * Database workers' sessions on PostgreSQL: the `WorkerConnector` for `@effect/sql-pg`.
 *
 * PostgreSQL: `BackgroundWorkerInitializeConnection(dbname, username, flags)` (bgworker.c,
 * `InitPostgres`). A PostgreSQL worker runs inside the server and needs no credentials; ours is a client,
 * so this connector decides how each session logs in, and it always logs in **as the worker's own role**:
 * a session holds exactly that role's privileges, `SET SESSION AUTHORIZATION DEFAULT`, `RESET ROLE` and
 * `SET ROLE` gain nothing, and the role's `CONNECT` privilege and `ALTER ROLE ... SET` defaults apply as at
 * any login.
 *
 * - Every incarnation gets one session of its own (not a pool), opened before `main` runs and closed when
 *   the incarnation ends. Its `application_name` is the worker's name (63 characters at most), so the
 *   worker shows up in the server's own `pg_stat_activity`. There `backend_type` reads `client backend`, as
 *   for any client, and `wait_event` shows the session's own waits (`ClientRead` while the worker naps): the
 *   worker's type and its custom wait events are in `bgworker.activity` (the `ControlPlane`'s view).
 * - The database is the worker's `database.database`, else this layer's `defaultDatabase`, else the
 *   server's database.
 * - The role, and how the session logs in as it:
 *   1. no role: the server's own login (`PgServer.user`; the bootstrap superuser on an embedded server), as
 *      PostgreSQL's static workers without a user run as the bootstrap superuser;
 *   2. a password for the role in `passwords`, or in the `passfile` (libpq's format): a login with it;
 *   3. an embedded server: a login over its trusted Unix socket (`PgServer.localSocket`), which only this
 *      process can reach, with no password;
 *   4. otherwise the worker is refused at start with a hint saying how to give it credentials.
 *
 *   `allowSetSessionAuthorization: true` is the explicit, logged opt-in to 0.1's way instead of step 4 (and
 *   for `bypassRoleLoginCheck` of a role that cannot log in): log in as the server's user and take the role
 *   with `SET SESSION AUTHORIZATION` after PostgreSQL's `rolcanlogin` check. SQL the worker runs can then
 *   switch back to that user (`SET SESSION AUTHORIZATION DEFAULT`): use it only for trusted code.
 * - `bypassRoleLoginCheck` (`BGWORKER_BYPASS_ROLELOGINCHECK`) needs that opt-in: a client cannot log in as
 *   a `NOLOGIN` role. Without it such a worker fails at start with the server's `role "x" is not permitted
 *   to log in` and a hint.
 * - `bypassAllowConn` (`BGWORKER_BYPASS_ALLOWCONN`) cannot be honoured by a client: PostgreSQL refuses
 *   every client connection to a database with `ALLOW_CONNECTIONS false`. A worker that asks for it fails at
 *   start with a message saying so.
 *
 * **Launches on someone's behalf** (`authorize`, see `Supervisor.LaunchRequest.caller`): the worker's role
 * is the one its definition names for this argument, else the caller's own role, never this connector's
 * login. The launch is refused (`PermissionDenied`, SQLSTATE 42501) unless the caller could become that
 * role itself (`pg_has_role(caller, role, 'SET')` on PostgreSQL 16 and later, `'MEMBER'` before), a
 * superuser role is asked for by a superuser, and the role may `CONNECT` to the database. A role or
 * database that does not exist is refused too (42704, 3D000), and so is every launch while the rights
 * cannot be checked (08000).
 *
 * A failure to connect ends the incarnation as failed with the server's error text (for example
 * `database "noconndb" is not currently accepting connections`); its restart policy applies.
 *
 * @since 0.1.0
 */
import { PgClient } from "@effect/sql-pg"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Reactivity from "effect/reactivity/Reactivity"
import * as Redacted from "effect/Redacted"
import { SqlClient } from "effect/sql/SqlClient"
import * as fs from "node:fs/promises"
import * as net from "node:net"
import type { DatabaseOptions, WorkerInfo } from "../BackgroundWorker.ts"
import { causeChain } from "../internal/causeChain.ts"
import { PermissionDenied } from "../SupervisorError.ts"
import {
  type AuthorizeRequest,
  SessionInfo,
  SessionLost,
  WorkerConnectionError,
  WorkerConnector
} from "../WorkerConnector.ts"
import { serverText } from "./internal/serverText.ts"
import { escapeIdentifier as quoteIdentifier, PgServer } from "./PgServer.ts"

const logAnnotations = { module: "effect-bgworker/pg/WorkerConnection" }

/**
 * @category models
 * @since 0.1.0
 */
export interface Options {
  /** The database of workers that name none (worker_spi's `worker_spi.database` plays this role). */
  readonly defaultDatabase?: string | undefined
  /** Roles that log in themselves, with their passwords. */
  readonly passwords?: Readonly<Record<string, Redacted.Redacted>> | undefined
  /**
   * A password file in libpq's format (`hostname:port:database:username:password`, `*` matches anything,
   * `\:` and `\\` escape), read at each login. Like libpq, a file that group or others may read is ignored
   * with a warning. Default: none (the environment's `PGPASSFILE` is not read implicitly).
   *
   * @since 0.2.0
   */
  readonly passfile?: string | undefined
  /**
   * The explicit opt-in to switching roles from the server's login with `SET SESSION AUTHORIZATION` when a
   * role has no credentials (or cannot log in and the worker bypasses the login check). SQL run in such a
   * session can switch back to the server's login: a warning is logged when the layer is built. Default
   * false.
   *
   * @since 0.2.0
   */
  readonly allowSetSessionAuthorization?: boolean | undefined
  /** How long a connection attempt may take. Default 10 seconds. */
  readonly connectTimeout?: Duration.Input | undefined
}

// --- passfile ---

/** One `.pgpass` line's fields, `\:` and `\\` unescaped; `undefined` for comments, blanks and short lines. */
const passfileFields = (line: string): ReadonlyArray<string> | undefined => {
  if (line.startsWith("#") || line.trim() === "") return undefined
  const fields: Array<string> = []
  let current = ""
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!
    if (c === "\\" && i + 1 < line.length) {
      current += line[++i]!
    } else if (c === ":" && fields.length < 4) {
      fields.push(current)
      current = ""
    } else {
      current += c
    }
  }
  fields.push(current)
  return fields.length === 5 ? fields : undefined
}

/**
 * The password libpq would take from a passfile's text for this login (the first matching line wins), as
 * `PasswordFromFile` in libpq's fe-connect.c does.
 *
 * @category credentials
 * @since 0.2.0
 */
export const passwordFromPassfile = (
  text: string,
  login: { readonly host: string; readonly port: number; readonly database: string; readonly user: string }
): string | undefined => {
  const wanted = [login.host, String(login.port), login.database, login.user]
  for (const raw of text.split("\n")) {
    const fields = passfileFields(raw.replace(/\r$/, ""))
    if (fields === undefined) continue
    if (wanted.every((value, i) => fields[i] === "*" || fields[i] === value)) return fields[4]
  }
  return undefined
}

const readPassfile = (
  file: string,
  login: { readonly host: string; readonly port: number; readonly database: string; readonly user: string }
): Effect.Effect<string | undefined> =>
  Effect.promise(async () => {
    try {
      const stat = await fs.stat(file)
      if (!stat.isFile()) return { password: undefined, warning: `password file "${file}" is not a plain file` }
      if ((stat.mode & 0o077) !== 0) {
        return {
          password: undefined,
          warning: `password file "${file}" has group or world access; permissions should be u=rw (0600) or less`
        }
      }
      return { password: passwordFromPassfile(await fs.readFile(file, "utf8"), login), warning: undefined }
    } catch (error) {
      return { password: undefined, warning: `could not read password file "${file}": ${serverText(error)}` }
    }
  }).pipe(
    Effect.tap((read) => read.warning === undefined ? Effect.void : Effect.logWarning(read.warning)),
    Effect.map((read) => read.password)
  )

// --- authorisation ---

interface Rights {
  readonly caller_exists: boolean
  readonly caller_super: boolean | null
  readonly role_exists: boolean
  readonly role_super: boolean | null
  readonly can_set: boolean | null
  readonly database_exists: boolean
  readonly can_connect: boolean | null
}

/**
 * What PostgreSQL would let `caller` do: become `role` (the SET option of PostgreSQL 16, membership before)
 * and connect to `database` as it. Runs as the server's login, which can read every role's memberships.
 */
const rightsQuery = `
SELECT c.oid IS NOT NULL AS caller_exists, c.rolsuper AS caller_super,
       r.oid IS NOT NULL AS role_exists, r.rolsuper AS role_super,
       CASE WHEN c.oid IS NULL OR r.oid IS NULL THEN NULL
            WHEN pg_catalog.current_setting('server_version_num')::int >= 160000
              THEN pg_catalog.pg_has_role(c.oid, r.oid, 'SET')
            ELSE pg_catalog.pg_has_role(c.oid, r.oid, 'MEMBER') END AS can_set,
       d.oid IS NOT NULL AS database_exists,
       CASE WHEN r.oid IS NULL OR d.oid IS NULL THEN NULL
            ELSE pg_catalog.has_database_privilege(r.oid, d.oid, 'CONNECT') END AS can_connect
FROM (SELECT 1) AS one
LEFT JOIN pg_catalog.pg_roles c ON c.rolname = $1
LEFT JOIN pg_catalog.pg_roles r ON r.rolname = $2
LEFT JOIN pg_catalog.pg_database d ON d.datname = $3`

/** The refusal, if any, that `rights` mean for `caller` launching `worker` as `role` on `database`. */
const refusal = (
  rights: Rights,
  request: { readonly caller: string; readonly worker: string; readonly role: string; readonly database: string }
): PermissionDenied | undefined => {
  const { caller, database, role, worker } = request
  const deny = (problem: string, fields: { detail?: string; hint?: string; sqlstate?: string }) =>
    new PermissionDenied({ caller, worker, problem, ...fields })
  if (!rights.caller_exists) {
    return deny(`role "${caller}" does not exist`, {
      sqlstate: "42704",
      detail: `The launch of background worker "${worker}" was asked for by a role that does not exist.`
    })
  }
  if (!rights.role_exists) return deny(`role "${role}" does not exist`, { sqlstate: "42704" })
  if (!rights.database_exists) return deny(`database "${database}" does not exist`, { sqlstate: "3D000" })
  if (rights.role_super === true && rights.caller_super !== true) {
    return deny(`permission denied to launch background worker "${worker}" as superuser "${role}"`, {
      detail: "Only superusers may launch background workers that run as a superuser.",
      hint: `Launch it as a role of your own: name none, and it runs as "${caller}".`
    })
  }
  if (rights.can_set !== true) {
    return deny(`permission denied to set role "${role}"`, {
      detail: `Only roles with privileges to SET ROLE "${role}" may launch background workers that run as it; ` +
        `"${caller}" has none.`,
      hint: `Name a role "${caller}" can become, or none to run as "${caller}" itself.`
    })
  }
  if (rights.can_connect !== true && rights.role_super !== true) {
    return deny(`permission denied for database "${database}"`, {
      detail: `Role "${role}" does not have CONNECT privilege.`,
      hint: `GRANT CONNECT ON DATABASE ${quoteIdentifier(database)} TO ${quoteIdentifier(role)}, ` +
        "or launch it on another database."
    })
  }
  return undefined
}

/**
 * The connector, for the server in `PgServer` (embedded or `DATABASE_URL`).
 *
 * **Details**
 *
 * Keeps a small pool (two sessions, opened on demand) as the server's login, for the rights checks of
 * launches made on someone's behalf.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = (options: Options = {}): Layer.Layer<WorkerConnector, never, PgServer> =>
  Layer.effect(
    WorkerConnector,
    Effect.gen(function*() {
      const server = yield* PgServer
      const switchRoles = options.allowSetSessionAuthorization === true
      if (switchRoles) {
        yield* Effect.logWarning(
          `worker sessions may switch roles with SET SESSION AUTHORIZATION from the login "${server.user}" ` +
            "(allowSetSessionAuthorization): SQL a worker runs can switch back to that login. " +
            "Give each role credentials instead (passwords, passfile) to hold workers to their own role's privileges."
        ).pipe(Effect.annotateLogs(logAnnotations))
      }
      const connectTimeout = options.connectTimeout ?? "10 seconds"
      /** A URL asking for TLS: the session's bytes are encrypted, so its last error cannot be read off them. */
      const tls = (() => {
        const url = Redacted.value(server.url)
        if (!URL.canParse(url)) return false
        const mode = new URL(url).searchParams.get("sslmode")
        return mode !== null && mode !== "disable"
      })()
      const admin = yield* PgClient.make({
        url: server.url,
        host: server.host,
        port: server.port,
        username: server.user,
        password: server.password,
        database: server.database,
        applicationName: "effect-bgworker connector",
        maxConnections: 2,
        connectTimeout
      }).pipe(Effect.provide(Reactivity.layer), Effect.orDie)

      const authorize = (request: AuthorizeRequest): Effect.Effect<DatabaseOptions, PermissionDenied> =>
        Effect.gen(function*() {
          const database = request.options.database ?? options.defaultDatabase ?? server.database
          const role = request.options.user ?? request.caller
          const rows = yield* admin.unsafe<Rights>(rightsQuery, [request.caller, role, database]).pipe(
            Effect.mapError((error) =>
              new PermissionDenied({
                caller: request.caller,
                worker: request.worker,
                problem: `could not check the rights of role "${request.caller}": ${serverText(error)}`,
                sqlstate: "08000",
                hint: `The check runs on ${server.host}:${server.port}; ` +
                  "the launch can be asked for again once it answers."
              })
            )
          )
          const denied = refusal(rows[0]!, { caller: request.caller, worker: request.worker, role, database })
          if (denied !== undefined) return yield* denied
          return { ...request.options, database, user: role }
        })

      /**
       * A crash of any server process ends every session at once (PostgreSQL's crash restart, SQLSTATE
       * 57P02): logged once, not once per worker.
       */
      let crashLoggedAt = 0
      const crashNoticed = Effect.suspend(() => {
        const now = Date.now()
        if (now - crashLoggedAt < 10_000) return Effect.void
        crashLoggedAt = now
        return Effect.logError(
          `the PostgreSQL server on ${server.host}:${server.port} is restarting after a server process crashed ` +
            "(57P02): every session ended; workers start again as their restart policies say"
        ).pipe(Effect.annotateLogs(logAnnotations))
      })

      const connect = (worker: WorkerInfo, db: DatabaseOptions) =>
        Effect.gen(function*() {
          const database = db.database ?? options.defaultDatabase ?? server.database
          const role = db.user
          const fail = (message: string, hint?: string, sqlstate?: string) =>
            new WorkerConnectionError({
              message,
              database,
              ...(role === undefined ? {} : { user: role }),
              ...(hint === undefined ? {} : { hint }),
              ...(sqlstate === undefined ? {} : { sqlstate })
            })
          if (db.bypassAllowConn === true) {
            return yield* fail(
              "BGWORKER_BYPASS_ALLOWCONN is not available to client connections: " +
                "PostgreSQL refuses every client of a database that does not accept connections",
              undefined,
              "0A000"
            )
          }
          const base = {
            database,
            applicationName: worker.name.slice(0, 63),
            connectTimeout
          }
          // The session's socket is opened here rather than by the driver, so that its end is seen at once.
          const watch = watchSocket(!tls)
          const open = (config: Parameters<typeof PgClient.makeClient>[0], hint?: string) =>
            PgClient.makeClient({ ...config, stream: () => watch.open(config) }).pipe(
              Effect.provide(Reactivity.layer),
              Effect.mapError((e) => fail(serverText(e), hint, sqlstateOf(e)))
            )
          const viaServerLogin = () =>
            open({
              ...base,
              url: server.url,
              host: server.host,
              port: server.port,
              username: server.user,
              password: server.password
            })

          let client: PgClient.PgClient
          if (role === undefined || role === server.user) {
            client = yield* viaServerLogin()
          } else if (db.bypassRoleLoginCheck === true && switchRoles) {
            client = yield* switchTo(yield* viaServerLogin(), role, true, fail)
          } else {
            const login = { host: server.host, port: server.port, database, user: role }
            const password: Redacted.Redacted | string | undefined = options.passwords?.[role] ??
              (options.passfile === undefined ? undefined : yield* readPassfile(options.passfile, login))
            const loginHint = db.bypassRoleLoginCheck === true
              ? "A client session cannot bypass the login check: allow it with " +
                "WorkerConnection.layer({ allowSetSessionAuthorization: true }), which SQL the worker runs can undo."
              : undefined
            if (password !== undefined) {
              client = yield* open({
                ...base,
                host: server.host,
                port: server.port,
                username: role,
                password: typeof password === "string" ? Redacted.make(password) : password
              }, loginHint)
            } else if (server.localSocket !== undefined) {
              client = yield* open({ ...base, path: server.localSocket, username: role }, loginHint)
            } else if (switchRoles) {
              client = yield* switchTo(yield* viaServerLogin(), role, db.bypassRoleLoginCheck === true, fail)
            } else {
              return yield* fail(
                `no credentials to log in as role "${role}" on ${server.host}:${server.port}`,
                `Give the role a password in WorkerConnection.layer({ passwords }) or a line in its passfile; ` +
                  "a worker's session always logs in as its own role."
              )
            }
          }
          // Connect now, so a failure is a failed start rather than the first query's error.
          // Its backend's pid becomes the worker's pid, so the worker joins pg_stat_activity.pid.
          const [backend] = yield* client<{ pid: number }>`SELECT pg_catalog.pg_backend_pid() AS pid`.pipe(
            Effect.mapError((e) => fail(serverText(e), undefined, sqlstateOf(e)))
          )
          const lost = Effect.flatMap(watch.ended, (end) =>
            Effect.andThen(
              end.code === "57P02" ? crashNoticed : Effect.void,
              Effect.fail(fail(
                // pg_terminate_backend(pid): what a background worker's die() reports, in its words.
                end.code === "57P01"
                  ? `terminating background worker "${worker.type}" due to administrator command`
                  : `the worker's database session ended: ${end.message}`,
                undefined,
                end.code
              ))
            ))
          return Context.make(SqlClient, client as SqlClient).pipe(
            Context.add(PgClient.PgClient, client),
            Context.add(SessionLost, lost),
            Context.add(SessionInfo, {
              backendPid: backend!.pid,
              spanAttributes: {
                "db.system.name": "postgresql",
                "db.namespace": database,
                "db.user": role ?? server.user
              }
            })
          )
        })

      return WorkerConnector.of({ connect, authorize })
    })
  )

/** How a session's socket ended: the server's last error (code and message) when it sent one. */
interface SessionEnd {
  readonly code: string | undefined
  readonly message: string
}

/** The code and message of the last `ErrorResponse` in `chunk`, if it holds one (`E`, then `C...\0`, `M...\0`). */
const lastError = (chunk: Buffer | undefined): SessionEnd => {
  if (chunk === undefined) return { code: undefined, message: "the connection was closed" }
  const text = chunk.toString("utf8")
  const at = text.lastIndexOf("E\u0000")
  const error = at < 0 ? text : text.slice(at)
  const code = /\u0000C([0-9A-Z]{5})\u0000/.exec(error)?.[1]
  const message = /\u0000M([^\u0000]*)\u0000/.exec(error)?.[1]
  return message === undefined
    ? { code: undefined, message: "the connection was closed" }
    : { code, message: code === undefined ? message : `${message} (SQLSTATE ${code})` }
}

/** The SQLSTATE along an error's chain of causes (the server's `code`), if any. */
const sqlstateOf = (error: unknown): string | undefined => {
  for (const link of causeChain(error)) {
    const code = (link as { readonly code?: unknown }).code
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return code
  }
  return undefined
}

/** The session's end, when `chunk` carries the server's FATAL `ErrorResponse` for a terminated session. */
const fatalEnd = (chunk: Buffer): SessionEnd | undefined => {
  // 'E', then the fields: severity (S) FATAL, then the code (C) of class 57 (operator intervention).
  if (chunk.indexOf("SFATAL\u0000") < 0 || !/\u0000C57P0[123]\u0000/.test(chunk.toString("latin1"))) return undefined
  return lastError(chunk)
}

/**
 * Opens the socket of a session (TCP, or the Unix socket `path`) and tells when it ends, with the server's
 * last error: PostgreSQL sends a FATAL `ErrorResponse` before it closes a session it terminates
 * (`pg_terminate_backend`, a crash restart, a shutdown). TLS, when configured, runs over this socket: its
 * end is still seen, but not the server's message (`readErrors` false).
 */
const watchSocket = (readErrors: boolean) => {
  const ended = Deferred.makeUnsafe<SessionEnd>()
  return {
    ended: Deferred.await(ended),
    open: (
      config: {
        readonly path?: string | undefined
        readonly host?: string | undefined
        readonly port?: number | undefined
      }
    ) => {
      const socket = config.path !== undefined
        ? net.connect({ path: config.path })
        : net.connect({ host: config.host ?? "localhost", port: config.port ?? 5432 })
      let last: Buffer | undefined
      // Over TLS the driver wraps this socket; its bytes are then encrypted and are left alone.
      if (readErrors) {
        socket.on("data", (chunk: Buffer) => {
          last = chunk
          // A FATAL of a terminated session (57P01 pg_terminate_backend, 57P02 crash, 57P03 shutdown) ends
          // it now, before the driver fails the query in flight with the same words: the worker then ends
          // as a terminated background worker, whatever it was doing.
          const end = fatalEnd(chunk)
          if (end !== undefined) Deferred.doneUnsafe(ended, Effect.succeed(end))
        })
      }
      socket.once("close", () => Deferred.doneUnsafe(ended, Effect.succeed(lastError(last))))
      return socket
    }
  }
}

/**
 * The opt-in path: takes `role` in a session logged in as the server's user, after PostgreSQL's
 * `rolcanlogin` check unless `bypassLoginCheck`.
 */
const switchTo = (
  client: PgClient.PgClient,
  role: string,
  bypassLoginCheck: boolean,
  fail: (message: string, hint?: string, sqlstate?: string) => WorkerConnectionError
): Effect.Effect<PgClient.PgClient, WorkerConnectionError> =>
  Effect.gen(function*() {
    const rows = yield* client<{ rolcanlogin: boolean }>`
      SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = ${role}`.pipe(
      Effect.mapError((e) => fail(serverText(e), undefined, sqlstateOf(e)))
    )
    if (rows.length === 0) return yield* fail(`role "${role}" does not exist`, undefined, "42704")
    if (!rows[0]!.rolcanlogin && !bypassLoginCheck) {
      return yield* fail(`role "${role}" is not permitted to log in`, undefined, "28000")
    }
    yield* client.unsafe(`SET SESSION AUTHORIZATION ${quoteIdentifier(role)}`).pipe(
      Effect.mapError((e) => fail(serverText(e), undefined, sqlstateOf(e)))
    )
    return client
  })
