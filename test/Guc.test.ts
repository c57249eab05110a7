import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Config, Effect, Fiber, Layer, Stream } from "effect"
import * as FileSystem from "effect/FileSystem"
import * as Path from "effect/Path"
import { TestClock } from "effect/testing"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import * as Guc from "../src/Guc.ts"
import { markStarted } from "../src/internal/gucRegistry.ts"
import * as Interrupts from "../src/Interrupts.ts"
import * as Preload from "../src/Preload.ts"
import * as ProcLatch from "../src/ProcLatch.ts"
import * as Supervisor from "../src/Supervisor.ts"
import { captureLogs, eventually, untilState, untilStatus } from "./fixtures.ts"

const naptime = Guc.int("worker_spi.naptime", {
  context: "sighup",
  description: "Duration between each check (in seconds).",
  default: 10,
  min: 1,
  max: 2_147_483_647
})
const timeout = Guc.int("demo.timeout", {
  context: "sighup",
  description: "A timeout.",
  default: 1000,
  min: 0,
  max: 3_600_000,
  unit: "ms"
})
const totalWorkers = Guc.int("worker_spi.total_workers", {
  context: "postmaster",
  description: "Number of workers.",
  default: 2,
  min: 1,
  max: 100
})
const database = Guc.string("worker_spi.database", {
  context: "sighup",
  description: "Database to connect to.",
  default: "postgres"
})
const role = Guc.string("worker_spi.role", { context: "sighup", description: "Role to connect with.", default: null })
const mode = Guc.enumeration("demo.mode", {
  context: "user",
  description: "A mode.",
  values: ["fast", "safe", { name: "legacy", hidden: true }],
  default: "safe"
})
const verbose = Guc.bool("demo.verbose", { context: "superuser", description: "Talk more.", default: false })
const ratio = Guc.real("demo.ratio", { context: "sighup", description: "A ratio.", default: 0.5, min: 0, max: 1 })

/** A temporary directory with a `postgresql.conf` holding `text`, and a way to rewrite it. */
const confDir = (text: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const dir = yield* fs.makeTempDirectoryScoped({ prefix: "guc-" })
    const file = path.join(dir, "postgresql.conf")
    yield* fs.writeFileString(file, text)
    return {
      dir,
      file,
      write: (next: string) => fs.writeFileString(file, next),
      writeAt: (name: string, next: string) => fs.writeFileString(path.join(dir, name), next),
      read: (name: string) => fs.readFileString(path.join(dir, name))
    }
  })

const withRegistry = <A, E>(
  options: Guc.Options,
  body: Effect.Effect<A, E, Guc.Gucs>
) => Effect.provide(body, Guc.layer(options)).pipe(Effect.provide(NodeServices.layer))

const reasonOf = (e: Guc.GucError) => e.reason._tag

describe("Guc: definitions", () => {
  it.effect("a parameter reads its default until something sets it", () =>
    withRegistry(
      { parameters: [naptime, database, role, mode, verbose, ratio] },
      Effect.gen(function*() {
        assert.strictEqual(yield* Guc.get(naptime), 10)
        assert.strictEqual(yield* Guc.get(database), "postgres")
        assert.isNull(yield* Guc.get(role))
        assert.strictEqual(yield* Guc.get(mode), "safe")
        assert.isFalse(yield* Guc.get(verbose))
        assert.strictEqual(yield* Guc.get(ratio), 0.5)
      })
    ))

  it.effect("the supervisor's own parameters are always defined", () =>
    withRegistry(
      {},
      Effect.gen(function*() {
        const rows = yield* Guc.settings
        const byName = Object.fromEntries(rows.map((r) => [r.name, r]))
        assert.strictEqual(byName["max_worker_processes"]?.context, "postmaster")
        assert.strictEqual(byName["restart_after_crash"]?.context, "sighup")
        assert.strictEqual(byName["shutdown_timeout"]?.unit, "ms")
      })
    ))

  it.effect("defining a parameter twice is a typed error", () =>
    withRegistry(
      { parameters: [naptime] },
      Effect.gen(function*() {
        const error = yield* Effect.flip(Guc.define(naptime))
        assert.strictEqual(reasonOf(error), "InvalidDefinition")
        assert.strictEqual(error.message, `attempt to redefine parameter "worker_spi.naptime"`)
      })
    ))

  it.effect("a custom parameter needs a prefix", () =>
    withRegistry(
      {},
      Effect.gen(function*() {
        const error = yield* Effect.flip(
          Guc.define(Guc.bool("nodot", { context: "user", description: "x", default: true }))
        )
        assert.strictEqual(error.message, `invalid configuration parameter name "nodot"`)
      })
    ))

  it.effect("a postmaster parameter can be defined in a preload but not after the supervisor started", () =>
    Effect.gen(function*() {
      const late = Guc.int("late.workers", { context: "postmaster", description: "x", default: 1, min: 0, max: 9 })
      const error = yield* Effect.flip(Guc.define(late))
      assert.strictEqual(reasonOf(error), "InvalidDefinition")
      assert.strictEqual(error.message, "cannot create PGC_POSTMASTER variables after startup")
      assert.strictEqual(yield* Guc.get(totalWorkers), 2)
    }).pipe(
      Effect.provide(
        Supervisor.layer({ preload: [Effect.orDie(Guc.define(totalWorkers))] }).pipe(Layer.provideMerge(Guc.layer()))
      )
    ))

  it.effect("a value given before its parameter was defined is adopted at definition, or refused with a warning", () => {
    const logs = captureLogs()
    return withRegistry(
      { overrides: { "worker_spi.naptime": 3, "demo.ratio": 7 } },
      Effect.gen(function*() {
        yield* Guc.define(naptime)
        yield* Guc.define(ratio)
        assert.strictEqual(yield* Guc.get(naptime), 3)
        assert.strictEqual(yield* Guc.get(ratio), 0.5)
        assert.isTrue(logs.lines.some((l) => l.startsWith("WARN") && l.includes(`parameter "demo.ratio"`)))
      })
    ).pipe(Effect.provide(logs.layer))
  })

  it.effect("reserving a prefix removes unknown settings under it with a warning", () => {
    const logs = captureLogs()
    return withRegistry(
      { overrides: { "worker_spi.typo": 1, "worker_spi.naptime": 4 } },
      Effect.gen(function*() {
        yield* Guc.define(naptime)
        yield* Guc.reservePrefix("worker_spi")
        assert.isTrue(logs.lines.includes(
          `WARN invalid configuration parameter name "worker_spi.typo", removing it; "worker_spi" is now a reserved prefix.`
        ))
        assert.strictEqual(yield* Guc.get(naptime), 4)
      })
    ).pipe(Effect.provide(logs.layer))
  })

  it.effect("a check hook can normalise a value or refuse it with a message and hint", () =>
    Effect.gen(function*() {
      const even = Guc.int("demo.even", {
        context: "user",
        description: "Rounded up to even.",
        default: 2,
        min: 0,
        max: 100,
        check: (v) => v === 13 ? Guc.reject("13 is unlucky", "Pick another number.") : v + (v % 2)
      })
      yield* withRegistry(
        { parameters: [even] },
        Effect.gen(function*() {
          yield* Guc.set("demo.even", 5)
          assert.strictEqual(yield* Guc.get(even), 6)
          const error = yield* Effect.flip(Guc.set("demo.even", 13))
          assert.strictEqual(error.message, `invalid value for parameter "demo.even": "13": 13 is unlucky`)
          assert.strictEqual(error.hint, "Pick another number.")
          assert.strictEqual(yield* Guc.get(even), 6)
        })
      )
    }))

  it.effect("an assign hook sees each applied value, and a show hook decides what is shown", () =>
    Effect.gen(function*() {
      const assigned: Array<string> = []
      const p = Guc.enumeration("demo.level", {
        context: "user",
        description: "x",
        values: ["low", "high"],
        default: "low",
        assign: (v) => void assigned.push(v),
        show: (v) => v.toUpperCase()
      })
      yield* withRegistry(
        { parameters: [p] },
        Effect.gen(function*() {
          yield* Guc.set("demo.level", "HIGH")
          assert.deepStrictEqual(assigned, ["high"])
          assert.strictEqual(yield* Guc.show("demo.level"), "HIGH")
          const error = yield* Effect.flip(Guc.set("demo.level", "medium"))
          assert.strictEqual(error.hint, "Available values: low, high.")
          assert.deepStrictEqual(assigned, ["high"])
        })
      )
    }))
})

describe("Guc: sources and precedence", () => {
  it.effect("default < configuration file < auto file < environment < code, each value knowing where it came from", () =>
    Effect.gen(function*() {
      const conf = yield* confDir(`# demo\nworker_spi.naptime = 20\ndemo.timeout = 5s\ndemo.ratio = 0.25\n`)
      yield* conf.writeAt("postgresql.auto.conf", `demo.timeout = '7s'\n`)
      yield* withRegistry(
        {
          configFile: conf.file,
          parameters: [naptime, timeout, ratio, verbose, database],
          environment: { BGW_DEMO__RATIO: "0.75", BGW_DEMO__VERBOSE: "on", PATH: "/bin" },
          overrides: { "worker_spi.database": "mydb" }
        },
        Effect.gen(function*() {
          const rows = Object.fromEntries((yield* Guc.settings).map((r) => [r.name, r]))
          assert.deepStrictEqual(
            [
              rows["worker_spi.naptime"]!.setting,
              rows["worker_spi.naptime"]!.source,
              rows["worker_spi.naptime"]!.sourceline
            ],
            ["20", "configuration file", 2]
          )
          assert.strictEqual(rows["worker_spi.naptime"]!.sourcefile, conf.file)
          assert.deepStrictEqual([rows["demo.timeout"]!.setting, rows["demo.timeout"]!.unit], ["7000", "ms"])
          assert.isTrue(rows["demo.timeout"]!.sourcefile!.endsWith("postgresql.auto.conf"))
          assert.deepStrictEqual([rows["demo.ratio"]!.setting, rows["demo.ratio"]!.source], [
            "0.75",
            "environment variable"
          ])
          assert.deepStrictEqual([rows["demo.verbose"]!.setting, rows["demo.verbose"]!.source], [
            "on",
            "environment variable"
          ])
          assert.deepStrictEqual([rows["worker_spi.database"]!.setting, rows["worker_spi.database"]!.source], [
            "mydb",
            "override"
          ])
        })
      )
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("an invalid value in the configuration file stops the registry from starting", () =>
    Effect.gen(function*() {
      const conf = yield* confDir(`worker_spi.naptime = 0\n`)
      const error = yield* Effect.flip(Layer.build(Guc.layer({ configFile: conf.file, parameters: [naptime] })))
      assert.strictEqual(reasonOf(error), "InvalidValue")
      assert.include(error.message, "is outside the valid range for parameter \"worker_spi.naptime\" (1 .. 2147483647)")
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("an unknown plain name in the configuration file is an error with its file and line", () =>
    Effect.gen(function*() {
      const conf = yield* confDir(`\nmax_wal_senders = 4\n`)
      const error = yield* Effect.flip(Layer.build(Guc.layer({ configFile: conf.file })))
      assert.strictEqual(reasonOf(error), "UnknownParameter")
      assert.strictEqual(
        error.message,
        `unrecognized configuration parameter "max_wal_senders" in file "${conf.file}" line 2`
      )
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("parameters are readable as Effect Config values", () =>
    withRegistry(
      { parameters: [naptime, verbose], overrides: { "worker_spi.naptime": 30 } },
      Effect.gen(function*() {
        const nap = yield* Config.Int("worker_spi.naptime")
        const nested = yield* Config.Int("naptime").pipe(Config.nested("worker_spi"))
        const talk = yield* Config.Boolean("demo.verbose")
        assert.deepStrictEqual([nap, nested, talk], [30, 30, false])
      }).pipe(Effect.provide(Guc.layerConfigProvider))
    ))

  it.effect("set changes user parameters and refuses the others with PostgreSQL's messages", () =>
    withRegistry(
      { parameters: [naptime, mode] },
      Effect.gen(function*() {
        yield* Guc.set("demo.mode", "fast")
        assert.strictEqual(yield* Guc.get(mode), "fast")
        const rows = Object.fromEntries((yield* Guc.settings).map((r) => [r.name, r]))
        assert.deepStrictEqual([rows["demo.mode"]!.source, rows["demo.mode"]!.reset_val], ["session", "safe"])
        yield* Guc.resetValue("demo.mode")
        assert.strictEqual(yield* Guc.get(mode), "safe")
        assert.strictEqual(
          (yield* Effect.flip(Guc.set("worker_spi.naptime", 5))).message,
          `parameter "worker_spi.naptime" cannot be changed now`
        )
        assert.strictEqual(
          (yield* Effect.flip(Guc.set("max_worker_processes", 5))).message,
          `parameter "max_worker_processes" cannot be changed without restarting the server`
        )
        assert.strictEqual((yield* Effect.flip(Guc.set("nope.x", 5))).reason._tag, "UnknownParameter")
      })
    ))
})

describe("Guc: reload", () => {
  it.effect("a reload applies changed values, returns removed lines to their defaults, and logs each change", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const conf = yield* confDir(`worker_spi.naptime = 20\nworker_spi.database = 'a'\n`)
      yield* withRegistry(
        { configFile: conf.file, parameters: [naptime, database] },
        Effect.gen(function*() {
          yield* conf.write(`worker_spi.naptime = 30\n`)
          const report = yield* Guc.reload
          assert.deepStrictEqual([...report.changed].sort(), ["worker_spi.database", "worker_spi.naptime"])
          assert.strictEqual(yield* Guc.get(naptime), 30)
          assert.strictEqual(yield* Guc.get(database), "postgres")
          assert.isTrue(logs.lines.includes(`INFO parameter "worker_spi.naptime" changed to "30"`))
        })
      )
    }).pipe(Effect.provide(NodeServices.layer), Effect.provide(logs.layer))
  })

  it.effect("an invalid value keeps the old one while the other valid changes apply", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const conf = yield* confDir(`worker_spi.naptime = 20\ndemo.ratio = 0.5\n`)
      yield* withRegistry(
        { configFile: conf.file, parameters: [naptime, ratio] },
        Effect.gen(function*() {
          yield* conf.write(`worker_spi.naptime = 10s\ndemo.ratio = 0.9\n`)
          const report = yield* Guc.reload
          assert.strictEqual(yield* Guc.get(naptime), 20)
          assert.strictEqual(yield* Guc.get(ratio), 0.9)
          assert.deepStrictEqual(report.errors.map((e) => [e.reason._tag, (e.reason as any).line]), [[
            "InvalidValue",
            1
          ]])
          assert.isTrue(logs.lines.includes(
            `WARN configuration file "${conf.file}" contains errors; unaffected changes were applied`
          ))
        })
      )
    }).pipe(Effect.provide(NodeServices.layer), Effect.provide(logs.layer))
  })

  it.effect("a syntax error anywhere changes nothing and is reported with file and line", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const conf = yield* confDir(`worker_spi.naptime = 20\ninclude_if_exists 'extra.conf'\n`)
      yield* withRegistry(
        { configFile: conf.file, parameters: [naptime, ratio] },
        Effect.gen(function*() {
          yield* conf.write(`worker_spi.naptime = 30\ninclude_if_exists 'extra.conf'\n`)
          yield* conf.writeAt("extra.conf", `demo.ratio = 0.1\ndemo.ratio\n`)
          const report = yield* Guc.reload
          assert.isFalse(report.applied)
          assert.strictEqual(yield* Guc.get(naptime), 20)
          assert.strictEqual(yield* Guc.get(ratio), 0.5)
          assert.include(report.errors[0]!.message, `extra.conf" line 2`)
          assert.isTrue(
            logs.lines.includes(`WARN configuration file "${conf.file}" contains errors; no changes were applied`)
          )
        })
      )
    }).pipe(Effect.provide(NodeServices.layer), Effect.provide(logs.layer))
  })

  it.effect("a changed postmaster parameter keeps its value and is marked pending restart", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const conf = yield* confDir(`max_worker_processes = 4\n`)
      yield* withRegistry(
        { configFile: conf.file },
        Effect.gen(function*() {
          yield* conf.write(`max_worker_processes = 16\n`)
          const report = yield* Guc.reload
          assert.deepStrictEqual(report.pendingRestart, ["max_worker_processes"])
          assert.strictEqual(yield* Guc.get(Guc.maxWorkerProcesses), 4)
          const row = (yield* Guc.settings).find((r) => r.name === "max_worker_processes")!
          assert.isTrue(row.pending_restart)
          assert.isTrue(logs.lines.includes(
            `INFO parameter "max_worker_processes" cannot be changed without restarting the server`
          ))
          yield* conf.write(`max_worker_processes = 4\n`)
          yield* Guc.reload
          assert.isFalse((yield* Guc.settings).find((r) => r.name === "max_worker_processes")!.pending_restart)
        })
      )
    }).pipe(Effect.provide(NodeServices.layer), Effect.provide(logs.layer))
  })

  it.effect("an unknown setting under a reserved prefix is refused at reload", () =>
    Effect.gen(function*() {
      const conf = yield* confDir(`worker_spi.naptime = 20\n`)
      yield* withRegistry(
        { configFile: conf.file, parameters: [naptime], reservedPrefixes: ["worker_spi"] },
        Effect.gen(function*() {
          yield* conf.write(`worker_spi.naptime = 20\nworker_spi.nap = 3\n`)
          const report = yield* Guc.reload
          assert.deepStrictEqual(report.errors.map((e) => e.reason._tag), ["ReservedPrefix"])
          assert.strictEqual(report.errors[0]!.hint, `"worker_spi" is a reserved prefix.`)
        })
      )
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("alterSystem validates, rewrites the auto file, and takes effect at the next reload", () =>
    Effect.gen(function*() {
      const conf = yield* confDir(`worker_spi.naptime = 20\n`)
      yield* withRegistry(
        { configFile: conf.file, parameters: [naptime, timeout] },
        Effect.gen(function*() {
          yield* Guc.alterSystem("worker_spi.naptime", 5)
          yield* Guc.alterSystem("demo.timeout", "2min")
          assert.strictEqual(yield* Guc.get(naptime), 20)
          const bad = yield* Effect.flip(Guc.alterSystem("worker_spi.naptime", 0))
          assert.strictEqual(bad.reason._tag, "InvalidValue")
          assert.strictEqual(
            yield* conf.read("postgresql.auto.conf"),
            "# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\n" +
              "worker_spi.naptime = '5'\ndemo.timeout = '2min'\n"
          )
          yield* Guc.reload
          assert.deepStrictEqual([yield* Guc.get(naptime), yield* Guc.get(timeout)], [5, 120000])
          yield* Guc.alterSystem("worker_spi.naptime", null)
          yield* Guc.reload
          assert.strictEqual(yield* Guc.get(naptime), 20)
        })
      )
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("a snapshot stays consistent while a reload changes the values", () =>
    Effect.gen(function*() {
      const conf = yield* confDir(`worker_spi.naptime = 20\n`)
      yield* withRegistry(
        { configFile: conf.file, parameters: [naptime] },
        Effect.gen(function*() {
          const before = yield* Guc.snapshot
          const seen = yield* Effect.forkChild(Stream.runCollect(Stream.take(yield* Guc.changes, 2)), {
            startImmediately: true
          })
          yield* conf.write(`worker_spi.naptime = 21\n`)
          yield* Guc.reload
          assert.strictEqual(before.get(naptime), 20)
          assert.strictEqual((yield* Guc.snapshot).get(naptime), 21)
          assert.deepStrictEqual((yield* Fiber.join(seen)).map((s) => s.get(naptime)), [20, 21])
        })
      )
    }).pipe(Effect.provide(NodeServices.layer)))
})

describe("Guc with the supervisor", () => {
  it.effect("a supervisor reload re-reads the file, then wakes every napping worker, which sees the new value", () =>
    Effect.gen(function*() {
      const conf = yield* confDir(`worker_spi.naptime = 10\n`)
      const seen: Array<string> = []
      const worker = BackgroundWorker.make({
        name: "napper",
        main: () =>
          Effect.gen(function*() {
            while (true) {
              const settings = yield* Guc.snapshot
              yield* ProcLatch.wait({ timeout: `${settings.get(naptime)} seconds`, onPostmasterDeath: "exit" })
              yield* ProcLatch.reset
              const reloaded = yield* Interrupts.reloadPending
              const now = yield* Effect.clockWith((c) => c.currentTimeMillis)
              seen.push(`${now} reload=${reloaded} naptime=${(yield* Guc.snapshot).get(naptime)}`)
            }
          })
      })
      yield* Effect.gen(function*() {
        yield* eventually(
          "the preloaded napper runs",
          Effect.map(Supervisor.Supervisor.use((s) => s.activity), (rows) => rows[0]?.registration === "running")
        )
        yield* TestClock.adjust("3 seconds")
        yield* conf.write(`worker_spi.naptime = 2\n`)
        yield* Supervisor.reload
        yield* eventually("the napper has seen the reload", Effect.sync(() => seen.length === 1))
        yield* TestClock.adjust("2 seconds")
        assert.deepStrictEqual(seen, ["3000 reload=true naptime=2", "5000 reload=false naptime=2"])
      }).pipe(
        Effect.provide(
          Supervisor.layer({ preload: [Preload.register(worker)] }).pipe(
            Layer.provideMerge(Guc.layer({ configFile: conf.file, parameters: [naptime] }))
          )
        )
      )
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("max_worker_processes sizes the supervisor and restart_after_crash is read at each crash", () =>
    Effect.gen(function*() {
      const conf = yield* confDir(`max_worker_processes = 2\nrestart_after_crash = on\n`)
      const crashes = { armed: false }
      const crasher = BackgroundWorker.make({
        name: "crasher",
        shmem: true,
        restart: BackgroundWorker.restartAfter("1 second"),
        main: () =>
          Effect.gen(function*() {
            yield* ProcLatch.wait({ onPostmasterDeath: "exit" })
            if (crashes.armed) return yield* Effect.die("boom")
          })
      })
      yield* Effect.gen(function*() {
        const h = yield* Supervisor.register(crasher)
        yield* Supervisor.register(
          BackgroundWorker.make({ name: "other", main: () => ProcLatch.wait({ onPostmasterDeath: "exit" }) })
        )
        const full = yield* Effect.flip(
          Supervisor.register(BackgroundWorker.make({ name: "third", main: () => Effect.void }))
        )
        assert.strictEqual(full.reason._tag, "NoFreeSlot")
        crashes.armed = true
        yield* Supervisor.setLatch(h)
        yield* untilStatus(h, "runs again after a crash restart", (s) => s._tag === "Started" && s.pid > 2)
        assert.strictEqual(yield* Supervisor.state, "running") // restart_after_crash = on: a crash restart
        yield* conf.write(`max_worker_processes = 2\nrestart_after_crash = off\n`)
        yield* Supervisor.reload
        yield* untilStatus(h, "has acted on the reload's wake-up", (s) => s._tag !== "Started")
        yield* Supervisor.setLatch(h)
        yield* untilState("dead")
        assert.strictEqual(yield* Supervisor.state, "dead") // now off: the supervisor ends
      }).pipe(
        Effect.provide(Supervisor.layer().pipe(Layer.provideMerge(Guc.layer({ configFile: conf.file }))))
      )
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("the sample configuration lists every parameter's default, commented out", () =>
    withRegistry(
      {
        parameters: [
          naptime,
          timeout,
          Guc.bool("demo.secret", { context: "user", description: "x", default: true, notInSample: true })
        ]
      },
      Effect.gen(function*() {
        const sample = yield* Guc.sampleConfig
        assert.include(sample, "#worker_spi.naptime = '10'\t\t# Duration between each check (in seconds).")
        assert.include(sample, "#demo.timeout = '1s'")
        assert.include(sample, "#max_worker_processes = '8'")
        assert.include(sample, "(change requires restart)")
        assert.notInclude(sample, "demo.secret")
      })
    ))
})

describe("Guc: the server's configuration (the external source)", () => {
  /** What `ServerSettings` hands over after `ALTER SYSTEM`: text, with the server's file and line. */
  const serverFile = "/srv/pgdata/postgresql.auto.conf"
  const fromServer = (entries: Record<string, string>): ReadonlyArray<Guc.ExternalSetting> =>
    Object.entries(entries).map(([name, value], i) => ({ name, value, file: serverFile, line: i + 3 }))
  const started = Guc.Gucs.useSync(markStarted)

  it.effect("default < the supervisor's files < the server's configuration < environment < code < SET", () =>
    Effect.gen(function*() {
      const conf = yield* confDir(`worker_spi.naptime = 20\nworker_spi.database = 'fromfile'\ndemo.ratio = 0.25\n`)
      yield* conf.writeAt("postgresql.auto.conf", `demo.timeout = '7s'\n`)
      yield* withRegistry(
        {
          configFile: conf.file,
          parameters: [naptime, database, ratio, timeout, role, mode, verbose],
          environment: { BGW_DEMO__RATIO: "0.75" },
          overrides: { "worker_spi.role": "coded" }
        },
        Effect.gen(function*() {
          assert.strictEqual(
            yield* Guc.replaceExternal(fromServer({
              "worker_spi.naptime": "5",
              "demo.timeout": "2s",
              "demo.ratio": "0.5",
              "worker_spi.role": "server",
              "demo.mode": "fast"
            })),
            "applied"
          )
          yield* Guc.set("demo.mode", "safe")
          const rows = Object.fromEntries((yield* Guc.settings).map((r) => [r.name, r]))
          const where = (name: string) => {
            const r = rows[name]!
            return [r.setting, r.source, r.sourcefile, r.sourceline]
          }
          assert.deepStrictEqual(where("demo.verbose"), ["off", "default", null, null])
          assert.deepStrictEqual(where("worker_spi.database"), ["fromfile", "configuration file", conf.file, 2])
          assert.deepStrictEqual(where("worker_spi.naptime"), ["5", "server configuration", serverFile, 3])
          // The server's configuration beats the supervisor's auto file too, as ALTER SYSTEM beats postgresql.conf.
          assert.deepStrictEqual(where("demo.timeout"), ["2000", "server configuration", serverFile, 4])
          assert.deepStrictEqual(where("demo.ratio"), ["0.75", "environment variable", null, null])
          assert.deepStrictEqual(where("worker_spi.role"), ["coded", "override", null, null])
          assert.deepStrictEqual(where("demo.mode"), ["safe", "session", null, null])
          assert.strictEqual(rows["demo.mode"]!.reset_val, "fast")
        })
      )
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("before the supervisor starts the server's values apply at once; after, at the next reload", () => {
    const logs = captureLogs()
    return withRegistry(
      { parameters: [naptime, totalWorkers] },
      Effect.gen(function*() {
        assert.strictEqual(yield* Guc.replaceExternal(fromServer({ "worker_spi.total_workers": "3" })), "applied")
        assert.strictEqual(yield* Guc.get(totalWorkers), 3)
        yield* started
        const next = fromServer({ "worker_spi.total_workers": "4", "worker_spi.naptime": "5" })
        assert.strictEqual(yield* Guc.replaceExternal(next), "stored")
        assert.strictEqual(yield* Guc.get(naptime), 10) // stored until the reload
        assert.strictEqual(yield* Guc.replaceExternal(next), "unchanged")
        const report = yield* Guc.reload
        assert.deepStrictEqual(report.changed, ["worker_spi.naptime"])
        assert.deepStrictEqual(report.pendingRestart, ["worker_spi.total_workers"])
        assert.deepStrictEqual([yield* Guc.get(naptime), yield* Guc.get(totalWorkers)], [5, 3])
        assert.isTrue((yield* Guc.settings).find((r) => r.name === "worker_spi.total_workers")!.pending_restart)
        assert.isTrue(logs.lines.includes(
          `INFO parameter "worker_spi.total_workers" cannot be changed without restarting the server`
        ))
      })
    ).pipe(Effect.provide(logs.layer))
  })

  it.effect("an invalid value from the server keeps the old one, and a value it drops falls back to the files", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const conf = yield* confDir(`worker_spi.naptime = 20\n`)
      yield* withRegistry(
        { configFile: conf.file, parameters: [naptime, ratio] },
        Effect.gen(function*() {
          yield* started
          yield* Guc.replaceExternal(fromServer({ "worker_spi.naptime": "5" }))
          yield* Guc.reload
          assert.strictEqual(yield* Guc.get(naptime), 5)
          yield* Guc.replaceExternal(fromServer({ "worker_spi.naptime": "abc", "demo.ratio": "0.9" }))
          const report = yield* Guc.reload
          assert.deepStrictEqual([yield* Guc.get(naptime), yield* Guc.get(ratio)], [5, 0.9])
          assert.deepStrictEqual(
            report.errors.map((e) => [e.reason._tag, (e.reason as any).file, (e.reason as any).line]),
            [["InvalidValue", serverFile, 3]]
          )
          assert.isTrue(logs.lines.includes(
            `WARN invalid value for parameter "worker_spi.naptime": "abc" in file "${serverFile}" line 3`
          ))
          assert.isTrue(logs.lines.includes(
            `WARN server configuration file "${serverFile}" contains errors; unaffected changes were applied`
          ))
          yield* Guc.replaceExternal([])
          yield* Guc.reload
          const row = (yield* Guc.settings).find((r) => r.name === "worker_spi.naptime")!
          assert.deepStrictEqual([row.setting, row.source, row.sourcefile], ["20", "configuration file", conf.file])
          assert.strictEqual(yield* Guc.get(ratio), 0.5)
        })
      )
    }).pipe(Effect.provide(NodeServices.layer), Effect.provide(logs.layer))
  })

  it.effect("a server value is adopted when its parameter is defined; one under a reserved prefix is refused", () =>
    withRegistry(
      { parameters: [naptime], reservedPrefixes: ["worker_spi"] },
      Effect.gen(function*() {
        yield* Guc.replaceExternal(fromServer({ "demo.timeout": "2s", "worker_spi.nap": "3" }))
        yield* started
        yield* Guc.define(timeout)
        const row = (yield* Guc.settings).find((r) => r.name === "demo.timeout")!
        assert.deepStrictEqual([row.setting, row.source, row.sourcefile], ["2000", "server configuration", serverFile])
        const report = yield* Guc.reload
        assert.deepStrictEqual(report.errors.map((e) => [e.reason._tag, e.reason.message]), [[
          "ReservedPrefix",
          `invalid configuration parameter name "worker_spi.nap"`
        ]])
      })
    ))
})
