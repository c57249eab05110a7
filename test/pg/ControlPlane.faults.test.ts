/**
 * The control plane under faults: the consumer's lock session killed in the middle of a burst of launches
 * (every request ends launched exactly once, or refused, never twice; live workers are not marked dead),
 * and the retention of processed requests.
 */
import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { SqlClient } from "effect/sql/SqlClient"
import * as BackgroundWorker from "../../src/BackgroundWorker.ts"
import * as ControlPlane from "../../src/pg/ControlPlane.ts"
import * as ProcLatch from "../../src/ProcLatch.ts"
import * as Supervisor from "../../src/Supervisor.ts"
import { captureLogs } from "../fixtures.ts"
import * as PgTest from "./support.ts"

/** How many times each `i` started. */
const starts = new Map<number, number>()

/** Records its start and returns at once: a launch that ran leaves a count. */
const once = BackgroundWorker.make({
  name: "once",
  entryPoint: { library: "faults", function: "once" },
  argument: Schema.Struct({ i: Schema.Number }),
  main: ({ i }) => Effect.sync(() => void starts.set(i, (starts.get(i) ?? 0) + 1))
})

const napper = BackgroundWorker.make({
  name: "napper",
  entryPoint: { library: "faults", function: "napper" },
  main: () => ProcLatch.wait({ onPostmasterDeath: "exit" }).pipe(Effect.forever, Effect.asVoid)
})

const logs = captureLogs()

/**
 * A supervisor and its control plane keeping processed requests for `retention`. The burst keeps them for
 * longer than it runs: it counts every request's row at its end, and a loaded machine can take more than a
 * second over the burst.
 */
const Suite = (retention: "10 minutes" | "1 second", prefix: string) =>
  ControlPlane.layer({ pollInterval: "100 millis", retention }).pipe(
    Layer.provideMerge(Supervisor.layer({ maxWorkerProcesses: 64, entryPoints: [once, napper] })),
    Layer.provideMerge(PgTest.layer({ prefix })),
    Layer.provide(logs.layer)
  )

const requestStates = SqlClient.use((sql) =>
  sql<{ readonly id: string; readonly state: string; readonly i: number | null; readonly status: string | null }>`
    SELECT id::text AS id, state, (arg->>'i')::int AS i, status FROM bgworker._requests
    WHERE kind = 'launch' ORDER BY id`
)

layer(Suite("10 minutes", "cpfaults"), PgTest.suiteOptions)("ControlPlane under faults", (it) => {
  it.effect(
    "killing the consumer's lock session during a burst of 200 launches launches each exactly once, and marks no live worker dead",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const [napping] = yield* sql<{ readonly h: string }>`SELECT bgworker.launch('faults', 'napper')::text AS h`
        yield* sql`SELECT bgworker.wait_for_startup(${napping!.h}::bigint)`
        const burst = yield* Effect.forkChild(Effect.forEach(
          Array.from({ length: 200 }, (_, i) => i),
          (i) => sql`SELECT bgworker.launch('faults', 'once', ${JSON.stringify({ i })}::jsonb)`,
          { discard: true }
        ))
        // Once some launches are through, end the session that holds the consumer's lock, twice.
        for (const after of [40, 120]) {
          yield* PgTest.eventually(`${after} launches`, Effect.sync(() => starts.size >= after), 20_000)
          yield* sql`SELECT pg_terminate_backend(supervisor_pid) FROM bgworker._config`
        }
        yield* Fiber.join(burst)
        yield* PgTest.eventually(
          "every request to reach its outcome",
          Effect.map(requestStates, (rows) => rows.every((r) => r.state !== "requested" && r.state !== "processing")),
          30_000
        )
        const rows = yield* requestStates
        for (const row of rows.filter((r) => r.i !== null)) {
          const count = starts.get(row.i!) ?? 0
          if (row.state === "launched") {
            assert.strictEqual(count, 1, `request ${row.id} (i = ${row.i}) started ${count} times`)
          } else assert.strictEqual(count, 0, `request ${row.id} was ${row.state} but started ${count} times`)
        }
        assert.strictEqual(
          rows.filter((r) => r.i !== null).length,
          200
        )
        assert.isTrue(logs.lines.some((line) => line.includes("lost the supervisor session")))
        // The napper ran through it all, and nothing says otherwise.
        const [napperRow] = yield* sql<{ readonly status: string }>`
        SELECT status FROM bgworker._requests WHERE id = ${napping!.h}::bigint`
        assert.strictEqual(napperRow!.status, "started")
        yield* sql`SELECT bgworker.terminate(${napping!.h}::bigint)`
      }),
    { timeout: 90_000 }
  )
})

layer(Suite("1 second", "cpretention"), PgTest.suiteOptions)("ControlPlane retention", (it) => {
  it.effect(
    "processed requests older than the retention are deleted, so a long run keeps the table bounded",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        for (let round = 0; round < 5; round++) {
          for (let i = 0; i < 20; i++) {
            const [row] = yield* sql<{ readonly h: string }>`
            SELECT bgworker.launch('faults', 'napper')::text AS h`
            yield* sql`SELECT bgworker.wait_for_startup(${row!.h}::bigint)`
            yield* sql`SELECT bgworker.terminate(${row!.h}::bigint)`
          }
          yield* Effect.sleep("400 millis")
        }
        // Two rows per launch and terminate: 200 written; with a 1 s retention, about the last second's stay.
        yield* PgTest.eventually(
          "old rows to go",
          Effect.map(
            sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM bgworker._requests`,
            (r) => r[0]!.n < 120
          ),
          10_000
        )
        // A launch whose worker still runs is kept, however old.
        const [running] = yield* sql<{ readonly h: string }>`SELECT bgworker.launch('faults', 'napper')::text AS h`
        yield* sql`SELECT bgworker.wait_for_startup(${running!.h}::bigint)`
        yield* Effect.sleep("2500 millis")
        const kept = yield* sql`SELECT 1 FROM bgworker._requests WHERE id = ${running!.h}::bigint`
        assert.strictEqual(kept.length, 1)
        const [left] = yield* sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM bgworker._requests`
        assert.isBelow(left!.n, 10)
        yield* sql`SELECT bgworker.terminate(${running!.h}::bigint)`
      }),
    { timeout: 60_000 }
  )
})
