/**
 * Connection URLs (`postgresql://user:password@host:port/database`) written on this side; reading them is
 * `PgServer.fromUrl`.
 *
 * PostgreSQL: "Connection URIs" in the libpq manual (src/interfaces/libpq/fe-connect.c, `conninfo_uri_parse`).
 *
 * @internal
 */
import * as Redacted from "effect/Redacted"

/**
 * The URL of `server`: user, password and database percent-encoded, an IPv6 host in brackets, then
 * `search` (the query of the URL it came from, such as `?sslmode=require`) as it is.
 */
export const formatUrl = (server: {
  readonly host: string
  readonly port: number
  readonly user: string
  readonly password: Redacted.Redacted
  readonly database: string
}, search = ""): Redacted.Redacted => {
  const host = server.host.includes(":") ? `[${server.host}]` : server.host
  const credentials = `${encodeURIComponent(server.user)}:${encodeURIComponent(Redacted.value(server.password))}`
  return Redacted.make(
    `postgresql://${credentials}@${host}:${server.port}/${encodeURIComponent(server.database)}${search}`
  )
}
