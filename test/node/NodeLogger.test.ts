import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as BackgroundWorker from "../../src/BackgroundWorker.ts"
import { NodeLogger } from "../../src/node/index.ts"
import * as ProcLatch from "../../src/ProcLatch.ts"
import * as Supervisor from "../../src/Supervisor.ts"
import { spawn } from "./fixtures/child.ts"

const prefix = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC \[(\d+)\] /

/** Runs `effect` with the text format captured into `lines`. */
const capture = (lines: Array<string>) =>
  Logger.layer([Logger.map(NodeLogger.formatText, (line) => void lines.push(line))])

describe("NodeLogger (in process)", () => {
  it.live("a worker's line shows its pid, name and type, like log_line_prefix with %p and %b", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const logged = yield* Deferred.make<void>()
      const worker = BackgroundWorker.make({
        name: "worker_spi worker 1",
        type: "worker_spi",
        main: () =>
          Effect.gen(function*() {
            yield* Effect.log("count is now 1")
            yield* Deferred.succeed(logged, undefined)
            yield* ProcLatch.wait({ onPostmasterDeath: "exit" })
          })
      })
      const pid = yield* Effect.gen(function*() {
        const handle = yield* Supervisor.register(worker)
        yield* Deferred.await(logged)
        const status = yield* Supervisor.status(handle)
        return status._tag === "Started" ? status.pid : -1
      }).pipe(Effect.provide(Supervisor.layer().pipe(Layer.provideMerge(capture(lines)))))
      const line = lines.find((l) => l.endsWith("count is now 1"))
      assert.isDefined(line, lines.join("\n"))
      assert.match(line!, prefix)
      assert.strictEqual(
        line!.replace(prefix, "[$1] "),
        `[${pid}] worker_spi worker 1 (worker_spi) LOG:  count is now 1`
      )
    }))

  it.effect("levels are PostgreSQL's words, a hint is a second line, and a library line names its module", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      yield* Effect.gen(function*() {
        yield* Effect.logWarning("could not connect").pipe(
          Effect.annotateLogs({ module: "effect-bgworker/pg/DatabaseProbe", hint: "Start the server." })
        )
        yield* Effect.logError("boom")
        yield* Effect.logFatal("the end")
      }).pipe(Effect.provide(capture(lines)))
      const text = lines.join("\n").split("\n").map((line) => line.replace(prefix, "[$1] "))
      assert.deepStrictEqual(text, [
        `[${process.pid}] pg/DatabaseProbe WARNING:  could not connect`,
        `[${process.pid}] pg/DatabaseProbe HINT:  Start the server.`,
        `[${process.pid}] ERROR:  boom`,
        `[${process.pid}] FATAL:  the end`
      ])
    }))

  it.effect("the format comes from BGWORKER_LOG_FORMAT, and an unknown value is reported, not guessed", () =>
    Effect.sync(() => {
      assert.strictEqual(NodeLogger.formatFromEnvironment({}), undefined)
      assert.strictEqual(NodeLogger.formatFromEnvironment({ BGWORKER_LOG_FORMAT: "JSON" }), "json")
      assert.strictEqual(NodeLogger.formatFromEnvironment({ BGWORKER_LOG_FORMAT: "logfmt" }), "logfmt")
      assert.deepStrictEqual(NodeLogger.formatFromEnvironment({ BGWORKER_LOG_FORMAT: "xml" }), { invalid: "xml" })
    }))
})

describe("NodeLogger under runMain (child processes)", () => {
  it.live("a worker name with a line break and escape codes cannot forge a log line", () =>
    Effect.gen(function*() {
      const child = yield* spawn("test/node/fixtures/firstContact.ts", { FIXTURE_MODE: "names" })
      yield* child.waitFor("worker: ready", { timeout: "10 seconds" })
      const output = yield* child.output
      // Every line is a record (time first) or a continuation (a tab first): none starts with the forged text.
      for (const line of output) assert.isTrue(prefix.test(line) || line.startsWith("\t"), line)
      assert.isFalse(output.some((line) => line.startsWith("2026-01-01")), output.join("\n"))
      const first = output.find((line) => line.endsWith("LOG:  first line"))!
      assert.include(first, "evil\\n2026-01-01 00:00:00.000 UTC [1] postgres FATAL:  forged (evil\\rtype)")
      assert.include(output, "\tsecond line\\x1b[31m")
    }).pipe(Effect.provide(NodeServices.layer)), 20_000)

  it.live(
    "BGWORKER_LOG_FORMAT=json prints one JSON object per line, a worker's with its name, type and pid",
    () =>
      Effect.gen(function*() {
        const child = yield* spawn("test/node/fixtures/signals.ts", { BGWORKER_LOG_FORMAT: "json" })
        yield* child.waitFor("sleeper: ready", { timeout: "10 seconds" })
        yield* child.signal("SIGTERM")
        assert.deepStrictEqual(yield* child.awaitExit("10 seconds"), { code: 130 })
        const records = (yield* child.output).map((line) =>
          JSON.parse(line) as {
            readonly level: string
            readonly message: unknown
            readonly annotations: Record<string, unknown>
          }
        )
        const ready = records.find((r) => r.message === "sleeper: ready")!
        assert.strictEqual(ready.level, "INFO")
        assert.strictEqual(ready.annotations["worker"], "sleeper")
        assert.strictEqual(ready.annotations["type"], "sleeper")
        assert.isNumber(ready.annotations["pid"])
        assert.strictEqual(records.at(-1)?.message, "database system is shut down")
      }).pipe(Effect.provide(NodeServices.layer)),
    20_000
  )

  it.live(
    "BGWORKER_LOG_FORMAT=logfmt prints key=value lines, and an unknown format is a warning and text",
    () =>
      Effect.gen(function*() {
        const child = yield* spawn("test/node/fixtures/signals.ts", { BGWORKER_LOG_FORMAT: "logfmt" })
        const ready = yield* child.waitFor("sleeper: ready", { timeout: "10 seconds" })
        assert.match(ready, /^timestamp=\S+ level=INFO .*message="sleeper: ready".* worker=sleeper/)
        assert.match(ready, / pid=\d+/)
        assert.match(ready, / type=sleeper/)
        yield* child.signal("SIGTERM")
        yield* child.awaitExit("10 seconds")

        const other = yield* spawn("test/node/fixtures/signals.ts", { BGWORKER_LOG_FORMAT: "xml" })
        const warning = yield* other.waitFor("BGWORKER_LOG_FORMAT", { timeout: "10 seconds" })
        assert.match(warning, /NodeSupervisor WARNING: {2}invalid value for BGWORKER_LOG_FORMAT: "xml"; using "text"$/)
        yield* other.waitFor(/ sleeper \(sleeper\) LOG: {2}sleeper: ready$/)
        yield* other.signal("SIGTERM")
        yield* other.awaitExit("10 seconds")
      }).pipe(Effect.provide(NodeServices.layer)),
    30_000
  )
})
