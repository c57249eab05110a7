/**
 * The database's state, as the start gates see it.
 *
 * PostgreSQL: the postmaster's `pmState` as `bgworker_should_start_now` reads it: `PM_RUN` (accepts
 * writes), `PM_HOT_STANDBY` (consistent, read-only), anything earlier (starting).
 *
 * - `starting`: only `postmasterStart` workers may start.
 * - `consistent`: `consistentState` workers may start too.
 * - `ready`: every worker may start (`recoveryFinished`).
 *
 * The supervisor reads this service when it is present; without it every gate is open. The service is read
 * only. This module has an in-memory implementation, settable with `set` from tests and examples;
 * `src/pg/` probes a real server, and only the probe changes its state.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"

/**
 * @category models
 * @since 0.1.0
 */
export type State = "starting" | "consistent" | "ready"

/**
 * What the supervisor reads: the state now, its changes, and whether the database is gone for good. Read
 * only: whoever publishes the state (an in-memory {@link layerMemory}, a probe of a real server) keeps the
 * means to change it to itself.
 *
 * @category models
 * @since 0.2.0
 */
export interface DatabaseStateApi {
  readonly get: Effect.Effect<State>
  /** The current state first, then every change. */
  readonly changes: Stream.Stream<State>
  /**
   * Completes, with why, when the database is gone for good (an embedded server that exited under the
   * supervisor): the supervisor then ends with `DatabaseLost`. Never, for a database that may come back.
   *
   * @since 0.2.0
   */
  readonly lost?: Effect.Effect<string> | undefined
}

/**
 * @category services
 * @since 0.1.0
 */
export class DatabaseState
  extends Context.Service<DatabaseState, DatabaseStateApi>()("effect-bgworker/DatabaseState")
{}

/** The setters of the in-memory states, by service: only {@link set} reaches them. */
const memorySetters = new WeakMap<DatabaseStateApi, (state: State) => Effect.Effect<void>>()

/**
 * An in-memory state, starting at `initial`, changed with {@link set} (from tests and examples).
 *
 * @category layers
 * @since 0.1.0
 */
export const layerMemory = (initial: State = "ready"): Layer.Layer<DatabaseState> =>
  Layer.effect(
    DatabaseState,
    Effect.map(SubscriptionRef.make<State>(initial), (ref) => {
      const service = DatabaseState.of({ get: SubscriptionRef.get(ref), changes: SubscriptionRef.changes(ref) })
      memorySetters.set(service, (state) => SubscriptionRef.set(ref, state))
      return service
    })
  )

/**
 * Sets the state of a {@link layerMemory} service.
 *
 * **Gotchas**
 *
 * A state published by anything else (a probe of a real server, `DatabaseProbe.layer`) belongs to its
 * publisher: there, `set` does nothing.
 *
 * @category setters
 * @since 0.1.0
 */
export const set = (state: State): Effect.Effect<void, never, DatabaseState> =>
  DatabaseState.use((db) => memorySetters.get(db)?.(state) ?? Effect.void)

/**
 * Whether a worker with `startTime` may start in `state` (`bgworker_should_start_now`).
 *
 * @category predicates
 * @since 0.1.0
 */
export const allows = (state: State, startTime: "postmasterStart" | "consistentState" | "recoveryFinished"): boolean =>
  startTime === "postmasterStart" || state === "ready" || (state === "consistent" && startTime === "consistentState")
