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
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as DatabaseState from "../DatabaseState.ts"
import { escape, escapeBounded } from "../internal/logText.ts"
import * as PgServer from "./PgServer.ts"

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
  /**
   * Time between two probes once the server is ready, to notice an outage (logged once at warning level
   * with the server's address and the cause). Default 1 second.
   *
   * @since 0.2.0
   */
  readonly heartbeat?: Duration.Input | undefined
}

const rank: Record<DatabaseState.State, number> = { starting: 0, consistent: 1, ready: 2 }

interface Outcome {
  readonly state: DatabaseState.State
  /** Why the probe saw `starting`, and whether waiting can cure it (not for a rejected login). */
  readonly problem: { readonly message: string; readonly hopeless: boolean } | undefined
}

const attempt = (options: Options): Effect.Effect<Outcome, never, PgServer.PgServer> => {
  const timeout = Duration.fromInputUnsafe(options.timeout ?? "2 seconds")
  return Effect.scoped(Effect.gen(function*() {
    const connection = yield* PgServer.connect({
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
          message: problemText(error),
          hopeless: error.reason._tag === "AuthenticationError" || error.reason._tag === "AuthorizationError"
        }
      })
    )
  )
}

/**
 * An error's message and what its innermost cause adds: `PgConnection: Failed to connect: connect
 * ECONNREFUSED 127.0.0.1:5432` rather than the first half alone. Control characters escaped: one line.
 */
const problemText = (error: unknown): string => {
  const text = (value: unknown) => {
    const message = typeof value === "object" && value !== null ? (value as { message?: unknown }).message : undefined
    return typeof message === "string" ? message : String(value)
  }
  let message = text(error)
  let current: unknown = error
  for (let depth = 0; depth < 8; depth++) {
    const next = typeof current === "object" && current !== null ? (current as { cause?: unknown }).cause : undefined
    if (next === undefined || next === null || next === current) break
    const own = text(next)
    if (own !== "" && !message.includes(own)) message = `${message}: ${own}`
    current = next
  }
  return escapeBounded(message, 500)
}

const where = (server: PgServer.PgServer["Service"]) => `${escape(server.host)}:${server.port}`

const logProblem = (outcome: Outcome, warn: boolean, server: PgServer.PgServer["Service"]) =>
  outcome.problem === undefined
    ? Effect.void
    : (warn && outcome.problem.hopeless ? Effect.logWarning : Effect.logDebug)(
      `probe of PostgreSQL at ${where(server)}: ${outcome.problem.message}`
    ).pipe(Effect.annotateLogs(logAnnotations))

/**
 * Probes the server once, with a session of its own: `starting` when it cannot connect or the query fails
 * (the server refuses connections while it starts up), else `consistent` or `ready` as `pg_is_in_recovery()`
 * says. Never fails; why a probe saw `starting` (with the server's address) is logged at debug level, or at
 * warning level for authentication and authorization failures, which waiting cannot cure. {@link layer}
 * warns about an unreachable server once.
 *
 * @category probes
 * @since 0.1.0
 */
export const probe = (options: Options = {}): Effect.Effect<DatabaseState.State, never, PgServer.PgServer> =>
  Effect.gen(function*() {
    const server = yield* PgServer.PgServer
    const outcome = yield* attempt(options)
    yield* logProblem(outcome, true, server)
    return outcome.state
  })

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
 * A server that does not answer is logged once at warning level, with its address and the cause
 * (`could not connect to PostgreSQL at 127.0.0.1:5432: PgConnection: Failed to connect: connect
 * ECONNREFUSED 127.0.0.1:5432; workers that need the database wait ...`, and a hint), not at every probe;
 * its first answer after that at info level (`PostgreSQL at 127.0.0.1:5432 accepts connections`).
 *
 * `set` is a no-op: the state is the server's, not the caller's.
 *
 * **Gotchas**
 *
 * - Once `ready`, the state stays `ready` (it only moves forward); a heartbeat every `heartbeat` logs an
 *   outage once at warning level (address and cause) and its end at info level. Workers notice an outage
 *   through their own sessions and follow their restart policies; the control plane reattaches by itself.
 * - An embedded server that exits under the supervisor (killed, crashed for good) completes `lost`: the
 *   supervisor ends with `DatabaseLost`, which `NodeSupervisor.runMain` prints as one `FATAL` line before it
 *   exits with code 1.
 * - A rejected login keeps the state at `starting` forever; it is logged at warning level (once per
 *   distinct message).
 * - Sleeps on the `Clock` in context: under a `TestClock` it probes once and then waits for the clock.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = (
  options: Options = {}
): Layer.Layer<DatabaseState.DatabaseState, never, PgServer.PgServer> =>
  Layer.effect(
    DatabaseState.DatabaseState,
    Effect.gen(function*() {
      const interval = Duration.fromInputUnsafe(options.interval ?? "100 millis")
      const heartbeatInterval = Duration.fromInputUnsafe(options.heartbeat ?? "1 second")
      const server = yield* PgServer.PgServer
      // Until the server first answers: its outage is a warning, once (with the address and the cause), and
      // so is a rejected login (once per message, as waiting cannot cure it); every other probe is debug.
      const lastProblem = yield* Ref.make<string | undefined>(undefined)
      const probeOnce = Effect.tap(attempt(options), (outcome) =>
        Ref.getAndSet(lastProblem, outcome.problem?.message).pipe(
          Effect.flatMap((last) => {
            const problem = outcome.problem
            if (problem === undefined) {
              return last === undefined ? Effect.void : Effect.logInfo(
                `PostgreSQL at ${where(server)} accepts connections`
              ).pipe(Effect.annotateLogs(logAnnotations))
            }
            if (last === undefined || (problem.hopeless && problem.message !== last)) {
              return Effect.logWarning(
                `could not connect to PostgreSQL at ${where(server)}: ${problem.message}; workers that need ` +
                  `the database wait until it accepts connections (probing every ${Duration.format(interval)})`
              ).pipe(Effect.annotateLogs({
                ...logAnnotations,
                hint: problem.hopeless
                  ? "Check the role and password (DATABASE_URL): waiting does not cure a rejected login."
                  : /ENOTFOUND|EAI_AGAIN/.test(problem.message)
                  ? "Check the host name in DATABASE_URL, and that this machine can resolve it."
                  : "Is the server running on that host and accepting TCP/IP connections? Start it, or fix " +
                    "DATABASE_URL."
              }))
            }
            return logProblem(outcome, false, server)
          })
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
      const address = where(server)
      /**
       * Once ready, a heartbeat every `heartbeat`: an outage is logged once at warning level with the
       * server's address and the cause, and its end once at info level. Workers see the outage themselves
       * (their sessions end) and follow their restart policies.
       */
      const heartbeat = Effect.gen(function*() {
        let down: string | undefined = undefined
        while (true) {
          yield* Effect.sleep(heartbeatInterval)
          const outcome = yield* attempt(options)
          if (outcome.problem !== undefined && down === undefined) {
            down = outcome.problem.message
            yield* Effect.logWarning(
              `PostgreSQL at ${address} is unreachable: ${down}; workers that need it follow their restart policies`
            )
          } else if (outcome.problem === undefined && down !== undefined) {
            down = undefined
            yield* Effect.logInfo(`PostgreSQL at ${address} answers again`)
          }
        }
      }).pipe(Effect.annotateLogs(logAnnotations))
      // Probes and heartbeats make no spans (a trace each, every 100 ms and every second otherwise).
      yield* Effect.forkScoped(Effect.andThen(polling, heartbeat).pipe(Effect.withTracerEnabled(false)))

      // An embedded server is this process's own: if it exits under us, the database is gone for good.
      const lost = yield* Deferred.make<string>()
      if (server.embedded) {
        // The supervisor ends with `DatabaseLost`, which `NodeSupervisor.runMain` prints as one FATAL line.
        yield* server.exited.pipe(
          Effect.flatMap((how) =>
            Deferred.succeed(lost, `the embedded PostgreSQL server (pid ${server.pid}) ${how}`)
          ),
          Effect.forkScoped
        )
      }
      return DatabaseState.DatabaseState.of({
        get: SubscriptionRef.get(state),
        changes: SubscriptionRef.changes(state),
        lost: Deferred.await(lost)
      })
    })
  )
