import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as FileSystem from "effect/FileSystem"
import * as Path from "effect/Path"
import type { Child } from "./fixtures/child.ts"
import { repoRoot, spawn } from "./fixtures/child.ts"

const example = "examples/20_config-reload.ts"
const bundledConfig = "examples/20_config-reload.conf"

/** `text` with the line setting `name` replaced by `name = value` (the line must exist). */
const setLine = (text: string, name: string, value: string): string => {
  const line = new RegExp(`^${name.replaceAll(".", "\\.")}\\s*=.*$`, "m")
  assert.match(text, line, `no line setting ${name} in the configuration file`)
  return text.replace(line, `${name} = ${value}`)
}

/** A copy of the bundled configuration file in a temporary directory (removed with the test's scope). */
const configCopy = Effect.gen(function*() {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const dir = yield* fs.makeTempDirectoryScoped({ prefix: "config-reload-" })
  const file = path.join(dir, "postgresql.conf")
  let text = yield* fs.readFileString(path.join(repoRoot, bundledConfig))
  yield* fs.writeFileString(file, text)
  return {
    file,
    /** Rewrites the file with each `name = value` of `settings` changed. */
    edit: (settings: Record<string, string>) =>
      Effect.suspend(() => {
        for (const [name, value] of Object.entries(settings)) text = setLine(text, name, value)
        return fs.writeFileString(file, text)
      }),
    /** Rewrites the file with `line` appended, without keeping it for later edits. */
    writeWith: (line: string) => fs.writeFileString(file, `${text}${line}\n`)
  }
})

/** Sends SIGHUP and waits for one more line matching each of `patterns` than there were before. */
const reload = (child: Child, ...patterns: ReadonlyArray<string | RegExp>) =>
  Effect.gen(function*() {
    const before = yield* Effect.forEach(patterns, (pattern) => child.count(pattern))
    yield* child.signal("SIGHUP")
    for (let i = 0; i < patterns.length; i++) {
      yield* child.waitFor(patterns[i]!, { times: before[i]! + 1, timeout: "3 seconds" })
    }
  })

const assertNoLine = (child: Child, pattern: RegExp) =>
  Effect.gen(function*() {
    const output = yield* child.output
    assert.isFalse(output.some((line) => pattern.test(line)), `unexpected line ${pattern} in:\n${output.join("\n")}`)
  })

const reloadRequested = (worker: number, value: string) =>
  new RegExp(`ticker ${worker} \\(ticker\\) LOG:  reload requested: naptime is now ${value}`)

const tick = (worker: number, naptime: string, batchSize: number) =>
  new RegExp(`ticker ${worker} \\(ticker\\) LOG:  tick \\d+ \\(naptime=${naptime}, batch_size=${batchSize}\\)`)

/** Starts the example on a fresh copy of its configuration file and waits until it runs. */
const start = Effect.gen(function*() {
  const config = yield* configCopy
  const child = yield* spawn(example, { DEMO_CONFIG: config.file, BGW_SHUTDOWN_TIMEOUT: "3s" })
  yield* child.waitFor("supervisor ready", { timeout: "10 seconds" })
  yield* child.waitFor("ticker 1 (ticker) LOG:  started (naptime=5s, batch_size=100)")
  yield* child.waitFor("ticker 2 (ticker) LOG:  started (naptime=5s, batch_size=100)")
  return { child, config }
})

/** SIGTERM: a fast shutdown in which every worker's finalizer runs, then exit code 130. */
const stop = (child: Child) =>
  Effect.gen(function*() {
    yield* child.signal("SIGTERM")
    assert.deepStrictEqual(yield* child.awaitExit("6 seconds"), { code: 130 })
    const output = yield* child.output
    const shutdownAt = output.findIndex((line) => line.includes("received fast shutdown request"))
    assert.isAtLeast(shutdownAt, 0, `no fast shutdown line in:\n${output.join("\n")}`)
    for (const worker of [1, 2]) {
      assert.isTrue(
        output.slice(shutdownAt).some((line) =>
          line.includes(`ticker ${worker} (ticker) LOG:  finalizer ran (stopped)`)
        ),
        `no finalizer line from ticker ${worker} after the shutdown request:\n${output.join("\n")}`
      )
    }
  })

describe("examples/20_config-reload.ts", () => {
  it.live(
    "shows where each value came from, changes speed on SIGHUP after an edit, and exits 130 on SIGTERM",
    () =>
      Effect.gen(function*() {
        const { child, config } = yield* start

        // Values from the file (with file and line) and from the environment, in the settings view.
        yield* child.waitFor(/^\tdemo\.naptime +\| 5000 +\| ms +\| sighup +\| configuration file +\| .*\.conf:\d+$/)
        yield* child.waitFor(/^\tdemo\.workers +\| 2 +\| +\| postmaster +\| configuration file/)
        yield* child.waitFor(/^\tshutdown_timeout +\| 3000 +\| ms +\| sighup +\| environment variable/)
        yield* child.waitFor(`kill -HUP ${child.pid}`)

        // naptime 5s -> 300ms: the workers wake at once and tick at the new pace.
        yield* config.edit({ "demo.naptime": "300ms" })
        yield* reload(
          child,
          `Guc LOG:  parameter "demo.naptime" changed to "300ms"`,
          reloadRequested(1, "300ms"),
          reloadRequested(2, "300ms")
        )
        // Three ticks within two seconds: impossible at the old 5 s naptime.
        yield* child.waitFor(tick(1, "300ms", 100), { times: 3, timeout: "2 seconds" })
        yield* child.waitFor(tick(2, "300ms", 100), { times: 3, timeout: "2 seconds" })

        yield* stop(child)
      }).pipe(Effect.provide(NodeServices.layer)),
    15_000
  )

  it.live(
    "a SIGHUP after an invalid edit or a changed postmaster parameter keeps the old values and the process",
    () =>
      Effect.gen(function*() {
        const { child, config } = yield* start

        // An out-of-range naptime is refused and the old one kept; the valid batch_size change still applies.
        yield* config.edit({ "demo.naptime": "0", "demo.batch_size": "7" })
        yield* reload(
          child,
          /Guc WARNING: +.*"demo\.naptime"/,
          "contains errors; unaffected changes were applied",
          /ticker 1 \(ticker\) LOG: +reload requested: naptime is now 5s, batch_size 7$/,
          /ticker 2 \(ticker\) LOG: +reload requested: naptime is now 5s, batch_size 7$/
        )

        // A syntax error changes nothing at all.
        yield* config.writeWith("demo.batch_size = = 8")
        yield* reload(
          child,
          /Guc WARNING: +syntax error in file ".*postgresql\.conf" line \d+/,
          "contains errors; no changes were applied",
          /ticker 1 \(ticker\) LOG: +reload requested: naptime is now 5s, batch_size 7$/
        )

        // A postmaster parameter keeps its value until a restart; the sighup one next to it changes.
        yield* config.edit({ "demo.naptime": "300ms", "demo.workers": "3" })
        yield* reload(
          child,
          `Guc LOG:  parameter "demo.workers" cannot be changed without restarting the server`,
          reloadRequested(1, "300ms")
        )
        yield* child.waitFor(tick(1, "300ms", 7), { times: 2, timeout: "2 seconds" })
        assert.isTrue(yield* child.isRunning)
        yield* assertNoLine(child, /ticker 3 \(ticker\)/)

        yield* stop(child)
      }).pipe(Effect.provide(NodeServices.layer)),
    15_000
  )
})
