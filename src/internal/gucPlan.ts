/**
 * The GUC registry's state as one immutable record, and the pure functions that decide what a change does:
 * which source's value wins, whether it is valid, whether the parameter's context lets it change now, and
 * what the settings view shows. The effectful shell (`gucRegistry.ts`: files, the published snapshot, logs,
 * assign hooks) calls these and keeps the record returned.
 *
 * **Protocol.** Every change is a {@link plan} then a {@link commit}. `plan` computes, for each parameter, the
 * value the current candidates give it and whether its context allows the change, without changing any value:
 * it only brings two pieces of bookkeeping up to date (`pending_restart` of `postmaster` parameters and the
 * reset value of unchanged ones). `commit` applies every planned change at once. So a reload validates
 * everything before it applies anything, or (on a syntax error) never gets to `plan` at all; PostgreSQL's
 * `ProcessConfigFileInternal` does the same in two passes over the file's items.
 *
 * **Precedence** ({@link precedence}, highest first): `SET` (session) > values set in code (override) >
 * environment variables > the external source (`server configuration`) > the configuration files > the
 * default. A name absent from every source returns the parameter to its default.
 *
 * @internal
 */
import type * as Guc from "../Guc.ts"
import type * as conf from "./confFile.ts"
import { quoteValue } from "./confFile.ts"
import * as errors from "./gucError.ts"
import { isCheckFailure, specOf } from "./gucParameter.ts"
import * as value from "./gucValue.ts"

// --- Model ---

/** A value a source gives a parameter, not yet validated. */
export interface Candidate {
  /** Text from a file, the environment or the external source; a typed value from code. */
  readonly raw: unknown
  /** Whether `raw` is text to parse (else a typed value to validate). */
  readonly text: boolean
  readonly source: Guc.Source
  readonly file?: string | undefined
  readonly line?: number | undefined
}

/** A defined parameter and the value in effect, with where it came from. */
export interface Slot {
  readonly parameter: Guc.Any
  readonly spec: value.Spec
  readonly value: unknown
  readonly source: Guc.Source
  readonly file: string | undefined
  readonly line: number | undefined
  /** The value without the session's `SET` (`reset_val`). */
  readonly resetValue: unknown
  readonly pendingRestart: boolean
}

/** The sources that give candidates, by name; see {@link precedence}. */
export type SourceName = "session" | "override" | "environment" | "external" | "file"

/** Each source's candidates, by parameter name. */
export type Sources = { readonly [K in SourceName]: ReadonlyMap<string, Candidate> }

/** The registry's whole state, apart from the published snapshot. */
export interface State {
  /** In definition order (the snapshot's and `parameterNames`' order). */
  readonly slots: ReadonlyMap<string, Slot>
  /** Prefixes reserved with `MarkGUCPrefixReserved`. */
  readonly reserved: ReadonlySet<string>
  readonly sources: Sources
  /** Set once the supervisor's preloads ran: `postmaster` parameters can no longer be defined. */
  readonly started: boolean
}

/** Sources from highest to lowest. */
export const precedence: ReadonlyArray<SourceName> = ["session", "override", "environment", "external", "file"]

/** The external source's name (`pg_settings.source`). */
export const EXTERNAL = "server configuration" satisfies Guc.Source

/** A state with no parameters, the given reserved prefixes, and the given sources (the others empty). */
export const makeState = (
  options: { readonly reserved?: Iterable<string> | undefined; readonly sources?: Partial<Sources> | undefined } = {}
): State => ({
  slots: new Map(),
  reserved: new Set(options.reserved ?? []),
  sources: {
    session: options.sources?.session ?? new Map(),
    override: options.sources?.override ?? new Map(),
    environment: options.sources?.environment ?? new Map(),
    external: options.sources?.external ?? new Map(),
    file: options.sources?.file ?? new Map()
  },
  started: false
})

/** The state with one source replaced as a whole. */
export const withSource = (state: State, name: SourceName, candidates: ReadonlyMap<string, Candidate>): State => ({
  ...state,
  sources: { ...state.sources, [name]: candidates }
})

// --- Sources ---

/** `BGW_WORKER_SPI__NAPTIME=5` as the candidate `worker_spi.naptime` (source `environment variable`). */
export const environmentCandidates = (
  environment: Readonly<Record<string, string | undefined>>
): Map<string, Candidate> => {
  const candidates = new Map<string, Candidate>()
  for (const [key, text] of Object.entries(environment)) {
    if (text === undefined || !key.startsWith("BGW_") || key.length <= 4) continue
    const name = key.slice(4).toLowerCase().replaceAll("__", ".")
    candidates.set(name, { raw: text, text: true, source: "environment variable" })
  }
  return candidates
}

/** Values set in code, typed (source `override`). */
export const overrideCandidates = (overrides: Readonly<Record<string, unknown>>): Map<string, Candidate> => {
  const candidates = new Map<string, Candidate>()
  for (const [name, raw] of Object.entries(overrides)) candidates.set(name, { raw, text: false, source: "override" })
  return candidates
}

/** The files' lines, the last line for a name winning (as in PostgreSQL). */
export const fileCandidates = (entries: ReadonlyArray<conf.ConfEntry>): Map<string, Candidate> => {
  const candidates = new Map<string, Candidate>()
  for (const e of entries) {
    candidates.set(e.name, { raw: e.value, text: true, source: "configuration file", file: e.file, line: e.line })
  }
  return candidates
}

/** The external source's values (`server configuration`), text with their file and line when known. */
export const externalCandidates = (settings: ReadonlyArray<Guc.ExternalSetting>): Map<string, Candidate> => {
  const candidates = new Map<string, Candidate>()
  for (const s of settings) {
    candidates.set(s.name, {
      raw: s.value,
      text: true,
      source: EXTERNAL,
      ...(s.file === undefined ? {} : { file: s.file }),
      ...(s.line === undefined ? {} : { line: s.line })
    })
  }
  return candidates
}

/** Whether two candidate maps hold the same values, files and lines. */
export const sameCandidates = (a: ReadonlyMap<string, Candidate>, b: ReadonlyMap<string, Candidate>): boolean => {
  if (a.size !== b.size) return false
  for (const [name, x] of a) {
    const y = b.get(name)
    if (y === undefined || y.raw !== x.raw || y.file !== x.file || y.line !== x.line) return false
  }
  return true
}

/**
 * The candidate that wins for `name`: the first source in {@link precedence} that has one, skipping the
 * session's when `includeSession` is false (the reset value); undefined means the default.
 */
export const resolve = (sources: Sources, name: string, includeSession: boolean): Candidate | undefined => {
  for (const source of precedence) {
    if (source === "session" && !includeSession) continue
    const candidate = sources[source].get(name)
    if (candidate !== undefined) return candidate
  }
  return undefined
}

// --- Validation ---

/** A candidate's value (through the check hook), or why it is refused. */
export type Evaluated =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly error: errors.GucError }

const where = (c: Candidate | undefined): { file?: string; line?: number } =>
  c?.file === undefined ? {} : c.line === undefined ? { file: c.file } : { file: c.file, line: c.line }

const withHint = <T extends object>(fields: T, hint: string | undefined): T & { hint?: string } =>
  hint === undefined ? fields : { ...fields, hint }

/**
 * Parses (text) or validates (a typed value) a candidate for the slot's parameter, then runs its check hook;
 * no candidate means the default, which is not checked again.
 */
export const evaluate = (slot: Slot, candidate: Candidate | undefined): Evaluated => {
  if (candidate === undefined) return { ok: true, value: slot.parameter.default }
  const parsed = candidate.text
    ? value.parseValue(slot.spec, String(candidate.raw))
    : value.validateValue(slot.spec, candidate.raw)
  if (!parsed.ok) {
    return {
      ok: false,
      error: errors.fail(
        new errors.InvalidValue(
          withHint({ parameter: slot.parameter.name, message: parsed.message, ...where(candidate) }, parsed.hint)
        )
      )
    }
  }
  const check = slot.parameter.check
  if (check === undefined) return { ok: true, value: parsed.value }
  const checked = check(parsed.value, candidate.source)
  if (isCheckFailure(checked)) {
    return {
      ok: false,
      error: errors.fail(
        new errors.InvalidValue(
          withHint({
            parameter: slot.parameter.name,
            message: `invalid value for parameter "${slot.parameter.name}": "${
              String(candidate.raw)
            }": ${checked.message}`,
            ...where(candidate)
          }, checked.hint)
        )
      )
    }
  }
  return { ok: true, value: checked }
}

// --- Planning ---

/**
 * Why the registry is planning: `start` (building the registry, or the external source replaced before the
 * supervisor started), `reload`, `define` (a new parameter adopts its candidates; also `RESET`), `set`.
 */
export type Phase = "start" | "reload" | "define" | "set"

/** One change to apply. */
export interface Plan {
  readonly name: string
  readonly value: unknown
  /** Undefined: back to the default. */
  readonly candidate: Candidate | undefined
  readonly resetValue: unknown
}

/** A refused value, and whether it came from the external source (for the reload's summary line). */
export interface Refusal {
  readonly error: errors.GucError
  readonly external: boolean
}

/** What {@link plan} decided. */
export interface Planned {
  /** The input state with only its bookkeeping updated (no value changed). */
  readonly state: State
  readonly plans: ReadonlyArray<Plan>
  readonly errors: ReadonlyArray<Refusal>
  /** `postmaster` parameters whose candidate differs from the running value (`pending_restart`). */
  readonly pending: ReadonlyArray<string>
}

/**
 * What each parameter (or only those named by `only`) would become. Refusals and pending restarts are
 * reported; no value changes: apply `plans` with {@link commit}.
 */
export const plan = (state: State, phase: Phase, only?: ReadonlyArray<string>): Planned => {
  const slots = new Map(state.slots)
  const plans: Array<Plan> = []
  const refusals: Array<Refusal> = []
  const pending: Array<string> = []
  for (const name of only ?? state.slots.keys()) {
    const slot = slots.get(name)!
    const candidate = resolve(state.sources, name, true)
    const evaluated = evaluate(slot, candidate)
    if (!evaluated.ok) {
      refusals.push({ error: evaluated.error, external: candidate?.source === EXTERNAL })
      continue
    }
    const resetCandidate = resolve(state.sources, name, false)
    const reset = resetCandidate === candidate ? evaluated : evaluate(slot, resetCandidate)
    const resetValue = reset.ok ? reset.value : slot.resetValue
    const changed = !Object.is(evaluated.value, slot.value)
    const context = slot.parameter.context
    if (context === "internal" && candidate !== undefined && phase !== "define") {
      refusals.push({
        error: errors.fail(
          new errors.CannotChange({
            parameter: name,
            message: `parameter "${name}" cannot be changed`,
            ...where(candidate)
          })
        ),
        external: false
      })
      continue
    }
    if (context === "postmaster" && (phase === "reload" || phase === "set")) {
      if (slot.pendingRestart !== changed) slots.set(name, { ...slot, pendingRestart: changed })
      if (changed) pending.push(name)
      continue
    }
    if (
      changed || candidate?.source !== slot.source || candidate?.file !== slot.file ||
      candidate?.line !== slot.line
    ) {
      plans.push({ name, value: evaluated.value, candidate, resetValue })
    } else if (!Object.is(slot.resetValue, resetValue)) {
      slots.set(name, { ...slot, resetValue })
    }
  }
  return { state: { ...state, slots }, plans, errors: refusals, pending }
}

/**
 * Applies planned changes together. Returns the new state and the names whose value changed, in plan order:
 * the caller publishes one snapshot, then runs those parameters' assign hooks.
 */
export const commit = (
  state: State,
  plans: ReadonlyArray<Plan>
): { readonly state: State; readonly changed: ReadonlyArray<string> } => {
  if (plans.length === 0) return { state, changed: [] }
  const slots = new Map(state.slots)
  const changed: Array<string> = []
  for (const p of plans) {
    const slot = slots.get(p.name)!
    if (!Object.is(slot.value, p.value)) changed.push(p.name)
    slots.set(p.name, {
      ...slot,
      value: p.value,
      resetValue: p.resetValue,
      source: p.candidate?.source ?? "default",
      file: p.candidate?.file,
      line: p.candidate?.line,
      pendingRestart: false
    })
  }
  return { state: { ...state, slots }, changed }
}

/**
 * Names in a source that no parameter has: an error without a dot, a refusal under a reserved prefix, else a
 * placeholder (adopted, or refused, when its parameter is defined).
 */
export const unknownNames = (state: State, source: SourceName): Array<Refusal> => {
  const refusals: Array<Refusal> = []
  const external = source === "external"
  for (const [name, c] of state.sources[source]) {
    if (state.slots.has(name)) continue
    const prefix = name.split(".")[0]!
    if (!name.includes(".")) {
      refusals.push({
        error: errors.fail(
          new errors.UnknownParameter({
            parameter: name,
            message: `unrecognized configuration parameter "${name}"` +
              (c.file === undefined ? "" : ` in file "${c.file}" line ${c.line}`),
            ...where(c)
          })
        ),
        external
      })
    } else if (state.reserved.has(prefix)) {
      refusals.push({
        error: errors.fail(
          new errors.ReservedPrefix({
            parameter: name,
            message: `invalid configuration parameter name "${name}"`,
            hint: `"${prefix}" is a reserved prefix.`,
            ...where(c)
          })
        ),
        external
      })
    }
  }
  return refusals
}

// --- Definitions ---

const customName = /^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)+$/
const builtinName = /^[A-Za-z_][A-Za-z0-9_$]*$/

/** Whether `name` is a valid custom parameter name (`prefix.name`, two or more identifiers). */
export const isCustomName = (name: string): boolean => customName.test(name)

/**
 * Adds a parameter at its default (then {@link plan} it with phase `define`, or `start`, to adopt its
 * candidates), or refuses the definition: a second definition, an invalid name (a name without a prefix only
 * at start, for the supervisor's own parameters), a `postmaster` parameter after start, an invalid default.
 */
export const define = (
  state: State,
  parameter: Guc.Any,
  phase: "start" | "define"
): { readonly ok: true; readonly state: State } | { readonly ok: false; readonly error: errors.GucError } => {
  const name = parameter.name
  const invalid = (message: string, hint?: string) => ({
    ok: false as const,
    error: errors.fail(new errors.InvalidDefinition(withHint({ parameter: name, message }, hint)))
  })
  if (state.slots.has(name)) return invalid(`attempt to redefine parameter "${name}"`)
  if (!customName.test(name) && !(builtinName.test(name) && phase === "start")) {
    return invalid(
      `invalid configuration parameter name "${name}"`,
      "Custom parameter names must be two or more simple identifiers separated by dots."
    )
  }
  if (parameter.context === "postmaster" && state.started) {
    return invalid(
      "cannot create PGC_POSTMASTER variables after startup",
      `Define "${name}" in a preload of the supervisor.`
    )
  }
  const spec = specOf(parameter)
  const boot = value.validateValue(spec, parameter.default)
  if (!boot.ok && !(parameter.vartype === "string" && parameter.default === null)) {
    return invalid(`invalid default for parameter "${name}": ${boot.message}`, boot.hint)
  }
  const slots = new Map(state.slots)
  slots.set(name, {
    parameter,
    spec,
    value: parameter.default,
    source: "default",
    file: undefined,
    line: undefined,
    resetValue: parameter.default,
    pendingRestart: false
  })
  return { ok: true, state: { ...state, slots } }
}

/**
 * `MarkGUCPrefixReserved`: reserves `prefix` and drops the names under it that no parameter has from every
 * source but the session's. Returns the dropped names, in source order, for the warnings.
 */
export const reservePrefix = (
  state: State,
  prefix: string
): { readonly state: State; readonly removed: ReadonlyArray<string> } => {
  const removed: Array<string> = []
  const sources = { ...state.sources }
  for (const source of ["file", "external", "environment", "override"] as const) {
    const kept = new Map(state.sources[source])
    for (const name of state.sources[source].keys()) {
      if (name.startsWith(`${prefix}.`) && !state.slots.has(name)) {
        kept.delete(name)
        removed.push(name)
      }
    }
    sources[source] = kept
  }
  return { state: { ...state, reserved: new Set([...state.reserved, prefix]), sources }, removed }
}

// --- Reports and views ---

/** The log line of a refusal: its message, where (unless the message says it already), and its hint. */
export const refusalLine = (e: errors.GucError): string => {
  const { file, line } = e.reason as { file?: string; line?: number }
  const at = file === undefined || e.message.includes(`"${file}"`) ? "" : ` in file "${file}" line ${line}`
  return `${e.message}${at}${e.hint === undefined ? "" : ` (hint: ${e.hint})`}`
}

/** What a reload's summary line names as containing errors: the supervisor's file, or the external configuration. */
export const summaryTarget = (configFile: string | undefined, refusals: ReadonlyArray<Refusal>): string => {
  if (configFile !== undefined && refusals.some((r) => !r.external)) return `configuration file "${configFile}"`
  const file = refusals.map((r) => (r.error.reason as { file?: string }).file).find((f) => f !== undefined)
  if (refusals.every((r) => r.external)) return file === undefined ? EXTERNAL : `${EXTERNAL} file "${file}"`
  return file === undefined ? "the configuration" : `configuration file "${file}"`
}

/** `SHOW`: through the show hook, else formatted in the parameter's unit; NULL shows as the empty string. */
export const showValue = (slot: Slot): string => {
  if (slot.parameter.show !== undefined) return slot.parameter.show(slot.value)
  if (slot.value === null) return ""
  return value.formatValue(slot.spec, slot.value as value.Value)
}

const rawText = (v: unknown): string | null => {
  if (v === null) return null
  if (typeof v === "boolean") return v ? "on" : "off"
  return String(v)
}

const byName = (a: Slot, b: Slot): number => a.parameter.name < b.parameter.name ? -1 : 1

/** The settings view (`pg_settings`), in name order, without `noShowAll` parameters. */
export const settingRows = (state: State): ReadonlyArray<Guc.SettingRow> =>
  Array.from(state.slots.values())
    .filter((s) => !s.parameter.noShowAll)
    .sort(byName)
    .map((slot): Guc.SettingRow => {
      const p = slot.parameter
      const numeric = p.vartype === "integer" || p.vartype === "real"
      return {
        name: p.name,
        setting: p.show !== undefined ? p.show(slot.value) : rawText(slot.value),
        unit: value.baseUnitLabel(p.unit),
        category: p.category,
        short_desc: p.shortDesc,
        extra_desc: p.longDesc ?? null,
        context: p.context,
        vartype: p.vartype,
        source: slot.source,
        min_val: numeric ? String(p.min) : null,
        max_val: numeric ? String(p.max) : null,
        enumvals: p.enumValues === undefined ? null : p.enumValues.filter((v) => !v.hidden).map((v) => v.name),
        boot_val: rawText(p.default),
        reset_val: rawText(slot.resetValue),
        sourcefile: slot.file ?? null,
        sourceline: slot.line ?? null,
        pending_restart: slot.pendingRestart
      }
    })

/** A sample `postgresql.conf`: every parameter's default, commented out (not `notInSample` or `internal` ones). */
export const sampleConfig = (state: State): string => {
  const lines = ["# Sample configuration: every parameter at its default, commented out.", ""]
  for (const slot of Array.from(state.slots.values()).sort(byName)) {
    const p = slot.parameter
    if (p.notInSample || p.context === "internal") continue
    const boot = p.default === null ? "''" : quoteValue(value.formatValue(slot.spec, p.default as value.Value))
    const restart = p.context === "postmaster" ? " (change requires restart)" : ""
    lines.push(`#${p.name} = ${boot}\t\t# ${p.shortDesc}${restart}`)
  }
  return lines.join("\n") + "\n"
}
