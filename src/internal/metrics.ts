/**
 * The supervisor's metrics (`Supervisor.Options.metrics`): one set of `effect` `Metric`s per worker type,
 * labelled `worker_type`, resolved once per type so that the hot paths (a start, an exit, a latch wait) pay
 * one registry lookup per update. The gauges are read-through: computed from the slot table when the
 * metrics are read (a scrape), so keeping them costs nothing on any path.
 *
 * The list of metrics, their meaning and their PostgreSQL analogues is in `Supervisor.ts` (`Options.metrics`).
 *
 * @internal
 */
import * as Context from "effect/Context"
import * as Metric from "effect/Metric"

/** The labels of `bgworker_workers`: a registration's phase, as the activity view names it. */
export const workerStates = ["pending", "running", "restartWait", "givenUp"] as const
export type WorkerState = typeof workerStates[number]

/** How an incarnation ended (`IncarnationEnd`'s tag, lowercased). */
export type ExitOutcome = "done" | "failed" | "crashed" | "killed" | "abandoned"

const secondsBoundaries = Metric.exponentialBoundaries({ start: 0.001, factor: 4, count: 10 })

/** One worker type's metrics. */
export class TypeMetrics {
  readonly starts: Metric.Counter<number>
  readonly restarts: Metric.Counter<number>
  readonly crashRestarts: Metric.Counter<number>
  readonly giveUps: Metric.Counter<number>
  readonly accepted: Metric.Counter<number>
  readonly startLatency: Metric.Histogram<number>
  readonly spiTransaction: Metric.Histogram<number>
  readonly latchWait: Metric.Histogram<number>
  private readonly exits = new Map<ExitOutcome, Metric.Counter<number>>()
  private readonly refused = new Map<string, Metric.Counter<number>>()
  readonly owner: SupervisorMetrics
  readonly type: string

  constructor(owner: SupervisorMetrics, type: string) {
    this.owner = owner
    this.type = type
    const attributes = { worker_type: type }
    const counter = (name: string, description: string) => Metric.counter(name, { description, attributes })
    const histogram = (name: string, description: string) =>
      Metric.histogram(name, { description, attributes, boundaries: secondsBoundaries })
    this.starts = counter("bgworker_starts", "Incarnations started")
    this.restarts = counter("bgworker_restarts", "Restarts (after an exit, or by a crash restart)")
    this.crashRestarts = counter("bgworker_crash_restarts", "Crash restarts caused by a worker of this type")
    this.giveUps = counter("bgworker_give_ups", "Registrations given up by their restart policy")
    this.accepted = counter("bgworker_launches_accepted", "Registrations and launches accepted")
    this.startLatency = histogram("bgworker_start_latency_seconds", "From registration or restart due to start")
    this.spiTransaction = histogram("bgworker_spi_transaction_seconds", "Spi.transaction duration")
    this.latchWait = histogram("bgworker_latch_wait_seconds", "ProcLatch waits, time spent waiting")
  }

  /** Adds `1` to `metric` (one of this type's). */
  inc(metric: Metric.Metric<number, unknown>): void {
    metric.updateUnsafe(1, this.owner.context)
  }

  /** Records `millis` (converted to seconds) in `histogram`. */
  observeMillis(histogram: Metric.Histogram<number>, millis: number): void {
    histogram.updateUnsafe(millis / 1000, this.owner.context)
  }

  exited(outcome: ExitOutcome): void {
    let metric = this.exits.get(outcome)
    if (metric === undefined) {
      metric = Metric.counter("bgworker_exits", {
        description: "Incarnation ends by outcome",
        attributes: { worker_type: this.type, outcome }
      })
      this.exits.set(outcome, metric)
    }
    this.inc(metric)
  }

  refusedFor(reason: string): void {
    let metric = this.refused.get(reason)
    if (metric === undefined) {
      metric = Metric.counter("bgworker_launches_refused", {
        description: "Registrations and launches refused, by SupervisorError reason",
        attributes: { worker_type: this.type, reason }
      })
      this.refused.set(reason, metric)
    }
    this.inc(metric)
  }
}

/** What the read-through gauges read: the supervisor's slot table. */
export interface GaugeSource {
  readonly maxWorkerProcesses: number
  /** Registrations in use, by worker type and state. */
  readonly count: (type: string | undefined, state: WorkerState | undefined) => number
}

/** The supervisor's metrics: its registry (from its context), one `TypeMetrics` per worker type. */
export class SupervisorMetrics {
  readonly context: Context.Context<never>
  private readonly types = new Map<string, TypeMetrics>()
  private readonly registrations: Array<Metric.Registration> = []
  private readonly source: GaugeSource

  constructor(context: Context.Context<never>, source: GaugeSource) {
    // The registry and nothing else: contextual attributes of the supervisor's builder do not label these.
    this.context = Context.make(Metric.MetricRegistry, Context.get(context, Metric.MetricRegistry))
    this.source = source
    this.gauge("bgworker_slots_used", "Slots in use (all worker types)", {}, () => source.count(undefined, undefined))
    this.gauge(
      "bgworker_slots_free",
      "Free slots",
      {},
      () => source.maxWorkerProcesses - source.count(undefined, undefined)
    )
  }

  private gauge(name: string, description: string, attributes: Record<string, string>, get: () => number): void {
    const gauge = Metric.gauge(name, { description, attributes })
    this.registrations.push(Metric.registerUnsafe(gauge, this.context, {
      get: () => ({ value: get() }),
      update: () => {},
      modify: () => {}
    }))
  }

  /** The metrics of `type`, created (with its gauges registered) at its first use. */
  forType(type: string): TypeMetrics {
    let metrics = this.types.get(type)
    if (metrics === undefined) {
      metrics = new TypeMetrics(this, type)
      this.types.set(type, metrics)
      for (const state of workerStates) {
        this.gauge(
          "bgworker_workers",
          "Registrations by state",
          { worker_type: type, state },
          () => this.source.count(type, state)
        )
      }
    }
    return metrics
  }

  /** Takes the read-through gauges out of the registry (the supervisor's death); counters stay. */
  unregister(): void {
    for (const registration of this.registrations) registration.remove()
    this.registrations.length = 0
  }
}
