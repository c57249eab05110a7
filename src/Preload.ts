/**
 * Static registration: what a library does in `_PG_init` when it is in `shared_preload_libraries`.
 *
 * PostgreSQL: `RegisterBackgroundWorker` (src/backend/postmaster/bgworker.c).
 *
 * A preload is an effect that runs while the supervisor starts, before any worker. Inside it,
 * {@link register} adds static workers. The `Preload` service exists only there, so registering a static
 * worker anywhere else does not compile (PostgreSQL logs `must be registered in "shared_preload_libraries"`
 * and ignores the call).
 *
 * Static workers share the `maxWorkerProcesses` slots with dynamic ones. Past the limit a static worker is
 * dropped with the warning `too many background workers` and the supervisor still starts; an invalid
 * definition is logged and skipped (PostgreSQL's static path), where a dynamic registration would fail.
 *
 * ```ts
 * const workerSpi = BackgroundWorker.make({
 *   name: "worker_spi",
 *   argument: Schema.Number,
 *   main: (index) => Effect.log(`worker ${index}`)
 * })
 *
 * const workerSpiInit = Effect.gen(function*() {
 *   for (let i = 1; i <= 2; i++) yield* Preload.register(workerSpi, i)
 * })
 * Supervisor.layer({ maxWorkerProcesses: 8, preload: [workerSpiInit] })
 * ```
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import type * as BackgroundWorker from "./BackgroundWorker.ts"
import { Preload } from "./internal/context.ts"

export { Preload } from "./internal/context.ts"

/**
 * @category models
 * @since 0.1.0
 */
export interface PreloadApi {
  register(
    worker: BackgroundWorker.Any,
    argument: unknown,
    options: { readonly extra?: Uint8Array | undefined } | undefined,
    context: unknown
  ): Effect.Effect<void>
}

/**
 * Registers a static worker (`RegisterBackgroundWorker`). The definition and argument are checked when the
 * supervisor starts; problems are logged and the worker skipped.
 *
 * @category registration
 * @since 0.1.0
 */
export const register = <A, E, R>(
  worker: BackgroundWorker.BackgroundWorker<A, E, R>,
  ...[argument, options]: void extends A ? [argument?: A, options?: { readonly extra?: Uint8Array | undefined }]
    : [argument: A, options?: { readonly extra?: Uint8Array | undefined }]
): Effect.Effect<void, never, Preload | R> =>
  Effect.flatMap(
    Effect.context<R>(),
    (context) => Preload.use((preload) => preload.register(worker, argument, options, context))
  )
