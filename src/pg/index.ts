/**
 * PostgreSQL integration: a server to run against (`PgServer`: how to reach it, clients and databases on
 * it; `EmbeddedPostgres`: `DATABASE_URL`, or a throwaway server from bundled binaries), the database state
 * read from it (`DatabaseProbe`), database workers' own sessions (`WorkerConnection`), the server's
 * settings checked against the registry (`ServerSettings`), and the SQL control plane (`ControlPlane`:
 * launch, terminate and watch workers from SQL). Kept out of the core, which imports no PostgreSQL package.
 *
 * @since 0.1.0
 */
export * as ControlPlane from "./ControlPlane.ts"
export * as DatabaseProbe from "./DatabaseProbe.ts"
export * as EmbeddedPostgres from "./EmbeddedPostgres.ts"
export * as PgServer from "./PgServer.ts"
export * as ServerSettings from "./ServerSettings.ts"
export * as WorkerConnection from "./WorkerConnection.ts"
