/**
 * Figure 3: memory per idle worker, and the time to start them.
 *
 * For each count N: full GC (`global.gc()`, needs `--expose-gc`), read `heapUsed`, build a supervisor with
 * `maxWorkerProcesses: N`, register N workers whose `main` counts itself in and then loops on
 * `ProcLatch.wait({ onPostmasterDeath: "exit" })` with no timeout, wait until all N are waiting, full GC,
 * read `heapUsed` again. (after − before) / N is the cost of one idle worker, everything included: slot
 * tables, registration, handle, incarnation, fiber, latch, context, scope. The supervisor's scope is then
 * closed (postmaster death) and we check that no fiber is left and the heap comes back.
 *
 * Baseline: N raw fibers (`Effect.forkChild`) with the same body shape (count in, `Deferred.await` on a
 * Deferred of their own), measured the same way. Holder arrays are allocated before the first snapshot on
 * both sides, so only what they point to is counted.
 *
 * Also reported: the time from the first register (fork) to all N waiting.
 */
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import { liveFibers as liveFibersOf } from "../src/internal/postmaster/postmaster.ts"
import * as ProcLatch from "../src/ProcLatch.ts"
import * as Supervisor from "../src/Supervisor.ts"
import type { WorkerHandle } from "../src/WorkerHandle.ts"
import { costRatio, heapAfterGc, now, progress, type Row } from "./report.ts"

export interface MemoryOptions {
  readonly counts: ReadonlyArray<number>
  /** Per-idle-worker budget, KB. */
  readonly targetKb: number
}

interface Measurement {
  readonly bytesPerWorker: number
  readonly startMs: number
  readonly closeMs: number
  /** heapUsed after teardown minus before, bytes. */
  readonly leftover: number
}

let waiting = 0

const idle = BackgroundWorker.make({
  name: "bench-idle",
  main: () =>
    Effect.gen(function*() {
      waiting++
      while (true) {
        yield* ProcLatch.wait({ onPostmasterDeath: "exit" })
        yield* ProcLatch.reset
      }
    })
})

const untilAll = (count: () => number, n: number) =>
  Effect.gen(function*() {
    while (count() < n) yield* Effect.sleep(1)
  })

const ours = (n: number): Effect.Effect<Measurement> =>
  Effect.gen(function*() {
    const handles: Array<WorkerHandle | undefined> = new Array(n).fill(undefined)
    waiting = 0
    const before = heapAfterGc()
    let start = 0
    let startMs = 0
    let after = 0
    let liveFibers = () => -1
    yield* Effect.scoped(Effect.gen(function*() {
      const context = yield* Effect.orDie(Layer.build(Supervisor.layer({ maxWorkerProcesses: n })))
      const supervisor = Context.get(context, Supervisor.Supervisor)
      liveFibers = () => liveFibersOf(supervisor)
      const register = Effect.orDie(Supervisor.register(idle))
      start = now()
      yield* Effect.provideContext(
        Effect.gen(function*() {
          for (let i = 0; i < n; i++) handles[i] = yield* register
        }),
        context
      )
      yield* untilAll(() => waiting, n)
      startMs = now() - start
      yield* Effect.sleep(5)
      after = heapAfterGc()
      const last = yield* Effect.provideContext(Supervisor.status(handles[n - 1]!), context)
      if (last._tag !== "Started") return yield* Effect.die(new Error(`worker ${n - 1} is ${last._tag}`))
      start = now()
    }))
    const closeMs = now() - start
    const live = liveFibers()
    if (live !== 0) return yield* Effect.die(new Error(`${live} supervisor fibers alive after its scope closed`))
    liveFibers = () => -1 // drop our reference to the supervisor, so "leftover" shows only what leaks
    handles.fill(undefined)
    // Let the event loop turn: wake-ups scheduled during the close still reference the ended fibers.
    yield* Effect.sleep(10)
    const leftover = heapAfterGc() - before
    return { bytesPerWorker: (after - before) / n, startMs, closeMs, leftover }
  })

const raw = (n: number): Effect.Effect<Measurement> =>
  Effect.gen(function*() {
    const deferreds: Array<Deferred.Deferred<void> | undefined> = new Array(n).fill(undefined)
    const fibers: Array<Fiber.Fiber<void> | undefined> = new Array(n).fill(undefined)
    let ready = 0
    const before = heapAfterGc()
    const start = now()
    for (let i = 0; i < n; i++) {
      const deferred = yield* Deferred.make<void>()
      deferreds[i] = deferred
      fibers[i] = yield* Effect.forkChild(Effect.gen(function*() {
        ready++
        yield* Deferred.await(deferred)
      }))
    }
    yield* untilAll(() => ready, n)
    const startMs = now() - start
    yield* Effect.sleep(5)
    const after = heapAfterGc()
    const closeStart = now()
    yield* Fiber.interruptAll(fibers as Array<Fiber.Fiber<void>>)
    const closeMs = now() - closeStart
    deferreds.fill(undefined)
    fibers.fill(undefined)
    yield* Effect.sleep(10)
    const leftover = heapAfterGc() - before
    return { bytesPerWorker: (after - before) / n, startMs, closeMs, leftover }
  })

const label = (n: number) => n >= 1000 && n % 1000 === 0 ? `${n / 1000}k` : String(n)

export const runMemory = (options: MemoryOptions): Effect.Effect<ReadonlyArray<Row>> =>
  Effect.gen(function*() {
    // Warm up the code paths (JIT, lazily created runtime structures) so they are not counted.
    yield* raw(2000)
    yield* ours(2000)
    const rows: Array<Row> = []
    for (const n of options.counts) {
      const r = yield* raw(n)
      const o = yield* ours(n)
      progress(
        `memory ${label(n)}: ours ${(o.bytesPerWorker / 1024).toFixed(2)} KB/worker, start ${
          o.startMs.toFixed(0)
        } ms, ` +
          `close ${o.closeMs.toFixed(0)} ms, heap left after close ${(o.leftover / 1024).toFixed(0)} KB; ` +
          `raw ${(r.bytesPerWorker / 1024).toFixed(2)} KB/fiber, start ${r.startMs.toFixed(0)} ms, ` +
          `interrupt ${r.closeMs.toFixed(0)} ms, left ${(r.leftover / 1024).toFixed(0)} KB`
      )
      const kb = o.bytesPerWorker / 1024
      const rawKb = r.bytesPerWorker / 1024
      rows.push({
        figure: `3. memory per idle worker, ${label(n)}`,
        unit: "KB",
        ours: kb,
        baseline: rawKb,
        ratio: costRatio(kb, rawKb),
        target: `≤${options.targetKb} KB`,
        ok: kb <= options.targetKb
      })
      rows.push({
        figure: `3. time to start ${label(n)} idle workers`,
        unit: "ms",
        ours: o.startMs,
        baseline: r.startMs,
        ratio: costRatio(o.startMs, r.startMs),
        target: "(info)",
        ok: undefined
      })
      rows.push({
        figure: `3. time to stop ${label(n)} (scope close)`,
        unit: "ms",
        ours: o.closeMs,
        baseline: r.closeMs,
        ratio: costRatio(o.closeMs, r.closeMs),
        target: "(info)",
        ok: undefined
      })
    }
    return rows
  })
