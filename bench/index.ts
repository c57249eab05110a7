/**
 * Runs every benchmark in one process and prints one table: `npm run bench`
 * (`node --expose-gc bench/index.ts`, on the Node 24 from node_modules).
 *
 * Order: launch cycles (figure 1), latch latency (figure 2), GUC reload and reads (figure 4), the SQL launch
 * (figure 5), worker_spi's summary transaction on an embedded PostgreSQL (figure 6), the control plane under
 * abuse (figure 7: big arguments, a NOTIFY flood), singleton failover across three processes (figure 8: 10 SIGKILLs
 * with the project's cluster defaults, 2 with Effect's, about two minutes; `BENCH_CLUSTER_BASELINE_KILLS=0` skips
 * the baseline and prints its expected 35 s), then memory (figure 3) last, because it grows the heap to
 * 100k workers. Everything runs under `Effect.runPromise` on the live clock with the minimum log level at
 * "Warn", so that no Info/Debug log is even built. Each benchmark measures its raw-Effect baseline itself, in
 * the same run, interleaved with ours where it can.
 *
 * Optional arguments select benchmarks: `npm run bench -- latch guc sql worker_spi abuse cluster memory`.
 */
import * as Effect from "effect/Effect"
import * as References from "effect/References"
import { runAbuse } from "./abuse.ts"
import { runCluster } from "./cluster.ts"
import { runControlPlane } from "./controlPlane.ts"
import { runGuc } from "./guc.ts"
import { runLatch } from "./latch.ts"
import { runLaunch } from "./launch.ts"
import { runMemory } from "./memory.ts"
import { header, printTable, progress, type Row } from "./report.ts"
import { runWorkerSpi } from "./worker_spi.ts"

const all = ["launch", "latch", "guc", "sql", "worker_spi", "abuse", "cluster", "memory"] as const
const selected = process.argv.slice(2).filter((a) => (all as ReadonlyArray<string>).includes(a))
const wanted = (name: typeof all[number]) => selected.length === 0 || selected.includes(name)

const program = Effect.gen(function*() {
  const rows: Array<Row> = []
  const timed = <A>(name: string, effect: Effect.Effect<ReadonlyArray<A>>) =>
    Effect.gen(function*() {
      progress(`${name}…`)
      const start = performance.now()
      const out = yield* effect
      progress(`${name}: ${((performance.now() - start) / 1000).toFixed(1)} s`)
      return out
    })
  if (wanted("launch")) {
    rows.push(...yield* timed("launch", runLaunch({ warmupMs: 500, roundMs: 1000, rounds: 5, launchers: 8 })))
  }
  if (wanted("latch")) {
    rows.push(...yield* timed("latch", runLatch({ warmup: 20_000, samples: 100_000, rounds: 5 })))
  }
  if (wanted("guc")) {
    rows.push(
      ...yield* timed("guc", runGuc({ parameters: 1000, warmup: 5, rounds: 25, reads: 1_000_000, readRounds: 7 }))
    )
  }
  if (wanted("sql")) {
    rows.push(...yield* timed("sql", runControlPlane({ warmup: 50, launches: 500 })))
  }
  if (wanted("worker_spi")) {
    rows.push(...yield* timed("worker_spi", runWorkerSpi({ warmupMs: 500, roundMs: 1000, rounds: 5 })))
  }
  if (wanted("abuse")) {
    rows.push(
      ...yield* timed(
        "abuse",
        runAbuse({
          bigArguments: 40,
          maxArgumentBytes: 1024 * 1024,
          notifications: 1_000_000,
          perStatement: 10_000,
          floodSessions: 2,
          quietLaunches: 300,
          rssBudgetMb: 50,
          p99BudgetMs: 100
        })
      )
    )
  }
  if (wanted("cluster")) {
    const baselineKills = Number(process.env["BENCH_CLUSTER_BASELINE_KILLS"] ?? 2)
    rows.push(...yield* timed("cluster", runCluster({ kills: 10, baselineKills })))
  }
  if (wanted("memory")) {
    rows.push(...yield* timed("memory", runMemory({ counts: [10_000, 100_000], targetKb: 5 })))
  }
  // In figure order (the sort is stable), though memory runs last.
  return rows.sort((a, b) => parseInt(a.figure) - parseInt(b.figure))
}).pipe(Effect.provideService(References.MinimumLogLevel, "Warn"))

process.stdout.write(header() + "\n\n")
const started = performance.now()
const rows = await Effect.runPromise(program)
printTable(rows)
process.stdout.write(`total ${((performance.now() - started) / 1000).toFixed(1)} s\n`)
