/**
 * The GUC registry: defined parameters, their candidate values from every source, reload and the settings
 * view.
 *
 * Protocol: every change goes through `plan` then `commit`. `plan` computes, for each parameter, what its
 * value would be from the current candidates (session > override > environment > external > files >
 * default) and whether the context allows the change, without changing any value (it only keeps two pieces
 * of bookkeeping up to date: `pending_restart` and the reset value); `commit` applies all planned changes
 * at once, publishes one new snapshot, then runs the assign hooks. So a reload either validates everything
 * before applying anything, or (on a syntax error) never gets to `plan` at all.
 *
 * The external source (`server configuration`) is a map that a module outside the core replaces as a
 * whole (`replaceExternal`); the core knows nothing of where it comes from. A reload keeps it as it is.
 *
 * @internal
 */
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as FileSystem from "effect/FileSystem"
import * as Path from "effect/Path"
import * as SubscriptionRef from "effect/SubscriptionRef"
import type * as Guc from "../Guc.ts"
import * as GucModule from "../Guc.ts"
import * as conf from "./confFile.ts"
import * as value from "./gucValue.ts"

interface Candidate {
  /** Text from a file or the environment; a typed value from code. */
  readonly raw: unknown
  readonly text: boolean
  readonly source: Guc.Source
  readonly file?: string | undefined
  readonly line?: number | undefined
}

interface Slot {
  readonly parameter: Guc.Any
  readonly spec: value.Spec
  value: unknown
  source: Guc.Source
  file: string | undefined
  line: number | undefined
  /** The value without the session's `SET` (`reset_val`). */
  resetValue: unknown
  pendingRestart: boolean
}

type Phase = "start" | "reload" | "define" | "set"

interface Plan {
  readonly slot: Slot
  readonly value: unknown
  readonly candidate: Candidate | undefined
  readonly resetValue: unknown
}

class SnapshotImpl implements Guc.Snapshot {
  readonly version: number
  readonly values: ReadonlyMap<string, unknown>
  constructor(version: number, values: ReadonlyMap<string, unknown>) {
    this.version = version
    this.values = values
  }
  get<A>(parameter: Guc.Parameter<A>): A {
    const v = this.values.get(parameter.name)
    if (v === undefined && !this.values.has(parameter.name)) {
      throw new Error(`parameter "${parameter.name}" is not defined; define it with Guc.define or Guc.layer({ parameters })`)
    }
    return v as A
  }
}

const specOf = (p: Guc.Any): value.Spec => {
  switch (p.vartype) {
    case "integer":
      return { kind: "int", name: p.name, min: p.min!, max: p.max!, unit: p.unit }
    case "real":
      return { kind: "real", name: p.name, min: p.min!, max: p.max!, unit: p.unit }
    case "bool":
      return { kind: "bool", name: p.name }
    case "string":
      return { kind: "string", name: p.name }
    case "enum":
      return { kind: "enum", name: p.name, values: p.enumValues! }
  }
}

const where = (c: Candidate | undefined): { file?: string; line?: number } =>
  c?.file === undefined ? {} : c.line === undefined ? { file: c.file } : { file: c.file, line: c.line }

const withHint = <T extends object>(fields: T, hint: string | undefined): T & { hint?: string } =>
  hint === undefined ? fields : { ...fields, hint }

const fail = (reason: Guc.GucErrorReason) => new GucModule.GucError({ reason })

/** The external source's name (`pg_settings.source`). */
const EXTERNAL = "server configuration" satisfies Guc.Source

const customName = /^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)+$/
const builtinName = /^[A-Za-z_][A-Za-z0-9_$]*$/

export const make = (options: Guc.Options) =>
  Effect.gen(function*() {
    const fs = yield* Effect.serviceOption(FileSystem.FileSystem)
    const pathService = yield* Effect.serviceOption(Path.Path)
    const configFile = options.configFile
    const autoFile = options.autoFile ??
      (configFile === undefined || pathService._tag === "None"
        ? undefined
        : pathService.value.join(pathService.value.dirname(configFile), "postgresql.auto.conf"))
    const needsFiles = configFile !== undefined || autoFile !== undefined
    if (needsFiles && (fs._tag === "None" || pathService._tag === "None")) {
      return yield* Effect.die(
        new Error("Guc.layer: a configFile needs FileSystem and Path (provide NodeServices.layer)")
      )
    }
    const files = needsFiles && fs._tag === "Some" && pathService._tag === "Some"
      ? { fs: fs.value, path: pathService.value }
      : undefined
    const withFiles = <A, E>(effect: Effect.Effect<A, E, FileSystem.FileSystem | Path.Path>) =>
      effect.pipe(Effect.provideService(FileSystem.FileSystem, files!.fs), Effect.provideService(Path.Path, files!.path))

    const slots = new Map<string, Slot>()
    const reserved = new Set<string>()
    let fileCandidates = new Map<string, Candidate>()
    /** The external source (`server configuration`), replaced as a whole by `replaceExternal`. */
    let externalCandidates = new Map<string, Candidate>()
    /** Errors about external values, so that the reload's summary names the right configuration. */
    const externalErrors = new WeakSet<Guc.GucError>()
    const envCandidates = new Map<string, Candidate>()
    const overrideCandidates = new Map<string, Candidate>()
    const sessionCandidates = new Map<string, Candidate>()
    let started = false
    let version = 0
    const ref = yield* SubscriptionRef.make<Guc.Snapshot>(new SnapshotImpl(0, new Map()))
    let current = new SnapshotImpl(0, new Map())

    const log = (level: "Info" | "Warn" | "Debug", message: string) =>
      (level === "Info" ? Effect.logInfo(message) : level === "Warn" ? Effect.logWarning(message) : Effect.logDebug(message))
        .pipe(Effect.annotateLogs({ module: "effect-bgworker/Guc" }))

    // --- sources ---

    for (const [key, text] of Object.entries(options.environment ?? {})) {
      if (text === undefined || !key.startsWith("BGW_") || key.length <= 4) continue
      const name = key.slice(4).toLowerCase().replaceAll("__", ".")
      envCandidates.set(name, { raw: text, text: true, source: "environment variable" })
    }
    for (const [name, raw] of Object.entries(options.overrides ?? {})) {
      overrideCandidates.set(name, { raw, text: false, source: "override" })
    }

    const readFiles: Effect.Effect<Map<string, Candidate>, Guc.GucError> = files === undefined
      ? Effect.succeed(new Map())
      : withFiles(Effect.gen(function*() {
        const entries: Array<conf.ConfEntry> = []
        if (configFile !== undefined) entries.push(...(yield* conf.readConfFile(configFile)))
        if (autoFile !== undefined) entries.push(...(yield* conf.readConfFile(autoFile, { missingOk: true })))
        const map = new Map<string, Candidate>()
        for (const e of entries) {
          map.set(e.name, { raw: e.value, text: true, source: "configuration file", file: e.file, line: e.line })
        }
        return map
      })).pipe(
        Effect.mapError((e) =>
          fail(new GucModule.ConfigFileError(withHint({ message: e.message, ...whereOf(e) }, undefined)))
        )
      )

    const candidateFor = (name: string, includeSession: boolean): Candidate | undefined =>
      (includeSession ? sessionCandidates.get(name) : undefined) ?? overrideCandidates.get(name) ??
        envCandidates.get(name) ?? externalCandidates.get(name) ?? fileCandidates.get(name)

    // --- validation ---

    const evaluate = (
      slot: Slot,
      candidate: Candidate | undefined
    ): { ok: true; value: unknown } | { ok: false; error: Guc.GucError } => {
      const result = evaluateCandidate(slot, candidate)
      if (!result.ok && candidate?.source === EXTERNAL) externalErrors.add(result.error)
      return result
    }

    const evaluateCandidate = (
      slot: Slot,
      candidate: Candidate | undefined
    ): { ok: true; value: unknown } | { ok: false; error: Guc.GucError } => {
      if (candidate === undefined) return { ok: true, value: slot.parameter.default }
      const parsed = candidate.text
        ? value.parseValue(slot.spec, String(candidate.raw))
        : value.validateValue(slot.spec, candidate.raw)
      if (!parsed.ok) {
        return {
          ok: false,
          error: fail(
            new GucModule.InvalidValue(
              withHint({ parameter: slot.parameter.name, message: parsed.message, ...where(candidate) }, parsed.hint)
            )
          )
        }
      }
      const check = slot.parameter.check
      if (check === undefined) return { ok: true, value: parsed.value }
      const checked = check(parsed.value, candidate.source)
      if (GucModule.isCheckFailure(checked)) {
        return {
          ok: false,
          error: fail(
            new GucModule.InvalidValue(
              withHint({
                parameter: slot.parameter.name,
                message: `invalid value for parameter "${slot.parameter.name}": "${String(candidate.raw)}": ${checked.message}`,
                ...where(candidate)
              }, checked.hint)
            )
          )
        }
      }
      return { ok: true, value: checked }
    }

    /** What each parameter would become; refusals and pending restarts are reported, nothing is changed. */
    const plan = (phase: Phase, only?: ReadonlyArray<Slot>) => {
      const plans: Array<Plan> = []
      const errors: Array<Guc.GucError> = []
      const pending: Array<Slot> = []
      for (const slot of only ?? slots.values()) {
        const candidate = candidateFor(slot.parameter.name, true)
        const evaluated = evaluate(slot, candidate)
        if (!evaluated.ok) {
          errors.push(evaluated.error)
          continue
        }
        const resetCandidate = candidateFor(slot.parameter.name, false)
        const reset = resetCandidate === candidate ? evaluated : evaluate(slot, resetCandidate)
        const resetValue = reset.ok ? reset.value : slot.resetValue
        const changed = !Object.is(evaluated.value, slot.value)
        const context = slot.parameter.context
        if (context === "internal" && candidate !== undefined && phase !== "define") {
          errors.push(fail(
            new GucModule.CannotChange({
              parameter: slot.parameter.name,
              message: `parameter "${slot.parameter.name}" cannot be changed`,
              ...where(candidate)
            })
          ))
          continue
        }
        if (context === "postmaster" && (phase === "reload" || phase === "set")) {
          slot.pendingRestart = changed
          if (changed) pending.push(slot)
          continue
        }
        if (
          changed || candidate?.source !== slot.source || candidate?.file !== slot.file ||
          candidate?.line !== slot.line
        ) {
          plans.push({ slot, value: evaluated.value, candidate, resetValue })
        } else {
          slot.resetValue = resetValue
        }
      }
      return { plans, errors, pending }
    }

    /** Applies planned changes together: one new snapshot, then the assign hooks. */
    const commit = (plans: ReadonlyArray<Plan>): Effect.Effect<ReadonlyArray<string>> =>
      Effect.suspend(() => {
        if (plans.length === 0) return Effect.succeed([])
        const changed: Array<Slot> = []
        for (const p of plans) {
          if (!Object.is(p.slot.value, p.value)) changed.push(p.slot)
          p.slot.value = p.value
          p.slot.resetValue = p.resetValue
          p.slot.source = p.candidate?.source ?? "default"
          p.slot.file = p.candidate?.file
          p.slot.line = p.candidate?.line
          p.slot.pendingRestart = false
        }
        return Effect.as(publish, changed.map((slot) => {
          slot.parameter.assign?.(slot.value)
          return slot.parameter.name
        }))
      })

    const publish = Effect.suspend(() => {
      const values = new Map<string, unknown>()
      for (const [name, slot] of slots) values.set(name, slot.value)
      current = new SnapshotImpl(++version, values)
      return SubscriptionRef.set(ref, current)
    })

    /** Names in the candidates that no parameter has: errors, reserved-prefix refusals, or placeholders. */
    const unknownNames = (candidates: ReadonlyMap<string, Candidate>): Array<Guc.GucError> => {
      const errors: Array<Guc.GucError> = []
      const external = candidates === externalCandidates
      for (const [name, c] of candidates) {
        if (slots.has(name)) continue
        const prefix = name.split(".")[0]!
        if (!name.includes(".")) {
          errors.push(fail(
            new GucModule.UnknownParameter({
              parameter: name,
              message: `unrecognized configuration parameter "${name}"` +
                (c.file === undefined ? "" : ` in file "${c.file}" line ${c.line}`),
              ...where(c)
            })
          ))
        } else if (reserved.has(prefix)) {
          errors.push(fail(
            new GucModule.ReservedPrefix({
              parameter: name,
              message: `invalid configuration parameter name "${name}"`,
              hint: `"${prefix}" is a reserved prefix.`,
              ...where(c)
            })
          ))
        }
        // otherwise a placeholder: adopted (or refused) when its parameter is defined
      }
      if (external) for (const e of errors) externalErrors.add(e)
      return errors
    }

    const logErrors = (errors: ReadonlyArray<Guc.GucError>) =>
      Effect.forEach(errors, (e) => {
        const { file, line } = e.reason as { file?: string; line?: number }
        // Say where, unless the message already does (as a syntax error's does).
        const at = file === undefined || e.message.includes(`"${file}"`) ? "" : ` in file "${file}" line ${line}`
        return log("Warn", `${e.message}${at}${e.hint === undefined ? "" : ` (hint: ${e.hint})`}`)
      }, { discard: true })

    // --- definitions ---

    const define = (parameter: Guc.Any, phase: "start" | "define"): Effect.Effect<void, Guc.GucError> =>
      Effect.suspend(() => {
        const name = parameter.name
        const invalid = (message: string, hint?: string) =>
          Effect.fail(fail(new GucModule.InvalidDefinition(withHint({ parameter: name, message }, hint))))
        if (slots.has(name)) return invalid(`attempt to redefine parameter "${name}"`)
        if (!customName.test(name) && !(builtinName.test(name) && phase === "start")) {
          return invalid(
            `invalid configuration parameter name "${name}"`,
            "Custom parameter names must be two or more simple identifiers separated by dots."
          )
        }
        if (parameter.context === "postmaster" && started) {
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
        const slot: Slot = {
          parameter,
          spec,
          value: parameter.default,
          source: "default",
          file: undefined,
          line: undefined,
          resetValue: parameter.default,
          pendingRestart: false
        }
        slots.set(name, slot)
        const { plans, errors } = plan("define", [slot])
        return Effect.andThen(
          // A value given before the definition that does not fit is refused with a warning (PG-42).
          logErrors(errors),
          errors.length === 0 || phase !== "start"
            ? plans.length === 0 ? publish : Effect.asVoid(commit(plans)) // a commit publishes
            : Effect.fail(errors[0]!)
        )
      })

    // --- reload ---

    const reload: Effect.Effect<Guc.ReloadReport> = Effect.gen(function*() {
      const read = yield* Effect.result(readFiles)
      if (read._tag === "Failure") {
        yield* log("Warn", read.failure.message)
        yield* log("Warn", `configuration file "${configFile}" contains errors; no changes were applied`)
        return { applied: false, changed: [], pendingRestart: [], errors: [read.failure] }
      }
      fileCandidates = read.success
      const unknown = [...unknownNames(fileCandidates), ...unknownNames(externalCandidates)]
      const { plans, errors, pending } = plan("reload")
      const changed = yield* commit(plans)
      for (const slot of pending) {
        yield* log("Info", `parameter "${slot.parameter.name}" cannot be changed without restarting the server`)
      }
      for (const name of changed) {
        yield* log("Info", `parameter "${name}" changed to "${showValue(slots.get(name)!)}"`)
      }
      const all = [...unknown, ...errors]
      yield* logErrors(all)
      if (all.length > 0) yield* log("Warn", `${withErrors(all)} contains errors; unaffected changes were applied`)
      return {
        applied: true,
        changed,
        pendingRestart: pending.map((s) => s.parameter.name),
        errors: all
      }
    })

    /** What the reload's summary line names: the supervisor's file, or the external configuration's. */
    const withErrors = (errors: ReadonlyArray<Guc.GucError>): string => {
      if (configFile !== undefined && errors.some((e) => !externalErrors.has(e))) {
        return `configuration file "${configFile}"`
      }
      const file = errors.map((e) => (e.reason as { file?: string }).file).find((f) => f !== undefined)
      if (errors.every((e) => externalErrors.has(e))) {
        return file === undefined ? EXTERNAL : `${EXTERNAL} file "${file}"`
      }
      return file === undefined ? "the configuration" : `configuration file "${file}"`
    }

    // --- the external source ---

    const sameCandidates = (a: ReadonlyMap<string, Candidate>, b: ReadonlyMap<string, Candidate>): boolean => {
      if (a.size !== b.size) return false
      for (const [name, x] of a) {
        const y = b.get(name)
        if (y === undefined || y.raw !== x.raw || y.file !== x.file || y.line !== x.line) return false
      }
      return true
    }

    const replaceExternal = (settings: ReadonlyArray<Guc.ExternalSetting>): Effect.Effect<Guc.ExternalUpdate> =>
      Effect.suspend(() => {
        const next = new Map<string, Candidate>()
        for (const s of settings) {
          next.set(s.name, {
            raw: s.value,
            text: true,
            source: EXTERNAL,
            ...(s.file === undefined ? {} : { file: s.file }),
            ...(s.line === undefined ? {} : { line: s.line })
          })
        }
        if (sameCandidates(next, externalCandidates)) return Effect.succeed("unchanged")
        externalCandidates = next
        if (started) return Effect.succeed("stored")
        // Before the supervisor started, the values apply at once, as they would have at start
        // (`postmaster` parameters included); refusals are warnings, as the values are not ours to refuse.
        const { plans, errors } = plan("start")
        return logErrors([...unknownNames(externalCandidates), ...errors]).pipe(
          Effect.andThen(commit(plans)),
          Effect.as("applied")
        )
      })

    // --- settings ---

    const showValue = (slot: Slot): string => {
      if (slot.parameter.show !== undefined) return slot.parameter.show(slot.value)
      if (slot.value === null) return ""
      return value.formatValue(slot.spec, slot.value as value.Value)
    }

    const raw = (slot: Slot, v: unknown): string | null => {
      if (v === null) return null
      if (typeof v === "boolean") return v ? "on" : "off"
      return String(v)
    }

    const settings: Effect.Effect<ReadonlyArray<Guc.SettingRow>> = Effect.sync(() =>
      Array.from(slots.values())
        .filter((s) => !s.parameter.noShowAll)
        .sort((a, b) => a.parameter.name < b.parameter.name ? -1 : 1)
        .map((slot): Guc.SettingRow => {
          const p = slot.parameter
          const numeric = p.vartype === "integer" || p.vartype === "real"
          return {
            name: p.name,
            setting: p.show !== undefined ? p.show(slot.value) : raw(slot, slot.value),
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
            boot_val: raw(slot, p.default),
            reset_val: raw(slot, slot.resetValue),
            sourcefile: slot.file ?? null,
            sourceline: slot.line ?? null,
            pending_restart: slot.pendingRestart
          }
        })
    )

    const lookup = (name: string): Effect.Effect<Slot, Guc.GucError> => {
      const slot = slots.get(name)
      return slot !== undefined ? Effect.succeed(slot) : Effect.fail(fail(
        new GucModule.UnknownParameter({ parameter: name, message: `unrecognized configuration parameter "${name}"` })
      ))
    }

    const cannotChange = (slot: Slot, message: string) =>
      Effect.fail(fail(new GucModule.CannotChange({ parameter: slot.parameter.name, message })))

    const set = (name: string, v: unknown): Effect.Effect<void, Guc.GucError> =>
      Effect.flatMap(lookup(name), (slot) => {
        switch (slot.parameter.context) {
          case "internal":
            return cannotChange(slot, `parameter "${name}" cannot be changed`)
          case "postmaster":
            return cannotChange(slot, `parameter "${name}" cannot be changed without restarting the server`)
          case "sighup":
            return cannotChange(slot, `parameter "${name}" cannot be changed now`)
        }
        const candidate: Candidate = { raw: v, text: false, source: "session" }
        const evaluated = evaluate(slot, candidate)
        if (!evaluated.ok) return Effect.fail(evaluated.error)
        sessionCandidates.set(name, candidate)
        return Effect.asVoid(commit(plan("set", [slot]).plans))
      })

    const resetValue = (name: string): Effect.Effect<void, Guc.GucError> =>
      Effect.flatMap(lookup(name), (slot) => {
        sessionCandidates.delete(name)
        return Effect.asVoid(commit(plan("define", [slot]).plans))
      })

    const alterSystem = (name: string, v: unknown): Effect.Effect<void, Guc.GucError> =>
      Effect.gen(function*() {
        if (autoFile === undefined || files === undefined) {
          return yield* Effect.fail(fail(
            new GucModule.ConfigFileError({
              message: "cannot execute ALTER SYSTEM: no configuration file",
              hint: "Give Guc.layer a configFile (or an autoFile)."
            })
          ))
        }
        const slot = slots.get(name)
        if (slot === undefined && (!customName.test(name) || reserved.has(name.split(".")[0]!))) {
          return yield* lookup(name)
        }
        let text: string | undefined = undefined
        if (slot !== undefined) {
          if (slot.parameter.context === "internal") return yield* cannotChange(slot, `parameter "${name}" cannot be changed`)
          if (v !== null) {
            const candidate: Candidate = { raw: v, text: typeof v === "string", source: "configuration file" }
            const evaluated = evaluate(slot, candidate)
            if (!evaluated.ok) return yield* Effect.fail(evaluated.error)
            text = evaluated.value === null ? "" : value.formatValue(slot.spec, evaluated.value as value.Value)
          }
        } else if (v !== null) {
          text = String(v)
        }
        const file = autoFile
        yield* withFiles(Effect.gen(function*() {
          const existing = yield* conf.readConfFile(file, { missingOk: true })
          const entries = new Map(existing.map((e) => [e.name, e.value]))
          if (text === undefined) entries.delete(name)
          else entries.set(name, text)
          yield* conf.writeAutoConf(file, Array.from(entries, ([n, value]) => ({ name: n, value })))
        })).pipe(
          Effect.mapError((e) => fail(new GucModule.ConfigFileError({ message: e.message, ...whereOf(e) })))
        )
      })

    const configProvider = ConfigProvider.make((path) =>
      Effect.sync(() => {
        const name = path.join(".")
        const slot = slots.get(name)
        if (slot !== undefined) {
          const v = current.values.get(name) ?? slot.value
          if (v === null) return undefined
          return ConfigProvider.makeValue(typeof v === "boolean" ? (v ? "true" : "false") : String(v))
        }
        const prefix = `${name}.`
        const keys = new Set<string>()
        for (const n of slots.keys()) if (n.startsWith(prefix)) keys.add(n.slice(prefix.length).split(".")[0]!)
        return keys.size === 0 ? undefined : ConfigProvider.makeRecord(keys)
      })
    )

    const sampleConfig = (): string => {
      const lines = ["# Sample configuration: every parameter at its default, commented out.", ""]
      for (const slot of Array.from(slots.values()).sort((a, b) => a.parameter.name < b.parameter.name ? -1 : 1)) {
        const p = slot.parameter
        if (p.notInSample || p.context === "internal") continue
        const boot = p.default === null ? "''" : conf.quoteValue(value.formatValue(slot.spec, p.default as value.Value))
        lines.push(`#${p.name} = ${boot}\t\t# ${p.shortDesc}${p.context === "postmaster" ? " (change requires restart)" : ""}`)
      }
      return lines.join("\n") + "\n"
    }

    // --- start ---

    for (const prefix of options.reservedPrefixes ?? []) reserved.add(prefix)
    fileCandidates = yield* readFiles
    for (const p of [GucModule.maxWorkerProcesses, GucModule.restartAfterCrash, GucModule.shutdownTimeout]) {
      yield* define(p, "start")
    }
    for (const p of options.parameters ?? []) yield* define(p, "start")
    const startErrors = [...unknownNames(fileCandidates), ...unknownNames(overrideCandidates)]
    if (startErrors.length > 0) {
      yield* logErrors(startErrors)
      return yield* Effect.fail(startErrors[0]!)
    }

    const api: Guc.GucsApi = {
      define: (p) => define(p, "define"),
      reservePrefix: (prefix) =>
        Effect.suspend(() => {
          reserved.add(prefix)
          const removed: Array<string> = []
          for (const source of [fileCandidates, externalCandidates, envCandidates, overrideCandidates]) {
            for (const name of Array.from(source.keys())) {
              if (name.startsWith(`${prefix}.`) && !slots.has(name)) {
                source.delete(name)
                removed.push(name)
              }
            }
          }
          return Effect.forEach(removed, (name) =>
            log(
              "Warn",
              `invalid configuration parameter name "${name}", removing it; "${prefix}" is now a reserved prefix.`
            ), { discard: true })
        }),
      get: (p) => Effect.sync(() => current.get(p)),
      currentSnapshot: () => current,
      snapshot: Effect.sync(() => current),
      changes: SubscriptionRef.changes(ref),
      reload,
      set,
      resetValue,
      alterSystem,
      show: (name) => Effect.map(lookup(name), showValue),
      settings,
      replaceExternal,
      parameterNames: () => Array.from(slots.keys()),
      configProvider,
      markStarted: () => {
        started = true
      },
      sampleConfig
    }
    return api
  })

const whereOf = (e: unknown): { file?: string; line?: number } => {
  const f = (e as { file?: unknown }).file
  const l = (e as { line?: unknown }).line
  return typeof f !== "string" ? {} : typeof l === "number" ? { file: f, line: l } : { file: f }
}

