/**
 * Several supervisor processes on one PostgreSQL database (`ClusterSupervisor`): singleton workers that
 * run on exactly one process, fail over in seconds through Effect's `effect/cluster`, and carry a fencing
 * token. Node- and PostgreSQL-specific, so kept out of the core.
 *
 * @since 0.2.0
 */
export * as ClusterSupervisor from "./ClusterSupervisor.ts"
