/**
 * Where the CLI connects, as psql decides it: `--database-url`, else `DATABASE_URL`, else libpq's `PG*`
 * variables with psql's defaults; and one session on it for the length of a command.
 *
 * PostgreSQL: "Environment Variables" and "Connection Strings" in the libpq manual
 * (src/interfaces/libpq/fe-connect.c, `conninfo_add_defaults`).
 *
 * @internal
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Effect from "effect/Effect"
import * as Reactivity from "effect/reactivity/Reactivity"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as os from "node:os"
import { escape } from "../../internal/logText.ts"
import { CliFailure, connectionFailure } from "./report.ts"

/** A resolved connection: the client's configuration, and how a failure names the server (no password). */
export interface Target {
  readonly config: PgClient.PgClientConfig
  /** `at "127.0.0.1", port 5432` or `on socket "/tmp/.s.PGSQL.5432"`, as libpq words it. */
  readonly where: string
}

/** The session's `application_name`, as psql's is `psql`. */
export const applicationName = "bgworker"

/** The directories psql looks in for a server's socket when no host is given (Debian's, then upstream's). */
const socketDirectories = ["/var/run/postgresql", "/tmp"]

/** Escaped: `PGHOST` and a URL's `?host=` reach the terminal as given (a control character included). */
const describeWhere = (host: string, port: number): string =>
  host.startsWith("/") ? `on socket "${escape(host)}/.s.PGSQL.${port}"` : `at "${escape(host)}", port ${port}`

const invalid = (detail: string) =>
  new CliFailure({
    lines: [`invalid connection URL: ${detail}`],
    hint: "Write it as postgresql://user:password@host:port/database, with reserved characters percent-encoded.",
    exitCode: 2,
    prefix: true
  })

/** A URL (`--database-url`, `DATABASE_URL`): the driver reads it; host and port are read here for messages. */
const fromUrl = (url: string): Effect.Effect<Target, CliFailure> =>
  Effect.suspend(() => {
    if (!URL.canParse(url)) return Effect.fail(invalid("not a URL"))
    const parsed = new URL(url)
    if (parsed.protocol !== "postgresql:" && parsed.protocol !== "postgres:") {
      return Effect.fail(invalid(`unsupported scheme "${parsed.protocol.slice(0, -1)}"`))
    }
    const host = parsed.hostname.replace(/^\[(.*)\]$/, "$1") || parsed.searchParams.get("host") || "localhost"
    const port = Number(parsed.port || parsed.searchParams.get("port") || "5432")
    return Effect.succeed({
      config: { url: Redacted.make(url), applicationName },
      where: describeWhere(host, port)
    })
  })

/** libpq's variables, with psql's defaults: the local socket when one exists, the OS user, its database. */
const fromEnvironment = (env: NodeJS.ProcessEnv): Effect.Effect<Target, CliFailure> =>
  Effect.suspend(() => {
    const portText = env["PGPORT"] || "5432"
    const port = Number(portText)
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      return Effect.fail(
        new CliFailure({ lines: [`invalid port number: "${portText}"`], exitCode: 2, prefix: true })
      )
    }
    const host = env["PGHOST"] ||
      socketDirectories.find((dir) => fs.existsSync(`${dir}/.s.PGSQL.${port}`)) ||
      "localhost"
    const user = env["PGUSER"] || os.userInfo().username
    const sslmode = env["PGSSLMODE"] ?? ""
    return Effect.succeed({
      config: {
        host,
        port,
        username: user,
        database: env["PGDATABASE"] || user,
        ...(env["PGPASSWORD"] ? { password: Redacted.make(env["PGPASSWORD"]) } : {}),
        ...(["require", "verify-ca", "verify-full"].includes(sslmode) ? { ssl: true } : {}),
        applicationName
      },
      where: describeWhere(host, port)
    })
  })

/** `--database-url`, else `DATABASE_URL`, else the `PG*` variables. */
export const resolve = (
  databaseUrl: string | undefined,
  env: NodeJS.ProcessEnv = process.env
): Effect.Effect<Target, CliFailure> => {
  const url = databaseUrl ?? (env["DATABASE_URL"] || undefined)
  return url === undefined ? fromEnvironment(env) : fromUrl(url)
}

/**
 * One session on `target` for the caller's scope (a command needs no pool). A failure to connect becomes
 * libpq's message with exit code 2.
 */
export const connect = (target: Target): Effect.Effect<PgClient.PgClient, CliFailure, Scope.Scope> =>
  PgClient.makeClient({ ...target.config, connectTimeout: "10 seconds" }).pipe(
    Effect.provide(Reactivity.layer),
    Effect.mapError((error) => connectionFailure(error, target.where))
  )
