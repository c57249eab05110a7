/**
 * Latch properties: random interleavings of a waiter and its setters, checked against latch.h's rules.
 *
 * A waiter fiber resets and waits (on a standalone latch, or on a worker's own latch); setter fibers set it,
 * some at once and some after a short sleep on the TestClock, so that a set can land at any step of a wait,
 * just as the waiter comes back into its wait, or at the instant its timeout fires. Nothing here is made
 * atomic with `References.PreventSchedulerYield`: that would close exactly the window between a wait's check
 * of the flag and its registration, where a set used to be lost. Every property runs twice:
 *
 * - With the default scheduler budget (2048 operations), where no fiber here runs long enough to be
 *   preempted: the log's order is the order things happened in, and the checks are exact (down to a set
 *   that lands at the instant a timeout fires). The run fails if the scheduler ever preempts a fiber.
 * - With a scheduler that yields every 4 to 8 operations (`References.MaxOpsBeforeYield`), so that another
 *   fiber can run between any two steps of a wait. A fiber can then be preempted between an operation and
 *   the log entry that records it, so the log records each set and each reset as a start and an end, and
 *   the checks hold a fiber only to what it must have seen. The sharpest check needs no log: whenever every
 *   fiber is idle (a scheduler that counts queued tasks says so), a waiter still inside its wait must not
 *   have a set latch. The driver lets every fiber go idle before it moves the clock.
 *
 * PROPERTY_RUNS=n (default 100) and PROPERTY_SEED=s tune the search.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Queue, References, Schema } from "effect"
import type * as Scheduler from "effect/Scheduler"
import { TestClock } from "effect/testing"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import * as Interrupts from "../src/Interrupts.ts"
import * as ProcLatch from "../src/ProcLatch.ts"
import * as Supervisor from "../src/Supervisor.ts"

/** 100 runs per property; PROPERTY_RUNS=2000 for a longer search, PROPERTY_SEED=n to replay a seed. */
const runs = Number(process.env.PROPERTY_RUNS ?? 100)
const seed = process.env.PROPERTY_SEED
const propOptions = { arbitrary: { runs, size: 30, ...(seed === undefined ? {} : { seed }) } }

const Int = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))

const yieldTimes = (n: number): Effect.Effect<void> =>
  n <= 0 ? Effect.void : Effect.repeat(Effect.yieldNow, { times: n - 1 })

/** `n` cheap operations: under a small budget they move a fiber's next step across the other fibers' slices. */
const spin = (n: number): Effect.Effect<void> => n <= 0 ? Effect.void : Effect.andThen(Effect.void, spin(n - 1))

const fail = (invariant: string, violations: ReadonlyArray<string>): void => {
  if (violations.length === 0) return
  assert.fail(
    `${invariant}\n  - ${violations.slice(0, 12).join("\n  - ")}` +
      (violations.length > 12 ? `\n  ... ${violations.length - 12} more` : "")
  )
}

// -------------------------------------------------------------------------------------------------------------
// Scheduling: the budget, and knowing when every fiber is idle
// -------------------------------------------------------------------------------------------------------------

/**
 * Operations per run-loop slice. At 4 a fiber yields after every step of its own (the first operations of a
 * resumed slice are the resumption itself; with 3 or less a fiber can yield before its next step forever).
 */
const SmallBudget = Int(4, 8)

interface Probe {
  /** Yields until no other fiber is runnable: every fiber is suspended, on the clock, a queue or a latch. */
  readonly idle: Effect.Effect<void>
  /** How many times the scheduler preempted a fiber (an automatic yield, at the end of its budget). */
  readonly preemptions: () => number
}

/**
 * Runs `body` under a scheduler that counts the tasks queued by every fiber it runs and the preemptions,
 * wrapping the scheduler in place (the TestClock's, which tracks the fibers a clock adjustment wakes).
 */
const withProbe = <A, E, R>(
  body: (probe: Probe) => Effect.Effect<A, E, R>,
  budget: number | undefined
): Effect.Effect<A, E, R> =>
  Effect.gen(function*() {
    const parent = yield* References.Scheduler
    let queued = 0
    let preemptions = 0
    const scheduler: Scheduler.Scheduler = {
      executionMode: parent.executionMode,
      shouldYield: (fiber) => {
        const yields = parent.shouldYield(fiber)
        if (yields) preemptions++
        return yields
      },
      makeDispatcher() {
        const dispatcher = parent.makeDispatcher()
        return {
          scheduleTask(task, priority) {
            queued++
            dispatcher.scheduleTask(() => {
              queued--
              task()
            }, priority)
          },
          flush: () => dispatcher.flush()
        }
      }
    }
    const idle = Effect.gen(function*() {
      for (let i = 0; i < 100_000; i++) {
        yield* Effect.yieldNow
        if (queued === 0) return
      }
      return yield* Effect.die(new Error("the fibers never went idle"))
    })
    const run = Effect.provideService(body({ idle, preemptions: () => preemptions }), References.Scheduler, scheduler)
    return yield* budget === undefined ? run : Effect.provideService(run, References.MaxOpsBeforeYield, budget)
  })

// -------------------------------------------------------------------------------------------------------------
// The event log and its rules
// -------------------------------------------------------------------------------------------------------------

type LatchEvent =
  | { readonly _tag: "setStart"; readonly at: number; readonly id: number }
  | { readonly _tag: "setDone"; readonly at: number; readonly id: number }
  | { readonly _tag: "resetStart"; readonly at: number }
  | { readonly _tag: "resetDone"; readonly at: number }
  | { readonly _tag: "waitStart"; readonly at: number; readonly timeoutMs: number | undefined }
  | { readonly _tag: "wake"; readonly at: number; readonly result: ProcLatch.WaitResult }

type LatchLog = Array<LatchEvent>

/** Appends an event stamped with the TestClock's time, read in the same synchronous step. */
const logEvent = (log: LatchLog, event: (at: number) => LatchEvent): Effect.Effect<void> =>
  Effect.clockWith((clock) => Effect.sync(() => void log.push(event(clock.currentTimeMillisUnsafe()))))

const showResult = (r: ProcLatch.WaitResult) =>
  [r.latchSet ? "latchSet" : "", r.timeout ? "timeout" : "", r.postmasterDeath ? "postmasterDeath" : ""]
    .filter((x) => x !== "").join("+") || "nothing"

/** Whether the waiter is inside a wait, by the log: its last wait has no wake-up yet. */
const inWait = (log: LatchLog): boolean =>
  log.findLast((e) => e._tag === "waitStart" || e._tag === "wake")?._tag === "waitStart"

/**
 * At a moment when every fiber is idle: a waiter still inside its wait must not have a set latch (a lost
 * wake-up: nothing will ever wake it, and every later set returns early on the set flag).
 */
const checkParked = (log: LatchLog, latch: ProcLatch.ProcLatch | undefined, out: Array<string>): void => {
  if (latch !== undefined && inWait(log) && latch.isSetUnsafe()) {
    const at = log.at(-1)?.at ?? 0
    out.push(`lost wake-up: at ${at} ms every fiber is idle, the waiter is parked in its wait, the latch is set`)
  }
}

/**
 * Replays the log against latch.h:
 * - a wait that starts on a set latch returns at once with latchSet;
 * - a wait returns a timeout (or nothing) only if the latch was not set when it decided: otherwise the set
 *   is lost, since the owner resets next;
 * - a wait returns latchSet only if the latch was set since the last reset (no spurious wake-up);
 * - without a set a wait ends only by its timeout, exactly on time;
 * - `coalesce`: in a wait/reset loop, the sets of one cycle are answered by one wake-up, so there are never
 *   more latchSet wake-ups than sets.
 *
 * `exact`: nothing was preempted, so a set happened where its `setStart` is, and a wait decided where its
 * `wake` is. Otherwise (small budgets) a set surely happened by its `setDone` and may have happened from its
 * `setStart`; a reset surely cleared what was set before its `resetStart`; a wait that returned a timeout
 * decided at the instant its timeout fired (the TestClock does not move while a fiber it woke still runs),
 * so a set counts against it only if it happened at an earlier instant. The clock does not move under a
 * running fiber either (the driver waits for every fiber to go idle first), so timing stays exact.
 */
const logViolations = (
  log: LatchLog,
  options: { readonly exact: boolean; readonly coalesce: boolean }
): Array<string> => {
  const out: Array<string> = []
  const sets = new Map<number, { startIdx: number; doneIdx: number | undefined; doneAt: number | undefined }>()
  let lastResetStartIdx = -1
  let lastResetDoneIdx = -1
  let waiting: { readonly idx: number; readonly at: number; readonly timeoutMs: number | undefined } | undefined
  let latchWakes = 0
  log.forEach((e, i) => {
    const where = `event ${i} (${e._tag} at ${e.at} ms)`
    switch (e._tag) {
      case "setStart":
        sets.set(
          e.id,
          options.exact
            ? { startIdx: i, doneIdx: i, doneAt: e.at }
            : { startIdx: i, doneIdx: undefined, doneAt: undefined }
        )
        break
      case "setDone": {
        const s = sets.get(e.id)!
        if (!options.exact) {
          s.doneIdx = i
          s.doneAt = e.at
        }
        break
      }
      case "resetStart":
        if (waiting !== undefined) out.push(`${where}: the waiter reset while waiting`)
        lastResetStartIdx = i
        if (options.exact) lastResetDoneIdx = i
        break
      case "resetDone":
        if (!options.exact) lastResetDoneIdx = i
        break
      case "waitStart":
        if (waiting !== undefined) out.push(`${where}: a second wait began before the first returned`)
        waiting = { idx: i, at: e.at, timeoutMs: e.timeoutMs }
        break
      case "wake": {
        if (waiting === undefined) {
          out.push(`${where}: a wake-up without a wait`)
          break
        }
        const all = Array.from(sets.values())
        /** Surely set since the last reset. */
        const definite = all.filter((s) => s.startIdx > lastResetDoneIdx && s.doneIdx !== undefined)
        /** Maybe set since the last reset. */
        const possible = all.filter((s) => s.doneIdx === undefined || s.doneIdx > lastResetStartIdx)
        const setBefore = definite.find((s) => s.doneIdx! < waiting!.idx)
        const setEarlier = options.exact ? definite[0] : definite.find((s) => s.doneAt! < e.at)
        if (e.result.latchSet) {
          latchWakes++
          if (possible.length === 0) {
            out.push(`${where}: spurious wake-up: latchSet although nothing was set since the last reset`)
          }
          if (setBefore !== undefined && e.at !== waiting.at) {
            out.push(`${where}: a wait on a set latch returned only after ${e.at - waiting.at} ms`)
          }
        } else if (setBefore !== undefined) {
          out.push(
            `${where}: lost wake-up: a wait on a latch set at ${setBefore.doneAt} ms returned ${showResult(e.result)}`
          )
        } else if (setEarlier !== undefined) {
          out.push(
            `${where}: lost wake-up: the latch was set at ${setEarlier.doneAt} ms, after the last reset, ` +
              `and the wait returned ${showResult(e.result)}`
          )
        } else if (!e.result.timeout) {
          out.push(`${where}: the wait returned ${showResult(e.result)}`)
        } else if (waiting.timeoutMs === undefined || e.at !== waiting.at + Math.max(0, waiting.timeoutMs)) {
          out.push(`${where}: timed out ${e.at - waiting.at} ms after a wait with timeout ${waiting.timeoutMs}`)
        }
        waiting = undefined
        break
      }
    }
  })
  if (options.coalesce && latchWakes > sets.size) out.push(`${latchWakes} latchSet wake-ups for ${sets.size} set(s)`)
  return out
}

/** With the default budget the checks are exact only if no fiber was preempted: say so if one was. */
const preemptionViolations = (probe: Probe, budget: number | undefined): Array<string> =>
  budget === undefined && probe.preemptions() > 0
    ? [`the scheduler preempted a fiber ${probe.preemptions()} time(s) at the default budget: the log is not exact`]
    : []

// -------------------------------------------------------------------------------------------------------------
// Setters
// -------------------------------------------------------------------------------------------------------------

/**
 * A set by a setter fiber of its own: at once, or after a short sleep on the TestClock (so that timed sets
 * often land at the same instant: one wakes the waiter and the next races its way back into the wait, or
 * the instant a wait times out); then after `yields` yields and `ops` operations, which place it at any step of
 * the waiter's slice. `set` is the effect, `setUnsafe` what a callback does, `reload` is `Supervisor.reload`
 * (which sets a worker's reload flag and then its latch; `setUnsafe` for a standalone latch).
 */
const SetStep = Schema.TaggedStruct("Set", {
  afterMs: Schema.Union([Schema.Literal(0), Int(1, 30)]),
  yields: Int(0, 3),
  ops: Int(0, 8),
  via: Schema.Literals(["set", "setUnsafe", "reload"])
})
type SetStep = typeof SetStep.Type

const makeSetter = (log: LatchLog, perform: (via: SetStep["via"]) => Effect.Effect<void>) => {
  let ids = 0
  return (step: SetStep) =>
    Effect.forkScoped(Effect.gen(function*() {
      if (step.afterMs > 0) yield* Effect.sleep(Duration.millis(step.afterMs))
      yield* yieldTimes(step.yields)
      yield* spin(step.ops)
      const id = ++ids
      yield* logEvent(log, (at) => ({ _tag: "setStart", at, id }))
      yield* perform(step.via)
      yield* logEvent(log, (at) => ({ _tag: "setDone", at, id }))
    }))
}

// -------------------------------------------------------------------------------------------------------------
// A scripted waiter on a standalone latch
// -------------------------------------------------------------------------------------------------------------

const LatchScriptStep = Schema.Union([
  SetStep,
  /** The waiter resets the latch (after its current wait, if it is waiting). */
  Schema.TaggedStruct("Reset", {}),
  /**
   * The waiter waits (after its current wait, `yields` yields and `ops` operations); -1: no timeout. With
   * `resetFirst` it resets first, as a wait/reset loop does on its way back into the wait.
   */
  Schema.TaggedStruct("Wait", {
    timeoutMs: Int(-1, 3000),
    yields: Int(0, 3),
    ops: Int(0, 8),
    resetFirst: Schema.Boolean
  }),
  Schema.TaggedStruct("Advance", { ms: Int(0, 3000) }),
  Schema.TaggedStruct("Yield", { times: Int(1, 4) })
])
const LatchScript = Schema.Array(LatchScriptStep).check(Schema.isMaxLength(30))
type LatchScript = typeof LatchScript.Type

/** A plain fiber owns a standalone latch and resets and waits on command; setter fibers set it. */
const runLatchScript = (script: LatchScript, budget: number | undefined) =>
  withProbe((probe) =>
    Effect.gen(function*() {
      const latch = yield* ProcLatch.make
      const log: LatchLog = []
      const parked: Array<string> = []
      type Instruction =
        | { readonly _tag: "reset" }
        | {
          readonly _tag: "wait"
          readonly timeoutMs: number | undefined
          readonly yields: number
          readonly ops: number
          readonly resetFirst: boolean
        }
      const instructions = yield* Queue.unbounded<Instruction>()
      const reset = Effect.gen(function*() {
        yield* logEvent(log, (at) => ({ _tag: "resetStart", at }))
        yield* latch.reset
        yield* logEvent(log, (at) => ({ _tag: "resetDone", at }))
      })
      yield* Queue.take(instructions).pipe(
        Effect.flatMap((instruction) =>
          instruction._tag === "reset"
            ? reset
            : Effect.gen(function*() {
              if (instruction.resetFirst) yield* reset
              yield* yieldTimes(instruction.yields)
              yield* spin(instruction.ops)
              yield* logEvent(log, (at) => ({ _tag: "waitStart", at, timeoutMs: instruction.timeoutMs }))
              const result = yield* latch.wait(
                instruction.timeoutMs === undefined
                  ? { onPostmasterDeath: "return" }
                  : { timeout: Duration.millis(instruction.timeoutMs), onPostmasterDeath: "return" }
              )
              yield* logEvent(log, (at) => ({ _tag: "wake", at, result }))
            })
        ),
        Effect.forever,
        Effect.forkScoped
      )
      const set = makeSetter(log, (via) => via === "set" ? latch.set : Effect.sync(() => latch.setUnsafe()))
      /** Lets every fiber go idle, then checks that no set latch has a parked waiter. */
      const quiesce = Effect.andThen(probe.idle, Effect.sync(() => checkParked(log, latch, parked)))
      for (const step of script) {
        switch (step._tag) {
          case "Set":
            yield* set(step)
            break
          case "Reset":
            yield* Queue.offer(instructions, { _tag: "reset" })
            break
          case "Wait":
            yield* Queue.offer(instructions, {
              _tag: "wait",
              timeoutMs: step.timeoutMs < 0 ? undefined : step.timeoutMs,
              yields: step.yields,
              ops: step.ops,
              resetFirst: step.resetFirst
            })
            break
          case "Advance":
            // Exact runs move the clock under running fibers too (a set can race a timeout as it fires).
            if (budget !== undefined) yield* quiesce
            yield* TestClock.adjust(Duration.millis(step.ms))
            break
          case "Yield":
            yield* yieldTimes(step.times)
            break
        }
      }
      // Let every pending instruction, timed set and timeout run out.
      yield* quiesce
      for (let i = 0; i <= script.length; i++) {
        yield* TestClock.adjust("3001 millis")
        yield* quiesce
      }
      const out = [
        ...preemptionViolations(probe, budget),
        ...parked,
        ...logViolations(log, { exact: budget === undefined, coalesce: false })
      ]
      const pending = yield* Queue.size(instructions)
      const last = log.findLast((e) => e._tag === "waitStart")
      if (inWait(log) && last?._tag === "waitStart" && last.timeoutMs !== undefined) {
        out.push("a wait with a timeout never returned")
      }
      if (pending > 0 && !inWait(log)) out.push("the waiter is blocked but not in a wait")
      return out
    }), budget)

// -------------------------------------------------------------------------------------------------------------
// A wait/reset loop, on a standalone latch or a worker's latch
// -------------------------------------------------------------------------------------------------------------

const LatchLoopScenario = Schema.Struct({
  /** The latch of a plain fiber (`ProcLatch.make`), or a worker's own latch (`ProcLatch.wait` in `main`). */
  owner: Schema.Literals(["standalone", "worker"]),
  timeoutMs: Int(1, 3000),
  steps: Schema.Array(Schema.Union([
    SetStep,
    Schema.TaggedStruct("Advance", { ms: Int(0, 5000) }),
    Schema.TaggedStruct("Yield", { times: Int(1, 4) })
  ])).check(Schema.isMaxLength(30))
})
type LatchLoopScenario = typeof LatchLoopScenario.Type

/** The loop a worker runs (worker_spi's shape): wait, reset, look at the reload flag, wait again. */
const latchLoop = <R>(
  log: LatchLog,
  timeoutMs: number,
  wait: (timeout: Duration.Duration) => Effect.Effect<ProcLatch.WaitResult, never, R>,
  reset: Effect.Effect<void, never, R>,
  afterReset: Effect.Effect<unknown, never, R>
): Effect.Effect<never, never, R> =>
  Effect.gen(function*() {
    while (true) {
      yield* logEvent(log, (at) => ({ _tag: "waitStart", at, timeoutMs }))
      const result = yield* wait(Duration.millis(timeoutMs))
      yield* logEvent(log, (at) => ({ _tag: "wake", at, result }))
      yield* logEvent(log, (at) => ({ _tag: "resetStart", at }))
      yield* reset
      yield* logEvent(log, (at) => ({ _tag: "resetDone", at }))
      yield* afterReset
    }
  })

const runLatchLoop = (scenario: LatchLoopScenario, budget: number | undefined) =>
  withProbe((probe) =>
    Effect.gen(function*() {
      const log: LatchLog = []
      const parked: Array<string> = []
      let latch: ProcLatch.ProcLatch | undefined
      let perform: (via: SetStep["via"]) => Effect.Effect<void>
      if (scenario.owner === "standalone") {
        const standalone = yield* ProcLatch.make
        latch = standalone
        yield* latchLoop(
          log,
          scenario.timeoutMs,
          (timeout) => standalone.wait({ timeout, onPostmasterDeath: "return" }),
          standalone.reset,
          Effect.void
        ).pipe(Effect.forkScoped)
        perform = (via) => via === "set" ? standalone.set : Effect.sync(() => standalone.setUnsafe())
      } else {
        const sup = yield* Supervisor.make({ maxWorkerProcesses: 1 }).pipe(Effect.orDie)
        const worker = BackgroundWorker.make({
          name: "latch-loop",
          main: () =>
            Effect.andThen(
              // The worker publishes its own latch, as it would hand it to a callback.
              Effect.map(ProcLatch.myLatch, (mine) => {
                latch = mine
              }),
              latchLoop(
                log,
                scenario.timeoutMs,
                (timeout) => ProcLatch.wait({ timeout, onPostmasterDeath: "exit" }),
                ProcLatch.reset,
                Interrupts.reloadPending
              )
            )
        })
        const handle = yield* Supervisor.register(worker).pipe(
          Effect.provideService(Supervisor.Supervisor, sup),
          Effect.orDie
        )
        perform = (via) =>
          via === "set"
            ? sup.setLatch(handle)
            : via === "reload"
            ? sup.reload
            : Effect.sync(() => latch?.setUnsafe())
      }
      const set = makeSetter(log, perform)
      const quiesce = Effect.andThen(probe.idle, Effect.sync(() => checkParked(log, latch, parked)))
      yield* quiesce
      for (const step of scenario.steps) {
        switch (step._tag) {
          case "Set":
            yield* set(step)
            break
          case "Advance":
            if (budget !== undefined) yield* quiesce
            yield* TestClock.adjust(Duration.millis(step.ms))
            break
          case "Yield":
            yield* yieldTimes(step.times)
            break
        }
      }
      yield* quiesce
      return [
        ...preemptionViolations(probe, budget),
        ...parked,
        ...logViolations(log, { exact: budget === undefined, coalesce: true })
      ]
    }).pipe(Effect.provideService(References.MinimumLogLevel, "None")), budget)

// -------------------------------------------------------------------------------------------------------------
// The properties
// -------------------------------------------------------------------------------------------------------------

const scriptTitle =
  "a standalone latch loses no wake-up: a set after the last reset makes the waiting (or next) wait return latchSet, never a timeout; without a set a wait ends only by its timeout"
const loopTitle =
  "in a wait/reset loop, on a standalone latch or a worker's latch, every set is answered by a latchSet wake-up: none lost, several in one cycle coalesced, none spurious"

describe("Latch properties, default scheduler", () => {
  it.effect.prop(
    scriptTitle,
    [LatchScript],
    ([script]) => Effect.map(runLatchScript(script, undefined), (v) => fail("latch (scripted waiter)", v)),
    propOptions
  )

  it.effect.prop(
    loopTitle,
    [LatchLoopScenario],
    ([scenario]) => Effect.map(runLatchLoop(scenario, undefined), (v) => fail("latch (wait/reset loop)", v)),
    propOptions
  )
})

describe("Latch properties, under a scheduler that yields every 4 to 8 operations", () => {
  it.effect.prop(
    scriptTitle,
    [LatchScript, SmallBudget],
    ([script, budget]) => Effect.map(runLatchScript(script, budget), (v) => fail("latch (scripted waiter)", v)),
    propOptions
  )

  it.effect.prop(
    loopTitle,
    [LatchLoopScenario, SmallBudget],
    ([scenario, budget]) => Effect.map(runLatchLoop(scenario, budget), (v) => fail("latch (wait/reset loop)", v)),
    propOptions
  )
})

// -------------------------------------------------------------------------------------------------------------
// Counterexamples the properties found, kept as fixed cases
// -------------------------------------------------------------------------------------------------------------

describe("Latch counterexamples", () => {
  it.effect("a latch set 1 ms before the waiter's deadline is a wake-up, not a timeout", () =>
    Effect.map(
      runLatchScript([
        { _tag: "Wait", timeoutMs: 1, yields: 0, ops: 0, resetFirst: false },
        { _tag: "Set", afterMs: 0, yields: 1, ops: 0, via: "setUnsafe" },
        { _tag: "Advance", ms: 1 }
      ], undefined),
      (violations) => fail("latch (scripted waiter)", violations)
    ))

  it.effect("a latch set at the instant the waiter's timeout fires wakes that wait or the next one", () =>
    Effect.map(
      runLatchScript([
        { _tag: "Wait", timeoutMs: 5, yields: 0, ops: 0, resetFirst: false },
        { _tag: "Set", afterMs: 5, yields: 0, ops: 0, via: "set" },
        { _tag: "Advance", ms: 5 },
        { _tag: "Wait", timeoutMs: 5, yields: 0, ops: 0, resetFirst: false }
      ], undefined),
      (violations) => fail("latch (scripted waiter)", violations)
    ))

  it.effect("under a scheduler that yields every 7 operations, a set that lands as the waiter enters its wait wakes it", () =>
    Effect.map(
      runLatchScript([
        { _tag: "Advance", ms: 0 },
        { _tag: "Wait", timeoutMs: 4, yields: 0, ops: 0, resetFirst: false },
        { _tag: "Set", afterMs: 5, yields: 3, ops: 0, via: "reload" },
        { _tag: "Reset" },
        { _tag: "Set", afterMs: 0, yields: 0, ops: 2, via: "reload" },
        { _tag: "Wait", timeoutMs: 5, yields: 1, ops: 2, resetFirst: false },
        { _tag: "Reset" },
        { _tag: "Set", afterMs: 0, yields: 2, ops: 5, via: "set" },
        { _tag: "Set", afterMs: 0, yields: 0, ops: 0, via: "set" }
      ], 7),
      (violations) => fail("latch (scripted waiter)", violations)
    ))

  it.effect(
    "under a scheduler that yields every 6 operations, a second set racing a worker's way back into its wait wakes it",
    () =>
      Effect.map(
        runLatchLoop({
          owner: "worker",
          timeoutMs: 1,
          steps: [
            { _tag: "Set", afterMs: 0, yields: 1, ops: 5, via: "set" },
            { _tag: "Set", afterMs: 0, yields: 0, ops: 1, via: "set" }
          ]
        }, 6),
        (violations) => fail("latch (wait/reset loop)", violations)
      )
  )

  it.effect.each(["standalone", "worker"] as const)(
    "a %s latch set twice by another fiber wakes its wait/reset loop",
    (owner) =>
      Effect.map(
        runLatchLoop({
          owner,
          timeoutMs: 1,
          steps: [
            { _tag: "Set", afterMs: 0, yields: 0, ops: 0, via: "setUnsafe" },
            { _tag: "Set", afterMs: 0, yields: 1, ops: 0, via: "setUnsafe" },
            { _tag: "Advance", ms: 3 }
          ]
        }, undefined),
        (violations) => fail("latch (wait/reset loop)", violations)
      )
  )
})
