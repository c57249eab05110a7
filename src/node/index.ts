/**
 * Node integration: Unix signals and the process's exit code for a supervisor (`NodeSupervisor`). Kept out
 * of the core, which runs wherever Effect runs.
 *
 * @since 0.1.0
 */
export * as NodeSupervisor from "./NodeSupervisor.ts"
