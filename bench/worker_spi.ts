/**
 * Figure 6: worker_spi's cycle statement on a real PostgreSQL, transactions per second.
 *
 * One cycle is worker_spi's summary statement (`WITH deleted AS (DELETE ... RETURNING value), total AS (...)
 * UPDATE schema1.counted SET value = counted.value + total.sum ... RETURNING counted.value`) in a transaction
 * of its own: BEGIN, the statement, COMMIT, three round trips to the server.
 *
 * - Ours: `Spi.transaction(Spi.unsafe(summary))` inside a real database worker, on the session its
 *   `WorkerConnector` (`src/pg/WorkerConnection.ts`) opened: the transaction bracket and the activity
 *   reporting (`idle in transaction`, `active` with the statement text, `idle`) included.
 * - Baseline: `sql.withTransaction(sql.unsafe(summary))` with raw `@effect/sql-pg`, on a client made the same
 *   way (`PgClient.makeClient`, one session), in the driver fiber.
 *
 * Both run against the same embedded server, on the same table (one `total` row, no deltas, so every cycle
 * updates one row), alternately in timed rounds; the median round of each is reported. The target is ours
 * at 0.9× the raw throughput or better: the bracket must cost little next to three round trips.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Reactivity from "effect/reactivity/Reactivity"
import { SqlClient } from "effect/sql/SqlClient"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import * as WorkerSpi from "../src/demo/WorkerSpi.ts"
import * as EmbeddedPostgres from "../src/pg/EmbeddedPostgres.ts"
import * as WorkerConnection from "../src/pg/WorkerConnection.ts"
import * as Spi from "../src/Spi.ts"
import * as Supervisor from "../src/Supervisor.ts"
import { median, now, progress, type Row, throughputRatio } from "./report.ts"

export interface WorkerSpiOptions {
  /** Length of one timed round, ms. */
  readonly roundMs: number
  /** Timed rounds per side (alternating raw / ours). */
  readonly rounds: number
  readonly warmupMs: number
}

/** Ours must reach this fraction of the raw throughput. */
const targetFraction = 0.9

const summary = WorkerSpi.statements("schema1", "counted").summary

/** Runs `cycle` in batches until `ms` have passed; returns cycles per second. */
const rate = <E, R>(cycle: Effect.Effect<unknown, E, R>, ms: number): Effect.Effect<number, E, R> =>
  Effect.gen(function*() {
    const start = now()
    const deadline = start + ms
    let count = 0
    while (now() < deadline) {
      for (let i = 0; i < 16; i++) yield* cycle
      count += 16
    }
    return count / ((now() - start) / 1000)
  })

/** A round the worker is asked to run: its length, and where to put its rate. */
interface Round {
  readonly ms: number
  readonly done: Deferred.Deferred<number>
}

export const runWorkerSpi = (options: WorkerSpiOptions): Effect.Effect<ReadonlyArray<Row>> =>
  Effect.gen(function*() {
    const server = yield* EmbeddedPostgres.PgServer
    const admin = yield* SqlClient
    const texts = WorkerSpi.statements("schema1", "counted")
    yield* admin.unsafe(texts.create)
    yield* admin.unsafe(`INSERT INTO schema1.counted VALUES ('total', 0)`)

    // The baseline's session: what the worker connector opens, minus the worker.
    const raw = yield* PgClient.makeClient({
      host: server.host,
      port: server.port,
      username: server.user,
      password: server.password,
      database: server.database,
      applicationName: "bench raw",
      connectTimeout: "10 seconds"
    }).pipe(Effect.provide(Reactivity.layer))
    const rawCycle = raw.withTransaction(raw.unsafe(summary))

    // Ours: a database worker that runs the rounds it is asked for, in its own session.
    const rounds = yield* Queue.unbounded<Round>()
    const worker = BackgroundWorker.make({
      name: "bench worker_spi",
      type: "worker_spi",
      database: {},
      startTime: "recoveryFinished",
      main: () =>
        Effect.gen(function*() {
          const cycle = Spi.transaction(Spi.unsafe(summary))
          while (true) {
            const round = yield* Queue.take(rounds)
            yield* Deferred.succeed(round.done, yield* rate(cycle, round.ms))
          }
        })
    })
    yield* Supervisor.register(worker)
    const ours = (ms: number) =>
      Effect.gen(function*() {
        const done = yield* Deferred.make<number>()
        yield* Queue.offer(rounds, { ms, done })
        return yield* Deferred.await(done)
      })

    yield* rate(rawCycle, options.warmupMs)
    yield* ours(options.warmupMs)
    const rawRates: Array<number> = []
    const ourRates: Array<number> = []
    for (let i = 0; i < options.rounds; i++) {
      rawRates.push(yield* rate(rawCycle, options.roundMs))
      ourRates.push(yield* ours(options.roundMs))
    }
    const [total] = yield* admin<{ value: number }>`SELECT value FROM schema1.counted WHERE type = 'total'`
    const ourRate = median(ourRates)
    const rawRate = median(rawRates)
    progress(
      `worker_spi: ours ${ourRates.map((r) => r.toFixed(0)).join(" / ")}/s, raw ${
        rawRates.map((r) => r.toFixed(0)).join(" / ")
      }/s (total stays ${total?.value})`
    )
    const row: Row = {
      figure: "6. worker_spi summary transactions",
      unit: "cycles/s",
      ours: ourRate,
      baseline: rawRate,
      ratio: throughputRatio(ourRate, rawRate),
      target: `≥${targetFraction}× raw @effect/sql-pg`,
      ok: ourRate >= targetFraction * rawRate
    }
    return [row]
  }).pipe(
    Effect.provide(
      Supervisor.layer({ maxWorkerProcesses: 2, shutdownTimeout: "2 seconds" }).pipe(
        Layer.provide(WorkerConnection.layer()),
        Layer.provideMerge(EmbeddedPostgres.clientLayer({ applicationName: "bench admin" })),
        Layer.provideMerge(EmbeddedPostgres.layerEmbedded())
      )
    ),
    Effect.scoped,
    Effect.orDie
  )
