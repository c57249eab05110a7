/**
 * The log format of a supervisor run by `NodeSupervisor.runMain`: one line per record, which says when,
 * who (a worker's name, type and pid, or the library module) and how serious, as PostgreSQL's
 * `log_line_prefix = '%m [%p] %b '` does.
 *
 * PostgreSQL: `log_line_prefix` (`%m` time with milliseconds, `%p` process id, `%b` backend type),
 * `log_destination` (`stderr`, `jsonlog`) and the level names of `elog.c` (`LOG`, `WARNING`, `ERROR`,
 * `FATAL`).
 *
 * **Formats**
 *
 * - `text` (the default):
 *   `2026-11-29 08:14:01.234 UTC [3] worker_spi worker 1 (worker_spi) LOG:  count is now 1`. A line written
 *   by a worker (one that carries the supervisor's `worker`, `type` and `pid` log annotations) shows the
 *   worker's pid, then its name and, in parentheses, its backend type. A line of the library itself
 *   outside a worker (annotation `module`, e.g. `effect-bgworker/pg/DatabaseProbe`) shows this process's
 *   pid and the module (`pg/DatabaseProbe`); so does every line of the supervisor (`Supervisor`,
 *   `NodeSupervisor`), as PostgreSQL's postmaster logs a worker's exit under its own pid (the worker's name
 *   and pid are in the message, and in the annotations). A line annotated with a `worker` name only (the
 *   examples' `main`) shows that name. Levels are PostgreSQL's words: `DEBUG`, `LOG` (Effect's `Info`), `WARNING`, `ERROR`,
 *   `FATAL` (`TRACE` for `Trace`). A `hint` annotation is printed as a second line `HINT:  ...` with the
 *   same prefix; a cause follows on lines that start with a tab, as PostgreSQL continues a message.
 * - `json`: Effect's `Logger.consoleJson`: one JSON object per line with `level`, `timestamp`, `message`,
 *   `cause` and every annotation (`worker`, `type`, `pid`, `module`, `hint`) under `annotations`.
 * - `logfmt`: Effect's `Logger.consoleLogFmt`: `timestamp=... level=INFO message=... worker=... pid=3`.
 *
 * Chosen by `NodeSupervisor.runMain({ logFormat })`, else by the environment variable
 * `BGWORKER_LOG_FORMAT=text|json|logfmt` ({@link environmentVariable}), else `text`. (Not `BGW_...`:
 * those set configuration parameters, see `NodeSupervisor.layerGucs`.)
 *
 * **Gotchas**
 *
 * - Names and messages come from outside (SQL, other processes): in the text format every control
 *   character of a name, type or module is escaped (`\n`, `\x1b`), and every line break of a message or
 *   cause starts a continuation line (a tab first, no prefix), so nothing a worker logs or is called can
 *   print a line that looks like another record. JSON and logfmt escape by construction.
 * - Everything goes to standard output (`console.log`), in the order written.
 *
 * **Example** (JSON logs)
 *
 * ```ts
 * import * as Supervisor from "effect-bgworker/Supervisor"
 * import { NodeSupervisor } from "effect-bgworker/node"
 *
 * NodeSupervisor.runMain(Supervisor.layer(), { logFormat: "json" }) // or BGWORKER_LOG_FORMAT=json
 * ```
 *
 * @since 0.2.0
 */
import * as Cause from "effect/Cause"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import type * as LogLevel from "effect/LogLevel"
import * as References from "effect/References"
import * as util from "node:util"
import { escape } from "../internal/logText.ts"

/**
 * @category models
 * @since 0.2.0
 */
export type Format = "text" | "json" | "logfmt"

/**
 * The formats, in the order the documentation lists them.
 *
 * @category models
 * @since 0.2.0
 */
export const formats: ReadonlyArray<Format> = ["text", "json", "logfmt"]

/**
 * The environment variable that picks the format when `runMain` is given none: `BGWORKER_LOG_FORMAT`.
 *
 * @category environment
 * @since 0.2.0
 */
export const environmentVariable = "BGWORKER_LOG_FORMAT"

const levelNames: Record<LogLevel.LogLevel, string> = {
  All: "LOG",
  None: "LOG",
  Trace: "TRACE",
  Debug: "DEBUG",
  Info: "LOG",
  Warn: "WARNING",
  Error: "ERROR",
  Fatal: "FATAL"
}

/** `2026-11-29 08:14:01.234 UTC`: PostgreSQL's `%m`, always in UTC. */
const formatTime = (date: Date): string => `${date.toISOString().slice(0, 23).replace("T", " ")} UTC`

const piece = (value: unknown): string =>
  typeof value === "string" ? value : util.inspect(value, { breakLength: Infinity, depth: 4 })

/** Every line after the first starts with a tab; control characters other than the line break are escaped. */
const continued = (text: string): string =>
  text.split(/\r?\n/).map((line, i) => (i === 0 ? escape(line) : `\t${escape(line)}`)).join("\n")

/** The supervisor's own modules: their lines are the postmaster's, even when they are about a worker. */
const postmasterModules = new Set(["effect-bgworker/Supervisor", "effect-bgworker/NodeSupervisor"])

/** `[pid] who`: the worker (name and type), the library module, or the `worker` name alone. */
const prefixOf = (annotations: Readonly<Record<string, unknown>>): string => {
  const worker = annotations["worker"]
  const type = annotations["type"]
  const pid = annotations["pid"]
  const module = annotations["module"]
  const postmaster = typeof module === "string" && postmasterModules.has(module)
  if (!postmaster && typeof type === "string" && typeof worker === "string") {
    const shown = typeof pid === "number" || typeof pid === "string" ? escape(String(pid)) : String(process.pid)
    return `[${shown}] ${escape(worker)} (${escape(type)})`
  }
  if (typeof module === "string") return `[${process.pid}] ${escape(module.replace(/^effect-bgworker\//, ""))}`
  if (typeof worker === "string") return `[${process.pid}] ${escape(worker)}`
  return `[${process.pid}]`
}

/**
 * The text format as a string-producing logger: the record's line (or lines, see the module doc).
 *
 * @category formats
 * @since 0.2.0
 */
export const formatText: Logger.Logger<unknown, string> = Logger.make(({ cause, date, fiber, logLevel, message }) => {
  const annotations = fiber.getRef(References.CurrentLogAnnotations)
  const prefix = `${formatTime(date)} ${prefixOf(annotations)}`
  const text = (Array.isArray(message) ? message : [message]).map(piece).join(" ")
  let out = `${prefix} ${levelNames[logLevel]}:  ${continued(text)}`
  const hint = annotations["hint"]
  if (typeof hint === "string" && hint !== "") out += `\n${prefix} HINT:  ${continued(hint)}`
  if (cause.reasons.length > 0) out += `\n\t${continued(Cause.pretty(cause))}`
  return out
})

/**
 * The text format, printed with `console.log`.
 *
 * @category loggers
 * @since 0.2.0
 */
export const text: Logger.Logger<unknown, void> = Logger.withConsoleLog(formatText)

/**
 * The logger for `format`.
 *
 * @category loggers
 * @since 0.2.0
 */
export const make = (format: Format): Logger.Logger<unknown, void> =>
  format === "json" ? Logger.consoleJson : format === "logfmt" ? Logger.consoleLogFmt : text

/**
 * The format {@link environmentVariable} names in `env` (default `process.env`): `Some`-like result with
 * the format, `undefined` when unset or empty, or `{ invalid }` with the value when it names no format.
 *
 * @category environment
 * @since 0.2.0
 */
export const formatFromEnvironment = (
  env: Readonly<Record<string, string | undefined>> = process.env
): Format | { readonly invalid: string } | undefined => {
  const raw = env[environmentVariable]
  if (raw === undefined || raw.trim() === "") return undefined
  const value = raw.trim().toLowerCase()
  return (formats as ReadonlyArray<string>).includes(value) ? value as Format : { invalid: raw }
}

/**
 * Replaces the loggers in context with the one for `format` (default: {@link formatFromEnvironment}, else
 * `text`). `NodeSupervisor.runMain` installs it by itself.
 *
 * @category layers
 * @since 0.2.0
 */
export const layer = (format?: Format): Layer.Layer<never> => {
  const chosen = format ?? formatFromEnvironment()
  return Logger.layer([make(typeof chosen === "string" ? chosen : "text")])
}
