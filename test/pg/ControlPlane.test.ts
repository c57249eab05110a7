import { assert, layer } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { SqlClient } from "effect/sql/SqlClient"
import { randomUUID } from "node:crypto"
import * as Activity from "../../src/Activity.ts"
import * as BackgroundWorker from "../../src/BackgroundWorker.ts"
import * as DatabaseState from "../../src/DatabaseState.ts"
import * as Guc from "../../src/Guc.ts"
import * as Interrupts from "../../src/Interrupts.ts"
import * as ControlPlane from "../../src/pg/ControlPlane.ts"
import * as ProcLatch from "../../src/ProcLatch.ts"
import * as Supervisor from "../../src/Supervisor.ts"
import * as WorkerHandle from "../../src/WorkerHandle.ts"
import { captureLogs } from "../fixtures.ts"
import * as PgTest from "./support.ts"

// --- workers ---

/** What the nappers saw: a latch set, or a reload request, by pid. */
const events: Array<{ readonly pid: number; readonly kind: "latch" | "reload" }> = []

const napper = BackgroundWorker.make({
  name: "napper",
  entryPoint: { library: "demo", function: "napper" },
  argument: Schema.Struct({ naptimeMs: Schema.Number }),
  main: ({ naptimeMs }) =>
    Effect.gen(function*() {
      const { pid } = yield* BackgroundWorker.current
      while (true) {
        const woke = yield* ProcLatch.wait({
          timeout: Duration.millis(naptimeMs),
          onPostmasterDeath: "exit",
          waitEvent: "DemoNap"
        })
        yield* ProcLatch.reset
        if (woke.latchSet) events.push({ pid, kind: "latch" })
        if (yield* Interrupts.reloadPending) events.push({ pid, kind: "reload" })
      }
    })
})

/** Waits for `recoveryFinished`, which the suite's database state (`consistent`) never reaches. */
const gated = BackgroundWorker.make({
  name: "gated",
  entryPoint: { library: "demo", function: "gated" },
  startTime: "recoveryFinished",
  main: () => Effect.never
})

const naptime = Guc.int("demo.naptime", {
  default: 1000,
  min: 1,
  max: 3_600_000,
  unit: "ms",
  context: "user",
  description: "How long the demo worker naps."
})

const logs = captureLogs()
const maxWorkers = 4

const suffix = randomUUID().slice(0, 8)
const nobody = `cp_nobody_${suffix}`
const alice = `cp_alice_${suffix}`
const bob = `cp_bob_${suffix}`

/** Roles are cluster-wide: drop the suite's own when it ends (they hold no privileges, only memberships). */
const dropRoles = Layer.effectDiscard(
  Effect.addFinalizer(() =>
    SqlClient.use((sql) => sql.unsafe(`DROP ROLE IF EXISTS ${nobody}, ${alice}, ${bob}`)).pipe(Effect.orDie)
  )
)

const TestLayer = Layer.mergeAll(ControlPlane.layer(), dropRoles).pipe(
  Layer.provideMerge(
    Layer.mergeAll(
      Supervisor.layer({ entryPoints: [napper, gated] }).pipe(
        Layer.provideMerge(Layer.mergeAll(
          Guc.layer({ overrides: { max_worker_processes: maxWorkers }, parameters: [naptime] }),
          DatabaseState.layerMemory("consistent")
        ))
      ),
      PgTest.layer({ prefix: "controlplane" })
    )
  ),
  Layer.provide(logs.layer)
)

// --- helpers ---

const sleepy = JSON.stringify({ naptimeMs: 60_000 })

const launch = (fn: string, arg: string | null = sleepy, schema = "bgworker") =>
  SqlClient.use((sql) =>
    sql<{ readonly handle: bigint }>`
      SELECT ${sql(`${schema}.launch`)}('demo', ${fn}, ${arg}::jsonb) AS handle`.pipe(
      Effect.map((rows) => rows[0]!.handle)
    )
  )

const waitForStartup = (handle: bigint, timeout = "10 seconds", schema = "bgworker") =>
  SqlClient.use((sql) =>
    sql<{ readonly pid: number | null }>`
      SELECT ${sql(`${schema}.wait_for_startup`)}(${handle}, ${timeout}::interval) AS pid`.pipe(
      Effect.map((rows) => rows[0]!.pid)
    )
  )

const call = (fn: "terminate" | "set_latch", handle: bigint, schema = "bgworker") =>
  SqlClient.use((sql) => sql`SELECT ${sql(`${schema}.${fn}`)}(${handle})`)

const request = (handle: bigint, schema = "bgworker") =>
  SqlClient.use((sql) =>
    sql<{
      readonly state: string
      readonly handle: string | null
      readonly pid: number | null
      readonly status: string | null
      readonly requested_by: string
      readonly error: string | null
    }>`SELECT state, handle, pid, status, requested_by, error FROM ${sql(`${schema}._requests`)} WHERE id = ${handle}`
      .pipe(Effect.map((rows) => rows[0]!))
  )

/** Re-runs `effect` every 5 ms until `done` holds; dies after `withinMs`. Returns the value and the time taken. */
const pollUntil = <A, E, R>(effect: Effect.Effect<A, E, R>, done: (a: A) => boolean, withinMs = 5000) =>
  Effect.gen(function*() {
    const start = yield* Clock.currentTimeMillis
    while (true) {
      const value = yield* effect
      const elapsed = (yield* Clock.currentTimeMillis) - start
      if (done(value)) return { value, elapsed }
      if (elapsed > withinMs) return yield* Effect.die(`condition not met within ${withinMs} ms`)
      yield* Effect.sleep("5 millis")
    }
  })

const handleOf = (row: { readonly handle: string | null }) => WorkerHandle.parse(row.handle ?? "")!

/** Terminates every worker and waits until all slots are free. */
const stopAll = Effect.gen(function*() {
  for (const row of yield* Activity.snapshot) yield* Supervisor.terminate(WorkerHandle.make(row.slot, row.generation))
  yield* pollUntil(Activity.snapshot, (rows) => rows.length === 0)
})

const ensureRole = (name: string, member?: string) =>
  SqlClient.use((sql) =>
    sql.unsafe(`DO $$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${name}') THEN
        CREATE ROLE ${name} NOLOGIN${member === undefined ? "" : ` IN ROLE ${member}`};
      END IF;
    END $$`)
  )

/** Runs `effect` in a transaction acting as `role` (`SET LOCAL ROLE`). */
const asRole = <A, E, R>(role: string, effect: Effect.Effect<A, E, R>) =>
  SqlClient.use((sql) => sql.withTransaction(Effect.andThen(sql.unsafe(`SET LOCAL ROLE ${role}`), effect)))

layer(TestLayer, PgTest.suiteOptions)("ControlPlane", (it) => {
  it.effect("launch from SQL, then wait_for_startup returns the pid the supervisor reports for the mapped handle", () =>
    Effect.gen(function*() {
      const latencies: Array<number> = []
      for (let i = 0; i < 20; i++) {
        const start = yield* Clock.currentTimeMillis
        const handle = yield* launch("napper")
        const pid = yield* waitForStartup(handle)
        latencies.push((yield* Clock.currentTimeMillis) - start)
        assert.isNumber(pid)
        const row = yield* request(handle)
        assert.strictEqual(row.state, "launched")
        assert.strictEqual(row.status, "started")
        assert.strictEqual(row.requested_by, "postgres")
        assert.deepStrictEqual(yield* Supervisor.status(handleOf(row)), WorkerHandle.Started(pid!))
        yield* Supervisor.terminate(handleOf(row))
        yield* pollUntil(Activity.snapshot, (rows) => rows.length === 0)
      }
      const sorted = [...latencies].sort((a, b) => a - b)
      console.log(
        `launch + commit -> wait_for_startup returned, over 20 launches: median ${sorted[10]} ms, max ${sorted[19]} ms`
      )
      assert.isTrue(logs.lines.some((line) => line.startsWith("INFO launched \"demo.napper\"")))
    }))

  it.effect("a launch inside a transaction takes effect only after COMMIT", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const handle = yield* sql.withTransaction(Effect.gen(function*() {
        const handle = yield* launch("napper")
        yield* Effect.sleep("300 millis")
        // The supervisor cannot see the row, and has started nothing.
        assert.deepStrictEqual(
          yield* PgTest.query(`SELECT count(*)::int FROM bgworker._requests WHERE id = ${handle}`),
          [[0]]
        )
        assert.strictEqual((yield* Activity.snapshot).length, 0)
        // Claimed in this transaction for the attached supervisor (launch's fast path), invisible to it until COMMIT.
        assert.strictEqual((yield* request(handle)).state, "processing")
        const failure = yield* PgTest.pgFailure(sql.withTransaction(waitForStartup(handle)))
        assert.strictEqual(failure.code, "25001")
        assert.strictEqual(failure.message, "cannot wait for a background worker launched in the same transaction")
        return handle
      }))
      const pid = yield* waitForStartup(handle)
      assert.isNumber(pid)
      assert.strictEqual((yield* request(handle)).status, "started")
      yield* stopAll
    }))

  it.effect("an unknown entry point makes wait_for_startup raise could not start background process; nothing starts", () =>
    Effect.gen(function*() {
      const handle = yield* launch("nope", "{}")
      const failure = yield* PgTest.pgFailure(waitForStartup(handle))
      assert.deepStrictEqual(failure, {
        message: "could not start background process",
        code: "53000",
        hint: "More details may be available in the server log.",
        detail: "could not find function \"nope\" in library \"demo\""
      })
      assert.strictEqual((yield* request(handle)).state, "refused")
      assert.strictEqual((yield* Activity.snapshot).length, 0)
      assert.isTrue(
        logs.lines.some((line) =>
          line.startsWith("WARN could not launch \"demo.nope\"") && line.includes("by role \"postgres\"")
        )
      )
    }))

  it.effect("an argument that fails the entry point's schema is refused the same way; nothing starts", () =>
    Effect.gen(function*() {
      const handle = yield* launch("napper", JSON.stringify({ naptimeMs: "soon" }))
      const failure = yield* PgTest.pgFailure(waitForStartup(handle))
      assert.strictEqual(failure.message, "could not start background process")
      assert.strictEqual(failure.code, "53000")
      assert.match(failure.detail ?? "", /^background worker "napper": invalid argument/)
      assert.strictEqual((yield* request(handle)).state, "refused")
      assert.strictEqual((yield* Activity.snapshot).length, 0)
    }))

  it.effect("with every slot taken, wait_for_startup returns NULL", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      // One transaction, processed in id order: the last launch finds no slot.
      const handles = yield* sql.withTransaction(
        Effect.forEach(Array.from({ length: maxWorkers + 1 }), () => launch("napper"))
      )
      const pids = yield* Effect.forEach(handles, (handle) => waitForStartup(handle))
      assert.isTrue(pids.slice(0, maxWorkers).every((pid) => typeof pid === "number"))
      assert.isNull(pids[maxWorkers])
      assert.strictEqual((yield* request(handles[maxWorkers]!)).state, "no_slot")
      yield* Effect.forEach(handles.slice(0, maxWorkers), (handle) => call("terminate", handle))
      yield* pollUntil(Activity.snapshot, (rows) => rows.length === 0)
    }))

  it.effect("terminate from SQL stops the worker", () =>
    Effect.gen(function*() {
      const handle = yield* launch("napper")
      yield* waitForStartup(handle)
      const worker = handleOf(yield* request(handle))
      yield* call("terminate", handle)
      yield* pollUntil(Supervisor.status(worker), (status) => status._tag === "Stopped")
      yield* pollUntil(request(handle), (row) => row.status === "stopped" && row.pid === null)
    }))

  it.effect("set_latch wakes a napping worker", () =>
    Effect.gen(function*() {
      const handle = yield* launch("napper")
      const pid = (yield* waitForStartup(handle))!
      yield* Effect.sleep("50 millis")
      assert.isFalse(events.some((event) => event.pid === pid))
      yield* call("set_latch", handle)
      yield* pollUntil(Effect.sync(() => events), (all) => all.some((e) => e.pid === pid && e.kind === "latch"), 2000)
      yield* stopAll
    }))

  it.effect("reload sets the reload flag of every running worker", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const first = (yield* waitForStartup(yield* launch("napper")))!
      const second = (yield* waitForStartup(yield* launch("napper")))!
      yield* sql`SELECT bgworker.reload()`
      yield* pollUntil(
        Effect.sync(() => events),
        (all) => [first, second].every((pid) => all.some((e) => e.pid === pid && e.kind === "reload")),
        2000
      )
      yield* stopAll
    }))

  it.effect("bgworker.activity lists running and not-yet-started workers and reflects a change within 100 ms", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const running = yield* launch("napper")
      const pid = yield* waitForStartup(running)
      const waiting = yield* launch("gated", null)
      const failure = yield* PgTest.pgFailure(waitForStartup(waiting, "200 milliseconds"))
      assert.strictEqual(failure.code, "57014")
      assert.strictEqual(failure.detail, "The worker is registered and starts when its start time is reached.")

      const view = sql<{
        readonly pid: number | null
        readonly name: string
        readonly registration: string
        readonly wait_event: string | null
        readonly handle: bigint | null
        readonly worker_handle: string
        readonly requested_by: string | null
      }>`SELECT pid, name, registration, wait_event, handle, worker_handle, requested_by FROM bgworker.activity`
      const { value: rows } = yield* pollUntil(view, (rows) => rows.length === 2)
      const napperRow = rows.find((row) => row.handle === running)!
      assert.strictEqual(napperRow.pid, pid)
      assert.strictEqual(napperRow.registration, "running")
      assert.strictEqual(napperRow.wait_event, "DemoNap")
      assert.strictEqual(napperRow.requested_by, "postgres")
      const gatedRow = rows.find((row) => row.handle === waiting)!
      assert.strictEqual(gatedRow.registration, "not yet started")
      assert.isNull(gatedRow.pid)

      // Changes made in the supervisor: a worker registered directly (no SQL handle), then terminated.
      const delays: Array<number> = []
      for (let i = 0; i < 5; i++) {
        const worker = yield* Supervisor.register(napper, { naptimeMs: 60_000 })
        const key = WorkerHandle.format(worker)
        const appeared = yield* pollUntil(view, (rows) => rows.some((row) => row.worker_handle === key), 1000)
        assert.isNull(appeared.value.find((row) => row.worker_handle === key)!.handle)
        yield* Supervisor.terminate(worker)
        const gone = yield* pollUntil(view, (rows) => !rows.some((row) => row.worker_handle === key), 1000)
        delays.push(appeared.elapsed, gone.elapsed)
      }
      console.log(`activity view delays (ms): ${delays.join(", ")}`)
      assert.isBelow(Math.max(...delays), 100)
      yield* stopAll
    }))

  it.effect("bgworker.settings shows the GUC registry's rows and follows its changes", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const setting = (name: string) =>
        sql<
          { readonly setting: string; readonly unit: string | null; readonly source: string; readonly context: string }
        >`
          SELECT setting, unit, source, context FROM bgworker.settings WHERE name = ${name}`
      const { value: [max] } = yield* pollUntil(setting("max_worker_processes"), (rows) => rows.length === 1)
      assert.deepStrictEqual(max, { setting: "4", unit: null, source: "override", context: "postmaster" })
      yield* Guc.set("demo.naptime", "250ms")
      const changed = yield* pollUntil(setting("demo.naptime"), (rows) => rows[0]?.setting === "250", 1000)
      assert.deepStrictEqual(changed.value[0], { setting: "250", unit: "ms", source: "session", context: "user" })
    }))

  it.effect("an invalid schema name is a defect raised before any SQL runs", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Effect.scoped(Layer.build(ControlPlane.layer({ schema: "bgworker; drop" }))))
      assert.isTrue(Exit.isFailure(exit) && Cause.hasDies(exit.cause))
      const sql = yield* SqlClient
      const schemas = yield* sql`SELECT 1 FROM pg_namespace WHERE nspname LIKE 'bgworker;%'`
      assert.strictEqual(schemas.length, 0)
    }))

  it.effect("a role without bgworker_launcher gets permission denied on launch", () =>
    Effect.gen(function*() {
      yield* ensureRole(nobody)
      const failure = yield* PgTest.pgFailure(asRole(nobody, launch("napper")))
      assert.strictEqual(failure.code, "42501")
      assert.strictEqual(failure.message, "permission denied for function launch")
    }))

  it.effect("a role granted bgworker_launcher can launch, and only the launching role may signal the worker", () =>
    Effect.gen(function*() {
      assert.strictEqual(ControlPlane.launcherRole(), "bgworker_launcher")
      yield* ensureRole(alice, "bgworker_launcher")
      yield* ensureRole(bob, "bgworker_launcher")
      const handle = yield* asRole(alice, launch("napper"))
      assert.isNumber(yield* asRole(alice, waitForStartup(handle)))
      assert.strictEqual((yield* request(handle)).requested_by, alice)
      const refused = yield* PgTest.pgFailure(asRole(bob, call("terminate", handle)))
      assert.strictEqual(refused.code, "42501")
      assert.strictEqual(refused.message, "permission denied to terminate background worker")
      yield* asRole(alice, call("terminate", handle))
      yield* pollUntil(request(handle), (row) => row.status === "stopped")
      assert.isTrue(
        logs.lines.some((line) =>
          line.startsWith(`INFO terminate of background worker handle ${handle} requested by role "${alice}"`)
        )
      )
    }))

  it.effect("PUBLIC cannot read the private tables", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* ensureRole(nobody)
      yield* ensureRole(alice, "bgworker_launcher")
      for (const table of ["_requests", "_activity", "_settings", "_config", "_migrations"]) {
        for (const role of [nobody, alice]) {
          const failure = yield* PgTest.pgFailure(asRole(role, sql.unsafe(`SELECT * FROM bgworker.${table}`)))
          assert.strictEqual(failure.message, `permission denied for table ${table}`)
        }
      }
      const viewDenied = yield* PgTest.pgFailure(asRole(nobody, sql`SELECT * FROM bgworker.activity`))
      assert.strictEqual(viewDenied.message, "permission denied for view activity")
      yield* asRole(alice, sql`SELECT * FROM bgworker.activity`)
      yield* asRole(alice, sql`SELECT * FROM bgworker.settings`)
    }))

  it.effect("a request made while no consumer was attached is processed when one attaches, and the poll finds a request that never notified", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const schema = "bgworker_fallback"
      const plane = ControlPlane.layer({ schema, channel: "bgworker_fallback_wake", pollInterval: "200 millis" })
        .pipe(Layer.provide(logs.layer))
      // Install, then detach.
      yield* Effect.scoped(Layer.build(plane))
      const early = yield* launch("napper", sleepy, schema)
      // The error says the launch is still pending, and it does start later, as it says.
      const detached = yield* PgTest.pgFailure(waitForStartup(early, "1 second", schema))
      assert.strictEqual(detached.message, `background worker launch ${early} is pending: no supervisor is attached`)
      assert.strictEqual(detached.code, "53000")
      assert.include(detached.hint, `${schema}.cancel(${early})`)
      // A launch withdrawn with cancel never starts, and waiting for it says so.
      const withdrawn = yield* launch("napper", sleepy, schema)
      const [cancelled] = yield* sql<{ readonly c: boolean }>`SELECT ${sql(`${schema}.cancel`)}(${withdrawn}) AS c`
      assert.isTrue(cancelled!.c)

      yield* Effect.scoped(Effect.gen(function*() {
        yield* Layer.build(plane)
        assert.isNumber(yield* waitForStartup(early, "10 seconds", schema))
        const never = yield* PgTest.pgFailure(waitForStartup(withdrawn, "1 second", schema))
        assert.strictEqual(never.message, `background worker launch ${withdrawn} was cancelled`)
        assert.strictEqual((yield* request(withdrawn, schema)).state, "cancelled")
        // Past the wake-ups of attaching and of LISTEN.
        yield* Effect.sleep("300 millis")
        // Inserted by hand: no NOTIFY, so only the poll can find it.
        const start = yield* Clock.currentTimeMillis
        const [row] = yield* sql<{ readonly id: bigint }>`
          INSERT INTO ${sql(`${schema}._requests`)} (kind, library, function, arg, requested_by)
          VALUES ('launch', 'demo', 'napper', ${sleepy}::jsonb, 'postgres') RETURNING id`
        assert.isNumber(yield* waitForStartup(row!.id, "10 seconds", schema))
        const elapsed = (yield* Clock.currentTimeMillis) - start
        console.log(`request without NOTIFY found by the poll after ${elapsed} ms (poll interval 200 ms)`)
        assert.isBelow(elapsed, 400)
        yield* call("terminate", early, schema)
        yield* call("terminate", row!.id, schema)
        yield* pollUntil(Activity.snapshot, (rows) => rows.length === 0)
      }))
    }))

  it.effect("a second supervisor on the same schema waits as a standby and takes over when the first detaches, leaving the first's live workers alone", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const schema = "bgworker_standby"
      const options = { schema, pollInterval: "100 millis" } as const
      const other = ControlPlane.layer(options).pipe(
        Layer.provideMerge(Supervisor.layer({ entryPoints: [napper] })),
        Layer.provide(logs.layer)
      )
      const waitingLocks = sql<{ readonly n: number }>`
        SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`.pipe(
        Effect.map((rows) => rows[0]!.n)
      )
      const first = yield* Scope.make()
      yield* Layer.build(ControlPlane.layer(options).pipe(Layer.provide(logs.layer))).pipe(Scope.provide(first))

      // A standby that gives up while waiting leaves no lock request behind.
      const quitter = yield* Scope.make()
      yield* Layer.build(other).pipe(Scope.provide(quitter))
      assert.isTrue(logs.lines.some((line) => line.includes(`another supervisor is attached to schema "${schema}"`)))
      yield* pollUntil(waitingLocks, (n) => n === 1)
      yield* Scope.close(quitter, Exit.void)
      yield* pollUntil(waitingLocks, (n) => n === 0)

      const mine = yield* launch("napper", sleepy, schema)
      const pid = yield* waitForStartup(mine, "10 seconds", schema)
      assert.deepStrictEqual(
        yield* Supervisor.status(handleOf(yield* request(mine, schema))),
        WorkerHandle.Started(pid!)
      )

      const standby = Context.get(yield* Layer.build(other), Supervisor.Supervisor)
      yield* pollUntil(waitingLocks, (n) => n === 1)
      yield* Scope.close(first, Exit.void)
      // The new holder launches into its own supervisor. The first supervisor detached but still runs (its
      // liveness lock is held), so its worker is not marked dead.
      const theirs = yield* launch("napper", sleepy, schema)
      const theirPid = yield* waitForStartup(theirs, "10 seconds", schema)
      assert.deepStrictEqual(
        yield* standby.status(handleOf(yield* request(theirs, schema))),
        WorkerHandle.Started(theirPid!)
      )
      assert.strictEqual((yield* Activity.snapshot).length, 1, "the first supervisor's worker still runs")
      assert.strictEqual((yield* request(mine, schema)).status, "started")
      yield* stopAll
    }))
})
