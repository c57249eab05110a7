/**
 * @title Configuration and live reload: typed parameters from a `postgresql.conf`, changed by SIGHUP
 *
 * worker_spi's configuration story, in one process: parameters defined in the library's `_PG_init`, read from
 * a configuration file, and re-read on `kill -HUP <pid>` (PostgreSQL's `pg_ctl reload`).
 *
 * - The preload (`_PG_init`) defines three parameters (`DefineCustomIntVariable`) and reserves the `demo`
 *   prefix (`MarkGUCPrefixReserved`): `demo.naptime` and `demo.batch_size` (context `sighup`: they change on
 *   reload) and `demo.workers` (context `postmaster`: read once, here, to register that many static workers;
 *   a reload only reports that it cannot change without a restart).
 * - Each `ticker` worker takes one `Guc.snapshot` at the top of its loop, naps `demo.naptime` on its latch,
 *   and logs `tick n (naptime=..., batch_size=...)`. On SIGHUP the supervisor re-reads the file, then sets
 *   every worker's reload flag and latch: the worker wakes at once, logs `reload requested: naptime is now
 *   ...`, and its next cycle runs with the new values, so the ticks speed up or slow down live.
 * - A value that does not parse or is out of range (`demo.naptime = 0`), or a syntax error, is logged
 *   (`... contains errors`) and the old value stays; the process keeps running.
 * - At start it prints part of the settings view (`pg_settings`): where each value came from, down to the
 *   file and line.
 * - Ctrl-C (SIGINT) or SIGTERM is a fast shutdown: every worker's finalizer runs, exit code 130.
 *
 * Run: `npm run example:config` (reads examples/20_config-reload.conf), or `npm run example:config -- my.conf`
 * (or `DEMO_CONFIG=my.conf`) to use a copy you can edit. Then, in another terminal, edit the file
 * (`demo.naptime = 500ms`) and run the `kill -HUP` command the example prints. Environment variables win
 * over the file: `BGW_DEMO__NAPTIME=250ms npm run example:config`. With `EXAMPLE_EXIT_AFTER_MS=8000` it shuts
 * itself down after eight seconds and exits with code 0.
 *
 * PostgreSQL: src/test/modules/worker_spi (`_PG_init`, the SIGHUP handling in the main loop),
 * src/backend/utils/misc/guc-file.l (`ProcessConfigFile`) and guc.c (`pg_settings`).
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import * as Guc from "../src/Guc.ts"
import * as Interrupts from "../src/Interrupts.ts"
import { NodeSupervisor } from "../src/node/index.ts"
import * as Preload from "../src/Preload.ts"
import * as ProcLatch from "../src/ProcLatch.ts"
import * as Supervisor from "../src/Supervisor.ts"
import { exitAfter } from "./support.ts"

/** `argv[2]`, else `DEMO_CONFIG`, else the file beside this one. */
const configFile = path.resolve(
  process.argv[2] ?? process.env["DEMO_CONFIG"] ?? fileURLToPath(new URL("20_config-reload.conf", import.meta.url))
)

// --- Parameters (DefineCustom*Variable) ---

/** Stored in milliseconds: the file may say `5s`, `500ms` or `1min`; a bare number means milliseconds. */
const Naptime = Guc.int("demo.naptime", {
  context: "sighup",
  description: "Time each ticker naps between ticks.",
  default: 1000,
  min: 10,
  max: 3_600_000,
  unit: "ms"
})

const BatchSize = Guc.int("demo.batch_size", {
  context: "sighup",
  description: "Rows each tick processes.",
  default: 10,
  min: 1,
  max: 10_000
})

/** Read once, in the preload: how many tickers exist is fixed for the life of the process. */
const Workers = Guc.int("demo.workers", {
  context: "postmaster",
  description: "Number of ticker workers started at startup.",
  default: 2,
  min: 1,
  max: 4
})

// --- The worker ---

/** `5s`, `300ms`, `1s 500ms`. */
const formatMillis = (ms: number) => Duration.format(Duration.millis(ms))

/** Ticker `n`: named `ticker <n>`, of type `ticker` (as worker_spi's workers are `worker_spi worker <n>`). */
const Ticker = (n: number) =>
  BackgroundWorker.make({
    name: `ticker ${n}`,
    type: "ticker",
    argument: Schema.Number,
    restart: BackgroundWorker.restartAfter("1 second"),
    main: (n) =>
      Effect.gen(function*() {
        yield* Effect.addFinalizer((exit) =>
          Effect.logInfo(`finalizer ran (${exit._tag === "Success" ? "returned" : "stopped"})`)
        )
        let reloaded = false
        for (let tick = 1;;) {
          // One snapshot per cycle: naptime and batch_size below come from the same configuration, even if a
          // reload happens in the middle of the cycle.
          const settings = yield* Guc.snapshot
          const naptime = settings.get(Naptime)
          const batchSize = settings.get(BatchSize)
          if (reloaded) {
            yield* Effect.logInfo(`reload requested: naptime is now ${formatMillis(naptime)}, batch_size ${batchSize}`)
          } else if (tick === 1) {
            yield* Effect.logInfo(`started (naptime=${formatMillis(naptime)}, batch_size=${batchSize})`)
          }
          yield* ProcLatch.wait({ timeout: Duration.millis(naptime), onPostmasterDeath: "exit", waitEvent: "DemoNap" })
          yield* ProcLatch.reset
          // worker_spi: `if (ConfigReloadPending) { ConfigReloadPending = false; ProcessConfigFile(PGC_SIGHUP); }`.
          // Here the supervisor has already re-read the file; the next snapshot holds the new values. The nap was
          // cut short by the reload, so start a new cycle instead of working early.
          reloaded = yield* Interrupts.reloadPending
          if (reloaded) continue
          yield* Effect.logInfo(`tick ${tick++} (naptime=${formatMillis(naptime)}, batch_size=${batchSize})`)
        }
      })
  })

// --- The supervisor ---

/** `_PG_init`: define the parameters, reserve the prefix, register `demo.workers` tickers. */
const preload = Effect.gen(function*() {
  yield* Guc.define(Naptime)
  yield* Guc.define(BatchSize)
  yield* Guc.define(Workers)
  yield* Guc.reservePrefix("demo")
  const workers = yield* Guc.get(Workers)
  for (let n = 1; n <= workers; n++) yield* Preload.register(Ticker(n), n)
})

/** A few rows of the settings view (`SELECT name, setting, unit, context, source, sourcefile ... FROM pg_settings`). */
const printSettings = Effect.gen(function*() {
  const shown = new Set(["max_worker_processes", "shutdown_timeout", "restart_after_crash"])
  const rows = (yield* Guc.settings).filter((row) => row.name.startsWith("demo.") || shown.has(row.name))
  const where = (file: string | null, line: number | null) => {
    if (file === null) return ""
    const relative = path.relative(process.cwd(), file)
    return `${relative.startsWith("..") ? file : relative}:${line}`
  }
  const table = [
    ["name", "setting", "unit", "context", "source", "sourcefile:sourceline"],
    ...rows.map((row) => [
      row.name,
      row.setting ?? "",
      row.unit ?? "",
      row.context,
      row.source,
      where(row.sourcefile, row.sourceline)
    ])
  ]
  const widths = table[0]!.map((_, i) => Math.max(...table.map((cells) => cells[i]!.length)))
  const lines = table.map((cells) => cells.map((cell, i) => cell.padEnd(widths[i]!)).join(" | ").trimEnd())
  lines.splice(1, 0, widths.map((w) => "-".repeat(w)).join("-+-"))
  yield* Effect.logInfo(`settings (pg_settings)\n${lines.join("\n")}`)
  yield* Effect.logInfo(
    `configuration file: ${configFile}\n` +
      `  try: edit demo.naptime in that file (for example to 500ms), then run: kill -HUP ${process.pid}\n` +
      `  stop: Ctrl-C, or kill ${process.pid}`
  )
}).pipe(Effect.annotateLogs({ worker: "main" }))

// The registry is in the supervisor's context: SIGHUP re-reads the file before waking the workers, and
// max_worker_processes and shutdown_timeout come from the file.
const gucs = NodeSupervisor.layerGucs({ configFile })

const app = Layer.effectDiscard(Effect.andThen(printSettings, Effect.forkScoped(exitAfter))).pipe(
  Layer.provideMerge(Supervisor.layer({ preload: [preload] })),
  Layer.provideMerge(gucs)
)

NodeSupervisor.runMain(app)
