/**
 * The `bgworker` CLI against a running supervisor: the real executable as a child process, talking through
 * the control plane to a supervisor that runs in this process (entry point `cli.napper`, parameter
 * `clitest.naptime`, `ServerSettings` following the server) on an embedded PostgreSQL of its own (the
 * tests change its configuration with `ALTER SYSTEM`, and reset it afterwards).
 */
import { NodeServices } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { SqlClient } from "effect/sql/SqlClient"
import { randomUUID } from "node:crypto"
import * as Activity from "../../src/Activity.ts"
import * as BackgroundWorker from "../../src/BackgroundWorker.ts"
import * as DatabaseState from "../../src/DatabaseState.ts"
import * as Guc from "../../src/Guc.ts"
import * as Interrupts from "../../src/Interrupts.ts"
import * as ControlPlane from "../../src/pg/ControlPlane.ts"
import * as EmbeddedPostgres from "../../src/pg/EmbeddedPostgres.ts"
import * as ServerSettings from "../../src/pg/ServerSettings.ts"
import * as ProcLatch from "../../src/ProcLatch.ts"
import * as Supervisor from "../../src/Supervisor.ts"
import { captureLogs } from "../fixtures.ts"
import { spawn } from "../node/fixtures/child.ts"
import * as PgTest from "../pg/support.ts"
import { bgworker, bin, type Result, show } from "./support.ts"

// --- the supervisor under the CLI ---

/** What the nappers saw: a latch set, or a reload request, by pid. */
const events: Array<{ readonly pid: number; readonly kind: "latch" | "reload" }> = []

const napper = BackgroundWorker.make({
  name: "cli napper",
  entryPoint: { library: "cli", function: "napper" },
  argument: Schema.Struct({ naptimeMs: Schema.Number }),
  main: ({ naptimeMs }) =>
    Effect.gen(function*() {
      const { pid } = yield* BackgroundWorker.current
      while (true) {
        const woke = yield* ProcLatch.wait({
          timeout: Duration.millis(naptimeMs),
          onPostmasterDeath: "exit",
          waitEvent: "CliNap"
        })
        yield* ProcLatch.reset
        if (woke.latchSet) events.push({ pid, kind: "latch" })
        if (yield* Interrupts.reloadPending) events.push({ pid, kind: "reload" })
      }
    })
})

const naptime = Guc.int("clitest.naptime", {
  default: 1000,
  min: 1,
  max: 3_600_000,
  unit: "ms",
  context: "sighup",
  description: "How long the CLI test's worker naps."
})

const logs = captureLogs()

const Suite = Layer.mergeAll(ControlPlane.layer(), ServerSettings.layer({ interval: "50 millis" })).pipe(
  Layer.provideMerge(Supervisor.layer({ entryPoints: [napper], shutdownTimeout: "1 second" })),
  Layer.provideMerge(ServerSettings.layerStartup()),
  Layer.provideMerge(Layer.mergeAll(
    Guc.layer({ parameters: [naptime], overrides: { max_worker_processes: 4 } }),
    DatabaseState.layerMemory("consistent")
  )),
  Layer.provideMerge(EmbeddedPostgres.clientLayer({ applicationName: "cli test" })),
  Layer.provideMerge(EmbeddedPostgres.layerEmbedded()),
  Layer.provideMerge(NodeServices.layer),
  Layer.provide(logs.layer)
)

// --- helpers ---

const suffix = randomUUID().slice(0, 8)
const stranger = `cli_stranger_${suffix}`
const operator = `cli_operator_${suffix}`
const password = "cli test password"

/** The server's URL, as the superuser, or as `role` (with the test's password). */
const urlOf = (role?: string) =>
  Effect.map(EmbeddedPostgres.PgServer, (server) => {
    const url = new URL(Redacted.value(server.url))
    if (role !== undefined) {
      url.username = role
      url.password = encodeURIComponent(password)
    }
    return url.toString()
  })

/** `bgworker <args>` against the suite's server (`DATABASE_URL`), as the superuser or as `role`. */
const cli = (args: ReadonlyArray<string>, role?: string) =>
  Effect.flatMap(urlOf(role), (url) => bgworker(args, { DATABASE_URL: url })).pipe(Effect.orDie)

const succeeded = (result: Result) => assert.strictEqual(result.code, 0, show(result))

interface PsRow {
  readonly handle: number | null
  readonly pid: number | null
  readonly name: string
  readonly backend_type: string
  readonly state: string | null
  readonly wait_event: string | null
  readonly process: string
}

const psJson = Effect.map(cli(["ps", "--json"]), (result) => {
  succeeded(result)
  return JSON.parse(result.stdout) as ReadonlyArray<PsRow>
})

/** `launch cli napper --wait --json` with `name`: the handle and the pid. */
const launchNapper = (name: string) =>
  Effect.map(
    cli(["launch", "cli", "napper", "--arg", `{"naptimeMs": 60000}`, "--name", name, "--wait", "--json"]),
    (result) => {
      succeeded(result)
      return JSON.parse(result.stdout) as { readonly handle: number; readonly pid: number }
    }
  )

const roles = Layer.effectDiscard(Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql.unsafe(`CREATE ROLE ${stranger} LOGIN PASSWORD '${password}'`)
  yield* sql.unsafe(`CREATE ROLE ${operator} LOGIN PASSWORD '${password}' IN ROLE ${ControlPlane.launcherRole()}`)
  yield* Effect.addFinalizer(() => sql.unsafe(`DROP ROLE IF EXISTS ${stranger}, ${operator}`).pipe(Effect.orDie))
}))

/** Leaves the server's configuration as it was. */
const resetServerAfterwards = Effect.addFinalizer(() =>
  SqlClient.use((sql) =>
    Effect.andThen(sql.unsafe("ALTER SYSTEM RESET ALL"), sql.unsafe("SELECT pg_catalog.pg_reload_conf()"))
  ).pipe(Effect.orDie)
)

layer(Layer.merge(Suite, roles.pipe(Layer.provide(Suite))), PgTest.suiteOptions)("bgworker CLI", (it) => {
  it.effect("launch --wait prints the handle and the pid, and ps shows the worker, as a table and as JSON", () =>
    Effect.gen(function*() {
      const { handle, pid } = yield* launchNapper("cli napper ps")
      assert.isAbove(handle, 0)
      const inProcess = yield* Activity.snapshot
      assert.strictEqual(inProcess.find((row) => row.name === "cli napper ps")?.pid, pid)

      let rows: ReadonlyArray<PsRow> = []
      yield* PgTest.eventually(
        "ps --json shows the worker napping",
        Effect.map(psJson, (all) => {
          rows = all.filter((row) => row.name === "cli napper ps")
          return rows.length === 1 && rows[0]!.wait_event === "CliNap"
        }),
        10_000
      )
      assert.deepStrictEqual(
        [rows[0]!.handle, rows[0]!.pid, rows[0]!.backend_type],
        [handle, pid, "cli napper"]
      )

      const table = yield* cli(["ps"])
      succeeded(table)
      const lines = table.stdout.trimEnd().split("\n")
      assert.match(lines[0]!, /^handle \| pid +\| name +\| type +\| registration \| state +\| wait_event/)
      assert.match(lines[0]!, /\| process\s*$/)
      const line = lines.find((l) => l.includes("cli napper ps"))
      assert.isDefined(line, show(table))
      // The process column: the first 8 characters of the supervisor process's id, as in bgworker.processes.
      assert.match(line!, new RegExp(`\\| ${rows[0]!.process.slice(0, 8)}\\s*$`))
      assert.match(
        line!,
        new RegExp(
          `^${handle} +\\| ${pid} +\\| cli napper ps \\| cli napper \\| running +\\| \\w+ +\\| \\w+:CliNap +\\| 0 `
        )
      )
      assert.match(lines.at(-1)!, /^\(\d+ rows?\)$/)
    }))

  it.effect("ps --watch prints the workers again every interval until SIGINT ends it with exit code 130", () =>
    Effect.gen(function*() {
      const url = yield* urlOf()
      const child = yield* spawn(bin, { DATABASE_URL: url }, ["ps", "--watch=0.2", "--json"])
      yield* child.waitFor(/^\[/, { times: 3, timeout: "10 seconds" })
      const output = yield* child.output
      for (const line of output) assert.isArray(JSON.parse(line), output.join("\n"))
      yield* child.signal("SIGINT")
      assert.deepStrictEqual(yield* child.awaitExit("5 seconds"), { code: 130 })
    }).pipe(Effect.scoped, Effect.orDie))

  it.effect("terminate ends a launched worker: it leaves the supervisor's slots and ps", () =>
    Effect.gen(function*() {
      const { handle, pid } = yield* launchNapper("cli napper terminate")
      const result = yield* cli(["terminate", String(handle)])
      succeeded(result)
      assert.strictEqual(result.stdout.trim(), `terminate requested for handle ${handle}`)
      yield* PgTest.eventually(
        "the worker is gone",
        Effect.map(Activity.snapshot, (rows) => !rows.some((row) => row.pid === pid)),
        5000
      )
      yield* PgTest.eventually(
        "ps no longer lists it",
        Effect.map(psJson, (rows) => !rows.some((row) => row.handle === handle)),
        5000
      )
    }))

  it.effect("set-latch wakes the worker, and reload sets its reload flag", () =>
    Effect.gen(function*() {
      const { handle, pid } = yield* launchNapper("cli napper signals")
      const latch = yield* cli(["set-latch", String(handle), "--json"])
      succeeded(latch)
      assert.deepStrictEqual(JSON.parse(latch.stdout), { handle, requested: "set_latch" })
      yield* PgTest.eventually(
        "the worker saw its latch set",
        Effect.sync(() => events.some((e) => e.pid === pid && e.kind === "latch")),
        5000
      )
      const reload = yield* cli(["reload"])
      succeeded(reload)
      assert.strictEqual(reload.stdout.trim(), "reload requested")
      yield* PgTest.eventually(
        "the worker saw the reload",
        Effect.sync(() => events.some((e) => e.pid === pid && e.kind === "reload")),
        5000
      )
      succeeded(yield* cli(["terminate", String(handle)]))
    }))

  it.effect("settings lists a parameter the supervisor defines, by pattern, as a table and as JSON", () =>
    Effect.gen(function*() {
      let listed: Result | undefined
      yield* PgTest.eventually(
        "settings lists clitest.naptime",
        Effect.map(cli(["settings", "clitest.*"]), (result) => {
          listed = result
          return result.stdout.includes("clitest.naptime")
        }),
        5000
      )
      succeeded(listed!)
      const line = listed!.stdout.split("\n").find((l) => l.startsWith("clitest.naptime"))!
      assert.match(line, /^clitest\.naptime \| 1000 +\| ms +\| sighup +\| default +\| f +\| How long the CLI test/)
      assert.notInclude(listed!.stdout, "max_worker_processes")

      const json = yield* cli(["settings", "CLITEST.NAP?IME", "--json"])
      succeeded(json)
      const rows = JSON.parse(json.stdout) as ReadonlyArray<Record<string, unknown>>
      assert.deepStrictEqual(rows.map((row) => [row["name"], row["setting"], row["context"]]), [
        ["clitest.naptime", "1000", "sighup"]
      ])
    }))

  it.effect("settings set changes a parameter as ALTER SYSTEM does and the supervisor follows; reset undoes it", () =>
    Effect.gen(function*() {
      yield* resetServerAfterwards
      const set = yield* cli(["settings", "set", "clitest.naptime", "250"])
      succeeded(set)
      assert.strictEqual(set.stdout.trim(), "ALTER SYSTEM")
      const sql = yield* SqlClient
      const file = yield* sql<{ setting: string }>`
        SELECT setting FROM pg_catalog.pg_file_settings WHERE name = 'clitest.naptime'`
      assert.deepStrictEqual(file.map((row) => row.setting), ["250"])
      yield* PgTest.eventually("the supervisor follows", Effect.map(Guc.get(naptime), (n) => n === 250), 5000)

      const reset = yield* cli(["settings", "reset", "clitest.naptime"])
      succeeded(reset)
      yield* PgTest.eventually("the supervisor is back to the default", Effect.map(Guc.get(naptime), (n) => n === 1000))
    }))

  it.effect("settings set refuses a parameter the supervisor does not define, and a non-superuser", () =>
    Effect.gen(function*() {
      yield* resetServerAfterwards
      const unknown = yield* cli(["settings", "set", "clitest.nosuch", "1"])
      assert.strictEqual(unknown.code, 1, show(unknown))
      assert.strictEqual(unknown.stderr.split("\n")[0], `ERROR:  unrecognized configuration parameter "clitest.nosuch"`)

      const denied = yield* cli(["settings", "set", "clitest.naptime", "5"], operator)
      assert.strictEqual(denied.code, 1, show(denied))
      const lines = denied.stderr.trimEnd().split("\n")
      assert.strictEqual(lines[0], `ERROR:  permission denied to set parameter "clitest.naptime"`)
      assert.match(lines.at(-1)!, /^HINT: {2}ALTER SYSTEM needs a superuser/)
      assert.strictEqual(yield* Guc.get(naptime), 1000)
    }))

  it.effect("a launch of an unknown entry point prints the server's ERROR and DETAIL and exits with 1", () =>
    Effect.gen(function*() {
      const result = yield* cli(["launch", "cli", "nosuch", "--wait"])
      assert.strictEqual(result.code, 1, show(result))
      const lines = result.stderr.trimEnd().split("\n")
      assert.strictEqual(lines[0], "ERROR:  could not start background process", show(result))
      assert.strictEqual(lines[1], `DETAIL:  could not find function "nosuch" in library "cli"`, show(result))
      assert.match(lines[2]!, /^HINT: {2}More details may be available in the server log\.$/)
      assert.strictEqual(result.stdout, "")
    }))

  it.effect("a role outside bgworker_launcher is refused the launch, with the grant in the hint", () =>
    Effect.gen(function*() {
      const result = yield* cli(["launch", "cli", "napper", "--arg", `{"naptimeMs": 10}`], stranger)
      assert.strictEqual(result.code, 1, show(result))
      assert.deepStrictEqual(result.stderr.trimEnd().split("\n"), [
        "ERROR:  permission denied for function launch",
        `HINT:  Launching needs membership in "bgworker_launcher" (GRANT bgworker_launcher TO <role>).`
      ])
      assert.notInclude(result.stdout + result.stderr, password)
      const ps = yield* cli(["ps"], stranger)
      assert.strictEqual(ps.code, 1, show(ps))
      assert.strictEqual(ps.stderr.split("\n")[0], "ERROR:  permission denied for view activity")
    }))

  it.effect("arguments are checked before connecting: an oversized name, invalid JSON, a bad handle", () =>
    Effect.gen(function*() {
      const long = yield* cli(["launch", "cli", "napper", "--name", "n".repeat(96)])
      assert.strictEqual(long.code, 1, show(long))
      assert.match(
        long.stderr,
        /^bgworker: error: --name "n+\.\.\." is too long \(96 bytes\)\n\tThe limit is 95 bytes\./
      )
      const json = yield* cli(["launch", "cli", "napper", "--arg", "{naptimeMs: 1}"])
      assert.strictEqual(json.code, 1, show(json))
      assert.match(json.stderr, /^bgworker: error: --arg is not valid JSON: /)
      const handle = yield* cli(["terminate", "0"])
      assert.strictEqual(handle.code, 1, show(handle))
      assert.match(handle.stderr, /^bgworker: error: invalid background worker handle "0"/)
    }))
})
