/**
 * examples/30_worker-spi.ts (`npm start`) as a real child process, on its embedded PostgreSQL: what happens
 * when that server dies under it.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as childProcess from "node:child_process"
import { spawn } from "./fixtures/child.ts"

const example = "examples/30_worker-spi.ts"

/** The pid of the child's embedded postmaster: its child process named `postgres`. */
const postmasterOf = (parent: number) =>
  Effect.sync(() => {
    const out = childProcess.execFileSync("pgrep", ["-P", String(parent), "-x", "postgres"], { encoding: "utf8" })
    return Number(out.trim().split("\n")[0])
  })

describe("examples/30_worker-spi.ts", () => {
  it.live(
    "npm start prints the dashboard's address with a token for this run, and the dashboard shows worker_spi's workers and settings",
    () =>
      Effect.gen(function*() {
        const child = yield* spawn(example, { EXAMPLE_EXIT_AFTER_MS: "20000" })
        const line = yield* child.waitFor(/dashboard: http:\/\/127\.0\.0\.1:\d+\/#token=\S+/, { timeout: "30 seconds" })
        const [, origin, token] = /(http:\/\/127\.0\.0\.1:\d+)\/#token=(\S+)/.exec(line)!
        yield* child.waitFor("count in schema4.counted is now 1", { timeout: "10 seconds" })
        const get = (path: string, headers: Record<string, string> = {}) =>
          Effect.promise(() => fetch(`${origin}${path}`, { headers }))
        const json = <A>(path: string) =>
          Effect.promise(() =>
            fetch(`${origin}${path}`, { headers: { authorization: `Bearer ${token}` } }).then((r) =>
              r.json() as Promise<A>
            )
          )
        assert.strictEqual((yield* get("/")).status, 200)
        // The reads need the token the demo made; without it they are refused.
        assert.strictEqual((yield* get("/api/activity")).status, 401)
        const activity = yield* json<{ rows: ReadonlyArray<{ name: string }> }>("/api/activity")
        const names = activity.rows.map((row) => row.name)
        for (const name of ["worker_spi worker 1", "worker_spi worker 2", "worker_spi dynamic worker 4"]) {
          assert.include(names, name)
        }
        const settings = yield* json<ReadonlyArray<{ name: string }>>("/api/settings")
        assert.include(settings.map((setting) => setting.name), "worker_spi.naptime")
        yield* child.signal("SIGINT")
        assert.deepStrictEqual(yield* child.awaitExit("20 seconds"), { code: 130 })
      }).pipe(Effect.provide(NodeServices.layer)),
    60_000
  )

  it.live(
    "an embedded server killed under the supervisor is logged once as FATAL and ends the process with exit code 1",
    () =>
      Effect.gen(function*() {
        const child = yield* spawn(example)
        yield* child.waitFor("supervisor ready", { timeout: "30 seconds" })
        yield* child.waitFor("count in schema4.counted is now 1", { timeout: "10 seconds" })
        const postmaster = yield* postmasterOf(child.pid)
        assert.isAbove(postmaster, 1)
        process.kill(postmaster, "SIGKILL")
        const exit = yield* child.awaitExit("10 seconds")
        assert.deepStrictEqual(exit, { code: 1 })
        const output = yield* child.output
        const fatal = output.filter((line) =>
          /FATAL.*embedded PostgreSQL server \(pid \d+\) was killed by signal SIGKILL/.test(line)
        )
        assert.strictEqual(fatal.length, 1, output.join("\n"))
      }).pipe(Effect.provide(NodeServices.layer)),
    60_000
  )
})
