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

const noop = (): void => {}

/** Seconds: 1 ms, 4 ms, 16 ms, ... about 4.4 min (and +Inf). */
const secondsBoundaries: ReadonlyArray<number> = Metric.exponentialBoundaries({ start: 0.001, factor: 4, count: 10 })
  .filter((b) => Number.isFinite(b))

/** A counter kept as a plain number: `Metric` reads it (read-through) when the metrics are read. */
export class Count {
  count = 0
}

/** A histogram kept as plain numbers (per-bucket counts), read through like {@link Count}. */
export class Observations {
  readonly values = new Uint32Array(secondsBoundaries.length + 1)
  count = 0
  sum = 0
  min = Number.MAX_VALUE
  max = -Number.MAX_VALUE
  observe(value: number): void {
    let i = 0
    while (i < secondsBoundaries.length && value > secondsBoundaries[i]!) i++
    this.values[i]!++
    this.count++
    this.sum += value
    if (value < this.min) this.min = value
    if (value > this.max) this.max = value
  }
  /** Records `millis`, in seconds. */
  observeMillis(millis: number): void {
    this.observe(millis / 1000)
  }
  state(): Metric.HistogramState {
    const buckets: Array<[number, number]> = []
    let cumulated = 0
    for (let i = 0; i < secondsBoundaries.length; i++) {
      cumulated += this.values[i]!
      buckets.push([secondsBoundaries[i]!, cumulated])
    }
    return { buckets, count: this.count, min: this.min, max: this.max, sum: this.sum }
  }
}

/**
 * One worker type's metrics. Updates are plain field writes (no registry lookup, no allocation), so
 * the launch cycle's cost stays within a few percent; the registry reads them when it is read.
 */
export class TypeMetrics {
  readonly starts = new Count()
  readonly restarts = new Count()
  readonly crashRestarts = new Count()
  readonly giveUps = new Count()
  readonly accepted = new Count()
  readonly startLatency = new Observations()
  readonly spiTransaction = new Observations()
  readonly latchWait = new Observations()
  private readonly exits = new Map<ExitOutcome, Count>()
  private readonly refused = new Map<string, Count>()
  private readonly owner: SupervisorMetrics
  private readonly type: string
  /** Counts a refusal by its reason and gives it back: one function per type, made once. */
  readonly refuse = <E extends { readonly reason: { readonly _tag: string } }>(error: E): E => {
    this.refusedFor(error.reason._tag)
    return error
  }

  constructor(owner: SupervisorMetrics, type: string) {
    this.owner = owner
    this.type = type
    const attributes = { worker_type: type }
    owner.counter("bgworker_starts", "Incarnations started", attributes, this.starts)
    owner.counter("bgworker_restarts", "Restarts (after an exit, or by a crash restart)", attributes, this.restarts)
    owner.counter(
      "bgworker_crash_restarts",
      "Crash restarts caused by a worker of this type",
      attributes,
      this.crashRestarts
    )
    owner.counter("bgworker_give_ups", "Registrations given up by their restart policy", attributes, this.giveUps)
    owner.counter("bgworker_launches_accepted", "Registrations and launches accepted", attributes, this.accepted)
    owner.histogram(
      "bgworker_start_latency_seconds",
      "From registration or restart due to start",
      attributes,
      this.startLatency
    )
    owner.histogram("bgworker_spi_transaction_seconds", "Spi.transaction duration", attributes, this.spiTransaction)
    owner.histogram("bgworker_latch_wait_seconds", "ProcLatch waits, time spent waiting", attributes, this.latchWait)
  }

  exited(outcome: ExitOutcome): void {
    let count = this.exits.get(outcome)
    if (count === undefined) {
      count = new Count()
      this.owner.counter("bgworker_exits", "Incarnation ends by outcome", { worker_type: this.type, outcome }, count)
      this.exits.set(outcome, count)
    }
    count.count++
  }

  refusedFor(reason: string): void {
    let count = this.refused.get(reason)
    if (count === undefined) {
      count = new Count()
      this.owner.counter(
        "bgworker_launches_refused",
        "Registrations and launches refused, by SupervisorError reason",
        { worker_type: this.type, reason },
        count
      )
      this.refused.set(reason, count)
    }
    count.count++
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
  /** The gauges' registrations: read-through views of a slot table that dies with the supervisor. */
  private readonly gauges: Array<Metric.Registration> = []
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

  private register<State>(metric: Metric.Metric<never, State>, get: () => State): Metric.Registration {
    return Metric.registerUnsafe(metric, this.context, { get, update: noop, modify: noop })
  }

  private gauge(name: string, description: string, attributes: Record<string, string>, get: () => number): void {
    this.gauges.push(this.register(Metric.gauge(name, { description, attributes }), () => ({ value: get() })))
  }

  counter(name: string, description: string, attributes: Record<string, string>, count: Count): void {
    this.register(
      Metric.counter(name, { description, attributes, incremental: true }),
      () => ({ count: count.count, incremental: true })
    )
  }

  histogram(name: string, description: string, attributes: Record<string, string>, values: Observations): void {
    this.register(
      Metric.histogram(name, { description, attributes, boundaries: secondsBoundaries }),
      () => values.state()
    )
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

  /**
   * Takes this supervisor's gauges out of the registry (after its death): there are no slots left to count.
   * Counters and histograms stay, final, so that an exporter's last flush (OTLP at shutdown, a last scrape)
   * still carries the exits counted during the shutdown.
   */
  unregister(): void {
    for (const registration of this.gauges) registration.remove()
    this.gauges.length = 0
  }
}
