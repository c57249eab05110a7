/**
 * examples/40_cluster.ts (`npm run example:cluster`) as a real child process (the repository's Node 24, the
 * sources), on its embedded PostgreSQL (or `DATABASE_URL`): three supervisor processes, the singleton's owner
 * SIGKILLed, and what the printed views show before and after.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as EmbeddedPostgres from "../../src/pg/EmbeddedPostgres.ts"
import { spawn } from "../node/fixtures/child.ts"
import * as PgTest from "../pg/support.ts"

const example = "examples/40_cluster.ts"

/** The rows (cells trimmed) of the table printed after the `=> <query>` line at or after `from`. */
const tableAfter = (
  lines: ReadonlyArray<string>,
  from: number,
  query: RegExp
): ReadonlyArray<ReadonlyArray<string>> => {
  const start = lines.findIndex((line, i) => i >= from && line.startsWith("=> ") && query.test(line))
  assert.isAbove(start, -1, `no table for ${String(query)} after line ${from}`)
  const rows: Array<ReadonlyArray<string>> = []
  // The query, the header, the rule; then the rows until `(n rows)`.
  for (let i = start + 3; i < lines.length && !/^\(\d+ rows?\)$/.test(lines[i]!); i++) {
    rows.push(lines[i]!.split("|").map((cell) => cell.trim()))
  }
  return rows
}

/** Whether an OS process with this pid exists (signal 0 only checks). */
const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** The members' OS pids, from the program's `members:` line. */
const memberPids = (line: string) =>
  new Map([...line.matchAll(/(member \d) is os pid (\d+)/g)].map((m) => [m[1]!, Number(m[2])] as const))

/** Waits (polling every 100 ms, at most `ms`) until none of `pids` is alive; returns those still alive. */
const awaitGone = (pids: ReadonlyArray<number>, ms: number) =>
  Effect.gen(function*() {
    const deadline = Date.now() + ms
    while (pids.some(alive) && Date.now() < deadline) yield* Effect.sleep("100 millis")
    return pids.filter(alive)
  })

describe("examples/40_cluster.ts", () => {
  it.live(
    "npm run example:cluster shows the singleton on one process, SIGKILLs it, shows it on another with a greater fencing token and the killed process dead, and exits with code 0 leaving no member alive",
    () =>
      Effect.gen(function*() {
        const child = yield* spawn(example)
        const exit = yield* child.awaitExit("55 seconds")
        const lines = yield* child.output
        const all = lines.join("\n")
        assert.deepStrictEqual(exit, { code: 0 }, all)
        assert.match(all, /^connect: psql "postgres(ql)?:\/\/\S+"$/m)

        // members: member 1 is os pid <p> (runner ...), ...
        const membersLine = lines.find((line) => line.startsWith("members: "))
        assert.isDefined(membersLine, all)
        const pids = memberPids(membersLine!)
        assert.strictEqual(pids.size, 3, membersLine)

        const beforeAt = lines.findIndex((line) => line.startsWith("--- before: "))
        const afterAt = lines.findIndex((line) => line.startsWith("--- after: "))
        assert.isAbove(beforeAt, -1, all)
        assert.isAbove(afterAt, beforeAt, all)
        const [, owner, ownerProcess, ownerPid, tokenBefore] =
          /^--- before: counter runs on (member \d) \(process (\S+), os pid (\d+)\), fencing token (\d+)$/.exec(
            lines[beforeAt]!
          ) ?? []
        assert.isDefined(owner, lines[beforeAt])
        assert.strictEqual(pids.get(owner!), Number(ownerPid))
        const [, next, nextProcess, nextPid, seconds, tokenAfter, was, dead] =
          /^--- after: counter runs on (member \d) \(process (\S+), os pid (\d+)\) ([\d.]+) s after the kill, fencing token (\d+) \(was (\d+)\); (member \d) is marked dead$/
            .exec(lines[afterAt]!) ?? []
        assert.isDefined(next, lines[afterAt])
        assert.notStrictEqual(next, owner)
        assert.notStrictEqual(nextProcess, ownerProcess)
        assert.strictEqual(pids.get(next!), Number(nextPid))
        assert.strictEqual(dead, owner)
        assert.strictEqual(was, tokenBefore)
        assert.isTrue(BigInt(tokenAfter!) > BigInt(tokenBefore!), `token ${tokenAfter} after ${tokenBefore}`)
        assert.isBelow(Number(seconds), 10, "failover took too long")
        assert.isTrue(lines.some((line) => line === `--- SIGKILL ${owner} (os pid ${ownerPid})`), all)

        // Before: the three processes live; the activity view shows counter on the owner's process only.
        const processesBefore = tableAfter(lines, beforeAt, /FROM bgworker\.processes/)
        assert.strictEqual(processesBefore.length, 3, all)
        assert.isTrue(processesBefore.every((row) => row[2] === "t"), all)
        const activityBefore = tableAfter(lines, beforeAt, /FROM bgworker\.activity;$/)
        assert.deepStrictEqual(activityBefore.filter((row) => row[1] === "counter").map((row) => row[0]), [
          ownerProcess
        ], all)

        // After: the killed process is marked dead (not live) and its workers left the activity view; counter
        // runs (a pid) on the new owner's process.
        const processesAfter = tableAfter(lines, afterAt, /FROM bgworker\.processes/)
        const killedRow = processesAfter.find((row) => row[0] === ownerProcess)
        assert.deepStrictEqual(killedRow?.slice(1, 3), [ownerPid, "f"], all)
        const activityAfter = tableAfter(lines, afterAt, /FROM bgworker\.activity;$/)
        assert.isFalse(activityAfter.some((row) => row[0] === ownerProcess), all)
        const counterAfter = activityAfter.filter((row) => row[1] === "counter")
        assert.strictEqual(counterAfter.length, 1, all)
        assert.strictEqual(counterAfter[0]![0], nextProcess, all)
        assert.match(counterAfter[0]![2]!, /^\d+$/, all)

        // The members were stopped by the program, not left behind.
        assert.match(lines.filter((line) => line.trim() !== "").at(-1) ?? "", /^--- done$/, all)
        for (const [name, pid] of pids) assert.isFalse(alive(pid), `${name} (pid ${pid}) outlived the program`)
      }).pipe(Effect.provide(NodeServices.layer)),
    60_000
  )

  it.live(
    "Ctrl-C (SIGINT) while the cluster runs stops the three members before the program exits with code 130",
    () =>
      Effect.gen(function*() {
        const child = yield* spawn(example)
        const pids = memberPids(yield* child.waitFor(/^members: /, { timeout: "40 seconds" }))
        assert.strictEqual(pids.size, 3)
        yield* child.signal("SIGINT")
        assert.deepStrictEqual(yield* child.awaitExit("20 seconds"), { code: 130 })
        const output = (yield* child.output).join("\n")
        assert.include(output, "--- interrupted: stopping the members")
        // Each member shut itself down (its own last line), and none is left.
        for (const name of pids.keys()) {
          assert.match(output, new RegExp(`^\\[${name}\\] .*database system is shut down$`, "m"), output)
        }
        assert.deepStrictEqual(yield* awaitGone([...pids.values()], 0), [], output)
      }).pipe(Effect.provide(NodeServices.layer)),
    60_000
  )

  it.live(
    "when the program is SIGKILLed (no cleanup of its own) on a server that outlives it, its members stop within seconds",
    () =>
      Effect.gen(function*() {
        // A server of the test's (DATABASE_URL, or an embedded one, in a fresh database): unlike the
        // example's own embedded server it does not go away with the program, so the members' sessions live on.
        const server = yield* EmbeddedPostgres.PgServer
        const child = yield* spawn(example, { DATABASE_URL: Redacted.value(server.url) })
        const pids = memberPids(yield* child.waitFor(/^members: /, { timeout: "40 seconds" }))
        assert.strictEqual(pids.size, 3)
        yield* child.signal("SIGKILL")
        assert.deepStrictEqual(yield* child.awaitExit("10 seconds"), { signal: "SIGKILL" })
        assert.deepStrictEqual(yield* awaitGone([...pids.values()], 15_000), [], "members outlived the program")
      }).pipe(Effect.provide(Layer.merge(NodeServices.layer, PgTest.layerDatabase({ prefix: "cluster_example" })))),
    60_000
  )
})
