/**
 * Shared pieces of the property tests (Supervisor.properties.test.ts, BackgroundWorker.properties.test.ts): the
 * search options, the workers' journal, the worker kinds and the worker_spi-like loop they run.
 *
 * PROPERTY_RUNS=n (default 100) and PROPERTY_SEED=s tune the search.
 */
import { assert } from "@effect/vitest"
import { Clock, Context, Data, Duration, Effect, type Fiber, Scheduler, Schema } from "effect"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import * as Interrupts from "../src/Interrupts.ts"
import * as ProcLatch from "../src/ProcLatch.ts"
import type { WorkerStatus } from "../src/WorkerHandle.ts"
import * as Handle from "../src/WorkerHandle.ts"

const runs = Number(process.env.PROPERTY_RUNS ?? 100)
const seed = process.env.PROPERTY_SEED
export const propOptions = { arbitrary: { runs, size: 30, ...(seed === undefined ? {} : { seed }) } }

export const Int = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))

/**
 * A scheduler that knows how many tasks are queued and not yet run, across every fiber: the fibers of a
 * scenario (the supervisor's, the workers', the test's) run on it, so "nothing is queued" means that every
 * fiber is waiting (on the TestClock, a latch, a handle), not running.
 */
export class CountingScheduler implements Scheduler.Scheduler {
  pending = 0
  private readonly inner = new Scheduler.MixedScheduler()
  get executionMode(): "sync" | "async" {
    return this.inner.executionMode
  }
  shouldYield(fiber: Fiber.Fiber<unknown, unknown>): boolean {
    return this.inner.shouldYield(fiber)
  }
  makeDispatcher(): Scheduler.SchedulerDispatcher {
    const dispatcher = this.inner.makeDispatcher()
    return {
      scheduleTask: (task, priority) => {
        this.pending++
        dispatcher.scheduleTask(() => {
          this.pending--
          task()
        }, priority)
      },
      flush: () => dispatcher.flush()
    }
  }
}

/** Runs `effect` (a whole scenario) on a {@link CountingScheduler} of its own, for {@link untilIdle}. */
export const withCountingScheduler = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.provideService(effect, Scheduler.Scheduler, new CountingScheduler())

/**
 * Waits until every other fiber waits: the caller steps aside, and returns once, when it runs again, no other
 * task is queued. A random scenario has no single change to wait for; this waits for the condition "nothing
 * can run until the clock moves or the test acts", whatever the number of steps it takes (bounded: a
 * scenario that never settles is a failure, not a hang).
 */
export const untilIdle: Effect.Effect<void> = Effect.gen(function*() {
  const scheduler = yield* Scheduler.Scheduler
  if (!(scheduler instanceof CountingScheduler)) {
    return yield* Effect.die(new Error("untilIdle runs inside withCountingScheduler"))
  }
  for (let steps = 0; steps < 1_000_000; steps++) {
    yield* Effect.yieldNow
    if (scheduler.pending === 0) return
  }
  return yield* Effect.die(new Error("the scenario never became idle: some fiber keeps running"))
})

export const show = (status: WorkerStatus): string => status._tag === "Started" ? `Started(${status.pid})` : status._tag

export const sameStatus = (a: WorkerStatus, b: WorkerStatus): boolean =>
  a._tag === b._tag && (a._tag !== "Started" || (b._tag === "Started" && a.pid === b.pid))

export const fail = (invariant: string, violations: ReadonlyArray<string>, context?: unknown): void => {
  if (violations.length === 0) return
  assert.fail(
    `${invariant}\n  - ${violations.slice(0, 12).join("\n  - ")}` +
      (violations.length > 12 ? `\n  ... ${violations.length - 12} more` : "") +
      (context === undefined ? "" : `\n${JSON.stringify(context)}`)
  )
}

// -------------------------------------------------------------------------------------------------------------
// The workers: a journal of what their bodies did, and orders that make them crash, fail or return.
// -------------------------------------------------------------------------------------------------------------

export type Order = "crash" | "fail" | "return"

export interface JournalEntry {
  readonly seq: number
  readonly kind: "start" | "iteration" | "finalizer"
  readonly pid: number
  readonly handle: string
  readonly at: number
}

export class Journal {
  seq = 0
  readonly entries: Array<JournalEntry> = []
  /** Orders for a running incarnation, by pid: consumed at its next wake-up. */
  readonly orders = new Map<number, Order>()
  /** Incarnations whose `main` started and whose finalizer has not run yet. */
  readonly alive = new Set<number>()
  shmemInits = 0
  shmemReleases = 0

  record(kind: JournalEntry["kind"], pid: number, handle: string, at: number): void {
    this.entries.push({ seq: ++this.seq, kind, pid, handle, at })
    if (kind === "start") this.alive.add(pid)
    if (kind === "finalizer") this.alive.delete(pid)
  }

  takeOrder(pid: number): Order | undefined {
    const order = this.orders.get(pid)
    this.orders.delete(pid)
    return order
  }
}

export class CurrentJournal extends Context.Service<CurrentJournal, Journal>()("test/properties/Journal") {}

export class OrderedFailure extends Data.TaggedError("OrderedFailure")<{ readonly pid: number }> {}

export interface Kind {
  readonly label: string
  /** `undefined`: `"never"`; otherwise `restartAfter(restartMs)`. */
  readonly restartMs: number | undefined
  /** A defect in a worker with shared-state access is a crash: every worker is restarted. */
  readonly shmem: boolean
  readonly onPostmasterDeath: ProcLatch.OnPostmasterDeath
  /** How long its finalizer takes (on the clock): a slow cleanup keeps a crash restart or a death waiting. */
  readonly finalizerMs: number
  /** OTP restart intensity: more than `maxRestarts` restarts within `withinMs` gives the worker up. */
  readonly intensity?: { readonly maxRestarts: number; readonly withinMs: number }
}

export const kinds: ReadonlyArray<Kind> = [
  { label: "restart-2s", restartMs: 2000, shmem: false, onPostmasterDeath: "exit", finalizerMs: 0 },
  { label: "never", restartMs: undefined, shmem: false, onPostmasterDeath: "exit", finalizerMs: 0 },
  { label: "shmem-restart-3s", restartMs: 3000, shmem: true, onPostmasterDeath: "exit", finalizerMs: 0 },
  { label: "shmem-never", restartMs: undefined, shmem: true, onPostmasterDeath: "exit", finalizerMs: 0 },
  { label: "restart-0s-returns-on-death", restartMs: 0, shmem: false, onPostmasterDeath: "return", finalizerMs: 0 },
  {
    label: "shmem-restart-1s-slow-cleanup",
    restartMs: 1000,
    shmem: true,
    onPostmasterDeath: "exit",
    finalizerMs: 1500
  },
  {
    label: "restart-500ms-gives-up",
    restartMs: 500,
    shmem: false,
    onPostmasterDeath: "exit",
    finalizerMs: 0,
    intensity: { maxRestarts: 1, withinMs: 10_000 }
  }
]

/**
 * A worker_spi-like loop: journal an iteration, wait on the latch (1 second timeout), reset, check interrupts,
 * then obey an order for this incarnation, if any. Its finalizer journals the end of the incarnation.
 */
export const makeWorker = (kind: Kind) =>
  BackgroundWorker.make({
    name: kind.label,
    restart: kind.restartMs === undefined ? "never" : BackgroundWorker.restartAfter(Duration.millis(kind.restartMs)),
    intensity: kind.intensity === undefined
      ? undefined
      : { maxRestarts: kind.intensity.maxRestarts, within: Duration.millis(kind.intensity.withinMs) },
    shmem: kind.shmem,
    main: () =>
      Effect.gen(function*() {
        const me = yield* BackgroundWorker.current
        const journal = yield* CurrentJournal
        const handle = Handle.format(me.handle)
        journal.record("start", me.pid, handle, yield* Clock.currentTimeMillis)
        yield* Effect.addFinalizer(() =>
          Effect.andThen(
            Effect.sleep(Duration.millis(kind.finalizerMs)),
            Effect.map(Clock.currentTimeMillis, (at) => journal.record("finalizer", me.pid, handle, at))
          )
        )
        while (true) {
          journal.record("iteration", me.pid, handle, yield* Clock.currentTimeMillis)
          const woke = yield* ProcLatch.wait({ timeout: "1 second", onPostmasterDeath: kind.onPostmasterDeath })
          if (woke.postmasterDeath) return
          yield* ProcLatch.reset
          yield* Interrupts.check
          yield* Interrupts.reloadPending
          const order = journal.takeOrder(me.pid)
          if (order === "crash") return yield* Effect.die(new Error(`ordered crash of pid ${me.pid}`))
          if (order === "fail") return yield* new OrderedFailure({ pid: me.pid })
          if (order === "return") return
        }
      })
  })

export const definitions = kinds.map(makeWorker)
