/**
 * Node integration: Unix signals and the process's exit code for a supervisor (`NodeSupervisor`), and its
 * log format (`NodeLogger`: PostgreSQL-like text lines with each worker's name, type and pid; JSON or
 * logfmt one setting away), OTLP export of traces, metrics and logs configured by the `OTEL_*` variables
 * (`NodeOtlp`), and a live admin page for a supervisor (`Dashboard`, off unless provided). Kept out of the
 * core, which runs wherever Effect runs.
 *
 * @since 0.1.0
 */
export * as Dashboard from "./Dashboard.ts"
export * as NodeLogger from "./NodeLogger.ts"
export * as NodeOtlp from "./NodeOtlp.ts"
export * as NodeSupervisor from "./NodeSupervisor.ts"
