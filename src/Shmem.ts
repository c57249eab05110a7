/**
 * Named shared state, created once per supervisor generation and created afresh after a crash restart.
 *
 * PostgreSQL: `ShmemInitStruct(name, size, &found)` under `AddinShmemInitLock` in a
 * `shmem_startup_hook`, and PG17's `GetNamedDSMSegment(name, size, init_cb, &found)`.
 *
 * A struct is a name and an initialiser. The first `get` in a generation runs the initialiser (exactly
 * once, however many workers ask at the same moment); later gets return the same value. Structs listed
 * in `Supervisor.layer({ shmem })` are created before any worker starts, the others on first use.
 *
 * A crash restart throws the whole generation away: the initialisers' scopes close (their finalizers run)
 * and every struct is created again on next use. That is why only workers declared with `shmem: true` may
 * use this module, and why a defect in such a worker restarts everything: its shared state may be corrupt.
 *
 * **Failures** (since 0.2.0)
 *
 * - A listed struct whose initialiser dies, or does not finish within the supervisor's `abandonTimeout`,
 *   fails the supervisor's layer at start, and ends the supervisor after a crash restart (PostgreSQL's
 *   postmaster exits when it cannot re-initialise shared memory): `Supervisor.awaitTermination` fails with a
 *   `SupervisorError` whose reason is `ShmemInitFailed`, naming the struct.
 * - Each struct's finalizers get `abandonTimeout` when a generation ends (a crash restart, or the
 *   supervisor's end); past it the supervisor logs `shared state "name": its finalizers did not finish ...;
 *   abandoned` and goes on, the finalizers still running.
 * - A struct created on first use that dies is a defect in the worker that asked, so a crash: a struct that
 *   always fails that way makes a crash loop.
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { Shmem } from "./internal/context.ts"

export { Shmem } from "./internal/context.ts"

/**
 * @category models
 * @since 0.1.0
 */
export interface ShmemStruct<A> {
  readonly name: string
  /**
   * Runs once per generation, uninterruptibly; its scope closes when the generation ends. A defect here is
   * `ShmemInitFailed` for a listed struct (see the module doc).
   */
  readonly init: Effect.Effect<A, never, Scope.Scope>
}

/**
 * What a shmem worker sees.
 *
 * @category models
 * @since 0.1.0
 */
export interface ShmemApi {
  /** Increases at every crash restart. */
  readonly generation: number
  get<A>(struct: ShmemStruct<A>): Effect.Effect<A>
}

/**
 * Declares a named struct.
 *
 * @category constructors
 * @since 0.1.0
 */
export const struct = <A>(name: string, init: Effect.Effect<A, never, Scope.Scope>): ShmemStruct<A> => ({ name, init })

/**
 * The struct's value in the current generation, created on first use (`found = false`) or attached.
 *
 * @category accessors
 * @since 0.1.0
 */
export const get = <A>(struct: ShmemStruct<A>): Effect.Effect<A, never, Shmem> =>
  Shmem.use((shmem) => shmem.get(struct))

/**
 * The current generation number.
 *
 * @category accessors
 * @since 0.1.0
 */
export const generation: Effect.Effect<number, never, Shmem> = Shmem.useSync((shmem) => shmem.generation)
