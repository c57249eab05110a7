/**
 * PostgreSQL integration: a server to run against (`EmbeddedPostgres`: `DATABASE_URL`, or a throwaway
 * server from bundled binaries), the database state read from it (`DatabaseProbe`), database workers'
 * own sessions (`WorkerConnection`), and the SQL control plane (`ControlPlane`: launch, terminate and
 * watch workers from SQL). Kept out of the core, which imports no PostgreSQL package.
 *
 * @since 0.1.0
 */
export * as ControlPlane from "./ControlPlane.ts"
export * as DatabaseProbe from "./DatabaseProbe.ts"
export * as EmbeddedPostgres from "./EmbeddedPostgres.ts"
export * as ServerSettings from "./ServerSettings.ts"
export * as WorkerConnection from "./WorkerConnection.ts"
