/**
 * The examples the README quotes, run as real child processes (the repository's Node 24, as `npm run
 * example:*` does) against a real PostgreSQL: the embedded one, or `DATABASE_URL` when set.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { spawn } from "./node/fixtures/child.ts"

describe("examples/05_database-worker.ts", () => {
  it.live(
    "the database worker relays its outbox rows through SQL and the program exits with code 0 once EXAMPLE_EXIT_AFTER_MS has passed",
    () =>
      Effect.gen(function*() {
        const child = yield* spawn("examples/05_database-worker.ts", { EXAMPLE_EXIT_AFTER_MS: "6000" })
        yield* child.waitFor("supervisor ready", { timeout: "30 seconds" })
        // The worker's own line, with its name, type and the pid of its session's backend: the SQL ran.
        yield* child.waitFor(/\] outbox relay \(outbox relay\) LOG: +relayed \d+ outbox rows \(ids [\d, ]+\)$/, {
          timeout: "10 seconds"
        })
        const exit = yield* child.awaitExit("20 seconds")
        const output = yield* child.output
        const all = output.join("\n")
        assert.deepStrictEqual(exit, { code: 0 }, all)
        const lines = output.filter((line) => line.trim() !== "")
        assert.match(lines.at(-1) ?? "", /NodeSupervisor LOG: +database system is shut down$/, all)
      }).pipe(Effect.provide(NodeServices.layer)),
    60_000
  )
})
