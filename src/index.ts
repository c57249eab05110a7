/**
 * effect-bgworker: PostgreSQL's background-worker model on Effect 4.
 *
 * Each module is one PostgreSQL concept; import the namespace you need.
 *
 * @since 0.1.0
 */
export * as Activity from "./Activity.ts"
export * as BackgroundWorker from "./BackgroundWorker.ts"
export * as DatabaseState from "./DatabaseState.ts"
export * as Guc from "./Guc.ts"
export * as Interrupts from "./Interrupts.ts"
export * as Mq from "./Mq.ts"
export * as Preload from "./Preload.ts"
export * as ProcLatch from "./ProcLatch.ts"
export * as Shmem from "./Shmem.ts"
export * as Spi from "./Spi.ts"
export * as Supervisor from "./Supervisor.ts"
export * as SupervisorError from "./SupervisorError.ts"
export * as WorkerConnector from "./WorkerConnector.ts"
export * as WorkerHandle from "./WorkerHandle.ts"
