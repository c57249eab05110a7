/**
 * One control plane for every supervisor process on a database: two supervisors in this process (A, attached
 * first, and B), each with its own `ControlPlane.layer`, and a real child process killed with SIGKILL.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Migrator from "effect/sql/Migrator"
import { SqlClient } from "effect/sql/SqlClient"
import { randomUUID } from "node:crypto"
import * as ControlPlane from "../../src/pg/ControlPlane.ts"
import * as EmbeddedPostgres from "../../src/pg/EmbeddedPostgres.ts"
import * as Sql from "../../src/pg/internal/controlPlaneSql.ts"
import * as Supervisor from "../../src/Supervisor.ts"
import * as WorkerHandle from "../../src/WorkerHandle.ts"
import { captureLogs } from "../fixtures.ts"
import { spawn } from "../node/fixtures/child.ts"
import * as PgTest from "./support.ts"
import * as TwoProcesses from "./twoProcesses.ts"
import { ProcessB } from "./twoProcesses.ts"

const logs = captureLogs()

const suffix = randomUUID().slice(0, 8)
const reloader = `pr_reloader_${suffix}`
const granted = `pr_granted_${suffix}`

/** Roles are cluster-wide: the suite's own go when it ends. */
const dropRoles = Layer.effectDiscard(
  Effect.addFinalizer(() =>
    SqlClient.use((sql) =>
      Effect.gen(function*() {
        yield* sql.unsafe(`DROP OWNED BY ${reloader}, ${granted}`).pipe(Effect.ignore)
        yield* sql.unsafe(`DROP ROLE IF EXISTS ${reloader}, ${granted}`)
      })
    ).pipe(Effect.orDie)
  )
)

/**
 * A's heartbeat is slow (once an hour: "under load"), yet it must never be marked dead; B beats every 100 ms
 * and marks dead any process whose heartbeat is older than 300 ms and whose liveness lock is free.
 */
const twoProcesses = TwoProcesses.layer({
  a: { pollInterval: "200 millis", heartbeatInterval: "1 hour", deadAfter: "300 millis" },
  b: { pollInterval: "200 millis", heartbeatInterval: "100 millis", deadAfter: "300 millis" }
})

const TestLayer = Layer.mergeAll(twoProcesses, dropRoles).pipe(
  Layer.provideMerge(PgTest.layer({ prefix: "processes" })),
  Layer.provide(logs.layer)
)

// --- helpers ---

const sleepy = { naptimeMs: 60_000 }

interface ProcessRow {
  readonly process: string
  readonly host: string
  readonly os_pid: number
  readonly started_at: Date
  readonly heartbeat_at: Date
  readonly dead_at: Date | null
  readonly live: boolean
  readonly coordinator: boolean
}

const processes = SqlClient.use((sql) => sql<ProcessRow>`SELECT * FROM bgworker.processes`)

/** A's and B's ids: A attached first, so it is the coordinator. */
const ids = Effect.gen(function*() {
  const rows = (yield* processes).filter((row) => row.os_pid === process.pid)
  return {
    a: rows.find((row) => row.coordinator)!.process,
    b: rows.find((row) => !row.coordinator)!.process
  }
})

const activity = SqlClient.use((sql) =>
  sql<{ readonly name: string; readonly process: string; readonly handle: bigint | null; readonly pid: number }>`
    SELECT name, process, handle, pid FROM bgworker.activity`
)

const launch = (process: string | null = null) =>
  SqlClient.use((sql) =>
    sql<{ readonly handle: bigint }>`
      SELECT bgworker.launch('demo', 'napper', ${JSON.stringify(sleepy)}::jsonb, process => ${process}) AS handle`
      .pipe(Effect.map((rows) => rows[0]!.handle))
  )

const waitForStartup = (handle: bigint) =>
  SqlClient.use((sql) =>
    sql<{ readonly pid: number | null }>`SELECT bgworker.wait_for_startup(${handle}) AS pid`.pipe(
      Effect.map((rows) => rows[0]!.pid)
    )
  )

const processOf = (handle: bigint) =>
  SqlClient.use((sql) =>
    sql<{ readonly process: string }>`SELECT bgworker.process_of(${handle}) AS process`.pipe(
      Effect.map((rows) => rows[0]!.process)
    )
  )

const workerHandle = (handle: bigint) =>
  SqlClient.use((sql) =>
    sql<{ readonly handle: string }>`SELECT handle FROM bgworker._requests WHERE id = ${handle}`.pipe(
      Effect.map((rows) => WorkerHandle.parse(rows[0]!.handle)!)
    )
  )

/** Terminates every launched worker of both supervisors, so that each test starts with one free slot each. */
const stopLaunched = Effect.gen(function*() {
  const a = yield* Supervisor.Supervisor
  const b = yield* ProcessB
  for (const s of [a, b]) {
    for (const row of yield* s.activity) {
      if (row.origin === "dynamic") yield* s.terminate(row)
    }
  }
  yield* PgTest.eventually(
    "launched workers gone",
    Effect.map(activity, (rows) => rows.every((row) => row.name !== "napper"))
  )
})

layer(TestLayer, PgTest.suiteOptions)("ControlPlane with several processes", (it) => {
  it.effect("every supervisor process attached to the database appears in bgworker.processes", () =>
    Effect.gen(function*() {
      const rows = (yield* processes).filter((row) => row.os_pid === process.pid)
      assert.strictEqual(rows.length, 2)
      assert.deepStrictEqual(rows.map((row) => row.coordinator).sort(), [false, true])
      for (const row of rows) {
        assert.isTrue(row.live)
        assert.isNull(row.dead_at)
        assert.isTrue(row.host.length > 0)
        assert.isTrue(row.started_at.getTime() <= row.heartbeat_at.getTime())
      }
      assert.notStrictEqual(rows[0]!.process, rows[1]!.process)
    }))

  it.effect("bgworker.activity shows the static workers of both processes, each naming its process", () =>
    Effect.gen(function*() {
      const { a, b } = yield* ids
      yield* PgTest.eventually(
        "both static workers in the view",
        Effect.map(activity, (rows) =>
          rows.some((row) => row.name === "static a" && row.process === a) &&
          rows.some((row) => row.name === "static b" && row.process === b))
      )
    }))

  it.effect("a launch naming process B runs on B, and its handle and activity row name B", () =>
    Effect.gen(function*() {
      const { b } = yield* ids
      const handle = yield* launch(b)
      const pid = yield* waitForStartup(handle)
      assert.isNotNull(pid)
      const onB = yield* ProcessB
      assert.deepStrictEqual(yield* onB.status(yield* workerHandle(handle)), WorkerHandle.Started(pid!))
      assert.strictEqual(yield* processOf(handle), b)
      yield* PgTest.eventually(
        "the activity row names B",
        Effect.map(activity, (rows) => rows.some((row) => row.handle === handle && row.process === b))
      )
      yield* stopLaunched
    }))

  it.effect("start naming process B returns the pid of a worker that runs on B, inside a transaction", () =>
    Effect.gen(function*() {
      const { b } = yield* ids
      const sql = yield* SqlClient
      const onB = yield* ProcessB
      const pid = yield* sql.withTransaction(
        Effect.map(
          sql<{ readonly pid: number | null }>`
            SELECT bgworker.start('demo', 'napper', ${JSON.stringify(sleepy)}::jsonb, process => ${b}) AS pid`,
          (rows) => rows[0]!.pid
        )
      )
      assert.isNotNull(pid, "the loopback session committed the launch")
      const running = (yield* onB.activity).filter((row) => row.name === "napper")
      assert.deepStrictEqual(running.map((row) => row.pid), [pid])
      yield* stopLaunched
    }))

  it.effect("with A full, an unnamed launch runs on B; with both full, it finds no slot", () =>
    Effect.gen(function*() {
      const { a, b } = yield* ids
      const first = yield* launch()
      assert.isNotNull(yield* waitForStartup(first))
      assert.strictEqual(yield* processOf(first), a)
      const second = yield* launch()
      const pid = yield* waitForStartup(second)
      assert.isNotNull(pid)
      assert.strictEqual(yield* processOf(second), b)
      const onB = yield* ProcessB
      assert.deepStrictEqual(yield* onB.status(yield* workerHandle(second)), WorkerHandle.Started(pid!))
      const third = yield* launch()
      assert.isNull(yield* waitForStartup(third), "no_slot: wait_for_startup returns NULL")
      const [row] = yield* SqlClient.use((sql) =>
        sql<{ readonly state: string }>`SELECT state FROM bgworker._requests WHERE id = ${third}`
      )
      assert.strictEqual(row!.state, "no_slot")
      yield* stopLaunched
    }))

  it.effect("terminate and set_latch of a worker on B from a session reach B", () =>
    Effect.gen(function*() {
      const { b } = yield* ids
      const handle = yield* launch(b)
      assert.isNotNull(yield* waitForStartup(handle))
      const onB = yield* ProcessB
      const worker = yield* workerHandle(handle)
      yield* SqlClient.use((sql) => sql`SELECT bgworker.set_latch(${handle})`)
      yield* SqlClient.use((sql) => sql`SELECT bgworker.terminate(${handle})`)
      yield* PgTest.eventually(
        "the worker on B stopped",
        Effect.map(onB.status(worker), (status) => status._tag === "Stopped")
      )
      const signals = yield* SqlClient.use((sql) =>
        sql<{ readonly kind: string; readonly state: string; readonly supervisor_id: string; readonly error: null }>`
          SELECT kind, state, supervisor_id, error FROM bgworker._requests WHERE target = ${handle} ORDER BY id`
      )
      assert.deepStrictEqual(signals.map((s) => [s.kind, s.state, s.supervisor_id, s.error]), [
        ["set_latch", "done", b, null],
        ["terminate", "done", b, null]
      ])
    }))

  it.effect("a terminate in the launching transaction follows the launch when A hands it to B", () =>
    Effect.gen(function*() {
      const { a, b } = yield* ids
      const sql = yield* SqlClient
      const first = yield* launch()
      assert.isNotNull(yield* waitForStartup(first))
      assert.strictEqual(yield* processOf(first), a, "A is now full")
      const handle = yield* sql.withTransaction(Effect.gen(function*() {
        const handle = yield* launch()
        yield* sql`SELECT bgworker.terminate(${handle})`
        return handle
      }))
      const rows = sql<{
        readonly kind: string
        readonly state: string
        readonly supervisor_id: string | null
        readonly error: string | null
      }>`
        SELECT kind, state, supervisor_id, error FROM bgworker._requests WHERE id = ${handle} OR target = ${handle}
        ORDER BY id`
      yield* PgTest.eventually(
        "the launch ran on B and the terminate reached it there",
        Effect.map(rows, (all) => all.length === 2 && all[1]!.state === "done")
      )
      assert.deepStrictEqual((yield* rows).map((row) => [row.kind, row.state, row.supervisor_id, row.error]), [
        ["launch", "launched", b, `terminating background worker "napper" due to administrator command`],
        ["terminate", "done", b, null]
      ])
      const onB = yield* ProcessB
      yield* PgTest.eventually(
        "the worker on B stopped",
        Effect.map(onB.status(yield* workerHandle(handle)), (status) => status._tag === "Stopped")
      )
      yield* stopLaunched
    }))

  it.effect("reload() reaches every live process, reload(process) only the named one", () =>
    Effect.gen(function*() {
      const { a, b } = yield* ids
      const sql = yield* SqlClient
      const before = (yield* sql<{ readonly n: bigint }>`SELECT max(id) AS n FROM bgworker._requests`)[0]!.n ?? 0n
      yield* sql`SELECT bgworker.reload()`
      yield* sql`SELECT bgworker.reload(${b})`
      const reloads = sql<{ readonly state: string; readonly supervisor_id: string | null }>`
        SELECT state, supervisor_id FROM bgworker._requests WHERE kind = 'reload' AND id > ${before} ORDER BY id`
      yield* PgTest.eventually(
        "every reload processed",
        Effect.map(reloads, (rows) => rows.length === 3 && rows.every((row) => row.state === "done"))
      )
      const done = (yield* reloads).map((row) => row.supervisor_id)
      assert.deepStrictEqual(done.slice(0, 2).sort(), [a, b].sort())
      assert.strictEqual(done[2], b)
    }))

  it.effect("a launch naming a process that is not running fails at the call", () =>
    Effect.gen(function*() {
      const failure = yield* PgTest.pgFailure(launch("no-such-process"))
      assert.strictEqual(failure.code, "22023")
      assert.include(failure.message, `supervisor process "no-such-process" is not running`)
    }))

  it.effect(
    "a process killed without detaching is marked dead once its heartbeat lapses and its workers leave the view; a live one with a late heartbeat never is",
    () =>
      Effect.gen(function*() {
        const server = yield* EmbeddedPostgres.PgServer
        const child = yield* spawn("test/pg/fixtures/member.ts", { DATABASE_URL: Redacted.value(server.url) })
        yield* child.waitFor(/^member \d+/, { timeout: "20 seconds" })
        const childRow = () => Effect.map(processes, (rows) => rows.find((row) => row.os_pid === child.pid))
        yield* PgTest.eventually(
          "the child's static worker in the view",
          Effect.flatMap(childRow(), (row) =>
            Effect.map(activity, (rows) =>
              row !== undefined && rows.some((r) =>
                r.name === "child keeper" && r.process === row.process
              ))),
          15_000
        )
        const id = (yield* childRow())!.process

        yield* child.signal("SIGKILL")
        yield* child.awaitExit("5 seconds")
        yield* PgTest.eventually(
          "the child marked dead",
          Effect.map(childRow(), (row) => row !== undefined && !row.live && row.dead_at !== null),
          10_000
        )
        const rows = yield* activity
        assert.isFalse(rows.some((row) => row.process === id), "the dead process's workers left the view")
        assert.isTrue(
          rows.some((row) => row.name === "static a"),
          `A's static worker stays: ${JSON.stringify(rows.map((row) => row.name))}`
        )
        assert.isTrue(
          rows.some((row) => row.name === "static b"),
          `B's static worker stays: ${JSON.stringify(rows.map((row) => row.name))}`
        )

        // A beats once an hour: its heartbeat has long lapsed, but it lives (its liveness lock is held).
        const { a } = yield* ids
        const rowA = (yield* processes).find((row) => row.process === a)!
        assert.isTrue(Date.now() - rowA.heartbeat_at.getTime() > 300, "A's heartbeat is late")
        assert.isTrue(rowA.live, "A is live")
        assert.isNull(rowA.dead_at)
        // Logged by the process that marked it, once it has cleaned up after it.
        yield* PgTest.eventually(
          "the marking logged",
          Effect.sync(() => logs.lines.some((line) => line.includes(`supervisor process ${id} is gone: marked dead`)))
        )
      }).pipe(Effect.provide(NodeServices.layer)),
    30_000
  )

  it.effect("a live process found marked dead (it was cut off) registers and publishes its workers again", () =>
    Effect.gen(function*() {
      const { b } = yield* ids
      const sql = yield* SqlClient
      // What another process's marking leaves behind: the row marked dead, its workers out of the table.
      yield* sql`UPDATE bgworker._processes SET dead_at = now() WHERE id = ${b}`
      yield* sql`DELETE FROM bgworker._activity WHERE supervisor_id = ${b}`
      assert.isFalse((yield* activity).some((row) => row.process === b))
      yield* PgTest.eventually(
        "B live again, with its static worker in the view",
        Effect.gen(function*() {
          const row = (yield* processes).find((p) => p.process === b)
          const rows = yield* activity
          return row?.live === true && rows.some((r) => r.name === "static b" && r.process === b)
        }),
        5000
      )
    }))

  it.effect("reload(process) needs the right to execute reload(), as reload() does", () =>
    Effect.gen(function*() {
      const { b } = yield* ids
      const sql = yield* SqlClient
      yield* sql.unsafe(`CREATE ROLE ${reloader} NOLOGIN`)
      const asReloader = sql.withTransaction(
        Effect.andThen(sql.unsafe(`SET LOCAL ROLE ${reloader}`), sql`SELECT bgworker.reload(${b})`)
      )
      const refused = yield* PgTest.pgFailure(asReloader)
      assert.strictEqual(refused.code, "42501")
      yield* sql.unsafe(`GRANT EXECUTE ON FUNCTION bgworker.reload() TO ${reloader}`)
      yield* asReloader
    }))

  it.effect("a database at migration 3 migrates, keeping who may execute launch and start", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const s = "bgworker_old"
      yield* sql.unsafe(`CREATE SCHEMA ${s}`)
      yield* Migrator.make({})({
        loader: Migrator.fromRecord({
          "0001_init": Effect.forEach(Sql.init(s), (statement) => sql.unsafe(statement), { discard: true }),
          "0002_security": Effect.forEach(Sql.security(s), (statement) => sql.unsafe(statement), { discard: true }),
          "0003_fidelity": Effect.forEach(Sql.fidelity(s), (statement) => sql.unsafe(statement), { discard: true })
        }),
        table: `${s}._migrations`
      })
      yield* sql.unsafe(`CREATE ROLE ${granted} NOLOGIN`)
      yield* sql.unsafe(`GRANT EXECUTE ON FUNCTION ${s}.launch(text, text, jsonb, text, text) TO ${granted}`)
      const ran = yield* ControlPlane.migrate({ schema: s })
      assert.deepStrictEqual(ran, [[4, "processes"]])
      const may = (role: string, fn: string) =>
        Effect.map(
          sql<{ readonly ok: boolean }>`SELECT has_function_privilege(${role}, ${fn}, 'EXECUTE') AS ok`,
          (rows) => rows[0]!.ok
        )
      const launch6 = `${s}.launch(text, text, jsonb, text, text, text)`
      const start7 = `${s}.start(text, text, jsonb, text, text, interval, text)`
      assert.isTrue(yield* may(granted, launch6), "a DBA's grant is carried over")
      assert.isTrue(yield* may(`${s}_launcher`, launch6))
      assert.isTrue(yield* may(`${s}_launcher`, start7))
      assert.isFalse(yield* may(reloader, launch6), "PUBLIC still may not launch")
      assert.isFalse(yield* may(reloader, start7))
      const [old] = yield* sql<{ readonly n: number }>`
        SELECT count(*)::int AS n FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = ${s} AND p.proname IN ('launch', 'start')`
      assert.strictEqual(old!.n, 2, "the old signatures are gone: calls are not ambiguous")
    }))
})
