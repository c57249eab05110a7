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
 * The supervisor reads this service when it is present; without it every gate is open. This module has an
 * in-memory implementation, settable from tests and examples; `src/pg/` probes a real server.
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
 * @category services
 * @since 0.1.0
 */
export class DatabaseState extends Context.Service<DatabaseState, {
  readonly get: Effect.Effect<State>
  /** The current state first, then every change. */
  readonly changes: Stream.Stream<State>
  /** Only the in-memory implementation can be set; others ignore it. */
  readonly set: (state: State) => Effect.Effect<void>
  /**
   * Completes, with why, when the database is gone for good (an embedded server that exited under the
   * supervisor): the supervisor then ends with `DatabaseLost`. Never, for a database that may come back.
   *
   * @since 0.2.0
   */
  readonly lost?: Effect.Effect<string> | undefined
}>()("effect-bgworker/DatabaseState") {}

/**
 * An in-memory state, starting at `initial`.
 *
 * @category layers
 * @since 0.1.0
 */
export const layerMemory = (initial: State = "ready"): Layer.Layer<DatabaseState> =>
  Layer.effect(
    DatabaseState,
    Effect.map(SubscriptionRef.make<State>(initial), (ref) =>
      DatabaseState.of({
        get: SubscriptionRef.get(ref),
        changes: SubscriptionRef.changes(ref),
        set: (state) => SubscriptionRef.set(ref, state)
      }))
  )

/**
 * Sets the in-memory state.
 *
 * @category utils
 * @since 0.1.0
 */
export const set = (state: State): Effect.Effect<void, never, DatabaseState> => DatabaseState.use((db) => db.set(state))

/**
 * Whether a worker with `startTime` may start in `state`.
 *
 * @category utils
 * @since 0.1.0
 */
export const allows = (state: State, startTime: "postmasterStart" | "consistentState" | "recoveryFinished"): boolean =>
  startTime === "postmasterStart" || state === "ready" || (state === "consistent" && startTime === "consistentState")
