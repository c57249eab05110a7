/**
 * @title worker_spi on a real PostgreSQL: static workers, `SELECT worker_spi_launch(n)`, reload, activity
 *
 * The demo of the seed talk, in one process: worker_spi "preloaded" into a supervisor that runs against a
 * PostgreSQL server, and a psql session to watch and drive it.
 *
 * - The server is `DATABASE_URL` when set, else a throwaway PostgreSQL started from the bundled binaries
 *   (about two seconds; deleted on exit).
 * - The preload (`_PG_init`) defines `worker_spi.naptime`, `.database`, `.role` and `.total_workers`, and
 *   registers `total_workers` (2) static workers, `worker_spi worker 1` and `2`. Each connects to
 *   `worker_spi.database` (`postgres`), creates `schema<N>.counted`, and every `naptime` (10) seconds folds
 *   the `'delta'` rows into the `'total'` row.
 * - The control plane (`bgworker` schema) and `worker_spi_launch` are installed in the server's database, so
 *   workers can be launched, and the activity view read, from SQL.
 * - A short scripted session then does what the TAP test t/001_worker_spi.pl does first: it launches worker 4
 *   from SQL (`SELECT worker_spi_launch(4)`, which returns the worker's backend pid), inserts `('total', 0), ('delta', 1)` into `schema4.counted`, and reloads, so the worker logs
 *   `count in schema4.counted is now 1` at once instead of after `naptime`.
 * - `worker_spi.*` can also live in the server's configuration: `ALTER SYSTEM SET worker_spi.naptime = 2;
 *   SELECT pg_reload_conf();` reaches the workers within a second (`ServerSettings`), over this program's
 *   own file and under its `BGW_*` variables.
 * - `kill -HUP <pid>` re-reads the configuration and wakes every worker for one cycle (`pg_ctl reload`);
 *   Ctrl-C (SIGINT) or SIGTERM stops the workers, detaches the control plane and stops the server (exit 130).
 *
 * Run: `npm start`. Parameters: a `postgresql.conf`-style file (`npm start -- my.conf`, or
 * `WORKER_SPI_CONFIG=my.conf`), re-read on SIGHUP, and environment variables over it:
 * `BGW_WORKER_SPI__NAPTIME=1 BGW_WORKER_SPI__TOTAL_WORKERS=3 npm start`. With
 * `OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318` (an OpenTelemetry collector) the workers' spans, the
 * metrics and the log records are exported over OTLP (`NodeSupervisor.runMain` installs `NodeOtlp`). With `EXAMPLE_EXIT_AFTER_MS=8000` it
 * shuts itself down after eight seconds and exits with code 0.
 *
 * **Differences from the C module** (see src/demo/WorkerSpi.ts for all of them)
 *
 * - `SELECT worker_spi_launch(5)` returns the pid as PostgreSQL's does: the control plane commits the launch
 *   on a session of its own (dblink, which ships with the embedded server) and waits for the worker. Without
 *   dblink it returns NULL with a notice, and the worker starts when the calling transaction commits. It takes
 *   oids (`worker_spi_launch(10, 16384, 16385)`) or names (`worker_spi_launch(10, 'mydb', 'myrole')`).
 * - The workers are client sessions of the server: a worker's pid is its session's backend pid, so
 *   `bgworker.activity` joins `pg_stat_activity` on `pid` and `pg_terminate_backend(pid)` ends the worker.
 *   `pg_stat_activity` shows them as `client backend`s named by `application_name`; the backend type
 *   (`worker_spi`, `worker_spi dynamic`) and the wait event `WorkerSpiMain` are in `bgworker.activity`.
 *   This program's own sessions are named `bgworker supervisor`, so `application_name LIKE 'worker_spi%'`
 *   finds only workers.
 * - Workers launched from SQL are named `worker_spi dynamic worker N` after their index, as PostgreSQL's
 *   launcher sets `bgw_name`; they run as the role that called `worker_spi_launch` unless it names another
 *   role that caller could `SET ROLE` to (see the README's Security section).
 *
 * PostgreSQL: src/test/modules/worker_spi (worker_spi.c, worker_spi--1.0.sql, t/001_worker_spi.pl).
 */
import * as path from "node:path"
import * as WorkerSpiDemo from "../src/demo/WorkerSpiDemo.ts"
import { NodeSupervisor } from "../src/node/index.ts"

/** `argv[2]`, else `WORKER_SPI_CONFIG`, else none (defaults and `BGW_*` variables only). */
const configArgument = process.argv[2] ?? process.env["WORKER_SPI_CONFIG"]
const configFile = configArgument === undefined || configArgument === "" ? undefined : path.resolve(configArgument)

// The program (the supervisor, worker_spi preloaded, the control plane, the scripted session) is
// src/demo/WorkerSpiDemo.ts, shipped in the package so that `bgworker demo` runs it too.
NodeSupervisor.runMain(WorkerSpiDemo.layer({ configFile, exitAfter: WorkerSpiDemo.exitAfterFromEnvironment() }))
