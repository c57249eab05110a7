/**
 * Cluster test support: the tables the fixture's `ticker` writes, starting fixture processes
 * (`test/cluster/fixtures/node.ts`) on the suite's database, and reading who runs the singleton from the
 * ticks it writes.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { SqlClient } from "effect/sql/SqlClient"
import * as EmbeddedPostgres from "../../src/pg/EmbeddedPostgres.ts"
import { spawn } from "../node/fixtures/child.ts"
import type { Child } from "../node/fixtures/child.ts"
import { freePort } from "../pg/support.ts"

export const fixture = "test/cluster/fixtures/node.ts"

/** Creates (afresh) the ticker's two tables: every tick, and the ticks that passed the fence. */
export const createTickTables = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`DROP TABLE IF EXISTS cluster_ticks, cluster_fenced`
  yield* sql`CREATE TABLE cluster_ticks (owner text NOT NULL, token bigint NOT NULL, seq int NOT NULL, at timestamptz NOT NULL)`
  yield* sql`CREATE TABLE cluster_fenced (owner text NOT NULL, token bigint NOT NULL, seq int NOT NULL, at timestamptz NOT NULL)`
  yield* sql`CREATE INDEX ON cluster_ticks (at)`
})

export interface Node {
  readonly id: string
  /** The runner's TCP port (its address is `127.0.0.1:<port>`). */
  readonly port: number
  readonly child: Child
}

/** Starts one fixture process running `singletons` (comma-separated) on a free port, as `id`. */
export const startNode = (id: string, singletons = "ticker", env: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const server = yield* EmbeddedPostgres.PgServer
    const port = yield* freePort
    const child = yield* spawn(fixture, {
      DATABASE_URL: Redacted.value(server.url),
      RUNNER_PORT: String(port),
      NODE_ID: id,
      FIXTURE_SINGLETONS: singletons,
      ...env
    })
    return { id, port, child } satisfies Node
  })

/** Whether the runner listening on `port` has registered itself in the cluster's runner table. */
export const runnerRegistered = (port: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ readonly n: number }>`
      SELECT count(*)::int AS n FROM cluster_runners WHERE address LIKE ${`%:${port}`}`
    return rows[0]!.n > 0
  }).pipe(Effect.catch(() => Effect.succeed(false)))

/** The owner and token of the newest tick written within the last `freshMs` milliseconds, if any. */
export const latestTick = (freshMs = 400) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ readonly owner: string; readonly token: string }>`
      SELECT owner, token::text AS token FROM cluster_ticks
      WHERE at > pg_catalog.clock_timestamp() - ${`${freshMs} milliseconds`}::interval
      ORDER BY at DESC LIMIT 1`
    return rows[0] === undefined ? undefined : { owner: rows[0].owner, token: BigInt(rows[0].token) }
  })

/** Waits (polling every 25 ms, at most `ms`) for a fresh tick whose owner satisfies `accept`. */
export const awaitTick = (accept: (owner: string) => boolean, ms: number) =>
  Effect.gen(function*() {
    const deadline = (yield* Clock.currentTimeMillis) + ms
    while ((yield* Clock.currentTimeMillis) < deadline) {
      const tick = yield* latestTick()
      if (tick !== undefined && accept(tick.owner)) return tick
      yield* Effect.sleep("25 millis")
    }
    return yield* Effect.die(new Error(`no fresh tick by an accepted owner within ${ms} ms`))
  })

/**
 * Waits (at most `ms`) until the singleton has settled: its ticks of the last `steadyMs` came from one owner
 * under one token, the newest of them fresh. Returns that owner and token. (A runner that joins moves shards a
 * few seconds later, so a handover can fall just after the first tick; waiting for a steady owner rather than
 * for the first fresh tick keeps a loaded machine's slower handover out of the assertions that follow.)
 */
export const awaitSteadyOwner = (ms: number, steadyMs = 2000) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const deadline = (yield* Clock.currentTimeMillis) + ms
    while ((yield* Clock.currentTimeMillis) < deadline) {
      const rows = yield* sql<{ readonly owners: number; readonly tokens: number; readonly ticks: number }>`
        SELECT count(DISTINCT owner)::int AS owners, count(DISTINCT token)::int AS tokens, count(*)::int AS ticks
        FROM cluster_ticks WHERE at > pg_catalog.clock_timestamp() - ${`${steadyMs} milliseconds`}::interval`
      const tick = yield* latestTick()
      const row = rows[0]!
      if (tick !== undefined && row.owners === 1 && row.tokens === 1 && row.ticks > 1) return tick
      yield* Effect.sleep("100 millis")
    }
    return yield* Effect.die(new Error(`the singleton had no steady owner for ${steadyMs} ms within ${ms} ms`))
  })

/**
 * One row per token in `table` (every tick, or the fenced ones): its owner(s), first and last tick (epoch ms,
 * the database's clock) and tick count, in order of first tick.
 */
export const tokenSpans = (table: "cluster_ticks" | "cluster_fenced" = "cluster_ticks") =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{
      readonly token: string
      readonly owners: number
      readonly owner: string
      readonly first: number
      readonly last: number
      readonly ticks: number
    }>`
    SELECT token::text AS token, count(DISTINCT owner)::int AS owners, min(owner) AS owner,
           (extract(epoch FROM min(at)) * 1000)::float8 AS first, (extract(epoch FROM max(at)) * 1000)::float8 AS last,
           count(*)::int AS ticks
    FROM ${sql(table)} GROUP BY token ORDER BY min(at)`
    return rows.map((row) => ({ ...row, token: BigInt(row.token) }))
  })
