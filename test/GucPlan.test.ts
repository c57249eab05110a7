/**
 * The registry's pure planning functions (src/internal/gucPlan.ts), tested without files, fibers or logs:
 * precedence of the sources, plan-then-commit, definitions, reserved prefixes, the reload's summary line.
 *
 * PROPERTY_RUNS=n (default 200) tunes the search.
 */
import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import * as Guc from "../src/Guc.ts"
import * as Plan from "../src/internal/gucPlan.ts"

const runs = Number(process.env["PROPERTY_RUNS"] ?? 200)
const propOptions = { arbitrary: { runs } }

const naptime = Guc.int("demo.naptime", { context: "sighup", description: "x", default: 10, min: 1, max: 100 })
const workers = Guc.int("demo.workers", { context: "postmaster", description: "x", default: 2, min: 1, max: 8 })
const mode = Guc.enumeration("demo.mode", { context: "user", description: "x", values: ["a", "b", "c"], default: "a" })
const limit = Guc.int("demo.limit", {
  context: "superuser",
  description: "x",
  default: 0,
  min: 0,
  max: 50,
  check: (v) => v === 13 ? Guc.reject("13 is unlucky") : v
})
const parameters: ReadonlyArray<Guc.Any> = [naptime, workers, mode, limit]

const CONF = "/conf/postgresql.conf"
const SERVER = "/srv/pgdata/postgresql.auto.conf"

/** What one source says for one parameter: nothing, a number or a word (valid for some parameters only). */
const Cell = Schema.Union([
  Schema.Literal("absent"),
  Schema.Int.check(Schema.isBetween({ minimum: -5, maximum: 120 })),
  Schema.Literals(["a", "b", "c", "x"])
])
type Cell = typeof Cell.Type
const Row = Schema.Tuple([Cell, Cell, Cell, Cell])
/** Every source's cells, one per parameter (in `parameters`' order). */
const Grid = Schema.Struct({ session: Row, override: Row, environment: Row, external: Row, file: Row })
type Grid = typeof Grid.Type

/** Session and override values are typed; the other sources give text, the files and the server with a line. */
const candidate = (source: Plan.SourceName, cell: Cell, line: number): Plan.Candidate => {
  switch (source) {
    case "session":
      return { raw: cell, text: false, source: "session" }
    case "override":
      return { raw: cell, text: false, source: "override" }
    case "environment":
      return { raw: String(cell), text: true, source: "environment variable" }
    case "external":
      return { raw: String(cell), text: true, source: "server configuration", file: SERVER, line }
    case "file":
      return { raw: String(cell), text: true, source: "configuration file", file: CONF, line }
  }
}

const sourcesOf = (grid: Grid): Partial<Plan.Sources> =>
  Object.fromEntries(Plan.precedence.map((source) => {
    const map = new Map<string, Plan.Candidate>()
    grid[source].forEach((cell, i) => {
      if (cell !== "absent") map.set(parameters[i]!.name, candidate(source, cell, i + 1))
    })
    return [source, map]
  }))

/** The oracle: the value a cell gives a parameter, or undefined when the parameter refuses it. */
const oracle = (p: Guc.Any, cell: Cell): unknown => {
  if (p.vartype === "enum") return cell === "a" || cell === "b" || cell === "c" ? cell : undefined
  if (typeof cell !== "number" || cell < p.min! || cell > p.max!) return undefined
  return p === limit && cell === 13 ? undefined : cell
}

/** The source that wins for parameter `i`: the first in precedence order whose cell is not absent. */
const winner = (grid: Grid, i: number, includeSession = true): Plan.SourceName | undefined =>
  Plan.precedence.find((s) => (includeSession || s !== "session") && grid[s][i] !== "absent")

/** A registry state with every parameter defined and the grid's values applied as at start. */
const started = (grid: Grid): Plan.State => {
  let state = Plan.makeState({ sources: sourcesOf(grid) })
  for (const p of parameters) {
    const defined = Plan.define(state, p, "start")
    assert.isTrue(defined.ok)
    if (defined.ok) state = defined.state
  }
  const planned = Plan.plan(state, "start")
  return Plan.commit(planned.state, planned.plans).state
}

const slotOf = (state: Plan.State, p: Guc.Any) => state.slots.get(p.name)!

describe("GucPlan", () => {
  describe("properties", () => {
    it.prop(
      "the candidate in effect is the highest source's: session > override > environment > external > files",
      [Grid],
      ([grid]) => {
        const sources = Plan.makeState({ sources: sourcesOf(grid) }).sources
        parameters.forEach((p, i) => {
          const top = winner(grid, i)
          const got = Plan.resolve(sources, p.name, true)
          assert.strictEqual(got, top === undefined ? undefined : sources[top].get(p.name))
          const reset = winner(grid, i, false)
          const gotReset = Plan.resolve(sources, p.name, false)
          assert.strictEqual(gotReset, reset === undefined ? undefined : sources[reset].get(p.name))
        })
      },
      propOptions
    )

    it.prop(
      "a reload validates everything before applying anything: the plan changes no value, the commit applies " +
        "every valid change, an invalid value keeps the old one, a postmaster parameter only becomes pending",
      [Grid, Grid],
      ([before, after]) => {
        const old = started(before)
        const state = Plan.withSource(
          Plan.withSource(Plan.withSource(old, "file", sourcesOf(after).file!), "external", sourcesOf(after).external!),
          "environment",
          sourcesOf(after).environment!
        )
        const next: Grid = { ...before, file: after.file, external: after.external, environment: after.environment }
        const planned = Plan.plan(state, "reload")
        for (const p of parameters) {
          const a = slotOf(old, p)
          const b = slotOf(planned.state, p)
          assert.deepStrictEqual([b.value, b.source, b.file, b.line], [a.value, a.source, a.file, a.line], p.name)
        }
        const { changed, state: committed } = Plan.commit(planned.state, planned.plans)
        const refused = new Set(planned.errors.map((r) => (r.error.reason as { parameter?: string }).parameter))
        parameters.forEach((p, i) => {
          const top = winner(next, i)
          const want = top === undefined ? p.default : oracle(p, next[top][i]!)
          const was = slotOf(old, p).value
          const slot = slotOf(committed, p)
          if (want === undefined) {
            assert.strictEqual(slot.value, was, `${p.name} keeps its value when refused`)
            assert.isTrue(refused.has(p.name), `${p.name} is reported`)
          } else if (p.context === "postmaster") {
            assert.strictEqual(slot.value, was, `${p.name} waits for a restart`)
            assert.strictEqual(slot.pendingRestart, want !== was)
            assert.strictEqual(planned.pending.includes(p.name), want !== was)
          } else {
            assert.strictEqual(slot.value, want, p.name)
            const source = top === undefined ? "default" : Plan.resolve(committed.sources, p.name, true)!.source
            assert.strictEqual(slot.source, source)
            assert.isFalse(refused.has(p.name))
          }
          assert.strictEqual(changed.includes(p.name), !Object.is(slot.value, was), `${p.name} in changed`)
        })
      },
      propOptions
    )

    const Valid = Schema.Union([
      Schema.Literal("absent"),
      Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 100 }))
    ])
    it.prop(
      "a removed line returns its parameter to the next source, or to the default",
      [Schema.Struct({ environment: Valid, external: Valid, file: Valid })],
      ([cells]) => {
        const grid: Grid = {
          session: ["absent", "absent", "absent", "absent"],
          override: ["absent", "absent", "absent", "absent"],
          environment: [cells.environment, "absent", "absent", "absent"],
          external: [cells.external, "absent", "absent", "absent"],
          file: [cells.file, "absent", "absent", "absent"]
        }
        let state = started(grid)
        let remaining: Grid = grid
        // Remove the winning line, source after source, down to the default.
        for (let top = winner(remaining, 0); top !== undefined; top = winner(remaining, 0)) {
          const without = new Map(state.sources[top])
          without.delete(naptime.name)
          state = Plan.withSource(state, top, without)
          remaining = { ...remaining, [top]: ["absent", "absent", "absent", "absent"] }
          const planned = Plan.plan(state, "reload")
          assert.deepStrictEqual(planned.errors, [])
          state = Plan.commit(planned.state, planned.plans).state
          const next = winner(remaining, 0)
          const slot = slotOf(state, naptime)
          assert.strictEqual(slot.value, next === undefined ? naptime.default : remaining[next][0])
          const from = next === undefined ? undefined : state.sources[next].get(naptime.name)!
          assert.strictEqual(slot.source, from === undefined ? "default" : from.source)
          assert.strictEqual(slot.file, from?.file)
        }
      },
      propOptions
    )

    it.prop(
      "planning and committing again with the same sources changes nothing",
      [Grid],
      ([grid]) => {
        const state = started(grid)
        for (const phase of ["start", "reload", "define"] as const) {
          const planned = Plan.plan(state, phase)
          assert.deepStrictEqual(planned.pending, [], phase)
          const { changed, state: again } = Plan.commit(planned.state, planned.plans)
          assert.deepStrictEqual(changed, [], phase)
          for (const p of parameters) {
            const [a, b] = [slotOf(state, p), slotOf(again, p)]
            assert.deepStrictEqual([b.value, b.source, b.file, b.line], [a.value, a.source, a.file, a.line], p.name)
          }
        }
      },
      propOptions
    )
  })

  describe("definitions", () => {
    const empty = Plan.makeState()

    it("refuses a second definition, a name without a prefix after start, a postmaster parameter after start", () => {
      const once = Plan.define(empty, naptime, "define")
      assert.isTrue(once.ok)
      if (!once.ok) return
      const twice = Plan.define(once.state, naptime, "define")
      assert.isFalse(twice.ok)
      if (!twice.ok) assert.strictEqual(twice.error.message, `attempt to redefine parameter "demo.naptime"`)

      const builtin = Guc.int("naptime", { context: "sighup", description: "x", default: 1, min: 0, max: 2 })
      assert.isTrue(Plan.define(empty, builtin, "start").ok)
      const late = Plan.define(empty, builtin, "define")
      assert.isFalse(late.ok)
      if (!late.ok) assert.strictEqual(late.error.reason._tag, "InvalidDefinition")

      const afterStart = Plan.define({ ...empty, started: true }, workers, "define")
      assert.isFalse(afterStart.ok)
      if (!afterStart.ok) {
        assert.strictEqual(afterStart.error.message, "cannot create PGC_POSTMASTER variables after startup")
      }
    })

    it("refuses a default outside the bounds", () => {
      const bad = Guc.int("demo.bad", { context: "sighup", description: "x", default: 200, min: 1, max: 100 })
      const defined = Plan.define(empty, bad, "define")
      assert.isFalse(defined.ok)
      if (!defined.ok) assert.match(defined.error.message, /^invalid default for parameter "demo.bad"/)
    })

    it("a new parameter starts at its default and adopts its candidate when planned", () => {
      const state = Plan.makeState({ sources: { file: new Map([["demo.naptime", candidate("file", 42, 7)]]) } })
      const defined = Plan.define(state, naptime, "define")
      assert.isTrue(defined.ok)
      if (!defined.ok) return
      assert.strictEqual(slotOf(defined.state, naptime).value, 10)
      const planned = Plan.plan(defined.state, "define", [naptime.name])
      const { state: committed, changed } = Plan.commit(planned.state, planned.plans)
      assert.deepStrictEqual(changed, ["demo.naptime"])
      const slot = slotOf(committed, naptime)
      assert.deepStrictEqual([slot.value, slot.source, slot.file, slot.line], [42, "configuration file", CONF, 7])
    })
  })

  describe("unknown names and reserved prefixes", () => {
    const state = Plan.makeState({
      reserved: ["demo"],
      sources: {
        file: new Map([
          ["nonsense", candidate("file", 1, 3)],
          ["demo.unknown", candidate("file", 1, 4)],
          ["other.placeholder", candidate("file", 1, 5)]
        ]),
        external: new Map([["demo.server_only", candidate("external", 1, 9)]])
      }
    })

    it("a name without a dot is unrecognized, one under a reserved prefix is refused, others are placeholders", () => {
      const refusals = Plan.unknownNames(state, "file")
      assert.deepStrictEqual(refusals.map((r) => [r.error.reason._tag, r.external]), [
        ["UnknownParameter", false],
        ["ReservedPrefix", false]
      ])
      assert.strictEqual(
        refusals[0]!.error.message,
        `unrecognized configuration parameter "nonsense" in file "${CONF}" line 3`
      )
      assert.deepStrictEqual(Plan.unknownNames(state, "external").map((r) => r.external), [true])
    })

    it("reserving a prefix drops its unknown names from every source but the session's", () => {
      const { removed, state: after } = Plan.reservePrefix(Plan.makeState({ sources: state.sources }), "other")
      assert.deepStrictEqual(removed, ["other.placeholder"])
      assert.isTrue(after.reserved.has("other"))
      assert.isFalse(after.sources.file.has("other.placeholder"))
      assert.isTrue(after.sources.file.has("demo.unknown"))
    })

    it("the summary line names the supervisor's file, else the server's configuration", () => {
      const fileRefusal = Plan.unknownNames(state, "file")
      const serverRefusal = Plan.unknownNames(state, "external")
      assert.strictEqual(Plan.summaryTarget(CONF, fileRefusal), `configuration file "${CONF}"`)
      assert.strictEqual(Plan.summaryTarget(CONF, serverRefusal), `server configuration file "${SERVER}"`)
      assert.strictEqual(Plan.summaryTarget(undefined, fileRefusal), `configuration file "${CONF}"`)
    })
  })

  describe("views", () => {
    it("the settings view shows pg_settings' columns, in name order", () => {
      const rows = Plan.settingRows(started({
        session: ["absent", "absent", "b", "absent"],
        override: ["absent", "absent", "absent", "absent"],
        environment: ["absent", "absent", "absent", "absent"],
        external: ["absent", "absent", "absent", "absent"],
        file: [20, "absent", "absent", "absent"]
      }))
      assert.deepStrictEqual(rows.map((r) => r.name), ["demo.limit", "demo.mode", "demo.naptime", "demo.workers"])
      const byName = Object.fromEntries(rows.map((r) => [r.name, r]))
      assert.deepStrictEqual(
        [byName["demo.naptime"]!.setting, byName["demo.naptime"]!.sourcefile, byName["demo.naptime"]!.sourceline],
        ["20", CONF, 1]
      )
      assert.deepStrictEqual([byName["demo.mode"]!.setting, byName["demo.mode"]!.reset_val], ["b", "a"])
    })

    it("the sample configuration comments every default out and marks postmaster parameters", () => {
      const sample = Plan.sampleConfig(started({
        session: ["absent", "absent", "absent", "absent"],
        override: ["absent", "absent", "absent", "absent"],
        environment: ["absent", "absent", "absent", "absent"],
        external: ["absent", "absent", "absent", "absent"],
        file: ["absent", "absent", "absent", "absent"]
      }))
      assert.include(sample, "#demo.naptime = '10'\t\t# x\n")
      assert.include(sample, "#demo.workers = '2'\t\t# x (change requires restart)\n")
    })
  })

  describe("guards", () => {
    it("GucError, its reasons, parameters and check failures are recognised by their type ids", () => {
      const error = new Guc.GucError({ reason: new Guc.UnknownParameter({ parameter: "x", message: "m" }) })
      assert.isTrue(Guc.isGucError(error))
      assert.isFalse(Guc.isGucError(error.reason))
      assert.isTrue(Guc.isGucErrorReason(error.reason))
      assert.isFalse(Guc.isGucError({ _tag: "GucError" }))
      assert.isTrue(Guc.isParameter(naptime))
      assert.isFalse(Guc.isParameter({ name: "demo.naptime" }))
      assert.isTrue(Guc.isCheckFailure(Guc.reject("no")))
      assert.isFalse(Guc.isCheckFailure({ message: "no" }))
      // The ids are not own fields: an error's JSON is its schema's fields only.
      assert.deepStrictEqual(Object.keys(JSON.parse(JSON.stringify(error))), ["_tag", "reason"])
    })
  })
})
