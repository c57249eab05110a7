/**
 * The SPI transaction pattern for database workers: one transaction per cycle, activity reported.
 *
 * PostgreSQL: the sequence worker_spi runs each cycle (src/test/modules/worker_spi/worker_spi.c):
 * `SetCurrentStatementStartTimestamp(); StartTransactionCommand(); SPI_connect(); PushActiveSnapshot(...);
 * pgstat_report_activity(STATE_RUNNING, sql); SPI_execute(sql, ...); SPI_finish(); PopActiveSnapshot();
 * CommitTransactionCommand(); pgstat_report_activity(STATE_IDLE, NULL);`
 *
 * Here {@link transaction} runs an effect in one transaction of the worker's own session (commit on
 * success; rollback on a failure, a defect or an interruption), and {@link execute} runs a statement,
 * reporting `active` with its text while it runs and `idle in transaction` (or `idle`) after, in the
 * activity view. The statement timestamp needs no refreshing: each statement a client sends starts with a
 * fresh `statement_timestamp()`.
 *
 * With a tracer installed (see `Supervisor.Options.tracing`) each {@link transaction} is a `spi.transaction`
 * span under the worker's incarnation span, with the session's `db.*` attributes and `spi.outcome`
 * (`commit` or `rollback`); effect/sql's own `sql.transaction` and statement spans nest under it.
 *
 * An `SqlError` is passed through untouched. Left uncaught, it ends the worker as failed and its restart
 * policy applies, as an uncaught `ERROR` ends a PostgreSQL worker with exit code 1 (PG-48).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import { SqlClient } from "effect/sql/SqlClient"
import { isSqlError, type SqlError } from "effect/sql/SqlError"
import type * as Statement from "effect/sql/Statement"
import type * as Tracer from "effect/Tracer"
import { CurrentWorker } from "./internal/context.ts"
import * as proc from "./internal/proc.ts"
import { SessionInfo } from "./WorkerConnector.ts"

/**
 * Runs `effect` in one transaction (`StartTransactionCommand` ... `CommitTransactionCommand`). Nested
 * calls are savepoints.
 *
 * @category transactions
 * @since 0.1.0
 */
export const transaction = <A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | SqlError, R | SqlClient | CurrentWorker> =>
  Effect.flatMap(CurrentWorker, (worker) => {
    const p = proc.procOf(worker)
    // A span only when the incarnation has one (a tracer records spans, `Supervisor.Options.tracing` on).
    return p.span === undefined ? bracket(p, effect, undefined) : traced(p, effect)
  })

/** `bracket` inside a `spi.transaction` span (see `Supervisor.Options.tracing`). */
const traced = <A, E, R>(p: proc.Proc, effect: Effect.Effect<A, E, R>) =>
  Effect.withFiber((fiber) => {
    const session = Context.getOrUndefined(fiber.context, SessionInfo)
    return Effect.useSpan("spi.transaction", {
      attributes: {
        "bgworker.name": p.name,
        "bgworker.type": p.type,
        "bgworker.pid": p.pid,
        "spi.depth": p.transactionDepth + 1,
        ...session?.spanAttributes
      }
    }, (span) => Effect.withParentSpan(bracket(p, effect, span), span, { captureStackTrace: false }))
  }) as Effect.Effect<A, E | SqlError, R | SqlClient>

/** StartTransactionCommand ... CommitTransactionCommand, with the activity view and the metrics kept. */
const bracket = <A, E, R>(
  p: proc.Proc,
  effect: Effect.Effect<A, E, R>,
  span: Tracer.Span | undefined
): Effect.Effect<A, E | SqlError, R | SqlClient> =>
  Effect.flatMap(SqlClient, (sql) =>
    Effect.acquireUseRelease(
      Effect.sync(() => {
        p.transactionDepth++
        p.report("idle in transaction", undefined)
        // Only the outermost bracket is timed (nested ones are savepoints): -1 means "not timed".
        return p.metrics !== undefined && p.transactionDepth === 1 ? p.host.clock.currentTimeMillisUnsafe() : -1
      }),
      // effect/sql turns a failed ROLLBACK into a defect: a session lost in the middle of a transaction
      // is an SQL error of the worker (exit 1), not a crash (which would restart every shared-state worker).
      () =>
        sql.withTransaction(effect).pipe(
          Effect.catchDefect((defect) => isSqlError(defect) ? Effect.fail(defect) : Effect.die(defect))
        ),
      (since, exit) =>
        Effect.sync(() => {
          p.transactionDepth--
          if (p.transactionDepth === 0) p.report("idle", undefined)
          if (since !== -1 && p.metrics !== undefined) {
            p.metrics.spiTransaction.observeMillis(p.host.clock.currentTimeMillisUnsafe() - since)
          }
          span?.attribute("spi.outcome", exit._tag === "Success" ? "commit" : "rollback")
        })
    ))

/**
 * Runs a statement, showing it as the worker's `active` query meanwhile (`pgstat_report_activity`).
 *
 * @category statements
 * @since 0.1.0
 */
export const execute = <A>(
  statement: Statement.Statement<A>
): Effect.Effect<ReadonlyArray<A>, SqlError, CurrentWorker> =>
  Effect.flatMap(CurrentWorker, (worker) => {
    const p = proc.procOf(worker)
    const [text] = statement.compile()
    return Effect.ensuring(
      Effect.andThen(Effect.sync(() => p.report("active", text)), statement),
      Effect.sync(() => p.report(p.transactionDepth > 0 ? "idle in transaction" : "idle", undefined))
    )
  })

/**
 * Runs raw SQL text with parameters, reported like {@link execute}.
 *
 * @category statements
 * @since 0.1.0
 */
export const unsafe = <A extends object = Record<string, unknown>>(
  text: string,
  params?: ReadonlyArray<unknown>
): Effect.Effect<ReadonlyArray<A>, SqlError, SqlClient | CurrentWorker> =>
  Effect.flatMap(SqlClient, (sql) => execute(sql.unsafe<A>(text, params)))
