/**
 * Figure 4: configuration parameters (GUCs): the cost of a reload, and of reading a parameter in a loop.
 *
 * (a) Reload of 1,000 parameters. A registry with 1,000 defined parameters (int, int with a unit, real,
 * bool, enum, string, in turn) reads a `postgresql.conf` (in a temporary directory) that sets every one of
 * them. Each round rewrites the file with every value changed (untimed), then times one full `Guc.reload`:
 * read the file, parse it, validate every value, apply them all as one snapshot, and build the log lines
 * (not printed: the benchmarks run at minimum level "Warn"). Baseline, interleaved with it in the same rounds:
 * read the same file with `FileSystem.readFileString` and split each line on "=" into a `Map`, which is
 * what reading a config file costs with no syntax, units, validation or precedence at all. The ratio is
 * information only; the target is absolute (see `reloadTargetMs`).
 *
 * (b) Reading a parameter in a worker's loop, ns per read, against `yield* Ref.get(ref)` in the same loop
 * shape: `yield* Guc.get(param)`; `(yield* Guc.snapshot).get(param)` (a snapshot per read, the worst case of
 * "one snapshot per cycle"); and `snapshot.get(param)` on a snapshot already held (what a worker does after
 * the snapshot at the top of its loop). The variants take turns in rounds; the median round is reported.
 */
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as FileSystem from "effect/FileSystem"
import * as Layer from "effect/Layer"
import * as Path from "effect/Path"
import * as Ref from "effect/Ref"
import * as Guc from "../src/Guc.ts"
import { costRatio, median, now, progress, type Row } from "./report.ts"

export interface GucOptions {
  /** Parameters in the registry and the file. */
  readonly parameters: number
  /** Timed reloads (after `warmup` untimed ones). */
  readonly rounds: number
  readonly warmup: number
  /** Reads per timed loop, and loops per variant. */
  readonly reads: number
  readonly readRounds: number
}

/**
 * A reload is an administrator's action, run in the SIGHUP fiber while the workers keep running. 1,000
 * parameters is three times PostgreSQL's own count; re-reading them all within 20 ms keeps a reload far below
 * any sensible worker naptime and below a human's notice.
 */
const reloadTargetMs = 20
/** Reading a parameter should cost no more than a few effect steps: at most 3× a `Ref.get`. */
const readTargetFactor = 3

const kinds = ["int", "int-ms", "real", "bool", "enum", "string"] as const

const nameOf = (i: number) => `bench.p${String(i).padStart(4, "0")}`

const parameterOf = (i: number): Guc.Any => {
  const name = nameOf(i)
  const common = { context: "sighup" as const, description: `Benchmark parameter ${i}.` }
  switch (kinds[i % kinds.length]!) {
    case "int":
      return Guc.int(name, { ...common, default: 0, min: 0, max: 1_000_000 })
    case "int-ms":
      return Guc.int(name, { ...common, default: 0, min: 0, max: 3_600_000, unit: "ms" })
    case "real":
      return Guc.real(name, { ...common, default: 0, min: 0, max: 1_000_000 })
    case "bool":
      return Guc.bool(name, { ...common, default: false })
    case "enum":
      return Guc.enumeration(name, { ...common, values: ["alpha", "beta", "gamma"], default: "gamma" })
    case "string":
      return Guc.string(name, { ...common, default: "" })
  }
}

/** Version 0 or 1 of the file: every value differs between the two, and from the defaults. */
const configText = (count: number, version: 0 | 1): string => {
  const lines = [`# benchmark configuration, version ${version}`, ""]
  for (let i = 0; i < count; i++) {
    const v = i + 1 + version
    let value: string
    switch (kinds[i % kinds.length]!) {
      case "int":
        value = String(v)
        break
      case "int-ms":
        value = version === 0 ? `${v}s` : `${v}ms`
        break
      case "real":
        value = `${v}.${version === 0 ? 25 : 75}`
        break
      case "bool":
        value = version === 0 ? "on" : "off"
        break
      case "enum":
        value = version === 0 ? "alpha" : "beta"
        break
      case "string":
        value = `'value ${version} of parameter ${i}'`
        break
    }
    lines.push(i % 10 === 0 ? `${nameOf(i)} = ${value}\t\t# every tenth line has a comment` : `${nameOf(i)} = ${value}`)
  }
  return lines.join("\n") + "\n"
}

/** The baseline parser: no syntax, no units, no validation. */
const naiveParse = (text: string): Map<string, string> => {
  const map = new Map<string, string>()
  for (const line of text.split("\n")) {
    const trimmed = line.trim()
    if (trimmed === "" || trimmed.startsWith("#")) continue
    const [name, value] = trimmed.split("=")
    map.set(name!.trim(), value!.split("#")[0]!.trim())
  }
  return map
}

const readLoop = <R>(read: Effect.Effect<number, never, R>, n: number) =>
  Effect.gen(function*() {
    let sum = 0
    for (let i = 0; i < n; i++) sum += yield* read
    return sum
  })

const snapshotLoop = (parameter: Guc.Parameter<number>, n: number) =>
  Effect.gen(function*() {
    let sum = 0
    for (let i = 0; i < n; i++) sum += (yield* Guc.snapshot).get(parameter)
    return sum
  })

const heldSnapshotLoop = (parameter: Guc.Parameter<number>, n: number) =>
  Effect.gen(function*() {
    const snapshot = yield* Guc.snapshot
    let sum = 0
    for (let i = 0; i < n; i++) sum += snapshot.get(parameter)
    return sum
  })

/** ns per iteration of `loop`. Keeps the result alive so that nothing is optimised away. */
let sink = 0
const nsPer = <R>(loop: Effect.Effect<number, never, R>, n: number): Effect.Effect<number, never, R> =>
  Effect.gen(function*() {
    const start = now()
    sink += yield* loop
    return ((now() - start) * 1e6) / n
  })

export const runGuc = (options: GucOptions): Effect.Effect<ReadonlyArray<Row>> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const dir = yield* fs.makeTempDirectoryScoped({ prefix: "bench-guc-" })
    const file = path.join(dir, "postgresql.conf")
    const texts = [configText(options.parameters, 0), configText(options.parameters, 1)] as const
    yield* fs.writeFileString(file, texts[0])
    const parameters = Array.from({ length: options.parameters }, (_, i) => parameterOf(i))
    const context = yield* Layer.build(Guc.layer({ configFile: file, parameters }))
    const gucs = Context.get(context, Guc.Gucs)

    // (a) reload
    let version: 0 | 1 = 0
    const reloadOnce = Effect.gen(function*() {
      version = version === 0 ? 1 : 0
      yield* fs.writeFileString(file, texts[version])
      const start = now()
      const report = yield* gucs.reload
      const ms = now() - start
      if (!report.applied || report.errors.length > 0 || report.changed.length !== options.parameters) {
        const { applied, changed, errors } = report
        return yield* Effect.die(
          new Error(`reload: applied=${applied}, ${errors.length} errors, ${changed.length} changed`)
        )
      }
      return ms
    })
    const naiveOnce = Effect.gen(function*() {
      const start = now()
      const map = naiveParse(yield* fs.readFileString(file))
      const ms = now() - start
      if (map.size !== options.parameters) return yield* Effect.die(new Error(`naive parse: ${map.size} entries`))
      return ms
    })
    for (let i = 0; i < options.warmup; i++) {
      yield* reloadOnce
      yield* naiveOnce
    }
    const reloads: Array<number> = []
    const naives: Array<number> = []
    for (let i = 0; i < options.rounds; i++) {
      reloads.push(yield* reloadOnce)
      naives.push(yield* naiveOnce)
    }
    const reloadMs = median(reloads)
    const naiveMs = median(naives)
    const [min, max] = [Math.min(...reloads), Math.max(...reloads)]
    progress(
      `guc reload of ${options.parameters}: median ${reloadMs.toFixed(2)} ms (min ${min.toFixed(2)}, ` +
        `max ${max.toFixed(2)}); naive read+split ${naiveMs.toFixed(3)} ms`
    )

    // (b) reads in a loop
    const parameter = parameters[0] as Guc.Parameter<number>
    const ref = yield* Ref.make(1)
    const n = options.reads
    const variants = [
      { name: "Ref.get", loop: readLoop(Ref.get(ref), n) },
      { name: "Guc.get", loop: Effect.provideContext(readLoop(Guc.get(parameter), n), context) },
      { name: "Guc.snapshot + get", loop: Effect.provideContext(snapshotLoop(parameter, n), context) },
      { name: "held snapshot.get", loop: Effect.provideContext(heldSnapshotLoop(parameter, n), context) }
    ]
    for (const v of variants) yield* nsPer(v.loop, n)
    const samples = variants.map(() => [] as Array<number>)
    for (let round = 0; round < options.readRounds; round++) {
      for (let i = 0; i < variants.length; i++) samples[i]!.push(yield* nsPer(variants[i]!.loop, n))
    }
    const ns = samples.map(median)
    progress(
      `guc reads (ns/op, median of ${options.readRounds}): ` +
        variants.map((v, i) => `${v.name} ${ns[i]!.toFixed(1)}`).join(", ") + ` (sink ${sink > 0 ? "ok" : "?"})`
    )

    const [refNs, getNs, snapshotNs, heldNs] = ns as [number, number, number, number]
    const read = (figure: string, ours: number): Row => {
      const ratio = costRatio(ours, refNs)
      const target = `≤${readTargetFactor}× Ref.get`
      return { figure, unit: "ns", ours, baseline: refNs, ratio, target, ok: ratio <= readTargetFactor }
    }
    const reload: Row = {
      figure: `4. GUC reload, ${options.parameters.toLocaleString("en")} params (base: read + split("="))`,
      unit: "ms",
      ours: reloadMs,
      baseline: naiveMs,
      ratio: costRatio(reloadMs, naiveMs),
      target: `≤${reloadTargetMs} ms (ratio: info)`,
      ok: reloadMs <= reloadTargetMs
    }
    return [
      reload,
      read("4. read a GUC in a loop: Guc.get (base: Ref.get)", getNs),
      read("4. read a GUC: Guc.snapshot + get, per read", snapshotNs),
      read("4. read a GUC: held snapshot.get", heldNs)
    ]
  }).pipe(Effect.scoped, Effect.provide(NodeServices.layer), Effect.orDie)
