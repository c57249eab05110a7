/**
 * Singleton workers across real processes: each test starts `test/cluster/fixtures/node.ts` as child
 * processes (Node 24, the sources), joined into one cluster on the suite's database, and SIGKILLs them.
 * Who ran the singleton, when, and with which token is read from the rows its worker writes, with the
 * database's clock.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import * as References from "effect/References"
import { SqlClient } from "effect/sql/SqlClient"
import { ClusterSupervisor } from "../../src/cluster/index.ts"
import * as PgTest from "../pg/support.ts"
import { awaitSteadyOwner, awaitTick, createTickTables, type Node, startNode, tokenSpans } from "./support.ts"

const Env = Layer.merge(PgTest.layer({ prefix: "cluster" }), NodeServices.layer)

/** How long after a SIGKILL the singleton must run elsewhere: the project's target is 5 s; CI gets slack. */
const failoverBudgetMs = 10_000

/** Starts the nodes and waits until the singleton ticks on one of them; returns the nodes and that tick. */
const startCluster = (ids: ReadonlyArray<string>, singletons = "ticker") =>
  Effect.gen(function*() {
    const nodes = new Map<string, Node>()
    for (const id of ids) nodes.set(id, yield* startNode(id, singletons))
    return nodes
  })

/** Roles the in-process cluster grants the token check to. */
const GrantTo = Context.Reference<ReadonlyArray<string>>("test/cluster/GrantTo", { defaultValue: () => [] })

/**
 * This test process joined to a cluster of its own (its own table prefix and fence schema, so the
 * multi-process tests' runner counts do not see it), for the fence's SQL; left when the test ends.
 */
const inProcessCluster = Effect.gen(function*() {
  const port = yield* PgTest.freePort
  const context = yield* Layer.build(ClusterSupervisor.layer({
    runnerAddress: { host: "127.0.0.1", port },
    tablePrefix: "fence_test_cluster",
    schema: "fence_test",
    grantTo: yield* GrantTo
  })).pipe(Effect.provideService(References.MinimumLogLevel, "Error")) // the lone runner's chatter
  return Context.get(context, ClusterSupervisor.ClusterSupervisor)
})

/**
 * Asserts that the token spans of `table` never overlap, that each token has one owner, and that tokens grow
 * with time.
 */
const assertNoOverlap = (table: "cluster_ticks" | "cluster_fenced" = "cluster_ticks") =>
  Effect.gen(function*() {
    const spans = yield* tokenSpans(table)
    for (const span of spans) assert.strictEqual(span.owners, 1, `token ${span.token} was used by several owners`)
    for (let i = 1; i < spans.length; i++) {
      const before = spans[i - 1]!
      const after = spans[i]!
      assert.isTrue(after.token > before.token, `token ${after.token} started after token ${before.token}`)
      assert.isTrue(
        before.last < after.first,
        `owner ${before.owner} (token ${before.token}) still ticked at ${before.last}, after ${after.owner} ` +
          `(token ${after.token}) started at ${after.first}`
      )
    }
    return spans
  })

layer(Env, { timeout: "60 seconds", excludeTestServices: true })("ClusterSupervisor", (it) => {
  it.effect("a missing runner address fails the layer with InvalidClusterOptions naming it", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Layer.build(ClusterSupervisor.layer({} as unknown as ClusterSupervisor.Options))
      )
      assert.strictEqual(error._tag, "InvalidClusterOptions")
      if (error._tag !== "InvalidClusterOptions") return
      assert.strictEqual(error.field, "runnerAddress")
      assert.include(error.hint ?? "", "its own address")
    }))

  it.effect("an expiration that is not whole seconds fails the layer with InvalidClusterOptions", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Layer.build(ClusterSupervisor.layer({
        runnerAddress: { host: "127.0.0.1", port: 1 },
        shardLockExpiration: "2500 millis"
      })))
      assert.strictEqual(error._tag, "InvalidClusterOptions")
      if (error._tag === "InvalidClusterOptions") assert.strictEqual(error.field, "shardLockExpiration")
    }))

  it.effect("a write fenced by an older token does nothing, and check fails with FencedOut", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const cluster = yield* inProcessCluster
      const older = yield* cluster.acquire("fenced")
      const newer = yield* cluster.acquire("fenced")
      assert.strictEqual(newer, older + 1n)
      yield* sql`CREATE TABLE fence_writes (token bigint NOT NULL)`
      const write = (token: bigint) =>
        sql`INSERT INTO fence_writes SELECT ${token.toString()}::bigint
            WHERE ${ClusterSupervisor.makeFencing(cluster, "fenced", token).guard(sql)}`
      yield* write(older)
      yield* write(newer)
      const rows = yield* sql<{ readonly token: string }>`SELECT token::text AS token FROM fence_writes`
      assert.deepStrictEqual(rows.map((row) => row.token), [newer.toString()])
      const checkWith = (token: bigint) =>
        sql.withTransaction(ClusterSupervisor.check).pipe(
          Effect.provideService(ClusterSupervisor.Fencing, ClusterSupervisor.makeFencing(cluster, "fenced", token))
        )
      yield* checkWith(newer)
      const error = yield* Effect.flip(checkWith(older))
      assert.isTrue(ClusterSupervisor.isFencedOut(error))
    }))

  it.effect("a new owner's token waits for a fenced transaction in flight to commit", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const cluster = yield* inProcessCluster
      const token = yield* cluster.acquire("ordered")
      const order: Array<string> = []
      const checked = yield* Deferred.make<void>()
      const fenced = yield* sql.withTransaction(Effect.gen(function*() {
        yield* ClusterSupervisor.check
        yield* Deferred.succeed(checked, undefined)
        yield* Effect.sleep("300 millis")
        order.push("fenced transaction done")
      })).pipe(
        Effect.provideService(ClusterSupervisor.Fencing, ClusterSupervisor.makeFencing(cluster, "ordered", token)),
        Effect.forkChild
      )
      yield* Deferred.await(checked)
      const next = yield* cluster.acquire("ordered")
      order.push("next token taken")
      yield* Fiber.join(fenced)
      assert.deepStrictEqual(order, ["fenced transaction done", "next token taken"])
      assert.strictEqual(next, token + 1n)
    }))

  it.effect("the fence is closed to PUBLIC: another role can neither move an epoch nor check a token unless granted", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const suffix = (yield* Random.nextInt).toString(36).replace("-", "")
      const stranger = `cluster_stranger_${suffix}`
      const friend = `cluster_friend_${suffix}`
      yield* sql.unsafe(`CREATE ROLE ${stranger} NOLOGIN`)
      yield* sql.unsafe(`CREATE ROLE ${friend} NOLOGIN`)
      yield* Effect.addFinalizer(() =>
        Effect.ignore(Effect.gen(function*() {
          for (const role of [stranger, friend]) {
            yield* sql.unsafe(`DROP OWNED BY ${role}`)
            yield* sql.unsafe(`DROP ROLE ${role}`)
          }
        }))
      )
      yield* inProcessCluster.pipe(Effect.provideService(GrantTo, [friend]))
      const as = <A, E, R>(role: string, statement: Effect.Effect<A, E, R>) =>
        sql.withTransaction(Effect.andThen(sql.unsafe(`SET LOCAL ROLE ${role}`), statement))
      const holds = sql`SELECT fence_test.fence_holds('x', 1)`
      const bump = sql`UPDATE fence_test.fence SET epoch = epoch + 1`
      assert.strictEqual((yield* PgTest.pgFailure(as(stranger, holds))).code, "42501")
      assert.strictEqual((yield* PgTest.pgFailure(as(stranger, bump))).code, "42501")
      yield* as(friend, holds)
      assert.strictEqual((yield* PgTest.pgFailure(as(friend, bump))).code, "42501")
    }))

  it.effect(
    "a singleton runs on exactly one of three processes; after its owner is SIGKILLed another runs it with a greater token",
    () =>
      Effect.gen(function*() {
        yield* createTickTables
        const sql = yield* SqlClient
        const nodes = yield* startCluster(["a", "b", "c"])
        // All three runners registered, then a few refreshes so that the shards have settled.
        yield* PgTest.eventually(
          "three runners registered",
          Effect.map(
            sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM cluster_runners WHERE healthy`,
            (rows) => rows[0]!.n === 3
          ).pipe(Effect.catch(() => Effect.succeed(false))), // the tables appear with the first runner
          30_000
        )
        const first = yield* awaitTick(() => true, 30_000)
        yield* Effect.sleep("3 seconds")
        // Exactly one process runs the worker: one owner, under one token, ticked over the last two seconds.
        const owner = yield* awaitSteadyOwner(20_000)
        assert.isTrue(owner.token >= first.token)

        const killedAt = yield* Clock.currentTimeMillis
        yield* nodes.get(owner.owner)!.child.signal("SIGKILL")
        const next = yield* awaitTick((id) => id !== owner.owner, failoverBudgetMs)
        const failoverMs = (yield* Clock.currentTimeMillis) - killedAt
        assert.isTrue(next.token > owner.token, `token ${next.token} after ${owner.token}`)
        assert.isBelow(failoverMs, failoverBudgetMs)
        const started = yield* nodes.get(next.owner)!.child.waitFor(`ticker: started token=${next.token}`)
        assert.include(started, `node=${next.owner}`)
        yield* assertNoOverlap()
      }),
    60_000
  )

  it.effect(
    "an owner paused past the lock expiration cannot commit a fenced write once another process took over",
    () =>
      Effect.gen(function*() {
        yield* createTickTables
        const nodes = yield* startCluster(["s1", "s2"])
        yield* awaitTick(() => true, 30_000)
        yield* Effect.sleep("2 seconds") // both joined, shards settled
        const owner = yield* awaitSteadyOwner(20_000)
        const paused = nodes.get(owner.owner)!.child
        // SIGSTOP: a frozen VM, a long GC. Its sessions stay open until idle_session_timeout ends them.
        yield* paused.signal("SIGSTOP")
        const next = yield* awaitTick((id) => id !== owner.owner, failoverBudgetMs).pipe(
          Effect.ensuring(Effect.ignore(Effect.delay(paused.signal("SIGCONT"), "1 second")))
        )
        assert.isTrue(next.token > owner.token)
        // The resumed process learns it lost the shard and stops its worker; meanwhile its writes are fenced.
        yield* Effect.sleep("4 seconds")
        yield* assertNoOverlap("cluster_fenced")
        // Both owners kept writing: the fenced history has the paused owner's token, then the new one's.
        const fenced = yield* tokenSpans("cluster_fenced")
        assert.isTrue(fenced.some((span) => span.token === owner.token))
        assert.isTrue(fenced.some((span) => span.token === next.token))
      }),
    60_000
  )

  it.effect(
    "a singleton that keeps failing restarts by its own schedule on its owner, gives up there and stays given up",
    () =>
      Effect.gen(function*() {
        // One process, so that no rebalance moves the singleton while it fails: its owner is certain.
        const node = yield* startNode("p", "crasher")
        yield* node.child.waitFor("crasher: registration given up", { timeout: "40 seconds" })
        const starts = (yield* node.child.output).filter((line) => line.startsWith("crasher: started"))
        // 1 start + 3 restarts: the definition's intensity (3 restarts a minute), enforced by the local supervisor.
        assert.strictEqual(starts.length, 4, starts.join("\n"))
        // Every incarnation carried the same token: restarts are local, not a new ownership.
        assert.strictEqual(new Set(starts.map((line) => /token=(\d+)/.exec(line)![1])).size, 1)
        const restarting = yield* node.child.count("crasher: registration waiting for restart")
        assert.isAtLeast(restarting, 1)
        // Given up stays given up on the owner: nothing starts it again.
        yield* Effect.sleep("2 seconds")
        assert.strictEqual(yield* node.child.count("crasher: started"), 4)
      }),
    60_000
  )

  it.effect(
    "no two owners are ever active at once while the owner is SIGKILLed 20 times under load",
    () =>
      Effect.gen(function*() {
        yield* createTickTables
        const sql = yield* SqlClient
        const nodes = yield* startCluster(["n1", "n2", "n3"])
        let next = 4
        const kills = 20
        const failovers: Array<number> = []
        let owner = yield* awaitTick(() => true, 30_000)
        for (let kill = 1; kill <= kills; kill++) {
          // A random phase, so that kills do not lock onto the one-second refresh cadence.
          yield* Effect.sleep(`${yield* Random.nextBetween(300, 1300)} millis`)
          owner = yield* awaitTick(() => true, failoverBudgetMs)
          const victim = nodes.get(owner.owner)!
          const killedAt = yield* Clock.currentTimeMillis
          yield* victim.child.signal("SIGKILL")
          nodes.delete(owner.owner)
          const replacement = `n${next++}`
          nodes.set(replacement, yield* startNode(replacement))
          const after = yield* awaitTick((id) => id !== owner.owner, failoverBudgetMs)
          failovers.push((yield* Clock.currentTimeMillis) - killedAt)
          assert.isTrue(after.token > owner.token, `kill ${kill}: token ${after.token} after ${owner.token}`)
        }

        const spans = yield* assertNoOverlap()
        // Each kill ended one owner's tenure (rebalances onto a replacement may add more).
        assert.isAtLeast(spans.length, kills + 1)
        // Every tick passed the fence: no owner ever wrote with a token that was no longer current.
        const [counts] = yield* sql<{ readonly ticks: number; readonly fenced: number }>`
          SELECT (SELECT count(*)::int FROM cluster_ticks) AS ticks, (SELECT count(*)::int FROM cluster_fenced) AS fenced`
        assert.strictEqual(counts!.fenced, counts!.ticks)
        // The worker kept running: it is ticking now, and no gap between ticks exceeded the failover budget.
        yield* awaitTick(() => true, failoverBudgetMs)
        const [gap] = yield* sql<{ readonly ms: number }>`
          SELECT coalesce(max(extract(epoch FROM at - previous) * 1000), 0)::float8 AS ms
          FROM (SELECT at, lag(at) OVER (ORDER BY at) AS previous FROM cluster_ticks) t`
        assert.isBelow(gap!.ms, failoverBudgetMs)
        const sorted = [...failovers].sort((a, b) => a - b)
        yield* Effect.log(
          `failover over ${kills} SIGKILLs: p50 ${sorted[Math.floor((kills - 1) / 2)]} ms, max ${sorted[kills - 1]} ms`
        )
      }),
    150_000
  )
})
