/**
 * A PostgreSQL server to work against, wherever it runs: what a probe, a database worker's session, the
 * control plane or a test needs to reach it, and nothing about how it was started.
 *
 * PostgreSQL: libpq's connection parameters and "Connection URIs" (src/interfaces/libpq/fe-connect.c).
 *
 * - {@link PgServer}: how to reach the server (host, port, user, password, database, URL), and for a
 *   server this process started, its process, directory and trusted socket.
 * - {@link fromUrl}, {@link layerUrl}: a server named by a `postgresql://` URL. `EmbeddedPostgres` provides
 *   the other kind: a throwaway server it starts itself (and `EmbeddedPostgres.layer`, `DATABASE_URL` when
 *   set, else embedded).
 * - {@link clientLayer}, {@link connect}: an `@effect/sql-pg` pool or one session on the server.
 * - {@link createDatabase}, {@link dropDatabase}, {@link layerDatabase}: fresh databases cloned from a
 *   template (`CREATE DATABASE x TEMPLATE y`), for one database per test file.
 * - {@link quoteIdentifier}, {@link escapeIdentifier}: names spliced into SQL text.
 *
 * @since 0.2.0
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as PgConnection from "@effect/sql-pg/PgConnection"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Predicate from "effect/Predicate"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as SqlClient from "effect/sql/SqlClient"
import type * as SqlError from "effect/sql/SqlError"
import * as crypto from "node:crypto"
import { formatUrl } from "./internal/connectionUrl.ts"
import * as sqlText from "./internal/sqlText.ts"

const logAnnotations = { module: "effect-bgworker/pg/PgServer" }

// --- Service ---

/**
 * How to reach a PostgreSQL server.
 *
 * **Details**
 *
 * Provided by {@link layerUrl} (a server given by URL: `embedded` false, no process, no directory, no
 * trusted socket, `exited` never completes) or by `EmbeddedPostgres.layerEmbedded` (a server this process
 * started and stops on release). {@link layerDatabase} provides the same server with another default
 * database.
 *
 * @category services
 * @since 0.1.0
 */
export class PgServer extends Context.Service<PgServer, {
  /** Host name or address (`127.0.0.1` when embedded). */
  readonly host: string
  readonly port: number
  /** The role to log in as (`postgres`, a superuser, when embedded). */
  readonly user: string
  readonly password: Redacted.Redacted
  /** The database to connect to unless told otherwise (`postgres` when embedded). */
  readonly database: string
  /** `postgresql://user:password@host:port/database`, with any query parameters of the original URL. */
  readonly url: Redacted.Redacted
  /** Whether this process started the server (and stops it on release). */
  readonly embedded: boolean
  /** The server's own process (the postmaster) when embedded; `undefined` otherwise. */
  readonly pid: number | undefined
  /** The embedded server's temporary directory (data in `<directory>/data`, Unix socket in `<directory>`). */
  readonly directory: string | undefined
  /**
   * A Unix socket (the socket file's path, `<directory>/.s.PGSQL.<port>`) on which this process may log in
   * as any role without a password: set for an embedded server only, whose socket only its owner (and
   * root) can reach. `undefined` for a server given by URL.
   */
  readonly localSocket: string | undefined
  /**
   * An embedded server's own end: completes, with how it ended (`exited with code 1`, `was killed by signal
   * SIGKILL`), when the server process exits, whether stopped by this layer's release or not. Consumers
   * that run inside the layer's scope (released before it) see only an unexpected end. `Effect.never` for a
   * server given by URL.
   *
   * @since 0.2.0
   */
  readonly exited: Effect.Effect<string>
}>()("effect-bgworker/pg/PgServer") {}

// --- Errors ---

const InvalidDatabaseUrlTypeId = "~effect-bgworker/pg/InvalidDatabaseUrl" as const

/**
 * A database URL that cannot be used. The message never contains the URL, which may hold a password.
 *
 * @category errors
 * @since 0.1.0
 */
export class InvalidDatabaseUrl extends Schema.TaggedError<InvalidDatabaseUrl>()("InvalidDatabaseUrl", {
  detail: Schema.String,
  /** @since 0.2.0 */
  hint: Schema.optionalKey(Schema.String)
}) {
  /** @since 0.2.0 */
  get [InvalidDatabaseUrlTypeId](): typeof InvalidDatabaseUrlTypeId {
    return InvalidDatabaseUrlTypeId
  }

  /** The detail; not the hint, which is a field of its own (printed once). */
  override get message(): string {
    return `invalid database URL: ${this.detail}`
  }
}

/**
 * Whether `u` is an {@link InvalidDatabaseUrl}.
 *
 * @category guards
 * @since 0.2.0
 */
export const isInvalidDatabaseUrl = (u: unknown): u is InvalidDatabaseUrl =>
  Predicate.hasProperty(u, InvalidDatabaseUrlTypeId)

const invalidUrl = (detail: string) =>
  new InvalidDatabaseUrl({
    detail,
    hint: "Write it as postgresql://user:password@host:port/database, with reserved characters " +
      "percent-encoded (libpq's connection URI)."
  })

// --- URLs ---

/**
 * Reads a `postgres://` or `postgresql://` URL as libpq does for the parts used here: missing parts take
 * libpq's defaults (host `localhost`, port 5432, user `postgres`, database named after the user), and
 * `host`, `port`, `user`, `password` and `dbname` query parameters fill parts missing from the authority.
 * Other query parameters (`sslmode`, ...) stay in `url`, which clients receive.
 *
 * @category constructors
 * @since 0.1.0
 */
export const fromUrl: (url: Redacted.Redacted<string>) => Effect.Effect<PgServer["Service"], InvalidDatabaseUrl> =
  Effect.fnUntraced(function*(url: Redacted.Redacted<string>) {
    const parsed = yield* Effect.try({
      try: () => new URL(Redacted.value(url)),
      catch: () => invalidUrl("not a URL")
    })
    if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
      return yield* invalidUrl(
        `unsupported scheme "${parsed.protocol.slice(0, -1)}" (expected "postgresql" or "postgres")`
      )
    }
    const decode = (text: string) =>
      Effect.try({
        try: () => decodeURIComponent(text),
        catch: () => invalidUrl("malformed percent-encoding")
      })
    const param = (name: string) => parsed.searchParams.get(name) ?? ""
    const host = parsed.hostname.replace(/^\[(.*)\]$/, "$1") || param("host") || "localhost"
    const portText = parsed.port || param("port") || "5432"
    const port = Number(portText)
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      return yield* invalidUrl(`invalid port "${portText}"`)
    }
    const user = (yield* decode(parsed.username)) || param("user") || "postgres"
    const password = (yield* decode(parsed.password)) || param("password")
    const database = (yield* decode(parsed.pathname.slice(1))) || param("dbname") || user
    return PgServer.of({
      host,
      port,
      user,
      password: Redacted.make(password),
      database,
      url,
      embedded: false,
      pid: undefined,
      directory: undefined,
      localSocket: undefined,
      exited: Effect.never
    })
  })

/**
 * The same server, with `database` as its default database (and in its URL).
 *
 * @category combinators
 * @since 0.1.0
 */
export const withDatabase = (server: PgServer["Service"], database: string): PgServer["Service"] => {
  const search = URL.canParse(Redacted.value(server.url)) ? new URL(Redacted.value(server.url)).search : ""
  return PgServer.of({ ...server, database, url: formatUrl({ ...server, database }, search) })
}

/**
 * The server at `url`; nothing is started, and nothing is checked until a client connects.
 *
 * @category layers
 * @since 0.1.0
 */
export const layerUrl = (url: Redacted.Redacted<string>): Layer.Layer<PgServer, InvalidDatabaseUrl> =>
  Layer.effect(PgServer, fromUrl(url))

// --- Clients ---

/**
 * Options for {@link clientLayer} and {@link connect}.
 *
 * @category models
 * @since 0.1.0
 */
export interface ClientOptions {
  /** Default: the server's database. */
  readonly database?: string | undefined
  /**
   * Shown in `pg_stat_activity`. Default `"bgworker supervisor"`: not a worker's name, so that a filter on
   * workers' names (`application_name LIKE 'worker_spi%'`) finds only workers.
   */
  readonly applicationName?: string | undefined
  /** Pool size of {@link clientLayer} (default 10). */
  readonly maxConnections?: number | undefined
  /** Bound on opening a connection (default 5 seconds). */
  readonly connectTimeout?: Duration.Input | undefined
}

/** The connection settings for `server`: its URL (which carries any `sslmode`), with explicit overrides. */
const connectionConfig = (server: PgServer["Service"], options: ClientOptions) => ({
  url: server.url,
  host: server.host,
  port: server.port,
  username: server.user,
  password: server.password,
  database: options.database ?? server.database,
  applicationName: options.applicationName ?? "bgworker supervisor",
  connectTimeout: options.connectTimeout
})

/**
 * A pooled `@effect/sql-pg` client for the server. Connections open lazily: building the layer does not
 * check that the server answers.
 *
 * @category layers
 * @since 0.1.0
 */
export const clientLayer = (
  options: ClientOptions = {}
): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, SqlError.SqlError, PgServer> =>
  Layer.unwrap(Effect.gen(function*() {
    const server = yield* PgServer
    return PgClient.layer({ ...connectionConfig(server, options), maxConnections: options.maxConnections })
  }))

/**
 * One session with the server, closed with the scope. For administration and probes, where a pool is
 * more than needed.
 *
 * @category constructors
 * @since 0.1.0
 */
export const connect: (
  options?: ClientOptions
) => Effect.Effect<PgConnection.PgConnection, SqlError.SqlError, PgServer | Scope.Scope> = Effect.fnUntraced(
  function*(options: ClientOptions = {}) {
    const server = yield* PgServer
    return yield* PgConnection.make(connectionConfig(server, options))
  }
)

// --- SQL text ---

/**
 * Quotes an SQL identifier as PostgreSQL's `quote_identifier` does: `name` as it is when it is a
 * lowercase identifier that is not a reserved word (`schema4`, `counted`), else in double quotes with inner
 * quotes doubled (`"My Schema7"`, `"select"`, `"a""b"`).
 *
 * **When to use**
 *
 * For SQL text that people read, such as a statement that is logged or shown, which then looks as
 * PostgreSQL itself would print it.
 *
 * **Gotchas**
 *
 * The reserved words are PostgreSQL 18's. A word reserved by a later version is left unquoted: for
 * statements sent to any server, {@link escapeIdentifier} is the safe choice.
 *
 * @category sql
 * @since 0.2.0
 */
export const quoteIdentifier = (name: string): string => sqlText.quoteIdentifier(name)

/**
 * Quotes an SQL identifier always, in double quotes with inner quotes doubled (`"schema4"`, `"a""b"`), as
 * libpq's `PQescapeIdentifier` does, or `quote_identifier` with `quote_all_identifiers` on.
 *
 * **When to use**
 *
 * For statements sent to a server: the quoted name means the same whatever the server's version and its
 * reserved words. The statements of {@link createDatabase}, {@link dropDatabase} and database workers'
 * sessions use it.
 *
 * @category sql
 * @since 0.2.0
 */
export const escapeIdentifier = (name: string): string => sqlText.quoteIdentifier(name, { all: true })

// --- Databases ---

/** A database to connect to for `CREATE`/`DROP DATABASE`: never the template, which must have no sessions. */
const maintenanceDatabase = (template: string | undefined) => template === "postgres" ? "template1" : "postgres"

/**
 * Creates database `name` as a copy of `template` (default `template1`, PostgreSQL's default).
 *
 * **Details**
 *
 * Connects to the `postgres` database (to `template1` when `template` is `postgres`) as the server's user,
 * which needs the `CREATEDB` privilege. Copying a template is fast (a few milliseconds for a small
 * database), which makes one database per test file or per test affordable.
 *
 * **Gotchas**
 *
 * Fails with `source database "..." is being accessed by other users` when any session is connected to
 * `template`: keep templates for cloning only, and close their pools before cloning.
 *
 * @category databases
 * @since 0.1.0
 */
export const createDatabase: (
  name: string,
  options?: { readonly template?: string | undefined }
) => Effect.Effect<void, SqlError.SqlError, PgServer> = Effect.fnUntraced(
  function*(name: string, options: { readonly template?: string | undefined } = {}) {
    const connection = yield* connect({ database: maintenanceDatabase(options.template) })
    const template = options.template === undefined ? "" : ` TEMPLATE ${escapeIdentifier(options.template)}`
    yield* connection.query(`CREATE DATABASE ${escapeIdentifier(name)}${template}`, [], false)
  },
  Effect.scoped
)

/**
 * Drops database `name` if it exists, ending its sessions first (`DROP DATABASE ... WITH (FORCE)`).
 *
 * @category databases
 * @since 0.1.0
 */
export const dropDatabase: (name: string) => Effect.Effect<void, SqlError.SqlError, PgServer> = Effect.fnUntraced(
  function*(name: string) {
    const connection = yield* connect({ database: maintenanceDatabase(undefined) })
    yield* connection.query(`DROP DATABASE IF EXISTS ${escapeIdentifier(name)} WITH (FORCE)`, [], false)
  },
  Effect.scoped
)

/**
 * A fresh database on the server below, named `<prefix>_<random>` and copied from `template`; the layer
 * provides the same server with that database as its default, and drops the database on release.
 *
 * @category layers
 * @since 0.1.0
 */
export const layerDatabase = (
  options: { readonly prefix?: string | undefined; readonly template?: string | undefined } = {}
): Layer.Layer<PgServer, SqlError.SqlError, PgServer> =>
  Layer.effect(
    PgServer,
    Effect.gen(function*() {
      const server = yield* PgServer
      const name = `${options.prefix ?? "test"}_${crypto.randomBytes(6).toString("hex")}`
      yield* Effect.acquireRelease(
        createDatabase(name, { template: options.template }),
        () =>
          dropDatabase(name).pipe(
            Effect.catchCause((cause) =>
              Effect.logWarning(`could not drop database "${name}"`, cause).pipe(Effect.annotateLogs(logAnnotations))
            )
          )
      )
      return withDatabase(server, name)
    })
  )
