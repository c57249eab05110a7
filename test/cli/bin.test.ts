/**
 * The `bgworker` executable without a supervisor to talk to: help and completions, a server that cannot be
 * reached, `run <module>` with its signals, and `demo` (worker_spi on its own embedded server). Real child
 * processes on the repository's Node 24.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { spawn } from "../node/fixtures/child.ts"
import * as PgTest from "../pg/support.ts"
import { bgworker, bin, show } from "./support.ts"

const commands = [
  [],
  ["ps"],
  ["launch"],
  ["terminate"],
  ["set-latch"],
  ["reload"],
  ["settings"],
  ["settings", "set"],
  ["settings", "reset"],
  ["run"],
  ["demo"]
] as const

describe("bgworker", () => {
  it.live("--help describes every command, with its usage, and exits with 0", () =>
    Effect.gen(function*() {
      for (const command of commands) {
        const result = yield* bgworker([...command, "--help"])
        assert.strictEqual(result.code, 0, show(result))
        assert.include(result.stdout, "DESCRIPTION", show(result))
        assert.include(result.stdout, `USAGE\n  ${["bgworker", ...command].join(" ")} `, show(result))
      }
    }).pipe(Effect.provide(NodeServices.layer)), 60_000)

  it.live("--completions bash prints a completion script for bgworker", () =>
    Effect.gen(function*() {
      const result = yield* bgworker(["--completions", "bash"])
      assert.strictEqual(result.code, 0, show(result))
      assert.include(result.stdout, "complete -F")
      assert.include(result.stdout, "bgworker")
    }).pipe(Effect.provide(NodeServices.layer)), 30_000)

  it.live("a usage error prints the command's help and the error, and exits with 1", () =>
    Effect.gen(function*() {
      const result = yield* bgworker(["ps", "--bogus"])
      assert.strictEqual(result.code, 1, show(result))
      assert.include(result.stdout + result.stderr, "Unrecognized flag: --bogus")
    }).pipe(Effect.provide(NodeServices.layer)), 30_000)

  it.live("no server to reach: psql's message without the password, and exit code 2", () =>
    Effect.gen(function*() {
      const port = yield* PgTest.freePort
      const url = yield* bgworker(["ps", "--database-url", `postgresql://me:s3cret@127.0.0.1:${port}/db`])
      assert.strictEqual(url.code, 2, show(url))
      assert.strictEqual(
        url.stderr,
        `bgworker: error: connection to server at "127.0.0.1", port ${port} failed: Connection refused\n` +
          "\tIs the server running on that host and accepting TCP/IP connections?\n"
      )
      assert.notInclude(url.stdout + url.stderr, "s3cret")
      // The PG* variables, as psql reads them.
      const env = yield* bgworker(["reload"], { PGHOST: "127.0.0.1", PGPORT: String(port), PGPASSWORD: "s3cret" })
      assert.strictEqual(env.code, 2, show(env))
      assert.match(env.stderr, new RegExp(`^bgworker: error: connection to server at "127.0.0.1", port ${port} failed`))
      assert.notInclude(env.stdout + env.stderr, "s3cret")
    }).pipe(Effect.provide(NodeServices.layer)), 30_000)

  it.live("the server's name reaches the terminal escaped (PGHOST, a URL's ?host=)", () =>
    Effect.gen(function*() {
      const env = yield* bgworker(["ps"], { PGHOST: "/nonexistent\nforged", PGPORT: "5432" })
      assert.strictEqual(env.code, 2, show(env))
      assert.match(
        env.stderr,
        /^bgworker: error: connection to server on socket "\/nonexistent\\nforged\/\.s\.PGSQL\.5432" failed/
      )
      const url = yield* bgworker(["ps", "--database-url", "postgresql:///db?host=%2Fnonexistent%1Bforged"])
      assert.strictEqual(url.code, 2, show(url))
      assert.match(
        url.stderr,
        /^bgworker: error: connection to server on socket "\/nonexistent\\x1bforged\/\.s\.PGSQL\.5432" failed/
      )
    }).pipe(Effect.provide(NodeServices.layer)), 30_000)

  it.live(
    "run starts the supervisor a module exports; SIGHUP reloads it and SIGTERM ends it with 130",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const child = yield* spawn(bin, {}, ["run", "test/cli/fixtures/supervisor.ts"])
        yield* child.waitFor("supervisor ready", { timeout: "20 seconds" })
        yield* child.waitFor(/\] greeter \(greeter\) LOG: +hello from a module run by bgworker run$/)
        yield* child.signal("SIGHUP")
        yield* child.waitFor("greeter reloaded")
        yield* child.signal("SIGTERM")
        const exit = yield* child.awaitExit("10 seconds")
        const output = yield* child.output
        assert.deepStrictEqual(exit, { code: 130 }, output.join("\n"))
        assert.match(output.filter((line) => line !== "").at(-1)!, /NodeSupervisor LOG: +database system is shut down$/)
      })).pipe(Effect.provide(NodeServices.layer)),
    60_000
  )

  it.live(
    "run refuses a module that exports no supervisor layer, saying how to export one",
    () =>
      Effect.gen(function*() {
        const result = yield* bgworker(["run", "test/cli/fixtures/notALayer.ts"])
        assert.strictEqual(result.code, 1, show(result))
        assert.strictEqual(
          result.stderr,
          `bgworker: error: module "test/cli/fixtures/notALayer.ts" exports no supervisor layer (its exports: ` +
            `"default", "greeting")\n` +
            `\tExport it as the default export, or as "layer": export default Supervisor.layer({ ... }).\n`
        )
      }).pipe(Effect.provide(NodeServices.layer)),
    30_000
  )

  it.live(
    "demo runs worker_spi on an embedded server and exits with 0 once EXAMPLE_EXIT_AFTER_MS has passed",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const child = yield* spawn(bin, { EXAMPLE_EXIT_AFTER_MS: "6000", DATABASE_URL: "" }, ["demo"])
        yield* child.waitFor("supervisor ready", { timeout: "30 seconds" })
        yield* child.waitFor("count in schema4.counted is now 1", { timeout: "10 seconds" })
        const exit = yield* child.awaitExit("20 seconds")
        const output = yield* child.output
        assert.deepStrictEqual(exit, { code: 0 }, output.join("\n"))
        assert.match(output.filter((line) => line !== "").at(-1)!, /NodeSupervisor LOG: +database system is shut down$/)
      })).pipe(Effect.provide(NodeServices.layer)),
    60_000
  )
})
