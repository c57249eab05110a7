/**
 * Property tests of the supervisor: random command sequences against a fresh supervisor per run, on the TestClock.
 * (The latch properties are in ProcLatch.properties.test.ts, the restart policy's in
 * BackgroundWorker.properties.test.ts.)
 *
 * Each supervisor run interprets a generated scenario (register / terminate / signal / reload / setLatch /
 * ordered crash, typed failure or return / shutdown / time advance / yields), then closes the supervisor's
 * scope (postmaster death), and records what it observes: the activity view and the registration results
 * (slots), every handle's statuses as streamed by `Supervisor.changes` and as polled after every command (the
 * status automaton), the workers' own journal of starts, loop iterations and finalizers (terminate, shutdown
 * and death). Each test checks one invariant family over that trace, so a failure names the rule that broke
 * and the shrunk scenario that breaks it. Orders (crash, fail, return) reach a worker through its latch.
 *
 * Counterexamples the properties found are kept at the end as fixed cases.
 *
 * PROPERTY_RUNS=n (default 100) and PROPERTY_SEED=s tune the search.
 */
import { describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, Pull, References, Result, Schema, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import { liveFibers } from "../src/internal/postmaster/postmaster.ts"
import * as Shmem from "../src/Shmem.ts"
import * as Supervisor from "../src/Supervisor.ts"
import type { WorkerHandle, WorkerStatus } from "../src/WorkerHandle.ts"
import * as Handle from "../src/WorkerHandle.ts"
import {
  CurrentJournal,
  definitions,
  fail,
  Int,
  Journal,
  type Kind,
  kinds,
  type Order,
  propOptions,
  sameStatus,
  show,
  untilIdle,
  withCountingScheduler
} from "./propertyWorkers.ts"

/** Runs `effect` without automatic scheduler yields: no other fiber runs in between its steps. */
const atomically = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.provideService(effect, References.PreventSchedulerYield, true)

const yieldTimes = (n: number): Effect.Effect<void> =>
  n <= 0 ? Effect.void : Effect.repeat(Effect.yieldNow, { times: n - 1 })

// -------------------------------------------------------------------------------------------------------------
// Supervisor scenarios
// -------------------------------------------------------------------------------------------------------------

/** Index into the handles registered so far (modulo their number). */
const Target = Int(0, 7)

const SupervisorCommand = Schema.Union([
  Schema.TaggedStruct("Register", { kind: Int(0, kinds.length - 1), count: Int(1, 3) }),
  Schema.TaggedStruct("Terminate", { target: Target, awaitShutdown: Schema.Boolean }),
  Schema.TaggedStruct("Signal", { target: Target, signal: Schema.Literals(["terminate", "reload"]) }),
  Schema.TaggedStruct("Reload", {}),
  Schema.TaggedStruct("SetLatch", { target: Target }),
  /** The worker dies with a defect at its next wake-up: a crash restart when it has shared-state access. */
  Schema.TaggedStruct("Crash", { target: Target }),
  /** The worker fails with a typed error at its next wake-up. */
  Schema.TaggedStruct("Fail", { target: Target }),
  /** The worker returns (exit 0) at its next wake-up. */
  Schema.TaggedStruct("Return", { target: Target }),
  Schema.TaggedStruct("Advance", { ms: Int(0, 4000) }),
  Schema.TaggedStruct("Yield", { times: Int(1, 6) }),
  Schema.TaggedStruct("Shutdown", { mode: Schema.Literals(["smart", "fast", "immediate"]) })
])
type SupervisorCommand = typeof SupervisorCommand.Type

const SupervisorScenario = Schema.Struct({
  maxWorkerProcesses: Int(1, 5),
  /** Registered before the commands (kinds). */
  initial: Schema.Array(Int(0, kinds.length - 1)).check(Schema.isMinLength(1), Schema.isMaxLength(4)),
  /** 0: `restartAfterCrash: false` (a crash ends the supervisor); otherwise the default, true. */
  crashPolicy: Int(0, 3),
  /** false: close the supervisor's scope right after the last command, whatever is in flight. */
  settleBeforeClose: Schema.Boolean,
  commands: Schema.Array(SupervisorCommand).check(Schema.isMaxLength(30))
})
type SupervisorScenario = typeof SupervisorScenario.Type

/** Violations seen while the scenario runs (the status automaton is checked afterwards, on the whole trace). */
type Invariant = "slots" | "terminate" | "death"

interface Tracked {
  readonly handle: WorkerHandle
  readonly key: string
  readonly kind: Kind
  /** The status read in the same atomic step as the registration. */
  readonly atRegister: WorkerStatus
  /** Everything `Supervisor.changes(handle)` delivered, subscribed in the registration's atomic step. */
  readonly streamed: Array<WorkerStatus>
  readonly collector: Fiber.Fiber<void>
  /** `Supervisor.status(handle)` after every command. */
  readonly polled: Array<{ readonly step: number; readonly status: WorkerStatus }>
  /** The first `terminate(handle)`: at which step, and the pid running then. */
  terminated: { readonly step: number; readonly pid: number | undefined } | undefined
  /** When `awaitShutdown` returned after a `terminate`: the journal's sequence number, and what it returned. */
  shutdownMark: { readonly seq: number; readonly status: WorkerStatus } | undefined
}

interface SupervisorTrace {
  readonly violations: Record<Invariant, Array<string>>
  readonly tracked: ReadonlyArray<Tracked>
  readonly journal: Journal
  /** When the first `Supervisor.shutdown` returned: the journal's sequence number, and the mode. */
  readonly supervisorShutdownMark: { readonly seq: number; readonly mode: Supervisor.ShutdownMode } | undefined
}

const runSupervisorScenario = (scenario: SupervisorScenario) =>
  Effect.gen(function*() {
    const violations: Record<Invariant, Array<string>> = { slots: [], terminate: [], death: [] }
    const journal = new Journal()
    const tracked: Array<Tracked> = []
    let supervisorShutdownMark: SupervisorTrace["supervisorShutdownMark"]
    const max = scenario.maxWorkerProcesses

    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void)) // if a step fails before the explicit close
    const shmemProbe = Shmem.struct(
      "probe",
      Effect.acquireRelease(
        Effect.sync(() => journal.shmemInits++),
        () => Effect.sync(() => journal.shmemReleases++)
      )
    )
    const sup = yield* Supervisor.make({
      maxWorkerProcesses: max,
      restartAfterCrash: scenario.crashPolicy !== 0,
      shmem: [shmemProbe]
    }).pipe(Scope.provide(scope), Effect.orDie)

    const withServices = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      effect.pipe(
        Effect.provideService(Supervisor.Supervisor, sup),
        Effect.provideService(CurrentJournal, journal)
      )

    const observeSlots = (where: string) =>
      Effect.gen(function*() {
        const rows = yield* sup.activity
        const running = rows.filter((r) => r.registration === "running").length
        if (rows.length > max) violations.slots.push(`${where}: ${rows.length} registrations hold slots, max ${max}`)
        if (running > max) violations.slots.push(`${where}: ${running} rows are running, max ${max}`)
        if (journal.alive.size > max) {
          violations.slots.push(`${where}: ${journal.alive.size} worker bodies are alive at once, max ${max}`)
        }
        const pids = rows.filter((r) => r.pid !== null).length
        if (pids > max) violations.slots.push(`${where}: ${pids} rows show a pid, max ${max}`)
      })

    const poll = (step: number) =>
      Effect.forEach(tracked, (t) =>
        Effect.map(sup.status(t.handle), (status) => {
          t.polled.push({ step, status })
        }), { discard: true })

    const pick = (target: number): Tracked | undefined =>
      tracked.length === 0 ? undefined : tracked[target % tracked.length]

    const register = (step: number, kindIndex: number) =>
      Effect.gen(function*() {
        const kind = kinds[kindIndex]!
        const outcome = yield* atomically(Effect.gen(function*() {
          const before = (yield* sup.activity).length
          const state = yield* sup.currentState
          const result = yield* Effect.result(withServices(Supervisor.register(definitions[kindIndex]!)))
          const after = (yield* sup.activity).length
          if (Result.isFailure(result)) return { before, after, state, result, subscription: undefined }
          const handle = result.success
          const atRegister = yield* sup.status(handle)
          const pull = yield* Stream.toPull(sup.changes(handle))
          return { before, after, state, result, subscription: { handle, atRegister, pull } }
        }))
        const { after, before, result, state } = outcome
        const where = `step ${step} register ${kind.label} (state ${state}, ${before}/${max} slots used)`
        const accepting = state === "running" || state === "recovering" || state === "starting"
        if (Result.isFailure(result)) {
          const tag = result.failure.reason._tag
          if (accepting && tag !== "NoFreeSlot") violations.slots.push(`${where}: failed with ${tag}`)
          if (accepting && tag === "NoFreeSlot" && before < max) {
            violations.slots.push(`${where}: NoFreeSlot although ${max - before} slot(s) are free`)
          }
          if (!accepting && tag !== "ShuttingDown") {
            violations.slots.push(`${where}: failed with ${tag}, not ShuttingDown`)
          }
          return
        }
        if (!accepting) violations.slots.push(`${where}: accepted a registration`)
        if (before >= max) violations.slots.push(`${where}: registered although every slot is in use`)
        if (after !== before + 1) violations.slots.push(`${where}: ${before} -> ${after} rows after a registration`)
        const { atRegister, handle, pull } = outcome.subscription!
        const streamed: Array<WorkerStatus> = []
        const collector = yield* pull.pipe(
          Effect.map((chunk) => void streamed.push(...chunk)),
          Effect.forever,
          Pull.catchDone(() => Effect.void),
          Effect.forkScoped
        )
        tracked.push({
          handle,
          key: Handle.format(handle),
          kind,
          atRegister,
          streamed,
          collector,
          polled: [],
          terminated: undefined,
          shutdownMark: undefined
        })
      })

    const terminate = (step: number, t: Tracked, awaitShutdown: boolean) =>
      Effect.gen(function*() {
        const [before, after] = yield* atomically(Effect.gen(function*() {
          const before = yield* sup.status(t.handle)
          yield* sup.terminate(t.handle)
          return [before, yield* sup.status(t.handle)] as const
        }))
        t.terminated ??= { step, pid: before._tag === "Started" ? before.pid : undefined }
        const where = `step ${step} terminate ${t.key} (${t.kind.label}) while ${show(before)}`
        if (before._tag !== "Started" && after._tag !== "Stopped" && after._tag !== "PostmasterDied") {
          violations.terminate.push(`${where}: status right after is ${show(after)}, not Stopped`)
        }
        if (!awaitShutdown) return
        const waiter = yield* Effect.forkChild(sup.awaitShutdown(t.handle))
        // A waiting worker stops at once; a slow cleanup takes its time.
        const allowedTicks = Math.ceil(t.kind.finalizerMs / 1000)
        let ticks = 0
        yield* untilIdle
        while (waiter.pollUnsafe() === undefined && ticks < 10) {
          yield* TestClock.adjust("1 second")
          ticks++
          yield* untilIdle
        }
        const exit = waiter.pollUnsafe()
        if (exit === undefined) {
          violations.terminate.push(`${where}: awaitShutdown did not return within 10 seconds`)
          yield* Fiber.interrupt(waiter)
          return
        }
        if (Exit.isSuccess(exit)) t.shutdownMark ??= { seq: journal.seq, status: exit.value }
        if (ticks > allowedTicks) {
          violations.terminate.push(`${where}: the waiting worker needed ${ticks} clock tick(s) of 1 s to stop`)
        }
        if (Exit.isSuccess(exit) && exit.value._tag !== "Stopped" && exit.value._tag !== "PostmasterDied") {
          violations.terminate.push(`${where}: awaitShutdown returned ${show(exit.value)}`)
        }
      })

    /** Shutdown returns once the workers are gone (or at once for immediate); slow cleanups take clock time. */
    const shutdown = (step: number, mode: Supervisor.ShutdownMode) =>
      Effect.gen(function*() {
        const where = `step ${step} ${mode} shutdown`
        const shutting = yield* Effect.forkChild(sup.shutdown(mode), { startImmediately: true })
        for (let i = 0; i < 15 && shutting.pollUnsafe() === undefined; i++) {
          yield* untilIdle
          if (shutting.pollUnsafe() === undefined) yield* TestClock.adjust("1 second")
        }
        if (shutting.pollUnsafe() === undefined) {
          violations.terminate.push(`${where}: did not return within 15 seconds`)
          return yield* Fiber.interrupt(shutting)
        }
        supervisorShutdownMark ??= { seq: journal.seq, mode }
        // An immediate shutdown returns at once: its workers end (and clean up) afterwards.
        for (let i = 0; i < 5 && mode === "immediate" && liveFibers(sup) > 0; i++) {
          yield* untilIdle
          yield* TestClock.adjust("1 second")
        }
        const state = yield* sup.currentState
        if (state !== "stopped" && state !== "dead") violations.terminate.push(`${where}: state ${state} afterwards`)
        for (const t of tracked) {
          const status = yield* sup.status(t.handle)
          if (status._tag !== "Stopped" && status._tag !== "PostmasterDied") {
            violations.terminate.push(`${where}: ${t.key} (${t.kind.label}) is ${show(status)} afterwards`)
          }
        }
      })

    const order = (t: Tracked, what: Order) =>
      atomically(Effect.gen(function*() {
        const status = yield* sup.status(t.handle)
        if (status._tag !== "Started") return
        journal.orders.set(status.pid, what)
        yield* sup.setLatch(t.handle)
      }))

    const interpret = (step: number, command: SupervisorCommand): Effect.Effect<void, never, Scope.Scope> => {
      switch (command._tag) {
        case "Register":
          return Effect.forEach(Array.from({ length: command.count }), () => register(step, command.kind), {
            discard: true
          })
        case "Terminate": {
          const t = pick(command.target)
          return t === undefined ? Effect.void : terminate(step, t, command.awaitShutdown)
        }
        case "Signal": {
          const t = pick(command.target)
          return t === undefined ? Effect.void : sup.signal(t.handle, command.signal)
        }
        case "Reload":
          return sup.reload
        case "SetLatch": {
          const t = pick(command.target)
          return t === undefined ? Effect.void : sup.setLatch(t.handle)
        }
        case "Crash":
        case "Fail":
        case "Return": {
          const t = pick(command.target)
          const what = command._tag === "Crash" ? "crash" : command._tag === "Fail" ? "fail" : "return"
          return t === undefined ? Effect.void : order(t, what)
        }
        case "Advance":
          return TestClock.adjust(Duration.millis(command.ms))
        case "Yield":
          return yieldTimes(command.times)
        case "Shutdown":
          return shutdown(step, command.mode)
      }
    }

    // --- the commands ---
    for (const kind of scenario.initial) yield* register(-1, kind)
    yield* untilIdle
    for (let step = 0; step < scenario.commands.length; step++) {
      yield* interpret(step, scenario.commands[step]!)
      yield* observeSlots(`after step ${step} (${scenario.commands[step]!._tag})`)
      yield* poll(step)
    }
    const end = scenario.commands.length
    if (scenario.settleBeforeClose) {
      for (let i = 0; i < 8; i++) {
        yield* untilIdle
        yield* observeSlots(`settling ${i}`)
        yield* poll(end)
        yield* TestClock.adjust("1 second")
      }
      yield* untilIdle
      yield* poll(end)
    }

    // --- postmaster death ---
    const deathMark = journal.seq
    // Death waits for the workers' cleanups, which may take (clock) time.
    const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void), { startImmediately: true })
    for (let i = 0; i < 20 && closing.pollUnsafe() === undefined; i++) {
      yield* untilIdle
      if (closing.pollUnsafe() === undefined) yield* TestClock.adjust("500 millis")
    }
    if (closing.pollUnsafe() === undefined) {
      violations.death.push("closing the supervisor's scope did not complete within 10 seconds")
      return { violations, tracked, journal, supervisorShutdownMark } satisfies SupervisorTrace
    }
    const live = liveFibers(sup)
    if (live !== 0) violations.death.push(`${live} worker/timer fiber(s) alive after the scope closed`)
    const finalizersAtClose = new Map<number, number>()
    const startedAtClose = new Set<number>()
    for (const e of journal.entries) {
      if (e.kind === "start") startedAtClose.add(e.pid)
      if (e.kind === "finalizer") finalizersAtClose.set(e.pid, (finalizersAtClose.get(e.pid) ?? 0) + 1)
    }
    for (const pid of startedAtClose) {
      const n = finalizersAtClose.get(pid) ?? 0
      if (n !== 1) violations.death.push(`pid ${pid}: finalizer ran ${n} time(s) by the time the scope closed`)
    }
    for (const pid of finalizersAtClose.keys()) {
      if (!startedAtClose.has(pid)) violations.death.push(`pid ${pid}: finalizer without a start`)
    }
    const state = yield* sup.currentState
    if (state !== "dead") violations.death.push(`state after the scope closed: ${state}`)
    yield* poll(end + 1)
    for (const t of tracked) {
      const last = t.polled[t.polled.length - 1]!.status
      if (last._tag !== "PostmasterDied") violations.death.push(`${t.key}: status after death is ${show(last)}`)
    }
    // Time passes after death: nothing may run, every stream must end, shared state must be released.
    yield* untilIdle
    yield* TestClock.adjust("30 seconds")
    yield* untilIdle
    for (const e of journal.entries) {
      if (e.seq > deathMark && e.kind !== "finalizer") {
        violations.death.push(`pid ${e.pid} (${e.handle}) ran (${e.kind}) after the supervisor's scope closed`)
      }
    }
    if (liveFibers(sup) !== 0) violations.death.push(`${liveFibers(sup)} fiber(s) alive 30 s after death`)
    if (journal.shmemInits !== journal.shmemReleases) {
      violations.death.push(
        `shared state created ${journal.shmemInits} time(s) but released ${journal.shmemReleases} time(s)`
      )
    }
    for (const t of tracked) {
      if (t.collector.pollUnsafe() === undefined) {
        violations.death.push(`${t.key}: changes stream did not end after death`)
        yield* Fiber.interrupt(t.collector)
      }
    }
    return { violations, tracked, journal, supervisorShutdownMark } satisfies SupervisorTrace
  }).pipe(Effect.provideService(References.MinimumLogLevel, "None"), withCountingScheduler)

// --- the status automaton ---------------------------------------------------------------------------------

const restartable = (t: Tracked) => t.kind.restartMs !== undefined

/** Checks `Supervisor.changes` (every change) strictly and the polled statuses (a sample) loosely. */
const statusViolations = (trace: SupervisorTrace): Array<string> => {
  const out: Array<string> = []
  const owner = new Map<number, string>()
  for (const t of trace.tracked) {
    const s = t.streamed
    const name = `${t.key} (${t.kind.label})`
    const seq = s.map(show).join(" -> ")
    if (s.length === 0) {
      out.push(`${name}: changes delivered nothing`)
      continue
    }
    if (!sameStatus(s[0]!, t.atRegister)) {
      out.push(`${name}: stream starts with ${show(s[0]!)}, status at registration was ${show(t.atRegister)}`)
    }
    if (s[0]!._tag !== "NotYetStarted" && s[0]!._tag !== "Started") out.push(`${name}: starts with ${show(s[0]!)}`)
    let started = 0
    let lastPid = 0
    for (let i = 0; i < s.length; i++) {
      const cur = s[i]!
      if (cur._tag === "Started") {
        started++
        if (cur.pid <= lastPid) out.push(`${name}: pid ${cur.pid} after pid ${lastPid}: ${seq}`)
        lastPid = Math.max(lastPid, cur.pid)
        const other = owner.get(cur.pid)
        if (other !== undefined && other !== t.key) out.push(`${name}: pid ${cur.pid} also used by ${other}`)
        owner.set(cur.pid, t.key)
        // (terminate of a registration that is not running forgets it at once: the stream ends right there)
        if (t.terminated?.pid !== undefined && cur.pid > t.terminated.pid) {
          out.push(`${name}: Started(${cur.pid}) after terminate at step ${t.terminated.step}: ${seq}`)
        }
      }
      if (i === 0) continue
      const prev = s[i - 1]!
      const ok = prev._tag === "PostmasterDied"
        ? false
        : prev._tag === "NotYetStarted"
        ? cur._tag !== "NotYetStarted"
        : prev._tag === "Started"
        ? cur._tag === "Stopped" || cur._tag === "PostmasterDied"
        : cur._tag === "Stopped" || cur._tag === "PostmasterDied" || (cur._tag === "Started" && restartable(t))
      if (!ok) out.push(`${name}: ${show(prev)} -> ${show(cur)} is not allowed: ${seq}`)
    }
    if (!restartable(t) && started > 1) out.push(`${name}: a never-restart worker started ${started} times: ${seq}`)
    const last = s[s.length - 1]!
    if (last._tag !== "Stopped" && last._tag !== "PostmasterDied") out.push(`${name}: stream ended with ${show(last)}`)

    // Polled statuses: a sample of the same history. PostmasterDied is final; the rest is a subsequence of
    // the stream (a handle forgotten before death streams Stopped last, and then polls PostmasterDied).
    const polled: Array<WorkerStatus> = []
    for (const p of t.polled) {
      if (polled.length === 0 || !sameStatus(polled[polled.length - 1]!, p.status)) polled.push(p.status)
    }
    const died = polled.findIndex((p) => p._tag === "PostmasterDied")
    if (died >= 0 && died < polled.length - 1) {
      out.push(`${name}: polled ${polled.map(show).join(" -> ")}: PostmasterDied is not final`)
    }
    let j = 0
    for (const p of polled) {
      if (p._tag === "PostmasterDied") continue
      while (j < s.length && !sameStatus(s[j]!, p)) j++
      if (j === s.length) {
        out.push(
          `${name}: polled ${polled.map(show).join(" -> ")} is not a subsequence of the stream ${seq}`
        )
        break
      }
    }
    for (const p of t.polled) {
      if (t.terminated === undefined || p.step <= t.terminated.step || p.status._tag !== "Started") continue
      if (p.status.pid !== t.terminated.pid) {
        out.push(`${name}: polled ${show(p.status)} at step ${p.step}, after terminate at step ${t.terminated.step}`)
      }
    }
  }
  return out
}

/** After terminate + awaitShutdown, the journal has nothing more for that handle; after a shutdown, for any. */
const terminateViolations = (trace: SupervisorTrace): Array<string> => {
  const out = [...trace.violations.terminate]
  const shutdown = trace.supervisorShutdownMark
  if (shutdown !== undefined) {
    for (const e of trace.journal.entries) {
      // A smart or fast shutdown returns once every worker has ended; an immediate one does not wait.
      if (e.seq > shutdown.seq && (e.kind !== "finalizer" || shutdown.mode !== "immediate")) {
        out.push(`${e.handle}: pid ${e.pid} ${e.kind} at ${e.at} ms, after a ${shutdown.mode} shutdown returned`)
      }
    }
  }
  for (const t of trace.tracked) {
    const mark = t.shutdownMark
    if (mark === undefined) continue
    for (const e of trace.journal.entries) {
      // Stopped means the incarnation is over, cleanup included; PostmasterDied promises only that no new one starts.
      if (e.handle === t.key && e.seq > mark.seq && (e.kind !== "finalizer" || mark.status._tag === "Stopped")) {
        out.push(`${t.key}: pid ${e.pid} ${e.kind} at ${e.at} ms, after terminate + awaitShutdown returned`)
      }
    }
  }
  return out
}

describe("Supervisor properties", () => {
  it.effect.prop(
    "the registrations (rows of the activity view) and the running workers never exceed maxWorkerProcesses, and NoFreeSlot is returned exactly when every slot is in use",
    [SupervisorScenario],
    ([scenario]) =>
      Effect.gen(function*() {
        const trace = yield* runSupervisorScenario(scenario)
        fail("slot limit", trace.violations.slots)
      }),
    propOptions
  )

  it.effect.prop(
    "every handle's status sequence is one PostgreSQL allows (NotYetStarted -> Started -> Stopped -> Started(new pid) only when restartable and not terminated; PostmasterDied is final)",
    [SupervisorScenario],
    ([scenario]) =>
      Effect.gen(function*() {
        const trace = yield* runSupervisorScenario(scenario)
        fail("status automaton", statusViolations(trace))
      }),
    propOptions
  )

  it.effect.prop(
    "no worker runs after terminate: once terminate(handle) and awaitShutdown(handle) returned (or Supervisor.shutdown returned), its body never executes again",
    [SupervisorScenario],
    ([scenario]) =>
      Effect.gen(function*() {
        const trace = yield* runSupervisorScenario(scenario)
        fail("no worker after terminate", terminateViolations(trace))
      }),
    propOptions
  )

  it.effect.prop(
    "no fiber is alive after the supervisor's scope closes: no live fiber is left, every started incarnation's finalizer ran exactly once, every handle reports PostmasterDied",
    [SupervisorScenario],
    ([scenario]) =>
      Effect.gen(function*() {
        const trace = yield* runSupervisorScenario(scenario)
        fail("postmaster death", trace.violations.death)
      }),
    propOptions
  )
})

// -------------------------------------------------------------------------------------------------------------
// Shrunk counterexamples found by the properties above, kept as fixed cases
// -------------------------------------------------------------------------------------------------------------

describe("Shrunk counterexamples", () => {
  const supervisorCases: ReadonlyArray<{
    readonly name: string
    readonly scenario: SupervisorScenario
    readonly check: (trace: SupervisorTrace) => ReadonlyArray<string>
  }> = [
    {
      name: "a crashed restartable worker reports Stopped before its next Started",
      scenario: {
        maxWorkerProcesses: 1,
        initial: [2],
        crashPolicy: 1,
        settleBeforeClose: true,
        commands: [{ _tag: "Crash", target: 0 }, { _tag: "Yield", times: 6 }]
      },
      check: statusViolations
    },
    {
      name:
        "closing the scope during a death already in progress (restartAfterCrash: false) waits for the workers' cleanup",
      scenario: {
        maxWorkerProcesses: 3,
        initial: [0, 5, 2],
        crashPolicy: 0,
        settleBeforeClose: false,
        commands: [{ _tag: "Crash", target: 2 }, { _tag: "Yield", times: 1 }]
      },
      check: (trace) => trace.violations.death
    },
    {
      name: "a fast shutdown during a death already in progress returns only once the workers have ended",
      scenario: {
        maxWorkerProcesses: 3,
        initial: [0, 2, 5],
        crashPolicy: 0,
        settleBeforeClose: false,
        commands: [{ _tag: "Crash", target: 1 }, { _tag: "Yield", times: 1 }, { _tag: "Shutdown", mode: "fast" }]
      },
      check: terminateViolations
    }
  ]
  for (const c of supervisorCases) {
    it.effect(
      c.name,
      () => Effect.map(runSupervisorScenario(c.scenario), (trace) => fail(c.name, c.check(trace), c.scenario))
    )
  }
})
