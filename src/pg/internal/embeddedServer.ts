/**
 * The steps of an embedded server's life after its directory exists: `initdb` on `<directory>/data`
 * with the embedded `pg_hba.conf`, then `postgres` on it until the scope closes.
 *
 * PostgreSQL: src/bin/initdb/initdb.c; src/backend/postmaster/postmaster.c (SIGINT is the fast shutdown);
 * "The pg_hba.conf File" in the manual.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as fs from "node:fs/promises"
import * as net from "node:net"
import * as path from "node:path"
import type { Binaries } from "./binaries.ts"
import { attempt, EmbeddedPostgresError, logAnnotations } from "./embeddedError.ts"
import {
  describeExit,
  type Owner,
  runToCompletion,
  spawn,
  type Spawned,
  terminate,
  type Watchdog
} from "./processes.ts"

/** A TCP port on 127.0.0.1 that nothing listens on, as the OS chose it (another process may take it next). */
export const freePort: Effect.Effect<number, EmbeddedPostgresError> = Effect.callback<number, EmbeddedPostgresError>(
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

/**
 * Creates the cluster in `<directory>/data`: `initdb` with `password` for the superuser `postgres`
 * (through a password file, removed after), the embedded `pg_hba.conf`, and with `standby`,
 * `standby.signal`. Every file is given to `owner`.
 */
export const initDataDirectory: (options: {
  readonly binaries: Binaries
  readonly owner: Owner | undefined
  readonly directory: string
  readonly password: Redacted.Redacted
  readonly standby: boolean
  readonly startTimeout: Duration.Duration
  readonly watchdog: Watchdog
}) => Effect.Effect<void, EmbeddedPostgresError> = Effect.fnUntraced(function*(options) {
  const { binaries, directory, owner, password, startTimeout, watchdog } = options
  const passwordFile = path.join(directory, "pwfile")
  yield* attempt("directory", "could not write the password file", async () => {
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
  yield* attempt("directory", "could not remove the password file", () => fs.rm(passwordFile))
  yield* attempt("directory", "could not write pg_hba.conf", async () => {
    const hbaFile = path.join(directory, "data", "pg_hba.conf")
    await fs.writeFile(hbaFile, hbaConf, { mode: 0o600 })
    await fs.chmod(hbaFile, 0o600)
    if (owner !== undefined) await fs.chown(hbaFile, owner.uid, owner.gid)
  })
  if (options.standby) {
    yield* attempt("directory", "could not write standby.signal", async () => {
      const signalFile = path.join(directory, "data", "standby.signal")
      await fs.writeFile(signalFile, "")
      if (owner !== undefined) await fs.chown(signalFile, owner.uid, owner.gid)
    })
  }
})

/** The line the postmaster logs once it accepts connections (read-only ones, for a hot standby). */
const readyPattern = /database system is ready to accept (read-only )?connections/

/**
 * Starts `postgres` on `<directory>/data`, listening on 127.0.0.1:`port` and on a Unix socket in
 * `directory`, and waits for its "ready to accept connections". Fails, with the server's last lines, when
 * it exits first or takes longer than `startTimeout`. Closing the scope stops it: SIGINT (fast shutdown),
 * then SIGKILL to its process group after `stopTimeout`.
 */
export const startServer: (options: {
  readonly binaries: Binaries
  readonly owner: Owner | undefined
  readonly directory: string
  readonly port: number
  readonly settings: Readonly<Record<string, string>>
  readonly startTimeout: Duration.Duration
  readonly stopTimeout: Duration.Duration
  readonly watchdog: Watchdog
}) => Effect.Effect<Spawned, EmbeddedPostgresError, Scope.Scope> = Effect.fnUntraced(function*(options) {
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

/** Whether a start failed because another process took the port first: worth a retry on another port. */
export const addressInUse = (error: EmbeddedPostgresError): boolean =>
  error.step === "start" && /Address already in use|could not create any TCP\/IP sockets/.test(error.log)
