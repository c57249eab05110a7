/**
 * The `bgworker` CLI with several supervisor processes on one database: `processes`, `launch --process` and
 * `reload --process`. Two supervisors run in this process (A, attached first, and B), each with its own
 * `ControlPlane.layer`; the CLI is the real executable, as a child process.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { SqlClient } from "effect/sql/SqlClient"
import * as EmbeddedPostgres from "../../src/pg/EmbeddedPostgres.ts"
import * as WorkerHandle from "../../src/WorkerHandle.ts"
import { captureLogs } from "../fixtures.ts"
import * as PgTest from "../pg/support.ts"
import * as TwoProcesses from "../pg/twoProcesses.ts"
import { ProcessB } from "../pg/twoProcesses.ts"
import { bgworker, type Result, show } from "./support.ts"

const logs = captureLogs()

const TestLayer = TwoProcesses.layer().pipe(
  Layer.provideMerge(PgTest.layer({ prefix: "cliprocesses" })),
  Layer.provideMerge(NodeServices.layer),
  Layer.provide(logs.layer)
)

// --- helpers ---

/** `bgworker <args>` against the suite's database, as the superuser. */
const cli = (args: ReadonlyArray<string>) =>
  Effect.flatMap(EmbeddedPostgres.PgServer, (server) => bgworker(args, { DATABASE_URL: Redacted.value(server.url) }))
    .pipe(Effect.orDie)

const succeeded = (result: Result) => assert.strictEqual(result.code, 0, show(result))

/** A's and B's ids: A attached first, so it is the coordinator. */
const ids = Effect.gen(function*() {
  const sql = yield* SqlClient
  const rows = yield* sql<{ readonly process: string; readonly coordinator: boolean }>`
    SELECT process, coordinator FROM bgworker.processes WHERE os_pid = ${process.pid}`
  return { a: rows.find((row) => row.coordinator)!.process, b: rows.find((row) => !row.coordinator)!.process }
})

const napperArgs = ["launch", "demo", "napper", "--arg", `{"naptimeMs": 60000}`]

/** The supervisor's own handle of a launch (its `slot:generation`), as the control plane recorded it. */
const workerHandle = (handle: number) =>
  SqlClient.use((sql) =>
    sql<{ readonly handle: string }>`SELECT handle FROM bgworker._requests WHERE id = ${handle}`.pipe(
      Effect.map((rows) => WorkerHandle.parse(rows[0]!.handle)!)
    )
  )

/** Terminates every launched worker, so that each test starts with one free slot on each process. */
const stopLaunched = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`SELECT bgworker.terminate(handle) FROM bgworker.activity WHERE name = 'napper'`
  yield* PgTest.eventually(
    "launched workers gone",
    Effect.map(sql`SELECT 1 FROM bgworker.activity WHERE name = 'napper'`, (rows) => rows.length === 0)
  )
})

/** The reload requests stored after request `after`: the process each one is assigned to. */
const reloadsAfter = (after: number) =>
  SqlClient.use((sql) =>
    sql<{ readonly assigned_to: string | null }>`
      SELECT assigned_to FROM bgworker._requests WHERE kind = 'reload' AND id > ${after} ORDER BY id`
  )

const lastRequest = SqlClient.use((sql) =>
  Effect.map(
    sql<{ readonly id: number | string | null }>`SELECT max(id) AS id FROM bgworker._requests`,
    (rows) => Number(rows[0]!.id ?? 0)
  )
)

layer(TestLayer, PgTest.suiteOptions)("bgworker CLI with several processes", (it) => {
  it.effect("processes lists both supervisor processes, as a table and as JSON", () =>
    Effect.gen(function*() {
      const { a, b } = yield* ids
      const asJson = yield* cli(["processes", "--json"])
      succeeded(asJson)
      const rows = (JSON.parse(asJson.stdout) as ReadonlyArray<{
        readonly process: string
        readonly host: string
        readonly os_pid: number
        readonly live: boolean
        readonly coordinator: boolean
      }>).filter((row) => row.os_pid === process.pid)
      assert.deepStrictEqual(
        rows.map((row) => [row.process, row.live, row.coordinator]),
        [[a, true, true], [b, true, false]],
        "the coordinator first"
      )
      const asTable = yield* cli(["processes"])
      succeeded(asTable)
      const lines = asTable.stdout.trimEnd().split("\n")
      assert.match(lines[0]!, /^process +\| host +\| pid +\| started +\| heartbeat +\| live \| coordinator$/)
      assert.match(lines[2]!, new RegExp(`^${a} \\| .+ \\| ${process.pid} +\\| \\S+ \\| \\S+ \\| t +\\| t$`))
      assert.match(lines[3]!, new RegExp(`^${b} \\| .+ \\| ${process.pid} +\\| \\S+ \\| \\S+ \\| t +\\| f$`))
      assert.strictEqual(lines.at(-1), "(2 rows)")
    }))

  it.effect("launch --process with the start of B's id runs the worker on B, and ps names B", () =>
    Effect.gen(function*() {
      const { b } = yield* ids
      const result = yield* cli([...napperArgs, "--process", b.slice(0, 8), "--wait", "--json"])
      succeeded(result)
      const launched = JSON.parse(result.stdout) as { readonly handle: number; readonly pid: number; process: string }
      assert.strictEqual(launched.process, b)
      const onB = yield* ProcessB
      assert.deepStrictEqual(
        yield* onB.status(yield* workerHandle(launched.handle)),
        WorkerHandle.Started(launched.pid)
      )
      const ps = yield* cli(["ps", "--json"])
      succeeded(ps)
      const row = (JSON.parse(ps.stdout) as ReadonlyArray<{ readonly handle: number; readonly process: string }>)
        .find((r) => r.handle === launched.handle)
      assert.strictEqual(row?.process, b)
      yield* stopLaunched
    }))

  it.effect("launch --process on a full process fails with no free slot; unnamed, the other process runs it", () =>
    Effect.gen(function*() {
      const { a, b } = yield* ids
      succeeded(yield* cli([...napperArgs, "--process", b, "--wait"]))
      const full = yield* cli([...napperArgs, "--process", b, "--wait"])
      assert.strictEqual(full.code, 1, show(full))
      assert.include(full.stderr, "ERROR:  could not register background process")
      assert.include(full.stderr, `DETAIL:  Supervisor process ${b} had no free slot.`)
      assert.include(full.stderr, "HINT:  Launch without --process")
      const unnamed = yield* cli([...napperArgs, "--wait"])
      succeeded(unnamed)
      assert.match(unnamed.stdout.trim(), new RegExp(`^handle \\d+ pid \\d+ process ${a}$`))
      yield* stopLaunched
    }))

  it.effect("launch --process naming no running process fails with the server's error and stores nothing", () =>
    Effect.gen(function*() {
      const before = yield* lastRequest
      const result = yield* cli([...napperArgs, "--process", "no-such-process", "--wait"])
      assert.strictEqual(result.code, 1, show(result))
      assert.include(result.stderr, `ERROR:  supervisor process "no-such-process" is not running`)
      assert.strictEqual(yield* lastRequest, before)
      const empty = yield* cli([...napperArgs, "--process", ""])
      assert.strictEqual(empty.code, 1, show(empty))
      assert.include(empty.stderr, "--process must not be empty")
    }))

  it.effect("reload --process asks only the named process; reload alone asks every live one", () =>
    Effect.gen(function*() {
      const { a, b } = yield* ids
      const before = yield* lastRequest
      const one = yield* cli(["reload", "--process", b.slice(0, 8)])
      succeeded(one)
      assert.strictEqual(one.stdout.trim(), `reload requested for process ${b}`)
      assert.deepStrictEqual((yield* reloadsAfter(before)).map((row) => row.assigned_to), [b])
      const middle = yield* lastRequest
      succeeded(yield* cli(["reload"]))
      const all = (yield* reloadsAfter(middle)).map((row) => row.assigned_to)
      assert.includeMembers(all, [a, b])
      const missing = yield* cli(["reload", "--process", "no-such-process"])
      assert.strictEqual(missing.code, 1, show(missing))
      assert.include(missing.stderr, `supervisor process "no-such-process" is not running`)
    }))

  it.effect("a --process prefix that starts two live ids is refused as ambiguous; the exact id is not", () =>
    Effect.gen(function*() {
      const { b } = yield* ids
      const sql = yield* SqlClient
      const twin = `${b.slice(0, 8)}-twin`
      // A second live process whose id starts as B's does (registered by hand; its heartbeat is fresh).
      yield* Effect.acquireRelease(
        sql`INSERT INTO bgworker._processes (id, host, os_pid, started_at, channel, wake_key)
          VALUES (${twin}, 'elsewhere', 1, now(), 'bgw_twin', 'twin')`,
        () => sql`DELETE FROM bgworker._processes WHERE id = ${twin}`.pipe(Effect.orDie)
      )
      const before = yield* lastRequest
      const ambiguous = yield* cli([...napperArgs, "--process", b.slice(0, 8)])
      assert.strictEqual(ambiguous.code, 1, show(ambiguous))
      assert.include(ambiguous.stderr, `process "${b.slice(0, 8)}" is ambiguous: it starts 2 live process ids`)
      assert.include(ambiguous.stderr, "HINT:  bgworker processes lists them")
      assert.strictEqual(yield* lastRequest, before, "nothing was stored")
      const exact = yield* cli(["reload", "--process", b])
      succeeded(exact)
      assert.strictEqual(exact.stdout.trim(), `reload requested for process ${b}`)
    }).pipe(Effect.scoped))
})
