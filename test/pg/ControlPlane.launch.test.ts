/**
 * Launching from code across supervisor processes (`ControlPlane.launch`, `start`, `waitForStartup`): two
 * supervisors in this process (A, attached first, and B), each with its own `ControlPlane.layer`, and a
 * program that launches through the SQL control plane on its own session.
 */
import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { SqlClient } from "effect/sql/SqlClient"
import * as ControlPlane from "../../src/pg/ControlPlane.ts"
import * as Supervisor from "../../src/Supervisor.ts"
import * as WorkerHandle from "../../src/WorkerHandle.ts"
import { captureLogs } from "../fixtures.ts"
import * as PgTest from "./support.ts"
import * as TwoProcesses from "./twoProcesses.ts"
import { ProcessB } from "./twoProcesses.ts"

const logs = captureLogs()

const TestLayer = TwoProcesses.layer().pipe(
  Layer.provideMerge(PgTest.layer({ prefix: "codelaunch" })),
  Layer.provide(logs.layer)
)

// --- helpers ---

const napping = { library: "demo", function: "napper", argument: { naptimeMs: 60_000 } } as const

/** A's and B's ids: A attached first, so it is the coordinator. */
const ids = Effect.gen(function*() {
  const sql = yield* SqlClient
  const rows = yield* sql<{ readonly process: string; readonly coordinator: boolean }>`
    SELECT process, coordinator FROM bgworker.processes WHERE os_pid = ${process.pid}`
  return { a: rows.find((row) => row.coordinator)!.process, b: rows.find((row) => !row.coordinator)!.process }
})

/** The supervisor's own handle of a launch (its `slot:generation`), as the control plane recorded it. */
const workerHandle = (handle: bigint) =>
  SqlClient.use((sql) =>
    sql<{ readonly handle: string }>`SELECT handle FROM bgworker._requests WHERE id = ${handle}`.pipe(
      Effect.map((rows) => WorkerHandle.parse(rows[0]!.handle)!)
    )
  )

/** Terminates every launched worker from code, so that each test starts with one free slot on each process. */
const stopAll = (handles: ReadonlyArray<bigint>) =>
  Effect.gen(function*() {
    for (const handle of handles) yield* ControlPlane.terminate(handle)
    yield* PgTest.eventually(
      "launched workers gone",
      SqlClient.use((sql) =>
        Effect.map(sql`SELECT 1 FROM bgworker.activity WHERE name = 'napper'`, (rows) => rows.length === 0)
      )
    )
  })

layer(TestLayer, PgTest.suiteOptions)("ControlPlane.launch across processes", (it) => {
  it.effect("a launch from code naming process B runs on B, and its handle names B", () =>
    Effect.gen(function*() {
      const { b } = yield* ids
      const launched = yield* ControlPlane.launch({ ...napping, process: b })
      assert.strictEqual(launched.process, b)
      const started = yield* ControlPlane.waitForStartup(launched)
      assert.strictEqual(started.process, b)
      assert.strictEqual(started.handle, launched.handle)
      const onB = yield* ProcessB
      assert.deepStrictEqual(yield* onB.status(yield* workerHandle(started.handle)), WorkerHandle.Started(started.pid))
      const onA = yield* Supervisor.Supervisor
      assert.isFalse((yield* onA.activity).some((row) => row.name === "napper"), "nothing launched on A")
      yield* stopAll([started.handle])
    }))

  it.effect("with A full an unnamed launch from code runs on B; with both full it fails with NoFreeSlot", () =>
    Effect.gen(function*() {
      const { a, b } = yield* ids
      const first = yield* ControlPlane.start(napping)
      assert.strictEqual(first.process, a)
      const second = yield* ControlPlane.start(napping)
      assert.strictEqual(second.process, b)
      const onB = yield* ProcessB
      assert.deepStrictEqual(yield* onB.status(yield* workerHandle(second.handle)), WorkerHandle.Started(second.pid))
      const third = yield* Effect.flip(ControlPlane.start(napping))
      assert.strictEqual(third._tag, "NoFreeSlot")
      if (third._tag === "NoFreeSlot") {
        assert.isUndefined(third.process, "no process named: every live one was tried")
        assert.include(third.message, "no free background worker slot on any live supervisor process")
        assert.isTrue(third.isRetryable)
      }
      const named = yield* Effect.flip(ControlPlane.start({ ...napping, process: b }))
      assert.strictEqual(named._tag, "NoFreeSlot")
      if (named._tag === "NoFreeSlot") assert.strictEqual(named.process, b)
      yield* stopAll([first.handle, second.handle])
    }))

  it.effect("a launch from code naming a process that is not running fails with ProcessNotRunning", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(ControlPlane.launch({ ...napping, process: "no-such-process" }))
      assert.strictEqual(error._tag, "ProcessNotRunning")
      assert.strictEqual(error.message, `supervisor process "no-such-process" is not running`)
      const [stored] = yield* SqlClient.use((sql) =>
        sql<{ readonly count: bigint | number | string }>`SELECT count(*) AS count FROM bgworker._requests
          WHERE process = 'no-such-process'`
      )
      assert.strictEqual(Number(stored!.count), 0, "nothing was stored")
    }))

  it.effect("terminate from code stops a worker that runs on another process", () =>
    Effect.gen(function*() {
      const { b } = yield* ids
      const started = yield* ControlPlane.start({ ...napping, process: b })
      const onB = yield* ProcessB
      const local = yield* workerHandle(started.handle)
      yield* ControlPlane.terminate(started.handle)
      yield* PgTest.eventually(
        "the worker on B stopped",
        Effect.map(onB.status(local), (status) => status._tag === "Stopped")
      )
    }))
})
