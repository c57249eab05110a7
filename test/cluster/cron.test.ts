/**
 * Cron-started workers across real processes (`ClusterSupervisor.cron`): two fixture processes
 * (`test/cluster/fixtures/node.ts` with `FIXTURE_CRON`) joined into one cluster on the suite's database run
 * `cron ticker` every second; each run writes a row (tick, process, fencing token, start and end on the
 * database's clock) to `cron_runs`, which the tests read.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Cron from "effect/Cron"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as References from "effect/References"
import { SqlClient } from "effect/sql/SqlClient"
import * as BackgroundWorker from "../../src/BackgroundWorker.ts"
import { ClusterSupervisor } from "../../src/cluster/index.ts"
import * as Supervisor from "../../src/Supervisor.ts"
import * as PgTest from "../pg/support.ts"
import { type Node, startNode } from "./support.ts"

const Env = Layer.merge(PgTest.layer({ prefix: "cron" }), NodeServices.layer)

interface Run {
  readonly tick: number
  readonly node: string
  readonly token: bigint
  readonly started: number
  readonly ended: number | null
}

/** Every run so far, in order of tick (epoch milliseconds, the database's clock). */
const runs = Effect.gen(function*() {
  const sql = yield* SqlClient
  const rows = yield* sql<{
    readonly tick: number
    readonly node: string
    readonly token: string
    readonly started: number
    readonly ended: number | null
  }>`
    SELECT (extract(epoch FROM tick) * 1000)::float8 AS tick, node, token::text AS token,
           (extract(epoch FROM started) * 1000)::float8 AS started, (extract(epoch FROM ended) * 1000)::float8 AS ended
    FROM cron_runs ORDER BY tick, started`
  return rows.map((row): Run => ({ ...row, token: BigInt(row.token) }))
})

/** Polls `runs` every 100 ms until `accept` holds, failing after `ms`. */
const awaitRuns = (what: string, accept: (all: ReadonlyArray<Run>) => boolean, ms: number) =>
  Effect.gen(function*() {
    const deadline = (yield* Clock.currentTimeMillis) + ms
    while (true) {
      const all = yield* runs
      if (accept(all)) return all
      if ((yield* Clock.currentTimeMillis) > deadline) {
        return yield* Effect.die(new Error(`${what}: not within ${ms} ms; runs: ${JSON.stringify(all, replacer)}`))
      }
      yield* Effect.sleep("100 millis")
    }
  })

const replacer = (_: string, value: unknown) => typeof value === "bigint" ? value.toString() : value

/** No tick ran twice, runs never overlapped, and every run took a greater fencing token than the one before. */
const assertOncePerTick = (all: ReadonlyArray<Run>) => {
  const ticks = all.map((run) => run.tick)
  assert.strictEqual(new Set(ticks).size, ticks.length, `a tick ran twice: ${JSON.stringify(all, replacer)}`)
  for (let i = 1; i < all.length; i++) {
    const before = all[i - 1]!
    const after = all[i]!
    assert.isTrue(after.token > before.token, `tick ${after.tick} has token ${after.token} after ${before.token}`)
    if (before.ended !== null) {
      assert.isTrue(
        after.started >= before.ended,
        `tick ${after.tick} started at ${after.started}, before tick ${before.tick} ended at ${before.ended}`
      )
    }
  }
}

/** The largest gap between consecutive ticks of `all`, in milliseconds. */
const largestGap = (all: ReadonlyArray<Run>) => {
  let gap = 0
  for (let i = 1; i < all.length; i++) gap = Math.max(gap, all[i]!.tick - all[i - 1]!.tick)
  return gap
}

/** Creates `cron_runs` afresh, starts the processes `ids` with `env`, and waits until all joined. */
const startCluster = (env: Record<string, string>, ids: ReadonlyArray<string> = ["a", "b"]) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    yield* sql`DROP TABLE IF EXISTS cron_runs`
    yield* sql`CREATE TABLE cron_runs (
      tick timestamptz NOT NULL, node text NOT NULL, token bigint NOT NULL,
      started timestamptz NOT NULL, ended timestamptz)`
    const nodes = new Map<string, Node>()
    for (const id of ids) nodes.set(id, yield* startNode(id, "", env))
    yield* PgTest.eventually(
      `${ids.length} runners registered`,
      Effect.map(
        sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM cluster_runners WHERE healthy`,
        (rows) => rows[0]!.n === ids.length
      ).pipe(Effect.catch(() => Effect.succeed(false))), // the tables appear with the first runner
      30_000
    )
    return nodes
  })

// The three suites run at once (`concurrent`): each has its own server, database and processes, and their
// scenarios mostly wait for ticks. One after another they took about 37 s; at once, about the longest of them.
layer(Env, { timeout: "60 seconds", excludeTestServices: true, concurrent: true })("ClusterSupervisor.cron", (it) => {
  it.effect("an invalid cron expression fails with InvalidCronSchedule and a hint; six fields have seconds", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(ClusterSupervisor.parseCron("61 * * * *"))
      assert.isTrue(ClusterSupervisor.isInvalidCronSchedule(error))
      assert.strictEqual(error.field, "cron")
      assert.include(error.detail, "61 * * * *")
      assert.include(error.hint ?? "", "six with the seconds first")
      const tooLong = yield* Effect.flip(ClusterSupervisor.parseCron("* ".repeat(200)))
      assert.strictEqual(tooLong.field, "cron")

      const everyTwoSeconds = yield* ClusterSupervisor.parseCron("*/2 * * * * *")
      const from = new Date("2026-01-01T00:00:01.000Z")
      assert.strictEqual(Cron.next(everyTwoSeconds, from).toISOString(), "2026-01-01T00:00:02.000Z")
      assert.strictEqual(
        Cron.next(everyTwoSeconds, new Date("2026-01-01T00:00:02.000Z")).toISOString(),
        "2026-01-01T00:00:04.000Z"
      )
      const fiveFields = yield* ClusterSupervisor.parseCron("*/5 * * * *")
      assert.strictEqual(Cron.next(fiveFields, from).toISOString(), "2026-01-01T00:05:00.000Z")
    }))

  it.effect("a cron layer with an invalid schedule fails to build with InvalidCronSchedule naming the option", () =>
    Effect.gen(function*() {
      const port = yield* PgTest.freePort
      const worker = BackgroundWorker.make({ name: "never due", main: () => Effect.void })
      const build = (options: ClusterSupervisor.CronOptions) =>
        Effect.flip(Layer.build(
          ClusterSupervisor.cron(worker, options).pipe(
            Layer.provide(ClusterSupervisor.layer({
              runnerAddress: { host: "127.0.0.1", port },
              tablePrefix: "cron_invalid",
              schema: "cron_invalid_fence"
            })),
            Layer.provide(Supervisor.layer())
          )
        )).pipe(Effect.provideService(References.MinimumLogLevel, "Error")) // the lone runner's chatter
      const malformed = yield* build({ cron: "* * *" })
      assert.isTrue(ClusterSupervisor.isInvalidCronSchedule(malformed), String(malformed))
      if (!ClusterSupervisor.isInvalidCronSchedule(malformed)) return
      assert.strictEqual(malformed.field, "cron")
      assert.isDefined(malformed.hint)
      const negative = yield* build({ cron: "* * * * *", skipIfOlderThan: "-1 second" })
      assert.isTrue(ClusterSupervisor.isInvalidCronSchedule(negative) && negative.field === "skipIfOlderThan")
    }))

  it.effect(
    "with two processes each tick of a per-second cron runs once across the cluster; after its process is SIGKILLed the other carries on",
    () =>
      Effect.gen(function*() {
        const nodes = yield* startCluster({ FIXTURE_CRON: "* * * * * *" })
        // Both joined: the shards settle within a few assignment refreshes; then six seconds of ticks.
        const settled = yield* awaitRuns("a first run", (all) => all.length > 0, 15_000)
        const from = settled.at(-1)!.tick
        const steady = yield* awaitRuns(
          "six ticks after the first",
          (all) => all.filter((run) => run.tick > from && run.ended !== null).length >= 6,
          15_000
        )
        assertOncePerTick(steady)
        const window = steady.filter((run) => run.tick >= from)
        assert.isAtMost(largestGap(window), 2_000, `ticks skipped: ${JSON.stringify(window, replacer)}`)
        const owner = steady.at(-1)!.node
        const survivor = owner === "a" ? "b" : "a"
        // The runs were registrations of the owner's own supervisor, shown in its activity.
        const shown = yield* nodes.get(owner)!.child.waitFor("cron ticker: activity")
        assert.include(shown, "origin=dynamic")

        const killedAt = yield* Clock.currentTimeMillis
        yield* nodes.get(owner)!.child.signal("SIGKILL")
        const carried = yield* awaitRuns(
          `runs on ${survivor} after the kill`,
          (all) => all.filter((run) => run.node === survivor && run.tick > steady.at(-1)!.tick).length >= 3,
          20_000
        )
        const resumedMs = (yield* Clock.currentTimeMillis) - killedAt
        assertOncePerTick(carried)
        const after = carried.filter((run) => run.node === survivor && run.tick > steady.at(-1)!.tick)
        assert.isAtMost(largestGap(after), 2_000, `ticks skipped on ${survivor}: ${JSON.stringify(after, replacer)}`)
        // Nothing of the dead process after the survivor took over.
        for (const run of carried.filter((run) => run.node === owner)) assert.isBelow(run.tick, after[0]!.tick)
        assert.isBelow(resumedMs, 20_000)
      }),
    60_000
  )
})

// A database of its own: the first suite's cron messages and dead runners stay behind in its tables.
layer(Env, { timeout: "60 seconds", excludeTestServices: true, concurrent: true })(
  "ClusterSupervisor.cron after a crash",
  (it) => {
    it.effect(
      "a tick whose process is SIGKILLed mid-run runs again on the other process, with a greater token, while it is the latest due",
      () =>
        Effect.gen(function*() {
          // Every 8 seconds, runs of 7 seconds: the takeover (about 3 s) comes before the next tick is due.
          const nodes = yield* startCluster({ FIXTURE_CRON: "*/8 * * * * *", CRON_RUN_MS: "7000" })
          const running = yield* awaitRuns("a run in progress", (all) => all.some((run) => run.ended === null), 25_000)
          const killed = running.find((run) => run.ended === null)!
          const survivor = killed.node === "a" ? "b" : "a"
          yield* nodes.get(killed.node)!.child.signal("SIGKILL")
          const again = yield* awaitRuns(
            `tick ${killed.tick} again on ${survivor}`,
            (all) => all.some((run) => run.tick === killed.tick && run.node === survivor),
            15_000
          )
          const rerun = again.find((run) => run.tick === killed.tick && run.node === survivor)!
          assert.isTrue(rerun.token > killed.token, `rerun token ${rerun.token} after ${killed.token}`)
          assert.isBelow(rerun.started - killed.tick, 8_000, "the rerun started before the next tick was due")
          const ofTick = again.filter((run) => run.tick === killed.tick)
          assert.deepStrictEqual(ofTick.map((run) => run.node), [killed.node, survivor])
          assert.isNull(ofTick[0]!.ended, "the killed run never ended")
        }),
      60_000
    )
  }
)

layer(Env, { timeout: "60 seconds", excludeTestServices: true, concurrent: true })(
  "ClusterSupervisor.cron with long runs",
  (it) => {
    it.effect(
      "a run longer than the period holds the next tick; of the ticks that passed only the latest runs, at once (pg_cron's rule)",
      () =>
        Effect.gen(function*() {
          // Every second, runs of 2.5 seconds.
          yield* startCluster({ FIXTURE_CRON: "* * * * * *", CRON_RUN_MS: "2500" }, ["solo"])
          const all = yield* awaitRuns(
            "four ended runs",
            (all) => all.filter((run) => run.ended !== null).length >= 4,
            30_000
          )
          assertOncePerTick(all) // never overlapping
          const ended = all.filter((run) => run.ended !== null)
          for (let i = 1; i < ended.length; i++) {
            const before = ended[i - 1]!
            const after = ended[i]!
            // The ticks due while `before` ran: only the latest ran, the older ones were skipped.
            assert.isAtLeast(after.tick - before.tick, 2_000, `tick ${after.tick} ran though a later one was due`)
            assert.isAtMost(after.tick, after.started, `tick ${after.tick} started before it was due`)
            assert.isAbove(after.tick, before.ended! - 1_000, `tick ${after.tick} was not the latest due`)
            // ... and it started as soon as the previous run ended.
            assert.isBelow(after.started - before.ended!, 1_000, `tick ${after.tick} waited after ${before.tick} ended`)
          }
        }),
      60_000
    )
  }
)
