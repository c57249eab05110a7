/**
 * The `DatabaseState` of a real PostgreSQL server, found by probing it.
 *
 * PostgreSQL: the postmaster's `pmState` as clients can observe it (src/backend/postmaster/postmaster.c).
 * While it starts up or recovers before consistency, it refuses connections ("the database system is
 * starting up", or nothing listens yet): `starting`. Once a standby reaches consistency it accepts read-only
 * connections (`PM_HOT_STANDBY`) and `pg_is_in_recovery()` is true: `consistent`. Once recovery has finished
 * (`PM_RUN`) it is false: `ready`.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as DatabaseState from "../DatabaseState.ts"
import * as EmbeddedPostgres from "./EmbeddedPostgres.ts"

const logAnnotations = { module: "effect-bgworker/pg/DatabaseProbe" }

/**
 * Options for {@link layer}.
 *
 * @category models
 * @since 0.1.0
 */
export interface Options {
  /** Time between two probes. Default 100 milliseconds. */
  readonly interval?: Duration.Input | undefined
  /** The database to connect to. Default: the server's. */
  readonly database?: string | undefined
  /** Bound on one probe (connection and query). Default 2 seconds; a probe that takes longer means `starting`. */
  readonly timeout?: Duration.Input | undefined
}

const rank: Record<DatabaseState.State, number> = { starting: 0, consistent: 1, ready: 2 }

interface Outcome {
  readonly state: DatabaseState.State
  /** Why the probe saw `starting`, and whether waiting can cure it (not for a rejected login). */
  readonly problem: { readonly message: string; readonly hopeless: boolean } | undefined
}

const attempt = (options: Options): Effect.Effect<Outcome, never, EmbeddedPostgres.PgServer> => {
  const timeout = Duration.fromInputUnsafe(options.timeout ?? "2 seconds")
  return Effect.scoped(Effect.gen(function*() {
    const connection = yield* EmbeddedPostgres.connect({
      database: options.database,
      applicationName: "effect-bgworker probe",
      connectTimeout: timeout
    })
    const rows = yield* connection.queryValues("SELECT pg_is_in_recovery()", [], false)
    const state: DatabaseState.State = rows[0]?.[0] === false ? "ready" : "consistent"
    return { state, problem: undefined }
  })).pipe(
    Effect.timeoutOrElse({
      duration: timeout,
      orElse: () =>
        Effect.succeed<Outcome>({
          state: "starting",
          problem: { message: `no answer within ${Duration.format(timeout)}`, hopeless: false }
        })
    }),
    Effect.catch((error) =>
      Effect.succeed<Outcome>({
        state: "starting",
        problem: {
          message: error.message,
          hopeless: error.reason._tag === "AuthenticationError" || error.reason._tag === "AuthorizationError"
        }
      })
    )
  )
}

const logProblem = (outcome: Outcome, warn: boolean) =>
  outcome.problem === undefined
    ? Effect.void
    : (warn && outcome.problem.hopeless ? Effect.logWarning : Effect.logDebug)(
      `probe: ${outcome.problem.message}`
    ).pipe(Effect.annotateLogs(logAnnotations))

/**
 * Probes the server once, with a session of its own: `starting` when it cannot connect or the query fails
 * (the server refuses connections while it starts up), else `consistent` or `ready` as `pg_is_in_recovery()`
 * says. Never fails; why a probe saw `starting` is logged at debug level, or at warning level for
 * authentication and authorization failures, which waiting cannot cure.
 *
 * @category probes
 * @since 0.1.0
 */
export const probe = (options: Options = {}): Effect.Effect<DatabaseState.State, never, EmbeddedPostgres.PgServer> =>
  Effect.tap(attempt(options), (outcome) => logProblem(outcome, true)).pipe(Effect.map((outcome) => outcome.state))

/**
 * A `DatabaseState` that follows the server in context.
 *
 * **Details**
 *
 * Building the layer probes once (see {@link probe}; bounded by `timeout`), so a server already up is
 * `ready` at once. Then, until the state is `ready`, a fiber in the layer's scope probes every `interval`
 * with a fresh session and publishes each advance on `changes`. The state only moves forward; polling
 * stops at `ready`.
 *
 * `set` is a no-op: the state is the server's, not the caller's.
 *
 * **Gotchas**
 *
 * - Once `ready`, the probe no longer looks: a later crash and restart of the server (PostgreSQL's crash
 *   recovery, when `pmState` goes back) is not reported.
 * - A rejected login keeps the state at `starting` forever; it is logged at warning level (once per
 *   distinct message).
 * - Sleeps on the `Clock` in context: under a `TestClock` it probes once and then waits for the clock.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = (
  options: Options = {}
): Layer.Layer<DatabaseState.DatabaseState, never, EmbeddedPostgres.PgServer> =>
  Layer.effect(
    DatabaseState.DatabaseState,
    Effect.gen(function*() {
      const interval = Duration.fromInputUnsafe(options.interval ?? "100 millis")
      const lastProblem = yield* Ref.make<string | undefined>(undefined)
      const probeOnce = Effect.tap(attempt(options), (outcome) =>
        Ref.getAndSet(lastProblem, outcome.problem?.message).pipe(
          Effect.flatMap((last) => logProblem(outcome, last !== outcome.problem?.message))
        ))
      const state = yield* SubscriptionRef.make((yield* probeOnce).state)
      // The only writer: publishes advances only, so `changes` never repeats a state.
      const polling = Effect.gen(function*() {
        let current = yield* SubscriptionRef.get(state)
        while (current !== "ready") {
          yield* Effect.sleep(interval)
          const next = (yield* probeOnce).state
          if (rank[next] > rank[current]) {
            current = next
            yield* SubscriptionRef.set(state, next)
            yield* Effect.logDebug(`database state: ${next}`).pipe(Effect.annotateLogs(logAnnotations))
          }
        }
      })
      if ((yield* SubscriptionRef.get(state)) !== "ready") yield* Effect.forkScoped(polling)
      return DatabaseState.DatabaseState.of({
        get: SubscriptionRef.get(state),
        changes: SubscriptionRef.changes(state),
        set: () => Effect.void
      })
    })
  )
