/**
 * Runs a supervisor as a Node process: Unix signals become supervisor requests, and the supervisor's end
 * becomes the process's end. The only module that touches `process`, so the core stays runtime-neutral.
 *
 * PostgreSQL: the postmaster's signal handling in src/backend/postmaster/postmaster.c
 * (`handle_pm_reload_request_signal` for SIGHUP, `handle_pm_shutdown_request_signal` for SIGTERM, SIGINT and
 * SIGQUIT), which `pg_ctl reload` and `pg_ctl stop` send.
 *
 * - SIGHUP (PostgreSQL: reload the configuration files and forward SIGHUP to every child): {@link layerSignals}
 *   calls `Supervisor.reload`, which sets every running worker's reload flag and latch.
 * - SIGTERM (PostgreSQL: smart shutdown) and SIGINT (fast shutdown): `NodeRuntime.runMain` interrupts the main
 *   fiber, and {@link layerSignals}'s finalizer runs `Supervisor.shutdown("fast")`.
 * - SIGQUIT (immediate shutdown) is not handled: Node's default action ends the process at once.
 *
 * {@link runMain} also logs: it installs `NodeLogger` (PostgreSQL-like text lines that show each worker's
 * name, type and pid; `BGWORKER_LOG_FORMAT=json` or `logfmt` for structured output), reports a failure as
 * one `FATAL` line with its hint, and ends every run with `database system is shut down`.
 *
 * With a GUC registry in the supervisor layer's context ({@link layerGucs}), SIGHUP re-reads the
 * configuration file first, as `pg_ctl reload` does: `Supervisor.reload` runs `Guc.reload`, then sets the
 * workers' reload flags.
 *
 * **Exit codes** (of {@link runMain})
 *
 * - `0`: the supervisor ended by itself (something called `Supervisor.shutdown`, in any mode, `"immediate"`
 *   included; `awaitTermination` completed).
 * - `130`: SIGINT or SIGTERM; the workers were shut down fast and every finalizer ran or was abandoned.
 * - `1`: the supervisor ended with a failure: a crash with `restartAfterCrash: false` or during a smart or fast
 *   shutdown (`SupervisorCrashed`), shared state that could not be re-created after a crash restart
 *   (`SupervisorError`, reason `ShmemInitFailed`), or a layer that failed to build. The cause is logged first.
 *
 * **Example** (A supervisor as a Node program)
 *
 * ```ts
 * import * as Effect from "effect/Effect"
 * import * as BackgroundWorker from "effect-bgworker/BackgroundWorker"
 * import * as Interrupts from "effect-bgworker/Interrupts"
 * import * as Preload from "effect-bgworker/Preload"
 * import * as ProcLatch from "effect-bgworker/ProcLatch"
 * import * as Supervisor from "effect-bgworker/Supervisor"
 * import { NodeSupervisor } from "effect-bgworker/node"
 *
 * const ticker = BackgroundWorker.make({
 *   name: "ticker",
 *   main: () =>
 *     Effect.gen(function*() {
 *       while (true) {
 *         yield* ProcLatch.wait({ timeout: "1 second", onPostmasterDeath: "exit" })
 *         yield* ProcLatch.reset
 *         if (yield* Interrupts.reloadPending) yield* Effect.log("reload requested") // kill -HUP <pid>
 *       }
 *     })
 * })
 *
 * NodeSupervisor.runMain(Supervisor.layer({ preload: [Preload.register(ticker)] })) // kill <pid>: exit code 130
 * ```
 *
 * **Gotchas**
 *
 * - SIGTERM is a fast shutdown, not PostgreSQL's smart one: `NodeRuntime.runMain` treats SIGINT and SIGTERM
 *   alike. A program that wants a smart shutdown calls `Supervisor.shutdown("smart")` itself; the process then
 *   ends with exit code 0.
 * - Node's default action for SIGHUP is to die without running any finalizer. {@link runMain} listens from
 *   before the supervisor starts until after it is gone; {@link layerSignals} on its own listens only while
 *   it is built, that is after the supervisor's layer (preloads run, static workers started).
 * - A shutdown takes up to the supervisor's `shutdownTimeout` plus its `abandonTimeout` (twice
 *   `shutdownTimeout` by default) when a worker ignores interruption (for example inside
 *   `Interrupts.holdInterrupts` or an uninterruptible region). A worker whose finalizer still has not ended
 *   then is abandoned with a log line naming it, and the process exits all the same, as PostgreSQL's
 *   postmaster sends SIGKILL after 5 seconds. A second SIGINT does not shorten the wait; SIGKILL does, and
 *   runs nothing.
 * - {@link runMain} owns the process: it calls `process.exit` when the supervisor has ended, even if a stray
 *   timer or socket would keep Node's event loop alive.
 *
 * @since 0.1.0
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as PrometheusMetrics from "effect/observability/PrometheusMetrics"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Runtime from "effect/Runtime"
import * as Schedule from "effect/Schedule"
import * as Http from "node:http"
import * as Activity from "../Activity.ts"
import * as Guc from "../Guc.ts"
import { causeChain, hintOf } from "../internal/causeChain.ts"
import { escape } from "../internal/logText.ts"
import * as Supervisor from "../Supervisor.ts"
import type * as SupervisorError from "../SupervisorError.ts"
import { asSystemError, strerror, type SystemError } from "./internal/systemError.ts"
import * as NodeLogger from "./NodeLogger.ts"
import * as NodeOtlp from "./NodeOtlp.ts"

const logAnnotations = { module: "effect-bgworker/NodeSupervisor" }

/** Installs the SIGHUP listener for the current scope; the queue holds at most one pending request. */
const listenForSighup = Effect.gen(function*() {
  const sighup = yield* Queue.sliding<void>(1)
  const listener = () => void Queue.offerUnsafe(sighup, undefined)
  yield* Effect.acquireRelease(
    Effect.sync(() => process.on("SIGHUP", listener)),
    () => Effect.sync(() => process.off("SIGHUP", listener))
  )
  return sighup
})

/** Reloads on every SIGHUP taken from `sighup`, and shuts the supervisor down fast when the scope closes. */
const forwardSignals = (sighup: Queue.Dequeue<void>) =>
  Effect.gen(function*() {
    const supervisor = yield* Supervisor.Supervisor
    yield* Queue.take(sighup).pipe(
      Effect.andThen(Effect.logInfo("received SIGHUP: asking every worker to reload")),
      Effect.andThen(supervisor.reload),
      Effect.annotateLogs(logAnnotations),
      Effect.forever,
      Effect.forkScoped
    )
    // Registered after the listener, so released before it: the listener stays installed while the workers
    // shut down, and a SIGHUP arriving meanwhile is swallowed instead of killing the process.
    // A defect here is logged before it ends the program: runMain's own report is skipped after a signal.
    yield* Effect.addFinalizer(() =>
      supervisor.shutdown("fast").pipe(
        Effect.tapCause((cause) => Effect.logError("fast shutdown failed; postmaster death stops the rest", cause)),
        Effect.annotateLogs(logAnnotations)
      )
    )
  })

/**
 * Forwards SIGHUP to the supervisor as `Supervisor.reload`, and shuts the supervisor down (`"fast"`) when its
 * scope closes.
 *
 * **When to use**
 *
 * When the program is launched some other way than {@link runMain} or {@link launch}, which do the same and
 * listen for SIGHUP from earlier (for example `Layer.launch` piped into `NodeRuntime.runMain`): merge it
 * with the layer that provides `Supervisor`.
 *
 * **Details**
 *
 * SIGHUP: the listener feeds a sliding queue of one, so a burst of signals coalesces into one reload (as
 * PostgreSQL's latch coalesces them), and a fiber in this layer's scope calls `Supervisor.reload` for each.
 * The signal is logged as `received SIGHUP`.
 *
 * Release: the layer depends on `Supervisor`, so it is released before the supervisor's own layer, whose
 * release is postmaster death. Its finalizer turns that death into a clean stop: `Supervisor.shutdown("fast")`
 * first (every worker is interrupted and its finalizers run, within the supervisor's `shutdownTimeout`), then
 * the SIGHUP listener is removed. A shutdown that already happened makes it a no-op.
 *
 * Built on its own, it listens from its construction, after the supervisor's layer: a SIGHUP during the
 * supervisor's start-up kills the process. {@link runMain} and {@link launch} listen from the start.
 *
 * **Gotchas**
 *
 * Handles SIGHUP only: SIGINT and SIGTERM are `NodeRuntime.runMain`'s, which turns them into interruption of
 * the main fiber, and so into this layer's release. Without `runMain` (or another SIGTERM handler) a SIGTERM
 * kills the process at once.
 *
 * @category layers
 * @since 0.1.0
 */
export const layerSignals: Layer.Layer<never, never, Supervisor.Supervisor> = Layer.effectDiscard(
  Effect.flatMap(listenForSighup, forwardSignals)
)

/**
 * The program {@link runMain} runs: builds `layer` with {@link layerSignals}, logs `supervisor ready` (or,
 * while workers wait for the database, `supervisor started ... but not ready` with their names, and
 * `supervisor ready` once they have started), and waits for the supervisor to end (as `Layer.launch` holds a layer open; not to be confused with
 * `Supervisor.launch`, which starts one worker by name).
 *
 * **Details**
 *
 * The SIGHUP listener is installed before `layer` is built and removed after the supervisor's layer is
 * released, so a SIGHUP never meets Node's default action (death without finalizers) while `launch` runs. A
 * SIGHUP during start-up (preloads can take a while) is held and turns into one reload once the supervisor
 * runs.
 *
 * Succeeds when the supervisor stops after a shutdown (any mode), fails with `SupervisorCrashed` when it ends
 * after a crash with `restartAfterCrash: false` or during a shutdown, with `SupervisorError` (`ShmemInitFailed`)
 * when shared state cannot be re-created after a crash, and with the layer's error when the layer cannot be built.
 * Interrupting it is a fast shutdown (see {@link layerSignals}). Use it instead of {@link runMain} to add
 * your own steps, or to run it under a different runtime.
 *
 * @category running
 * @since 0.1.0
 */
export const launch = <E>(
  layer: Layer.Layer<Supervisor.Supervisor, E>
): Effect.Effect<void, E | SupervisorError.SupervisorError | Supervisor.SupervisorCrashed> =>
  Effect.scoped(Effect.gen(function*() {
    // Before the layer is built, so that a SIGHUP during start-up waits instead of killing the process.
    const sighup = yield* listenForSighup
    yield* Effect.gen(function*() {
      yield* announceReady
      yield* Supervisor.awaitTermination
    }).pipe(Effect.provide(Layer.effectDiscard(forwardSignals(sighup)).pipe(Layer.provideMerge(layer))))
  }))

/** The registrations still waiting for their start gate (the database) once the supervisor runs. */
const waitingNames = Effect.map(
  Activity.snapshot,
  (rows) => rows.filter((row) => row.registration === "not yet started").map((row) => row.name)
)

const quoteNames = (names: ReadonlyArray<string>): string => {
  const shown = names.slice(0, 5).map((name) => `"${escape(name)}"`).join(", ")
  return names.length > 5 ? `${shown} and ${names.length - 5} more` : shown
}

/**
 * `supervisor ready` once nothing waits for its start gate, as PostgreSQL says `database system is ready to
 * accept connections` only when it is. While workers wait for the database (a `DatabaseState` that is not
 * ready yet, for example a server that does not answer), the supervisor says so and names them, and says
 * `supervisor ready` when the last of them has started.
 */
const announceReady = Effect.gen(function*() {
  const signals = "SIGHUP reloads, SIGINT or SIGTERM shuts down"
  const waiting = yield* waitingNames
  if (waiting.length === 0) {
    return yield* Effect.logInfo(`supervisor ready (process ${process.pid}): ${signals}`)
  }
  const count = waiting.length === 1 ? "1 background worker waits" : `${waiting.length} background workers wait`
  yield* Effect.logInfo(
    `supervisor started (process ${process.pid}) but not ready: ${count} for the database to accept ` +
      `connections (${quoteNames(waiting)}); ${signals}`
  )
  // Polled: a read of the supervisor's slots, cheap, and immune to a start between a check and a subscription.
  yield* waitingNames.pipe(
    Effect.repeat({ schedule: Schedule.spaced("200 millis"), until: (names) => names.length === 0 }),
    Effect.andThen(Effect.logInfo(
      `supervisor ready (process ${process.pid}): the database accepts connections and every waiting ` +
        `background worker has started`
    )),
    Effect.annotateLogs(logAnnotations),
    Effect.forkScoped
  )
}).pipe(Effect.annotateLogs(logAnnotations))

/**
 * Runs `layer` (which must provide `Supervisor`, usually through `Supervisor.layer`) as the Node process's
 * main program, and ends the process with the exit code described in the module doc: 0, 130 or 1.
 *
 * **Details**
 *
 * `NodeRuntime.runMain` over {@link launch}. SIGINT and SIGTERM interrupt the main fiber; the layers are
 * released in reverse order of construction, so {@link layerSignals} shuts the workers down fast (their
 * finalizers run) before the supervisor's own layer closes. A failure is logged at level `FATAL` before the
 * process exits with code 1: an expected error (an invalid configuration file, a crash with
 * `restartAfterCrash` off, a server that refuses connections) as its message, with what its innermost cause
 * adds (an operating-system error in libpq's words: `connection to server at "127.0.0.1", port 1 failed:
 * Connection refused (ECONNREFUSED)`) and its hint once (`HINT:  Is the server running on that host and
 * accepting TCP/IP connections?`); a defect with its whole cause. Pass `disableErrorReporting: true` to log
 * it yourself.
 *
 * Logging: installs `NodeLogger` (format `options.logFormat`, else `BGWORKER_LOG_FORMAT`, else `text`; an
 * invalid variable is a warning), so every worker's line shows its name, type and pid. Pass `logger: false`
 * to keep the loggers the program installs itself.
 *
 * Observability: installs `NodeOtlp.layer()` under `layer`, so setting `OTEL_EXPORTER_OTLP_ENDPOINT` exports
 * the workers' spans, the supervisor's metrics and the log lines over OTLP/HTTP, flushed after the
 * supervisor has stopped; without it nothing is exported and nothing is started. `otlp: false` leaves it out.
 *
 * Start and end: says `supervisor ready` once no worker waits for its start gate; while some wait for the
 * database it says `supervisor started ... but not ready` with their names, and `supervisor ready` when the
 * last has started. Every run ends with the line `database system is shut down` (PostgreSQL's words),
 * logged after every layer has been released: the workers, and an embedded server when there is one.
 *
 * **Gotchas**
 *
 * Never returns control: the process ends when the supervisor does. Anything else the program runs belongs
 * in `layer` (a `Layer.effectDiscard` with `Effect.forkScoped`), where it is interrupted before the
 * supervisor dies.
 *
 * @category running
 * @since 0.1.0
 */
export const runMain = <E>(
  layer: Layer.Layer<Supervisor.Supervisor, E>,
  options?: RunMainOptions
): void =>
  NodeRuntime.runMain(main(layer, options), {
    // Failures are reported by `main`: an expected error as its message and hint, like PostgreSQL's
    // FATAL lines, and only a defect with its whole cause.
    disableErrorReporting: true,
    // runMain exits by itself after a signal or a failure; a clean end would wait for the event loop to drain.
    teardown: (exit, onExit) =>
      Runtime.defaultTeardown(exit, (code) => {
        onExit(code)
        process.exit(code)
      })
  })

/**
 * The program {@link runMain} runs, as an effect: {@link launch} with `NodeLogger` installed, failures
 * logged at `FATAL`, and the closing `database system is shut down` line. For a program that already runs
 * under `NodeRuntime.runMain` (the `bgworker run` command does): run it there with
 * `disableErrorReporting: true`, and SIGINT or SIGTERM end it with exit code 130 as {@link runMain} does.
 *
 * @category running
 * @since 0.2.0
 */
export const main = <E>(
  layer: Layer.Layer<Supervisor.Supervisor, E>,
  options?: RunMainOptions
): Effect.Effect<void, E | SupervisorError.SupervisorError | Supervisor.SupervisorCrashed> => {
  const fromEnvironment = NodeLogger.formatFromEnvironment()
  const format = options?.logFormat ?? (typeof fromEnvironment === "string" ? fromEnvironment : "text")
  const invalid = options?.logFormat === undefined && typeof fromEnvironment === "object"
    ? Effect.logWarning(
      `invalid value for ${NodeLogger.environmentVariable}: "${escape(fromEnvironment.invalid)}"; using "text"`
    ).pipe(Effect.annotateLogs({ ...logAnnotations, hint: `Use one of ${NodeLogger.formats.join(", ")}.` }))
    : Effect.void
  // OTLP export when the OTEL_* variables ask for it: built before the supervisor, released after it.
  const exported = options?.otlp === false ? layer : Layer.provide(layer, NodeOtlp.layer())
  return Effect.andThen(
    invalid,
    options?.disableErrorReporting === true ? launch(exported) : reportFailure(launch(exported))
  ).pipe(
    // After every layer has been released: the workers, the control plane, an embedded server.
    Effect.ensuring(Effect.logInfo("database system is shut down").pipe(Effect.annotateLogs(logAnnotations))),
    options?.logger === false ? (self) => self : Effect.provide(NodeLogger.layer(format))
  )
}

/**
 * Options of {@link runMain}.
 *
 * @category running
 * @since 0.2.0
 */
export interface RunMainOptions {
  /** Leave failures unlogged (the exit code still says 1): log them yourself. */
  readonly disableErrorReporting?: boolean | undefined
  /**
   * The log format (see `NodeLogger`): `"text"` (PostgreSQL-like lines), `"json"` or `"logfmt"`. Default: the
   * `BGWORKER_LOG_FORMAT` environment variable, else `"text"`.
   */
  readonly logFormat?: NodeLogger.Format | undefined
  /** `false`: keep Effect's default logger (or whatever `layer` installs for its own lines) instead. */
  readonly logger?: false | undefined
  /**
   * `false`: do not install `NodeOtlp.layer()` (for a `layer` that installs its own tracer or exporters).
   * By default it is installed under `layer`, and exports only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or a
   * signal's own endpoint) is set.
   *
   * @since 0.2.0
   */
  readonly otlp?: false | undefined
}

/** Logs why the program failed, once, at FATAL: a typed error's message and hint, or a defect's whole cause. */
const reportFailure = <A, E, R>(program: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.tapCause(program, (cause) => {
    if (Cause.hasInterruptsOnly(cause)) return Effect.void
    const error = Cause.findErrorOption(cause)
    if (Option.isSome(error) && !Cause.hasDies(cause)) {
      const { hint, message } = describeFailure(error.value)
      return Effect.logFatal(message).pipe(
        Effect.annotateLogs(hint === undefined ? logAnnotations : { ...logAnnotations, hint })
      )
    }
    return Effect.logFatal("the supervisor failed", cause).pipe(Effect.annotateLogs(logAnnotations))
  })

/** libpq's text for a failed connection (`connection to server at "h", port p failed: ...`), and its hint. */
const describeSystemError = (e: SystemError): { readonly text: string; readonly hint: string | undefined } => {
  const words = strerror(e)
  const what = `${words} (${e.code})`
  if (e.syscall === "getaddrinfo") {
    return {
      text: `could not translate host name "${escape(String(e.hostname ?? "?"))}" to address: ${what}`,
      hint: "Check the host name (in DATABASE_URL, for example) and that this machine can resolve it."
    }
  }
  if (e.address !== undefined && e.port === undefined) {
    return {
      text: `connection to server on socket "${escape(e.address)}" failed: ${what}`,
      hint: "Is the server running locally and accepting connections on that socket?"
    }
  }
  const where = e.address === undefined ? "" : ` at "${escape(e.address)}", port ${e.port}`
  return {
    text: `connection to server${where} failed: ${what}`,
    hint: e.code === "ECONNREFUSED"
      ? "Is the server running on that host and accepting TCP/IP connections?"
      : e.code === "ETIMEDOUT" || e.code === "EHOSTUNREACH" || e.code === "ENETUNREACH"
      ? "Check that the host is reachable from this machine (network, firewall)."
      : undefined
  }
}

const ownText = (value: unknown): string => {
  const message = typeof value === "object" && value !== null ? (value as { message?: unknown }).message : undefined
  return typeof message === "string" && message !== "" ? message : String(value)
}

/**
 * What a FATAL line says about `error`: its message, followed by what its innermost cause adds (an operating
 * system's error in libpq's words: host, port, `ECONNREFUSED`), and the first hint along the chain.
 *
 * @internal
 */
export const describeFailure = (error: unknown): { readonly message: string; readonly hint: string | undefined } => {
  let message = ownText(error)
  let hint: string | undefined = undefined
  for (const [depth, link] of causeChain(error).entries()) {
    hint ??= hintOf(link)
    const system = asSystemError(link)
    if (system !== undefined) {
      const described = describeSystemError(system)
      return { message: `${message}: ${described.text}`, hint: hint ?? described.hint }
    }
    const text = ownText(link)
    if (depth > 0 && text !== "" && !message.includes(text)) message = `${message}: ${text}`
  }
  return { message, hint }
}

/**
 * The GUC registry of a Node process: `Guc.layer` reading `process.env` and, when `configFile` is given,
 * that file through Node's file system.
 *
 * **When to use**
 *
 * To give a supervisor run by {@link runMain} a `postgresql.conf` and environment variables. Provide it to
 * the supervisor's layer (`Supervisor.layer(...).pipe(Layer.provideMerge(NodeSupervisor.layerGucs({ ... })))`):
 * then a SIGHUP re-reads the file before it sets every worker's reload flag and latch, and
 * `max_worker_processes`, `restart_after_crash` and `shutdown_timeout` come from the registry.
 *
 * **Details**
 *
 * - `configFile`: a path in `postgresql.conf` syntax, relative to the process's working directory
 *   (`include` directives inside it are relative to the including file). `ALTER SYSTEM` (`Guc.alterSystem`)
 *   writes `postgresql.auto.conf` beside it, read after it.
 * - Environment: every `BGW_*` variable of `process.env` sets a parameter, above the file and below
 *   `overrides`: `BGW_` + the name in capitals with `.` written `__`, so `demo.naptime` is
 *   `BGW_DEMO__NAPTIME=250ms` and `shutdown_timeout` is `BGW_SHUTDOWN_TIMEOUT=2s` (`Guc.environmentVariable`
 *   gives the name). Pass `environment` to read another record instead (`{}`: none).
 * - Every other option is `Guc.layer`'s.
 *
 * **Gotchas**
 *
 * Building it fails with `GucError` (and {@link runMain} exits with code 1) when the file does not parse,
 * when a file or environment value is invalid for a parameter defined in `parameters`, or when a `BGW_*`
 * variable names no parameter and has no prefix (`BGW_NAPTIME`). A parameter set in the environment no
 * longer follows the file: editing the file and sending SIGHUP leaves it as it is.
 *
 * **Example** (A supervisor with a configuration file)
 *
 * ```ts
 * import * as Layer from "effect/Layer"
 * import * as Guc from "effect-bgworker/Guc"
 * import * as Supervisor from "effect-bgworker/Supervisor"
 * import { NodeSupervisor } from "effect-bgworker/node"
 *
 * const naptime = Guc.int("demo.naptime", {
 *   context: "sighup",
 *   description: "Time between ticks.",
 *   default: 1000,
 *   min: 10,
 *   max: 3_600_000,
 *   unit: "ms"
 * })
 *
 * NodeSupervisor.runMain(
 *   Supervisor.layer().pipe(
 *     Layer.provideMerge(NodeSupervisor.layerGucs({ configFile: "postgresql.conf", parameters: [naptime] }))
 *   )
 * )
 * ```
 *
 * @category layers
 * @since 0.1.0
 */
export const layerGucs = (options: Guc.Options = {}): Layer.Layer<Guc.Gucs, Guc.GucError> =>
  Guc.layer({ ...options, environment: options.environment ?? process.env }).pipe(
    Layer.provide(NodeServices.layer)
  )

/**
 * Options of {@link layerMetrics}.
 *
 * @category metrics
 * @since 0.2.0
 */
export interface MetricsOptions {
  /** TCP port to listen on. */
  readonly port: number
  /** Interface to bind. Default `"127.0.0.1"` (loopback only): expose it further on purpose, not by default. */
  readonly host?: string | undefined
  /** Path that serves the metrics. Default `"/metrics"`. */
  readonly path?: string | undefined
}

/**
 * Serves the metrics of the context's `MetricRegistry` (the supervisor's, see `Supervisor.Options.metrics`)
 * as Prometheus text at `http://host:port/metrics`, using `effect`'s `PrometheusMetrics`. Off unless this
 * layer is provided; binds `127.0.0.1` unless `host` says otherwise. The server closes with the layer.
 *
 * **Gotchas** Provide it in the same context as the supervisor (the same `MetricRegistry`); any other path
 * answers 404. A port that cannot be bound (in use, an address not on this machine) makes the layer die
 * with Node's error (`EADDRINUSE`, ...).
 *
 * @category metrics
 * @since 0.2.0
 */
export const layerMetrics = (options: MetricsOptions): Layer.Layer<never> =>
  Layer.effectDiscard(Effect.gen(function*() {
    const context = yield* Effect.context<never>()
    const path = options.path ?? "/metrics"
    const server = Http.createServer((request, response) => {
      if (request.method !== "GET" || (request.url ?? "").split("?")[0] !== path) {
        response.writeHead(404).end()
        return
      }
      const body = PrometheusMetrics.formatUnsafe(context)
      response.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }).end(body)
    })
    yield* Effect.acquireRelease(
      Effect.callback<void>((resume) => {
        // A port in use or an address not on this machine: a defect of the layer, not an unhandled
        // `error` event (which would end the process) and a `listen` callback that never comes.
        const failed = (error: Error) => resume(Effect.die(error))
        server.once("error", failed)
        server.listen(options.port, options.host ?? "127.0.0.1", () => {
          server.off("error", failed)
          resume(Effect.void)
        })
      }),
      () =>
        Effect.callback<void>((resume) => {
          server.close(() => resume(Effect.void))
          server.closeAllConnections()
        })
    )
  }))
