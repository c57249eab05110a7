/**
 * The supervisor's spans (`Supervisor.Options.tracing`), through `effect`'s `Tracer` only: whatever tracer
 * the context holds (an OTLP exporter, a test's recorder) receives them; no exporter is named here.
 *
 * - One span per incarnation, `bgworker <type>`, from its start to its end (the incarnation's fiber is its
 *   child context, so the worker's own spans, `Spi.transaction`'s and effect/sql's among them, nest under
 *   it). Its parent is the span current where the worker was registered (a control-plane request, the
 *   caller of `Supervisor.register`), for the first incarnation only: a restart is a new trace, linked to
 *   the previous incarnation and to that registering span, so a worker restarting for a week does not grow
 *   one trace for a week.
 * - Its start and end times come from the context's `Clock` (a `TestClock` moves them), read as {@link SpanClock}
 *   does: the wall-clock milliseconds the supervisor reads at a start and at an end anyway, plus one monotonic
 *   read, rather than `currentTimeNanosUnsafe` (a second wall-clock read and a handful of bigints) twice per
 *   incarnation.
 * - Cheap when nobody listens: without a tracer in the context (only `effect`'s native tracer, which
 *   records nothing), or with `References.TracerEnabled` off, or `tracing: false`, no span is made and the
 *   incarnation's context is not touched.
 *
 * @internal
 */
import type * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as References from "effect/References"
import * as Tracer from "effect/Tracer"

/** The tracer of `context` when one records spans, else `undefined` (native tracer only, or tracing disabled). */
export const tracerOf = (context: Context.Context<never>): Tracer.Tracer | undefined => {
  const tracer = Context.get(context, Tracer.Tracer)
  if (tracer === Tracer.nativeTracer || !Context.get(context, References.TracerEnabled)) return undefined
  return tracer
}

/** The span current in `context` (where a registration was made), if any. */
export const parentSpanOf = (context: Context.Context<never>): Tracer.AnySpan | undefined =>
  Context.getOrUndefined(context, Tracer.ParentSpan)

const nanosPerMilli = 1_000_000

/**
 * Span times in nanoseconds, as `Clock.currentTimeNanosUnsafe` gives them, for the price of one monotonic read
 * when the caller has just read the wall clock's milliseconds (an incarnation's `backendStart`, its end's
 * `lastExit.at`). The wall time is the monotonic time plus an origin taken from `currentTimeNanosUnsafe`, as
 * `effect`'s clock computes it (so the worker's own spans, timed by that clock, fall within its incarnation's),
 * and taken again when it strays by more than a second from the milliseconds (the wall clock was set, or a
 * `TestClock`'s time was).
 *
 * Gotcha: like `effect`'s clock, it follows a wall clock set by less than a second only at its next re-anchoring,
 * and it relies on the clock's monotonic time advancing with its wall time (`effect`'s clock and `TestClock` do);
 * a `Clock` whose monotonic time stands still gives span times to within a second only.
 */
export class SpanClock {
  private origin: bigint | undefined = undefined
  private readonly clock: Clock.Clock
  constructor(clock: Clock.Clock) {
    this.clock = clock
  }

  /** The time now, in nanoseconds since the epoch; `millis` is the wall clock's, read just before. */
  nanos(millis: number): bigint {
    const monotonic = this.clock.monotonicTimeNanosUnsafe()
    if (this.origin !== undefined) {
      const wall = this.origin + monotonic
      // In numbers: precise to a fraction of a millisecond, which is all a one-second test needs.
      const skew = Number(wall) / nanosPerMilli - millis
      if (skew < 1000 && skew > -1000) return wall
    }
    const wall = this.clock.currentTimeNanosUnsafe()
    this.origin = wall - monotonic
    return wall
  }
}

/** What an incarnation span says about its worker at its start. */
export interface IncarnationSpanOptions {
  readonly name: string
  readonly type: string
  readonly pid: number
  /** The registering span: the parent of a first incarnation, a link of the later ones. */
  readonly registeredUnder: Tracer.AnySpan | undefined
  /** The previous incarnation's span (a restart), linked. */
  readonly previous: Tracer.AnySpan | undefined
  readonly startTime: bigint
}

const none = Option.none<Tracer.AnySpan>()

/** Starts an incarnation's span (`bgworker <type>`); the caller puts it in the incarnation's context. */
export const startIncarnationSpan = (tracer: Tracer.Tracer, options: IncarnationSpanOptions): Tracer.Span => {
  const first = options.previous === undefined
  const parent = first && options.registeredUnder !== undefined ? Option.some(options.registeredUnder) : none
  const links: Array<Tracer.SpanLink> = []
  if (!first) {
    // Its identifiers only: a link to the span itself would keep every earlier incarnation's span alive
    // through the chain of links, for as long as the worker keeps restarting.
    const previous = options.previous!
    links.push({
      span: Tracer.externalSpan({ traceId: previous.traceId, spanId: previous.spanId, sampled: previous.sampled }),
      attributes: { "bgworker.link": "previous incarnation" }
    })
    if (options.registeredUnder !== undefined) {
      links.push({ span: options.registeredUnder, attributes: { "bgworker.link": "registered by" } })
    }
  }
  const span = tracer.span({
    name: `bgworker ${options.type}`,
    parent,
    annotations: Context.empty(),
    links,
    startTime: options.startTime,
    kind: "internal",
    root: parent._tag === "None",
    sampled: parent._tag === "Some" ? parent.value.sampled : true
  })
  span.attribute("bgworker.name", options.name)
  span.attribute("bgworker.type", options.type)
  // A worker's pid is its incarnation's number until a database session gives it a backend pid: then
  // `sessionOpened` sets both. Three attributes and the outcome: a span's attribute map grows (and is
  // rehashed) past four, and this runs at every start (see figure 1t of the launch benchmark).
  span.attribute("bgworker.pid", options.pid)
  return span
}

/** How an incarnation ended, as its span's last attributes (see `IncarnationEnd`). */
export interface IncarnationSpanEnd {
  /** `done`, `failed`, `crashed`, `killed` or `abandoned` (the `bgworker_exits` metric's `outcome`). */
  readonly outcome: string
  /** `Failed`'s reason: `error`, `defect`, `startup`, `terminated`, `interrupted`. */
  readonly reason: string | undefined
  readonly message: string | undefined
}

/**
 * Ends an incarnation's span. `exit` is the fiber's own when it ended (its failure becomes the span's error
 * status and exception event); an abandoned incarnation, whose fiber still runs, ends as a failure saying so.
 */
export const endIncarnationSpan = (
  span: Tracer.Span,
  end: IncarnationSpanEnd,
  exit: Exit.Exit<unknown, unknown> | undefined,
  endTime: bigint
): void => {
  span.attribute("bgworker.exit", end.outcome)
  if (end.reason !== undefined) span.attribute("bgworker.exit.reason", end.reason)
  if (end.message !== undefined) span.attribute("bgworker.exit.message", end.message)
  span.end(endTime, exit ?? Exit.fail(end.message ?? end.outcome))
}
