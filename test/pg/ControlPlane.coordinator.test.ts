/**
 * The coordinator killed while another supervisor process runs: the coordinator is a real child process
 * (`fixtures/member.ts`, attached first), the survivor a supervisor in this process that joins after it. The
 * child is stopped (SIGSTOP) while one launch is claimed for it (the fast path) and another, too big for the
 * fast path, waits in the queue with no coordinator serving it; then it is killed with SIGKILL: no finalizer
 * runs, it never detaches.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { SqlClient } from "effect/sql/SqlClient"
import * as BackgroundWorker from "../../src/BackgroundWorker.ts"
import * as ControlPlane from "../../src/pg/ControlPlane.ts"
import * as EmbeddedPostgres from "../../src/pg/EmbeddedPostgres.ts"
import * as Preload from "../../src/Preload.ts"
import * as Supervisor from "../../src/Supervisor.ts"
import { captureLogs } from "../fixtures.ts"
import { spawn } from "../node/fixtures/child.ts"
import * as PgTest from "./support.ts"
import { napper } from "./twoProcesses.ts"

const keeper = BackgroundWorker.make({ name: "survivor keeper", main: () => Effect.never })

const logs = captureLogs()

const deadAfterMs = 1000

/** The survivor: built inside the test, once the child is attached, so that it joins as a standby. */
const survivorLayer = ControlPlane.layer({
  pollInterval: "200 millis",
  heartbeatInterval: "200 millis",
  deadAfter: Duration.millis(deadAfterMs)
}).pipe(
  Layer.provideMerge(
    Supervisor.layer({ maxWorkerProcesses: 4, preload: [Preload.register(keeper)], entryPoints: [napper] })
  ),
  Layer.provide(logs.layer)
)

const TestLayer = PgTest.layer({ prefix: "coordinator" }).pipe(Layer.provide(logs.layer))

interface ProcessRow {
  readonly process: string
  readonly os_pid: number
  readonly dead_at: Date | null
  readonly live: boolean
  readonly coordinator: boolean
}

const processes = SqlClient.use((sql) =>
  sql<ProcessRow>`SELECT process, os_pid, dead_at, live, coordinator FROM bgworker.processes`
)

const activity = SqlClient.use((sql) =>
  sql<{ readonly name: string; readonly process: string; readonly handle: bigint | null; readonly pid: number }>`
    SELECT name, process, handle, pid FROM bgworker.activity`
)

const sleepy = JSON.stringify({ naptimeMs: 60_000 })
/** Above the fast path's 2 KiB: queued, unclaimed, until a coordinator polls. */
const bulky = JSON.stringify({ naptimeMs: 60_000, padding: "x".repeat(3000) })

const request = (id: bigint) =>
  SqlClient.use((sql) =>
    sql<{ readonly state: string; readonly supervisor_id: string | null; readonly pid: number | null }>`
      SELECT state, supervisor_id, pid FROM bgworker._requests WHERE id = ${id}`.pipe(Effect.map((rows) => rows[0]!))
  )

layer(TestLayer, PgTest.suiteOptions)("ControlPlane when the coordinator is killed", (it) => {
  it.effect(
    "the survivor takes over: it becomes coordinator, marks the dead one, serves the launch the dead one had claimed and the one queued meanwhile each exactly once, starts new unnamed launches, and its own worker keeps running",
    () =>
      Effect.gen(function*() {
        const server = yield* EmbeddedPostgres.PgServer
        const sql = yield* SqlClient
        const child = yield* spawn("test/pg/fixtures/member.ts", { DATABASE_URL: Redacted.value(server.url) })
        yield* child.waitFor(/^member \d+/, { timeout: "20 seconds" })
        const childRow = Effect.map(processes, (rows) => rows.find((row) => row.os_pid === child.pid))
        yield* PgTest.eventually(
          "the child attached as coordinator, its static worker in the view",
          Effect.gen(function*() {
            const row = yield* childRow
            const rows = yield* activity
            return row?.coordinator === true &&
              rows.some((r) => r.name === "child keeper" && r.process === row.process)
          }),
          15_000
        )
        const dead = (yield* childRow)!.process

        // The survivor joins: a standby while the child holds the attachment.
        const survivor = Context.get(yield* Layer.build(survivorLayer), Supervisor.Supervisor)
        const ownRow = Effect.map(processes, (rows) => rows.find((row) => row.os_pid === process.pid))
        yield* PgTest.eventually(
          "the survivor registered, not coordinator, its static worker in the view",
          Effect.gen(function*() {
            const row = yield* ownRow
            const rows = yield* activity
            return row !== undefined && !row.coordinator &&
              rows.some((r) => r.name === "survivor keeper" && r.process === row.process)
          })
        )
        const me = (yield* ownRow)!.process
        const keeperPid = (yield* survivor.activity).find((row) => row.name === "survivor keeper")!.pid

        // Frozen, the child keeps its sessions (and locks) but processes nothing: an unnamed launch is claimed
        // for it (the fast path) and stays claimed.
        yield* child.signal("SIGSTOP")
        const [{ handle: claimed }] = yield* sql<{ readonly handle: bigint }>`
          SELECT bgworker.launch('demo', 'napper', ${sleepy}::jsonb) AS handle`
        const before = yield* request(claimed)
        assert.deepStrictEqual([before.state, before.supervisor_id], ["processing", dead], "claimed by the child")
        const [{ handle: queued }] = yield* sql<{ readonly handle: bigint }>`
          SELECT bgworker.launch('demo', 'napper', ${bulky}::jsonb) AS handle`
        const waiting = yield* request(queued)
        assert.deepStrictEqual([waiting.state, waiting.supervisor_id], ["requested", null], "queued, claimed by none")

        yield* child.signal("SIGKILL")
        yield* child.awaitExit("5 seconds")

        // (1) The survivor becomes coordinator within deadAfter and a margin (the deadline of `eventually`).
        yield* PgTest.eventually(
          "the survivor is coordinator",
          Effect.map(ownRow, (row) => row?.coordinator === true),
          deadAfterMs + 4000
        )

        // (2) The dead coordinator is marked dead and its workers leave the view.
        yield* PgTest.eventually(
          "the child marked dead",
          Effect.map(childRow, (row) => row !== undefined && !row.live && row.dead_at !== null && !row.coordinator),
          deadAfterMs + 4000
        )
        assert.isFalse((yield* activity).some((row) => row.process === dead), "the dead process's workers left")

        // (4) The launch the child had claimed runs on the survivor, once.
        const [{ pid: claimedPid }] = yield* sql<{ readonly pid: number | null }>`
          SELECT bgworker.wait_for_startup(${claimed}) AS pid`
        assert.isNotNull(claimedPid)
        const after = yield* request(claimed)
        assert.deepStrictEqual([after.state, after.supervisor_id], ["launched", me])
        const [{ pid: queuedPid }] = yield* sql<{ readonly pid: number | null }>`
          SELECT bgworker.wait_for_startup(${queued}) AS pid`
        assert.isNotNull(queuedPid)
        const served = yield* request(queued)
        assert.deepStrictEqual([served.state, served.supervisor_id], ["launched", me])

        // (3) An unnamed start afterwards runs on the survivor and returns its pid.
        const [{ pid: startedPid }] = yield* sql<{ readonly pid: number | null }>`
          SELECT bgworker.start('demo', 'napper', ${sleepy}::jsonb) AS pid`
        assert.isNotNull(startedPid)

        const nappers = (yield* survivor.activity).filter((row) => row.name === "napper")
        assert.deepStrictEqual(
          nappers.map((row) => row.pid).sort(),
          [claimedPid!, queuedPid!, startedPid!].sort(),
          "each launch runs once, on the survivor"
        )
        yield* PgTest.eventually(
          "the three launched workers in the view, on the survivor",
          Effect.map(activity, (rows) => {
            const viewed = rows.filter((row) => row.name === "napper")
            return viewed.length === 3 && viewed.every((row) => row.process === me)
          })
        )
        const [{ n }] = yield* sql<{ readonly n: number }>`
          SELECT count(*)::int AS n FROM bgworker._requests WHERE kind = 'launch'`
        assert.strictEqual(n, 3, "no launch was queued twice")

        // (5) The survivor's own static worker kept running throughout.
        const keeperNow = (yield* survivor.activity).find((row) => row.name === "survivor keeper")
        assert.strictEqual(keeperNow?.pid, keeperPid)
        assert.isTrue(
          (yield* activity).some((row) => row.name === "survivor keeper" && row.pid === keeperPid && row.process === me)
        )
        yield* PgTest.eventually(
          "the marking logged",
          Effect.sync(() => logs.lines.some((line) => line.includes(`supervisor process ${dead} is gone: marked dead`)))
        )
      }).pipe(Effect.provide(NodeServices.layer)),
    40_000
  )
})
