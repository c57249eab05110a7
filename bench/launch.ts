/**
 * Figure 1: launch cycles per second.
 *
 * One cycle is `Supervisor.register` → `awaitStartup` → `terminate` → `awaitShutdown` of a worker whose
 * `main` loops on `ProcLatch.wait({ onPostmasterDeath: "exit" })`, so the terminate request ends it at its
 * wait. The baseline cycle is the raw-Effect equivalent: `Effect.forkChild` a fiber that completes a
 * "started" Deferred and then waits on a "stop" Deferred; the loop forks, awaits "started", completes
 * "stop" and `Fiber.await`s the fiber.
 *
 * Each variant is warmed up, then raw and ours are measured in alternating timed rounds (so drift hits
 * both) and the median round is reported. Measured with one launcher, and with several concurrent launcher
 * fibers (each doing cycles against the same supervisor / forking its own raw fibers).
 *
 * Figure 1m: the metrics' cost. The same cycle against a supervisor with `metrics: true` (the default) and
 * one with `metrics: false`, in pairs of short rounds back to back; the ratio is the median of the pairs'
 * off / on ratios (cycles per second), target ≤ 1.10. The columns are the median rates.
 *
 * Figure 1t: the cost of everything on. Metrics and tracing on with a tracer installed (one recording spans
 * in memory; then the OTLP exporters, each incarnation's span exported to a local sink), against metrics and
 * tracing off with no tracer; same alternating rounds, same target. Its reference row prints, in microseconds
 * per cycle, what metrics and tracing add to ours beside what `Effect.withSpan` adds to the raw cycle.
 */
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Tracer from "effect/Tracer"
import * as Http from "node:http"
import type * as Net from "node:net"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import { liveFibers } from "../src/internal/postmaster/postmaster.ts"
import * as NodeOtlp from "../src/node/NodeOtlp.ts"
import * as ProcLatch from "../src/ProcLatch.ts"
import * as Supervisor from "../src/Supervisor.ts"
import { costRatio, median, now, progress, type Row, throughputRatio } from "./report.ts"

export interface LaunchOptions {
  /** Length of one timed round, ms. */
  readonly roundMs: number
  /** Timed rounds per variant (alternating raw / ours). */
  readonly rounds: number
  readonly warmupMs: number
  /** Launcher fibers for the concurrent variant. */
  readonly launchers: number
}

const sleeper = BackgroundWorker.make({
  name: "bench-sleeper",
  main: () =>
    Effect.gen(function*() {
      while (true) {
        yield* ProcLatch.wait({ onPostmasterDeath: "exit" })
        yield* ProcLatch.reset
      }
    })
})

const ourCycle = Effect.gen(function*() {
  const handle = yield* Effect.orDie(Supervisor.register(sleeper))
  const started = yield* Supervisor.awaitStartup(handle)
  if (started._tag !== "Started") return yield* Effect.die(new Error(`awaitStartup returned ${started._tag}`))
  yield* Supervisor.terminate(handle)
  const stopped = yield* Supervisor.awaitShutdown(handle)
  if (stopped._tag !== "Stopped") return yield* Effect.die(new Error(`awaitShutdown returned ${stopped._tag}`))
})

/**
 * The raw-Effect cycle; `traced`: its fiber runs in `Effect.withSpan` with the incarnation span's three start
 * attributes (no stack capture, `effect`'s cheapest span), what a user writing the cycle in Effect would do.
 */
const rawCycleOf = (traced: boolean) =>
  Effect.gen(function*() {
    const started = yield* Deferred.make<void>()
    const stop = yield* Deferred.make<void>()
    const body = Effect.andThen(Deferred.succeed(started, undefined), Deferred.await(stop))
    const fiber = yield* Effect.forkChild(
      traced
        ? Effect.withSpan(body, "bgworker bench-sleeper", {
          attributes: { "bgworker.name": "bench-sleeper", "bgworker.type": "bench-sleeper", "bgworker.pid": 1 },
          captureStackTrace: false
        })
        : body
    )
    yield* Deferred.await(started)
    yield* Deferred.succeed(stop, undefined)
    yield* Fiber.await(fiber)
  })

const rawCycle = rawCycleOf(false)

/** Runs `cycle` in batches until `ms` have passed; returns the number of cycles done. */
const cyclesFor = <R>(cycle: Effect.Effect<void, never, R>, deadline: number): Effect.Effect<number, never, R> =>
  Effect.gen(function*() {
    let count = 0
    while (now() < deadline) {
      for (let i = 0; i < 64; i++) yield* cycle
      count += 64
    }
    return count
  })

/** Cycles per second with `launchers` fibers doing cycles concurrently for `ms`. */
const rate = <R>(
  cycle: Effect.Effect<void, never, R>,
  launchers: number,
  ms: number
): Effect.Effect<number, never, R> =>
  Effect.gen(function*() {
    const start = now()
    const deadline = start + ms
    const counts = yield* Effect.forEach(
      Array.from({ length: launchers }, (_, i) => i),
      () => cyclesFor(cycle, deadline),
      { concurrency: launchers }
    )
    const elapsed = (now() - start) / 1000
    return counts.reduce((a, b) => a + b, 0) / elapsed
  })

const compare = (label: string, launchers: number, options: LaunchOptions, capacity: number) =>
  Effect.gen(function*() {
    // One supervisor for all of this variant's rounds; its scope closes (postmaster death) afterwards. The
    // supervisor is provided once around the whole measurement, not per cycle, so the cycle pays only
    // for what a caller pays.
    const context = yield* Effect.orDie(Layer.build(
      Supervisor.layer({ maxWorkerProcesses: capacity, terminateTimeout: "5 seconds" })
    ))
    const supervisor = Context.get(context, Supervisor.Supervisor)
    const rawRates: Array<number> = []
    const ourRates: Array<number> = []
    yield* Effect.provideContext(
      Effect.gen(function*() {
        yield* rate(rawCycle, launchers, options.warmupMs)
        yield* rate(ourCycle, launchers, options.warmupMs)
        for (let round = 0; round < options.rounds; round++) {
          rawRates.push(yield* rate(rawCycle, launchers, options.roundMs))
          ourRates.push(yield* rate(ourCycle, launchers, options.roundMs))
        }
      }),
      context
    )
    const raw = median(rawRates)
    const our = median(ourRates)
    progress(
      `${label}: ours ${ourRates.map((r) => (r / 1e3).toFixed(1)).join(" / ")}k/s, raw ${
        rawRates.map((r) => (r / 1e3).toFixed(1)).join(" / ")
      }k/s; live fibers after the rounds: ${liveFibers(supervisor)}`
    )
    const ratio = throughputRatio(our, raw)
    const row: Row = {
      figure: label,
      unit: "cycles/s",
      ours: our,
      baseline: raw,
      ratio,
      target: "≤3× raw and ≥100k/s",
      ok: ratio <= 3 && our >= 100_000
    }
    return row
  }).pipe(Effect.scoped)

/** A cycle run for a given time, in the context it needs: its rate, cycles per second. */
type Rounds = (ms: number) => Effect.Effect<number>

/** The launch cycle against a built supervisor. */
const launchesAgainst = (supervisor: Context.Context<Supervisor.Supervisor>): Rounds => (ms) =>
  Effect.provideContext(rate(ourCycle, 1, ms), supervisor)

/**
 * Two variants of a cycle, `on` and `off`: both warmed up, then pairs of short timed rounds, one of each, back
 * to back (off first in even pairs, on first in odd ones). The ratio is the median of the pairs' off / on
 * ratios: a pair's two rounds run within a fraction of a second of each other, so a slower spell of a shared
 * machine slows both of them, where the ratio of two medians taken over a whole run would mix rounds from
 * quieter and busier spells. `extra` is, the same way, the median of the pairs' differences in microseconds
 * per cycle.
 */
const onOffRounds = (options: LaunchOptions, on: Rounds, off: Rounds) =>
  Effect.gen(function*() {
    const onRates: Array<number> = []
    const offRates: Array<number> = []
    const ratios: Array<number> = []
    const extras: Array<number> = []
    yield* on(options.warmupMs)
    yield* off(options.warmupMs)
    // As much time in all as `rounds` rounds of `roundMs` each, in pairs of rounds of 200 ms.
    const pairMs = 200
    const pairs = Math.max(5, Math.round((options.rounds * options.roundMs) / pairMs))
    for (let pair = 0; pair < pairs; pair++) {
      const a = yield* (pair % 2 === 0 ? off : on)(pairMs)
      const b = yield* (pair % 2 === 0 ? on : off)(pairMs)
      const [offRate, onRate] = pair % 2 === 0 ? [a, b] : [b, a]
      offRates.push(offRate)
      onRates.push(onRate)
      ratios.push(throughputRatio(onRate, offRate))
      extras.push(1e6 / onRate - 1e6 / offRate)
    }
    return {
      onRates,
      offRates,
      onRate: median(onRates),
      offRate: median(offRates),
      ratio: median(ratios),
      extra: median(extras)
    }
  })

/** Rates of many rounds, as `min–max` (thousands per second). */
const spread = (rates: ReadonlyArray<number>): string =>
  `${(Math.min(...rates) / 1e3).toFixed(1)}–${(Math.max(...rates) / 1e3).toFixed(1)}`

/** Figure 1m: the launch cycle with metrics on versus off (two supervisors, alternating rounds). */
const compareMetrics = (options: LaunchOptions) =>
  Effect.gen(function*() {
    const build = (metrics: boolean) =>
      Effect.orDie(Layer.build(Supervisor.layer({ maxWorkerProcesses: 8, terminateTimeout: "5 seconds", metrics })))
    const on = yield* build(true)
    const off = yield* build(false)
    const { offRate, offRates, onRate, onRates, ratio } = yield* onOffRounds(
      options,
      launchesAgainst(on),
      launchesAgainst(off)
    )
    progress(
      `1m. metrics on ${spread(onRates)}k/s, off ${spread(offRates)}k/s over ${onRates.length} pairs of rounds; ` +
        `median of the pairs' off/on ratios ${ratio.toFixed(3)}`
    )
    const row: Row = {
      figure: "1m. launch cycles, metrics on vs off",
      unit: "cycles/s",
      ours: onRate,
      baseline: offRate,
      ratio,
      target: "≤1.10× metrics off",
      ok: ratio <= 1.1
    }
    return row
  }).pipe(Effect.scoped)

/** A local OTLP/HTTP endpoint that accepts and discards every export (the collector's place). */
const sink = Effect.acquireRelease(
  Effect.callback<{ readonly server: Http.Server; readonly url: string; readonly requests: { count: number } }>(
    (resume) => {
      const requests = { count: 0 }
      const server = Http.createServer((request, response) => {
        request.resume()
        request.on("end", () => {
          requests.count++
          response.writeHead(200, { "content-type": "application/x-protobuf" }).end()
        })
      })
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({
          server,
          url: `http://127.0.0.1:${(server.address() as Net.AddressInfo).port}`,
          requests
        })))
    }
  ),
  ({ server }) =>
    Effect.callback<void>((resume) => {
      server.close(() => resume(Effect.void))
      server.closeAllConnections()
    })
)

/** A tracer that records spans in memory: effect's own span objects, the last 1024 ended ones kept. */
const memoryTracer = () => {
  const kept: Array<Tracer.Span> = []
  let ended = 0
  class RecordedSpan extends Tracer.NativeSpan {
    override end(endTime: bigint, exit: Exit.Exit<unknown, unknown>): void {
      super.end(endTime, exit)
      kept[ended++ & 1023] = this
    }
  }
  const tracer = Tracer.make({ span: (options) => new RecordedSpan(options) })
  return { tracer, ended: () => ended }
}

/**
 * Figure 1t: the cost of everything on. One supervisor with metrics and tracing on and a tracer installed,
 * against one with `metrics: false, tracing: false` and no tracer; alternating rounds of the same run.
 *
 * - `memory`: a tracer that records every span in memory (the supervisor's own cost: each incarnation's span
 *   made, attributed, put in the worker's context and ended; plus keeping the last 1024 ended spans).
 * - `native`: a tracer whose spans are `effect`'s `NativeSpan`, kept by nobody: the supervisor's cost alone,
 *   without the recording's (the ring of kept spans, which survives young-generation collections).
 * - `otlp`: the OTLP exporters of `NodeOtlp.layer()` installed as `OTEL_EXPORTER_OTLP_ENDPOINT` would (traces,
 *   metrics, logs; `protocol`), sending to a local sink that discards them: every incarnation's span is also
 *   encoded and sent (effect's exporter, batches of up to 1000 spans). `sampler` sets `OTEL_TRACES_SAMPLER_ARG`
 *   with `parentbased_traceidratio`.
 */
const compareTracing = (
  options: LaunchOptions,
  variant:
    | { readonly _tag: "memory" }
    | { readonly _tag: "native" }
    | { readonly _tag: "otlp"; readonly protocol: "http/protobuf" | "http/json"; readonly ratio?: number }
) =>
  Effect.gen(function*() {
    const { requests, url } = yield* sink
    const memory = memoryTracer()
    const tracerLayer = variant._tag === "memory"
      ? Layer.succeed(Tracer.Tracer, memory.tracer)
      : variant._tag === "native"
      ? Layer.succeed(Tracer.Tracer, Tracer.make({ span: (options) => new Tracer.NativeSpan(options) }))
      : NodeOtlp.layer({
        environment: {
          OTEL_EXPORTER_OTLP_ENDPOINT: url,
          OTEL_EXPORTER_OTLP_PROTOCOL: variant.protocol,
          ...(variant.ratio === undefined ? {} : {
            OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
            OTEL_TRACES_SAMPLER_ARG: String(variant.ratio)
          })
        }
      })
    const build = (on: boolean) =>
      Effect.orDie(Layer.build(
        on
          ? Supervisor.layer({ maxWorkerProcesses: 8, terminateTimeout: "5 seconds", metrics: true, tracing: true })
            .pipe(Layer.provideMerge(tracerLayer))
          : Supervisor.layer({ maxWorkerProcesses: 8, terminateTimeout: "5 seconds", metrics: false, tracing: false })
      ))
    const on = yield* build(true)
    const off = yield* build(false)
    const { extra, offRate, offRates, onRate, onRates, ratio } = yield* onOffRounds(
      options,
      launchesAgainst(on),
      launchesAgainst(off)
    )
    const label = variant._tag === "memory"
      ? "spans recorded in memory"
      : variant._tag === "native"
      ? "spans made, not recorded"
      : `OTLP export, ${variant.protocol}${
        variant.ratio === undefined ? "" : `, parentbased_traceidratio ${variant.ratio}`
      }`
    progress(
      `1t. metrics + tracing (${label}) on ${spread(onRates)}k/s, both off ${
        spread(offRates)
      }k/s over ${onRates.length} ` +
        `pairs of rounds; median of the pairs' off/on ratios ${ratio.toFixed(3)}; ${
          variant._tag === "memory"
            ? `${memory.ended()} spans ended`
            : variant._tag === "native"
            ? "effect's NativeSpan"
            : `${requests.count} exports received`
        }; ${extra.toFixed(2)} µs more per cycle`
    )
    const row: Row = {
      figure: `1t. launch cycles, metrics + tracing on (${label}) vs both off`,
      unit: "cycles/s",
      ours: onRate,
      baseline: offRate,
      ratio,
      target: "≤1.10× both off",
      ok: ratio <= 1.1
    }
    return { row, extra }
  }).pipe(Effect.scoped)

/**
 * Figure 1t's reference: what a span costs in `effect` itself. The raw-Effect cycle with its fiber in
 * `Effect.withSpan` (the same kind of tracer as the `native` variant, three attributes, no stack capture)
 * against the plain raw cycle, in microseconds per cycle, beside what metrics and tracing add to ours
 * (`ours`, the `native` variant's median extra): ours / effect's is the row's ratio. Informational: it
 * shows how far the incarnation span is from the cheapest span `effect` makes.
 */
const spanReference = (options: LaunchOptions, ours: number) =>
  Effect.gen(function*() {
    const tracer = Tracer.make({ span: (options) => new Tracer.NativeSpan(options) })
    const traced = rawCycleOf(true)
    const { extra, offRates, onRates } = yield* onOffRounds(
      options,
      (ms) => Effect.provideService(rate(traced, 1, ms), Tracer.Tracer, tracer),
      (ms) => rate(rawCycle, 1, ms)
    )
    progress(
      `1t. raw cycle in Effect.withSpan ${spread(onRates)}k/s, plain ${spread(offRates)}k/s over ${onRates.length} ` +
        `pairs of rounds; ${extra.toFixed(2)} µs more per cycle (ours: ${ours.toFixed(2)} µs)`
    )
    const row: Row = {
      figure: "1t. µs a traced launch cycle adds (native spans) vs Effect.withSpan on the raw cycle",
      unit: "µs",
      ours,
      baseline: extra,
      ratio: costRatio(ours, extra),
      target: "reference",
      ok: undefined
    }
    return row
  })

export const runLaunch = (options: LaunchOptions): Effect.Effect<ReadonlyArray<Row>> =>
  Effect.gen(function*() {
    const single = yield* compare("1. launch cycles, 1 launcher", 1, options, 8)
    const many = yield* compare(`1. launch cycles, ${options.launchers} launchers`, options.launchers, options, 64)
    const metrics = yield* compareMetrics(options)
    const memory = yield* compareTracing(options, { _tag: "memory" })
    const native = yield* compareTracing(options, { _tag: "native" })
    const reference = yield* spanReference(options, native.extra)
    const otlp = [
      yield* compareTracing(options, { _tag: "otlp", protocol: "http/protobuf" }),
      yield* compareTracing(options, { _tag: "otlp", protocol: "http/json" }),
      yield* compareTracing(options, { _tag: "otlp", protocol: "http/protobuf", ratio: 0.01 })
    ]
    return [single, many, metrics, memory.row, native.row, reference, ...otlp.map((_) => _.row)]
  })
