/**
 * Figure 5: SQL launch → worker running.
 *
 * A session runs `SELECT bgworker.launch('bench', 'mark', '{"i": n}')` in autocommit; the entry point's
 * `main` records the time it starts. "Commit → running" is measured from the moment the statement returns
 * (an autocommit statement returns once its transaction committed, which is also when the NOTIFY goes out)
 * to `main` starting, 0 when the worker was already running by then. "Sent → running" also counts the
 * statement's own execution and round trip: an upper bound, printed for information. Launches run one after
 * another, each after the previous worker started.
 *
 * The baseline is the floor of the mechanism, measured on the same server in the same run: `pg_notify` from
 * one session to a `LISTEN` in this process (`@effect/sql-pg`'s `listen`), from sending the statement to
 * the notification arriving. Everything above it is the control plane's own work (reading the request
 * row, validating, registering the worker).
 */
import { PgClient } from "@effect/sql-pg"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import { SqlClient } from "effect/sql/SqlClient"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import * as ControlPlane from "../src/pg/ControlPlane.ts"
import * as EmbeddedPostgres from "../src/pg/EmbeddedPostgres.ts"
import * as Supervisor from "../src/Supervisor.ts"
import { costRatio, now, progress, quantile, type Row } from "./report.ts"

export interface ControlPlaneOptions {
  readonly launches: number
  readonly warmup: number
}

export const runControlPlane = (options: ControlPlaneOptions): Effect.Effect<ReadonlyArray<Row>> => {
  const started = new Map<number, (at: number) => void>()
  const mark = BackgroundWorker.make({
    name: "bench mark",
    entryPoint: { library: "bench", function: "mark" },
    argument: Schema.Struct({ i: Schema.Number }),
    main: ({ i }) =>
      Effect.sync(() => {
        const at = now()
        started.get(i)?.(at)
      })
  })
  /** Started by start's round trips: naps 20 ms so that it is seen running, then ends. */
  const nap = BackgroundWorker.make({
    name: "bench nap",
    entryPoint: { library: "bench", function: "nap" },
    argument: Schema.Struct({ i: Schema.Number }),
    main: () => Effect.sleep("20 millis")
  })
  const waitStart = (i: number) =>
    Effect.callback<number>((resume) => {
      started.set(i, (at) => {
        started.delete(i)
        resume(Effect.succeed(at))
      })
    })

  const program = Effect.gen(function*() {
    const sql = yield* SqlClient
    const pg = yield* PgClient.PgClient
    const total = options.warmup + options.launches

    const ours = new Float64Array(options.launches)
    const fromSend = new Float64Array(options.launches)
    for (let i = 0; i < total; i++) {
      const wait = yield* Effect.forkChild(waitStart(i))
      const t0 = now()
      yield* sql.unsafe(`SELECT bgworker.launch('bench', 'mark', $1::jsonb)`, [JSON.stringify({ i })])
      // The autocommit statement returns once its transaction committed: the client's view of the commit.
      const committed = now()
      const at = yield* Fiber.join(wait).pipe(Effect.timeout("5 seconds"), Effect.orDie)
      if (i >= options.warmup) {
        ours[i - options.warmup] = Math.max(0, at - committed)
        fromSend[i - options.warmup] = at - t0
      }
    }

    const raw = new Float64Array(options.launches)
    const notifications = yield* pg.listen("bench_raw")
    for (let i = 0; i < total; i++) {
      const t0 = now()
      yield* sql.unsafe(`SELECT pg_notify('bench_raw', $1)`, [String(i)])
      yield* Queue.take(notifications)
      if (i >= options.warmup) raw[i - options.warmup] = now() - t0
    }
    const row = (label: string, samples: Float64Array, q: number, target: number | undefined): Row => {
      const o = quantile(samples, q) * 1000
      const b = quantile(raw, q) * 1000
      return {
        figure: `5. ${label} (base: NOTIFY → LISTEN)`,
        unit: "µs",
        ours: o,
        baseline: b,
        ratio: costRatio(o, b),
        target: target === undefined ? "(info)" : `≤${target} ms`,
        ok: target === undefined ? undefined : o <= target * 1000
      }
    }
    // SELECT bgworker.start(...) (what worker_spi_launch runs): launch, commit on the loopback, wait, in one
    // call; against the two autocommit calls it saves the caller (launch, then wait_for_startup).
    const oneCall = new Float64Array(options.launches)
    const twoCalls = new Float64Array(options.launches)
    for (let i = 0; i < total; i++) {
      const arg = JSON.stringify({ i: total + i })
      const t0 = now()
      yield* sql.unsafe(`SELECT bgworker.start('bench', 'nap', $1::jsonb)`, [arg])
      const t1 = now()
      const [launched] = yield* sql.unsafe<{ handle: string }>(
        `SELECT bgworker.launch('bench', 'nap', $1::jsonb) AS handle`,
        [JSON.stringify({ i: 2 * total + i })]
      )
      yield* sql.unsafe(`SELECT bgworker.wait_for_startup($1)`, [launched!.handle])
      const t2 = now()
      if (i >= options.warmup) {
        oneCall[i - options.warmup] = t1 - t0
        twoCalls[i - options.warmup] = t2 - t1
      }
    }
    // Most of the difference is the loopback session's login (a backend forked per call): an interactive
    // call's budget, in milliseconds, rather than a ratio.
    const startRow = (q: number, target: number): Row => {
      const o = quantile(oneCall, q) * 1000
      const b = quantile(twoCalls, q) * 1000
      return {
        figure: `5. SELECT bgworker.start → pid (worker_spi_launch), p${q * 100} (base: launch + wait_for_startup)`,
        unit: "µs",
        ours: o,
        baseline: b,
        ratio: costRatio(o, b),
        target: `≤${target} ms`,
        ok: o <= target * 1000
      }
    }
    return [
      startRow(0.5, 25),
      startRow(0.99, 50),
      row("SQL launch commit → worker running, p50", ours, 0.5, 1),
      row("SQL launch commit → worker running, p99", ours, 0.99, 3),
      row("SQL launch sent → worker running, p50", fromSend, 0.5, undefined),
      row("SQL launch sent → worker running, p99", fromSend, 0.99, undefined)
    ]
  }).pipe(Effect.scoped)

  const layers = Layer.mergeAll(
    ControlPlane.layer({ pollInterval: "1 second" }).pipe(
      Layer.provideMerge(Supervisor.layer({ maxWorkerProcesses: 64, entryPoints: [mark, nap] }))
    )
  ).pipe(
    Layer.provideMerge(EmbeddedPostgres.clientLayer({ maxConnections: 6 })),
    Layer.provideMerge(EmbeddedPostgres.layer())
  )

  return Effect.gen(function*() {
    progress("control plane: starting PostgreSQL")
    return yield* Effect.provide(program, layers)
  }).pipe(Effect.orDie) as Effect.Effect<ReadonlyArray<Row>>
}
