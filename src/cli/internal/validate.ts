/**
 * The CLI's own checks of what it sends, before any connection: the control plane enforces the same limits
 * (`bgworker.launch` refuses a name of 96 bytes or more, an argument over its configured limit), but a
 * mistake caught here costs no round trip and names the flag.
 *
 * PostgreSQL: `BGW_MAXLEN` (96, src/include/postmaster/bgworker.h), `MAXPGPATH` (1024), GUC names
 * (`valid_custom_variable_name` in src/backend/utils/misc/guc.c).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import { escapeBounded } from "../../internal/logText.ts"
import { checkSchema, maxProcessBytes } from "../../pg/internal/controlPlaneSql.ts"
import { type CliFailure, usage } from "./report.ts"

const bytes = (text: string): number => new TextEncoder().encode(text).length

/** `BGW_MAXLEN`: names, types and function names are shorter than this many bytes. */
export const bgwMaxLen = 96
/** `MAXPGPATH`: libraries are shorter than this many bytes. */
export const maxLibraryLen = 1024
/** The largest `--arg` the CLI sends (the control plane's default limit); the server may allow less. */
export const maxArgumentBytes = 1024 * 1024
/** The largest value `settings set` sends. */
export const maxSettingBytes = 64 * 1024

/** A text that must be non-empty, shorter than `limit` bytes, and free of NUL. */
export const checkText = (what: string, value: string, limit: number): Effect.Effect<string, CliFailure> => {
  if (value === "") return Effect.fail(usage(`${what} must not be empty`))
  if (value.includes("\0")) return Effect.fail(usage(`${what} must not contain a NUL character`))
  const size = bytes(value)
  return size < limit
    ? Effect.succeed(value)
    : Effect.fail(
      usage(`${what} "${escapeBounded(value, 40)}" is too long (${size} bytes)`, `The limit is ${limit - 1} bytes.`)
    )
}

/** A value for `settings set`: any text (empty included, as `ALTER SYSTEM SET x = ''`) without NUL, bounded. */
export const checkSettingValue = (value: string): Effect.Effect<string, CliFailure> => {
  if (value.includes("\0")) return Effect.fail(usage("the value must not contain a NUL character"))
  const size = bytes(value)
  return size <= maxSettingBytes
    ? Effect.succeed(value)
    : Effect.fail(usage(`the value is too long (${size} bytes)`, `The limit is ${maxSettingBytes} bytes.`))
}

/** `--arg`: JSON text of at most {@link maxArgumentBytes}; returned as the text, to travel as `jsonb`. */
export const checkArgument = (json: string): Effect.Effect<string, CliFailure> => {
  const size = bytes(json)
  if (size > maxArgumentBytes) {
    return Effect.fail(usage(
      `--arg is too large (${size} bytes)`,
      `The CLI sends at most ${maxArgumentBytes} bytes of JSON; the control plane's limit may be lower.`
    ))
  }
  return Effect.try({
    try: () => {
      JSON.parse(json)
      return json
    },
    catch: (e) =>
      usage(
        `--arg is not valid JSON: ${escapeBounded(e instanceof Error ? e.message : String(e), 120)}`,
        `Quote it for the shell: --arg '{"index": 1}'.`
      )
  })
}

/** `--process`: a process id or the start of one, at most the control plane's limit for a process id. */
export const checkProcess = (text: string): Effect.Effect<string, CliFailure> =>
  checkText("--process", text, maxProcessBytes + 1)

/** A handle, as `launch` returned it: a positive whole number. */
export const checkHandle = (text: string): Effect.Effect<bigint, CliFailure> =>
  /^[1-9][0-9]{0,18}$/.test(text)
    ? Effect.succeed(BigInt(text))
    : Effect.fail(usage(
      `invalid background worker handle "${escapeBounded(text, 40)}"`,
      "A handle is the number bgworker launch printed, or the handle column of bgworker ps."
    ))

/** `--schema`: the control plane's own rule (lowercase letters, digits, underscores). */
export const checkSchemaName = (schema: string): Effect.Effect<string, CliFailure> => {
  const problem = checkSchema(schema)
  return problem === undefined ? Effect.succeed(schema) : Effect.fail(usage(escapeBounded(problem, 200)))
}

const gucName = /^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)+$/

/**
 * A parameter `settings set` may change: a custom `prefix.name` (the only names the supervisor reads from
 * the server's configuration, see `ServerSettings`), lowercased as PostgreSQL folds them.
 */
export const checkParameterName = (name: string): Effect.Effect<string, CliFailure> => {
  if (name.length <= 200 && gucName.test(name)) return Effect.succeed(name.toLowerCase())
  return Effect.fail(usage(
    `invalid configuration parameter name "${escapeBounded(name, 80)}"`,
    gucName.test(name)
      ? "The name is too long."
      : `Only custom parameters ("prefix.name", such as worker_spi.naptime) reach the supervisor from the ` +
        `server's configuration; set the others in the supervisor's own configuration file.`
  ))
}

/**
 * psql's `\dconfig` pattern as a regular expression: `*` any text, `?` one character, case-insensitive,
 * the whole name; every other character literally.
 */
export const patternRegex = (pattern: string): string =>
  `^(${
    [...pattern.toLowerCase()].map((c) =>
      c === "*" ? ".*" : c === "?" ? "." : /[\\^$.|+()[\]{}]/.test(c) ? `\\${c}` : c
    ).join("")
  })$`
