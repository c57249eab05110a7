import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import * as FileSystem from "effect/FileSystem"
import * as Path from "effect/Path"
import * as Guc from "../src/Guc.ts"

const runs = Number(process.env["PROPERTY_RUNS"] ?? 60)

const naptime = Guc.int("demo.naptime", { context: "sighup", description: "x", default: 10, min: 1, max: 100 })
const workers = Guc.int("demo.workers", { context: "postmaster", description: "x", default: 2, min: 1, max: 8 })
const mode = Guc.enumeration("demo.mode", {
  context: "sighup",
  description: "x",
  values: ["a", "b", "c"],
  default: "a"
})
const verbose = Guc.bool("demo.verbose", { context: "user", description: "x", default: false })
const delay = Guc.int("demo.delay", {
  context: "sighup",
  description: "x",
  default: 1000,
  min: 0,
  max: 60_000,
  unit: "ms"
})
const parameters: ReadonlyArray<Guc.Any> = [naptime, workers, mode, verbose, delay]

/** What a file line may say for a parameter: a value (valid or not), or nothing. */
const Line = Schema.Union([
  Schema.Literal("absent"),
  Schema.Literal("garbage"),
  Schema.Int.check(Schema.isBetween({ minimum: -20, maximum: 120 })),
  Schema.Literals(["a", "b", "c", "d", "on", "off", "yes", "2s", "150ms", "1min", "2h"])
])

const Step = Schema.Struct({
  naptime: Line,
  workers: Line,
  mode: Line,
  verbose: Line,
  delay: Line,
  syntaxError: Schema.Boolean
})

const Scenario = Schema.Struct({ initial: Step, edits: Schema.Array(Step).check(Schema.isMaxLength(8)) })

const fileText = (step: typeof Step.Type, withSyntaxError: boolean) => {
  const lines: Array<string> = ["# generated"]
  for (const p of parameters) {
    const key = p.name.slice("demo.".length) as keyof typeof step
    const v = step[key]
    if (v === "absent" || typeof v === "boolean") continue
    lines.push(v === "garbage" ? `${p.name} = 'not a value'` : `${p.name} = '${v}'`)
  }
  if (withSyntaxError) lines.push("demo.naptime =")
  return lines.join("\n") + "\n"
}

/** The oracle: what a text is for a parameter, or undefined when invalid. */
const expected = (p: Guc.Any, text: string | number): unknown => {
  const t = String(text)
  switch (p.name) {
    case "demo.naptime":
    case "demo.workers": {
      if (!/^-?\d+$/.test(t)) return undefined
      const n = Number(t)
      return n >= p.min! && n <= p.max! ? n : undefined
    }
    case "demo.mode":
      return ["a", "b", "c"].includes(t) ? t : undefined
    case "demo.verbose":
      return t === "on" || t === "yes" || t === "1" ? true : t === "off" || t === "0" ? false : undefined
    case "demo.delay": {
      const ms = /^-?\d+$/.test(t)
        ? Number(t)
        : t === "2s"
        ? 2000
        : t === "150ms"
        ? 150
        : t === "1min"
        ? 60_000
        : t === "2h"
        ? 7_200_000
        : undefined
      return ms !== undefined && ms >= 0 && ms <= 60_000 ? ms : undefined
    }
  }
  return undefined
}

const valid = (p: Guc.Any, v: unknown): boolean =>
  p.vartype === "integer"
    ? Number.isInteger(v) && (v as number) >= p.min! && (v as number) <= p.max!
    : p.vartype === "enum"
    ? p.enumValues!.some((e) => e.name === v)
    : typeof v === "boolean"

describe("Guc properties", () => {
  it.effect.prop(
    "random file edits and reloads never leave an invalid value in effect and never change a postmaster value without a restart",
    [Scenario],
    ([scenario]) =>
      Effect.gen(function*() {
        const fs = yield* FileSystem.FileSystem
        const path = yield* Path.Path
        const dir = yield* fs.makeTempDirectoryScoped({ prefix: "guc-prop-" })
        const file = path.join(dir, "postgresql.conf")
        // Start from a valid file (an invalid one would stop the registry, which a unit test covers).
        const start = { naptime: 10, workers: 3, mode: "b", verbose: "on", delay: "2s", syntaxError: false }
        yield* fs.writeFileString(file, fileText(start as any, false))
        const context = yield* Layer.build(Guc.layer({ configFile: file, parameters: [...parameters] }))
        const gucs = context.mapUnsafe.get(Guc.Gucs.key) as Guc.GucsApi
        const current = new Map<string, unknown>()
        for (const p of parameters) current.set(p.name, yield* gucs.get(p))
        const startWorkers = current.get("demo.workers")
        let pendingRestart = false
        for (const step of [scenario.initial, ...scenario.edits]) {
          yield* fs.writeFileString(file, fileText(step, step.syntaxError))
          const report = yield* gucs.reload
          for (const p of parameters) {
            const now = yield* gucs.get(p)
            assert.isTrue(valid(p, now), `${p.name} holds an invalid value ${String(now)}`)
            const key = p.name.slice("demo.".length) as keyof typeof step
            const line = step[key] as string | number
            const before = current.get(p.name)
            let want: unknown
            if (step.syntaxError) want = before
            else if (p.context === "postmaster") want = startWorkers
            else if (line === "absent") want = p.default
            else want = expected(p, line) ?? before
            assert.deepStrictEqual(now, want, `${p.name} after writing ${JSON.stringify(line)}`)
            current.set(p.name, now)
          }
          assert.strictEqual(report.applied, !step.syntaxError)
          const pending = (yield* gucs.settings).find((r) => r.name === "demo.workers")!.pending_restart
          if (!step.syntaxError) {
            // As set_config_option does, only a value that parses updates pending_restart.
            const fileWorkers = step.workers === "absent" ? workers.default : expected(workers, step.workers)
            if (fileWorkers !== undefined) pendingRestart = fileWorkers !== startWorkers
          }
          assert.strictEqual(pending, pendingRestart)
        }
      }).pipe(Effect.scoped, Effect.provide(NodeServices.layer)),
    { timeout: 60_000, arbitrary: { runs } }
  )
})
