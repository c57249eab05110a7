/**
 * How the CLI fails, in psql's words and with psql's exit codes: a server's error as `ERROR:` with its
 * `DETAIL:` and `HINT:` lines (exit 1), a connection that fails as libpq says it (`bgworker: error:
 * connection to server at "h", port p failed: ...`, exit 2), the CLI's own checks as `bgworker: error:`
 * (exit 1). Server text is escaped (control characters shown, never sent to the terminal).
 *
 * PostgreSQL: psql's exit status (doc/src/sgml/ref/psql-ref.sgml, "Exit Status"), libpq's messages
 * (src/interfaces/libpq/fe-connect.c), the error fields of the protocol (`S`, `C`, `M`, `D`, `H`).
 *
 * @internal
 */
import * as Data from "effect/Data"
import * as Runtime from "effect/Runtime"
import type { SqlError } from "effect/sql/SqlError"
import { causeChain } from "../../internal/causeChain.ts"
import { escape } from "../../internal/logText.ts"
import { asSystemError, strerror } from "../../node/internal/systemError.ts"

/** Escapes each line of a multi-line text (a DETAIL may have several), keeping the line breaks. */
const escapeLines = (text: string): string => text.split("\n").map(escape).join("\n")

/**
 * A failure already worded for the terminal: `lines` go to stderr as they are, and the process exits with
 * `exitCode` (1: the command failed, 2: no connection). Reported here, so the runtime does not log it.
 */
export class CliFailure extends Data.TaggedError("CliFailure")<{
  /** The first line; with `prefix`, printed as `bgworker: error: <line>` (psql's own errors). */
  readonly lines: ReadonlyArray<string>
  readonly hint?: string | undefined
  readonly exitCode: number
  readonly prefix: boolean
}> {
  override get [Runtime.errorExitCode](): number {
    return this.exitCode
  }
  override get [Runtime.errorReported](): boolean {
    return true
  }
  /** The text for stderr. */
  render(): string {
    const [first = "", ...rest] = this.lines
    const lines = [this.prefix ? `bgworker: error: ${first}` : first, ...rest]
    if (this.hint !== undefined) lines.push(this.prefix ? `\t${this.hint}` : `HINT:  ${this.hint}`)
    return lines.join("\n")
  }
}

/** One of the CLI's own checks failed (exit 1). */
export const usage = (message: string, hint?: string): CliFailure =>
  new CliFailure({ lines: [message], hint, exitCode: 1, prefix: true })

/** The fields of an error the server sent (node's `DatabaseError`-like objects, effect's driver's). */
export interface ServerError {
  readonly severity: string
  readonly code: string | undefined
  readonly message: string
  readonly detail: string | undefined
  readonly hint: string | undefined
}

const text = (value: unknown): string | undefined => typeof value === "string" && value !== "" ? value : undefined

/** The server's error in `error`'s cause chain, if the server sent one. */
export const serverError = (error: unknown): ServerError | undefined => {
  for (const link of causeChain(error)) {
    if (typeof link !== "object" || link === null) continue
    const fields = link as Record<string, unknown>
    const severity = text(fields["severity"])
    const message = text(fields["message"])
    if (severity !== undefined && message !== undefined && typeof fields["code"] === "string") {
      return { severity, code: fields["code"], message, detail: text(fields["detail"]), hint: text(fields["hint"]) }
    }
  }
  return undefined
}

const systemError = (error: unknown): { readonly code: string; readonly message: string } | undefined => {
  for (const link of causeChain(error)) {
    const e = asSystemError(link)
    if (e !== undefined) return { code: e.code, message: strerror(e) }
  }
  return undefined
}

/** The cause's own words, below effect's wrapper (`Connection timed out`), else the wrapper's. */
const innermost = (error: unknown): string => {
  const chain = causeChain(error)
  for (let i = chain.length - 1; i >= 0; i--) {
    const message = (chain[i] as { readonly message?: unknown } | null)?.message
    if (typeof message === "string" && message !== "") return message
  }
  return String(error)
}

/**
 * A failure to connect, as libpq reports it (exit 2): `connection to server at "h", port p failed:
 * Connection refused`, or the server's `FATAL:` (a refused login, a database that does not exist).
 */
export const connectionFailure = (error: SqlError, where: string): CliFailure => {
  const server = serverError(error)
  const system = server === undefined ? systemError(error) : undefined
  const reason = server !== undefined
    ? `${server.severity}:  ${escape(server.message)}`
    : system !== undefined
    ? system.message
    : escape(innermost(error))
  const hint = system?.code === "ECONNREFUSED"
    ? where.startsWith("on socket")
      ? "Is the server running locally and accepting connections on that socket?"
      : "Is the server running on that host and accepting TCP/IP connections?"
    : undefined
  return new CliFailure({ lines: [`connection to server ${where} failed: ${reason}`], hint, exitCode: 2, prefix: true })
}

/**
 * Hints the server does not give for the control plane's own refusals: which role to grant, and that a
 * missing schema usually means no supervisor with a control plane ever ran on this database.
 */
const extraHint = (error: ServerError, schema: string): string | undefined => {
  if (error.code === "42501") {
    if (/function (launch|start)\b/.test(error.message)) {
      return `Launching needs membership in "${schema}_launcher" (GRANT ${schema}_launcher TO <role>).`
    }
    if (/function reload\b/.test(error.message)) {
      return `Only superusers, and roles granted EXECUTE on ${schema}.reload(), can reload.`
    }
    if (/(view|table) (activity|settings)\b/.test(error.message)) {
      return `Reading it needs membership in "${schema}_launcher", or in pg_read_all_stats (activity) or ` +
        `pg_read_all_settings (settings).`
    }
    if (/permission denied to set parameter/.test(error.message)) {
      return "ALTER SYSTEM needs a superuser, or a role granted ALTER SYSTEM ON PARAMETER for it."
    }
  }
  if (error.code === "3F000" || (error.code === "42P01" && error.message.includes(`"${schema}.`))) {
    return `Is a supervisor with the control plane (ControlPlane.layer) attached to this database? The ` +
      `schema is "${schema}" (--schema).`
  }
  return undefined
}

/**
 * A statement that failed (exit 1): the server's `ERROR:`, `DETAIL:` and `HINT:` lines, as psql prints them;
 * a connection lost mid-way as libpq says it (exit 2).
 */
export const queryFailure = (error: SqlError, schema: string): CliFailure => {
  const server = serverError(error)
  if (server === undefined) {
    const lost = error.reason._tag === "ConnectionError"
    return new CliFailure({
      lines: [lost ? `connection to server was lost: ${escape(innermost(error))}` : escape(innermost(error))],
      exitCode: lost ? 2 : 1,
      prefix: true
    })
  }
  const lines = [`${server.severity}:  ${escape(server.message)}`]
  if (server.detail !== undefined) lines.push(`DETAIL:  ${escapeLines(server.detail)}`)
  const hint = server.hint === undefined ? extraHint(server, schema) : escapeLines(server.hint)
  return new CliFailure({ lines, hint, exitCode: 1, prefix: false })
}
