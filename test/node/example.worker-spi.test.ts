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
