/**
 * Figure 2: latch set → wake latency, p50 and p99.
 *
 * A waiter fiber loops: prepare (reset the latch / make a fresh Deferred), mark itself ready, wait, and on
 * waking record `performance.now() - t0`. The driver fiber waits until the waiter is ready (yielding),
 * stores `t0 = performance.now()` and sets. So a sample is the time from just before the set call to the
 * first instruction the waiter runs after its wait returns. (Effect 4 resumes a Deferred's waiter
 * synchronously inside `Deferred.succeed`; a latch wake-up goes through the scheduler, i.e. one
 * event-loop turn, by design of src/internal/latch.ts.)
 *
 * Variants, each driven by the same code:
 * - raw baseline: `Deferred.await` in the waiter, `Deferred.succeed` in the driver, a fresh Deferred per round;
 * - raw + hop (diagnostic, info rows only): the same, with one `Effect.yieldNow` after the await, i.e. the
 *   scheduler hop a latch wake-up makes; it separates the cost of that hop from the library's own;
 * - standalone latch: `ProcLatch.make`, `latch.wait({ onPostmasterDeath: "exit" })` / `latch.set`;
 * - in-worker: a registered worker looping on `ProcLatch.wait`, woken by `Supervisor.setLatch(handle)`.
 *
 * After a warm-up, the variants take turns in rounds so that drift and GC hit all of them alike; samples of
 * all rounds are pooled per variant.
 */
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import { liveFibers } from "../src/internal/postmaster/postmaster.ts"
import * as ProcLatch from "../src/ProcLatch.ts"
import * as Supervisor from "../src/Supervisor.ts"
import { costRatio, now, progress, quantile, type Row } from "./report.ts"

export interface LatchOptions {
  /** Samples per variant, split over `rounds`. */
  readonly samples: number
  readonly rounds: number
  readonly warmup: number
}

/** Shared between a waiter and its driver. */
class Probe {
  t0 = 0
  ready = false
  index = 0
  samples = new Float64Array(0)
}

/** The waiter: forever prepare → ready → wait → record. */
const waiter = <R>(probe: Probe, prepare: Effect.Effect<void, never, R>, wait: Effect.Effect<unknown, never, R>) =>
  Effect.gen(function*() {
    while (true) {
      yield* prepare
      probe.ready = true
      yield* wait
      const t1 = now()
      probe.ready = false
      probe.samples[probe.index++] = (t1 - probe.t0) * 1000
    }
  })

/** The driver: `n` rounds of wait-until-ready → t0 → set → wait-until-recorded. Returns µs samples. */
const drive = <R>(probe: Probe, set: Effect.Effect<void, never, R>, n: number): Effect.Effect<Float64Array, never, R> =>
  Effect.gen(function*() {
    probe.samples = new Float64Array(n)
    probe.index = 0
    for (let i = 0; i < n; i++) {
      while (!probe.ready) yield* Effect.yieldNow
      probe.t0 = now()
      yield* set
      while (probe.index <= i) yield* Effect.yieldNow
    }
    return probe.samples
  })

interface Stats {
  readonly n: number
  readonly p50: number
  readonly p99: number
  readonly max: number
}

interface Variant {
  readonly name: string
  readonly run: (n: number) => Effect.Effect<Float64Array>
}

const concat = (parts: ReadonlyArray<Float64Array>): Float64Array => {
  const out = new Float64Array(parts.reduce((n, p) => n + p.length, 0))
  let offset = 0
  for (const p of parts) {
    out.set(p, offset)
    offset += p.length
  }
  return out
}

export const runLatch = (options: LatchOptions): Effect.Effect<ReadonlyArray<Row>> =>
  Effect.gen(function*() {
    // Raw baseline: a fresh Deferred per round.
    const rawProbe = new Probe()
    let current = Deferred.makeUnsafe<void>()
    yield* Effect.forkScoped(waiter(
      rawProbe,
      Effect.sync(() => {
        current = Deferred.makeUnsafe<void>()
      }),
      Effect.suspend(() => Deferred.await(current))
    ))
    const raw: Variant = {
      name: "raw Deferred",
      run: (n) => drive(rawProbe, Effect.asVoid(Effect.suspend(() => Deferred.succeed(current, undefined))), n)
    }

    // Diagnostic baseline: the same Deferred, but the waiter then hops through the scheduler once
    // (`Effect.yieldNow`), as a latch wake-up does since latch resumes go through the scheduler.
    const hopProbe = new Probe()
    let hopCurrent = Deferred.makeUnsafe<void>()
    yield* Effect.forkScoped(waiter(
      hopProbe,
      Effect.sync(() => {
        hopCurrent = Deferred.makeUnsafe<void>()
      }),
      Effect.suspend(() => Effect.andThen(Deferred.await(hopCurrent), Effect.yieldNow))
    ))
    const rawHop: Variant = {
      name: "raw Deferred + yieldNow",
      run: (n) => drive(hopProbe, Effect.asVoid(Effect.suspend(() => Deferred.succeed(hopCurrent, undefined))), n)
    }

    // Standalone latch.
    const latchProbe = new Probe()
    const latch = yield* ProcLatch.make
    yield* Effect.forkScoped(waiter(latchProbe, latch.reset, latch.wait({ onPostmasterDeath: "exit" })))
    const standalone: Variant = { name: "standalone latch", run: (n) => drive(latchProbe, latch.set, n) }

    // In-worker: a worker waiting on MyLatch, woken through the supervisor.
    const workerProbe = new Probe()
    const context = yield* Effect.orDie(Layer.build(Supervisor.layer({ maxWorkerProcesses: 8 })))
    const worker = BackgroundWorker.make({
      name: "bench-latch-waiter",
      main: () => waiter(workerProbe, ProcLatch.reset, ProcLatch.wait({ onPostmasterDeath: "exit" }))
    })
    const handle = yield* Effect.orDie(Effect.provideContext(Supervisor.register(worker), context))
    // The driver runs with the supervisor in its context (provided once per round, not per set).
    const inWorker: Variant = {
      name: "in-worker",
      run: (n) => Effect.provideContext(drive(workerProbe, Supervisor.setLatch(handle), n), context)
    }

    const variants = [raw, rawHop, standalone, inWorker]
    for (const v of variants) yield* v.run(options.warmup)
    const collected = variants.map(() => [] as Array<Float64Array>)
    const perRound = Math.ceil(options.samples / options.rounds)
    for (let round = 0; round < options.rounds; round++) {
      for (let i = 0; i < variants.length; i++) collected[i]!.push(yield* variants[i]!.run(perRound))
    }
    const status = yield* Effect.provideContext(Supervisor.status(handle), context)
    if (status._tag !== "Started") return yield* Effect.die(new Error(`latch worker is ${status._tag}`))
    const supervisor = Context.get(context, Supervisor.Supervisor)

    const stats = collected.map((parts): Stats => {
      const all = concat(parts)
      return { n: all.length, p50: quantile(all, 0.5), p99: quantile(all, 0.99), max: quantile(all, 1) }
    })
    for (let i = 0; i < variants.length; i++) {
      const s = stats[i]!
      progress(
        `latch ${variants[i]!.name}: n=${s.n} p50=${s.p50.toFixed(3)}µs p99=${s.p99.toFixed(3)}µs max=${
          s.max.toFixed(1)
        }µs`
      )
    }
    progress(`latch: supervisor live fibers before close: ${liveFibers(supervisor)}`)
    const [r, h, l, w] = stats as [Stats, Stats, Stats, Stats]
    const row = (figure: string, ours: number, baseline: number): Row => {
      const ratio = costRatio(ours, baseline)
      return { figure, unit: "µs", ours, baseline, ratio, target: "≤2× raw", ok: ratio <= 2 }
    }
    const info = (figure: string, ours: number, baseline: number): Row => ({
      figure,
      unit: "µs",
      ours,
      baseline,
      ratio: costRatio(ours, baseline),
      target: "(info)",
      ok: undefined
    })
    return [
      row("2. latch set→wake p50, standalone", l.p50, r.p50),
      row("2. latch set→wake p99, standalone", l.p99, r.p99),
      row("2. latch set→wake p50, in-worker", w.p50, r.p50),
      row("2. latch set→wake p99, in-worker", w.p99, r.p99),
      info("2. in-worker p50 vs Deferred+yieldNow", w.p50, h.p50),
      info("2. in-worker p99 vs Deferred+yieldNow", w.p99, h.p99)
    ]
  }).pipe(Effect.scoped)
