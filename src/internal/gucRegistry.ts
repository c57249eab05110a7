/**
 * The GUC registry's effectful shell: it reads the configuration files, keeps the state record of
 * `gucPlan.ts`, publishes each new snapshot, logs, and runs the assign hooks. What a change does is decided by
 * the pure functions of `gucPlan.ts` (see its protocol: every change is a plan then a commit).
 *
 * The external source (`server configuration`) is a map that a module outside the core replaces as a whole
 * (`replaceExternal`); the core knows nothing of where it comes from. A reload keeps it as it is.
 *
 * @internal
 */
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as FileSystem from "effect/FileSystem"
import * as Path from "effect/Path"
import * as SubscriptionRef from "effect/SubscriptionRef"
import type * as Guc from "../Guc.ts"
import * as conf from "./confFile.ts"
import * as errors from "./gucError.ts"
import * as Plan from "./gucPlan.ts"
import * as supervisorParameters from "./gucSupervisor.ts"
import * as value from "./gucValue.ts"

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
      throw new Error(
        `parameter "${parameter.name}" is not defined; define it with Guc.define or Guc.layer({ parameters })`
      )
    }
    return v as A
  }
}

/** Each registry's `markStarted`, kept off the public `GucsApi`. */
const starters = new WeakMap<Guc.GucsApi, () => void>()

/**
 * Tells the registry that the supervisor has started (its preloads ran): from now on `postmaster` parameters
 * cannot be defined, and `replaceExternal` stores values for the next reload instead of applying them.
 *
 * Only the supervisor calls it, once its preloads have run; calling it again is harmless. A `GucsApi` that
 * `make` did not build is ignored.
 */
export const markStarted = (gucs: Guc.GucsApi): void => starters.get(gucs)?.()

const whereOf = (e: unknown): { file?: string; line?: number } => {
  const f = (e as { file?: unknown }).file
  const l = (e as { line?: unknown }).line
  return typeof f !== "string" ? {} : typeof l === "number" ? { file: f, line: l } : { file: f }
}

const configFileError = (e: conf.ConfError) =>
  errors.fail(new errors.ConfigFileError({ message: e.message, ...whereOf(e) }))

const log = (level: "Info" | "Warn", message: string) =>
  (level === "Info" ? Effect.logInfo(message) : Effect.logWarning(message))
    .pipe(Effect.annotateLogs({ module: "effect-bgworker/Guc" }))

const logRefusals = (refusals: ReadonlyArray<Plan.Refusal>) =>
  Effect.forEach(refusals, (r) => log("Warn", Plan.refusalLine(r.error)), { discard: true })

/**
 * Builds a registry: reads the files (when given), defines the supervisor's parameters and `options.parameters`,
 * and fails when a file does not parse or holds a value that a parameter defined here refuses.
 */
export const make = Effect.fnUntraced(function*(options: Guc.Options) {
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

  let state = Plan.makeState({
    reserved: options.reservedPrefixes,
    sources: {
      environment: Plan.environmentCandidates(options.environment ?? {}),
      override: Plan.overrideCandidates(options.overrides ?? {})
    }
  })
  let version = 0
  let current = new SnapshotImpl(0, new Map())
  const ref = yield* SubscriptionRef.make<Guc.Snapshot>(current)

  const readFiles: Effect.Effect<Map<string, Plan.Candidate>, errors.GucError> = files === undefined
    ? Effect.succeed(new Map())
    : withFiles(Effect.gen(function*() {
      const entries: Array<conf.ConfEntry> = []
      if (configFile !== undefined) entries.push(...(yield* conf.readConfFile(configFile)))
      if (autoFile !== undefined) entries.push(...(yield* conf.readConfFile(autoFile, { missingOk: true })))
      return Plan.fileCandidates(entries)
    })).pipe(Effect.mapError(configFileError))

  // --- plan, commit, publish ---

  const publish = Effect.suspend(() => {
    const values = new Map<string, unknown>()
    for (const [name, slot] of state.slots) values.set(name, slot.value)
    current = new SnapshotImpl(++version, values)
    return SubscriptionRef.set(ref, current)
  })

  /** Plans `phase` and keeps the plan's bookkeeping; the caller commits (or not). */
  const plan = (phase: Plan.Phase, only?: ReadonlyArray<string>) => {
    const planned = Plan.plan(state, phase, only)
    state = planned.state
    return planned
  }

  /** Applies planned changes together: one new snapshot, then the assign hooks. Returns the changed names. */
  const commit = (plans: ReadonlyArray<Plan.Plan>): Effect.Effect<ReadonlyArray<string>> =>
    Effect.suspend(() => {
      if (plans.length === 0) return Effect.succeed([])
      const committed = Plan.commit(state, plans)
      state = committed.state
      return Effect.as(
        publish,
        committed.changed.map((name) => {
          const slot = state.slots.get(name)!
          slot.parameter.assign?.(slot.value)
          return name
        })
      )
    })

  // --- definitions ---

  const define = (parameter: Guc.Any, phase: "start" | "define"): Effect.Effect<void, errors.GucError> =>
    Effect.suspend(() => {
      const defined = Plan.define(state, parameter, phase)
      if (!defined.ok) return Effect.fail(defined.error)
      state = defined.state
      const { errors: refusals, plans } = plan("define", [parameter.name])
      return Effect.andThen(
        // A value given before the definition that does not fit is refused with a warning (PG-42).
        logRefusals(refusals),
        refusals.length === 0 || phase !== "start"
          ? plans.length === 0 ? publish : Effect.asVoid(commit(plans)) // a commit publishes
          : Effect.fail(refusals[0]!.error)
      )
    })

  const reservePrefix = (prefix: string): Effect.Effect<void> =>
    Effect.suspend(() => {
      const reserved = Plan.reservePrefix(state, prefix)
      state = reserved.state
      return Effect.forEach(reserved.removed, (name) =>
        log(
          "Warn",
          `invalid configuration parameter name "${name}", removing it; "${prefix}" is now a reserved prefix.`
        ), { discard: true })
    })

  // --- reload ---

  const reload: Effect.Effect<Guc.ReloadReport> = Effect.gen(function*() {
    const read = yield* Effect.result(readFiles)
    if (read._tag === "Failure") {
      yield* log("Warn", read.failure.message)
      yield* log("Warn", `configuration file "${configFile}" contains errors; no changes were applied`)
      return { applied: false, changed: [], pendingRestart: [], errors: [read.failure] }
    }
    state = Plan.withSource(state, "file", read.success)
    const unknown = [...Plan.unknownNames(state, "file"), ...Plan.unknownNames(state, "external")]
    const { plans, errors: refused, pending } = plan("reload")
    const changed = yield* commit(plans)
    for (const name of pending) {
      yield* log("Info", `parameter "${name}" cannot be changed without restarting the server`)
    }
    for (const name of changed) {
      yield* log("Info", `parameter "${name}" changed to "${Plan.showValue(state.slots.get(name)!)}"`)
    }
    const all = [...unknown, ...refused]
    yield* logRefusals(all)
    if (all.length > 0) {
      yield* log("Warn", `${Plan.summaryTarget(configFile, all)} contains errors; unaffected changes were applied`)
    }
    return { applied: true, changed, pendingRestart: pending, errors: all.map((r) => r.error) }
  })

  // --- the external source ---

  const replaceExternal = (settings: ReadonlyArray<Guc.ExternalSetting>): Effect.Effect<Guc.ExternalUpdate> =>
    Effect.suspend(() => {
      const next = Plan.externalCandidates(settings)
      if (Plan.sameCandidates(next, state.sources.external)) return Effect.succeed("unchanged")
      state = Plan.withSource(state, "external", next)
      if (state.started) return Effect.succeed("stored")
      // Before the supervisor started, the values apply at once, as they would have at start
      // (`postmaster` parameters included); refusals are warnings, as the values are not ours to refuse.
      const { plans, errors: refused } = plan("start")
      return logRefusals([...Plan.unknownNames(state, "external"), ...refused]).pipe(
        Effect.andThen(commit(plans)),
        Effect.as("applied")
      )
    })

  // --- SET, RESET, ALTER SYSTEM ---

  const lookup = (name: string): Effect.Effect<Plan.Slot, errors.GucError> => {
    const slot = state.slots.get(name)
    return slot !== undefined ? Effect.succeed(slot) : Effect.fail(errors.fail(
      new errors.UnknownParameter({ parameter: name, message: `unrecognized configuration parameter "${name}"` })
    ))
  }

  const cannotChange = (slot: Plan.Slot, message: string) =>
    Effect.fail(errors.fail(new errors.CannotChange({ parameter: slot.parameter.name, message })))

  const set = (name: string, v: unknown): Effect.Effect<void, errors.GucError> =>
    Effect.flatMap(lookup(name), (slot) => {
      switch (slot.parameter.context) {
        case "internal":
          return cannotChange(slot, `parameter "${name}" cannot be changed`)
        case "postmaster":
          return cannotChange(slot, `parameter "${name}" cannot be changed without restarting the server`)
        case "sighup":
          return cannotChange(slot, `parameter "${name}" cannot be changed now`)
      }
      const candidate: Plan.Candidate = { raw: v, text: false, source: "session" }
      const evaluated = Plan.evaluate(slot, candidate)
      if (!evaluated.ok) return Effect.fail(evaluated.error)
      state = Plan.withSource(state, "session", new Map(state.sources.session).set(name, candidate))
      return Effect.asVoid(commit(plan("set", [name]).plans))
    })

  const resetValue = (name: string): Effect.Effect<void, errors.GucError> =>
    Effect.flatMap(lookup(name), () => {
      const session = new Map(state.sources.session)
      session.delete(name)
      state = Plan.withSource(state, "session", session)
      return Effect.asVoid(commit(plan("define", [name]).plans))
    })

  const alterSystem = Effect.fnUntraced(function*(name: string, v: unknown) {
    if (autoFile === undefined || files === undefined) {
      return yield* Effect.fail(errors.fail(
        new errors.ConfigFileError({
          message: "cannot execute ALTER SYSTEM: no configuration file",
          hint: "Give Guc.layer a configFile (or an autoFile)."
        })
      ))
    }
    const slot = state.slots.get(name)
    if (slot === undefined && (!Plan.isCustomName(name) || state.reserved.has(name.split(".")[0]!))) {
      return yield* Effect.asVoid(lookup(name))
    }
    let text: string | undefined = undefined
    if (slot !== undefined) {
      if (slot.parameter.context === "internal") {
        return yield* cannotChange(slot, `parameter "${name}" cannot be changed`)
      }
      if (v !== null) {
        const candidate: Plan.Candidate = { raw: v, text: typeof v === "string", source: "configuration file" }
        const evaluated = Plan.evaluate(slot, candidate)
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
    })).pipe(Effect.mapError(configFileError))
  })

  const configProvider = ConfigProvider.make((path) =>
    Effect.sync(() => {
      const name = path.join(".")
      const slot = state.slots.get(name)
      if (slot !== undefined) {
        const v = current.values.get(name) ?? slot.value
        if (v === null) return undefined
        return ConfigProvider.makeValue(typeof v === "boolean" ? (v ? "true" : "false") : String(v))
      }
      const prefix = `${name}.`
      const keys = new Set<string>()
      for (const n of state.slots.keys()) if (n.startsWith(prefix)) keys.add(n.slice(prefix.length).split(".")[0]!)
      return keys.size === 0 ? undefined : ConfigProvider.makeRecord(keys)
    })
  )

  // --- start ---

  state = Plan.withSource(state, "file", yield* readFiles)
  for (const p of supervisorParameters.all) yield* define(p, "start")
  for (const p of options.parameters ?? []) yield* define(p, "start")
  const startErrors = [...Plan.unknownNames(state, "file"), ...Plan.unknownNames(state, "override")]
  if (startErrors.length > 0) {
    yield* logRefusals(startErrors)
    return yield* Effect.fail(startErrors[0]!.error)
  }

  const api: Guc.GucsApi = {
    define: (p) => define(p, "define"),
    reservePrefix,
    get: (p) => Effect.sync(() => current.get(p)),
    currentSnapshot: () => current,
    snapshot: Effect.sync(() => current),
    changes: SubscriptionRef.changes(ref),
    reload,
    set,
    resetValue,
    alterSystem,
    show: (name) => Effect.map(lookup(name), Plan.showValue),
    settings: Effect.sync(() => Plan.settingRows(state)),
    replaceExternal,
    parameterNames: () => Array.from(state.slots.keys()),
    configProvider,
    sampleConfig: () => Plan.sampleConfig(state)
  }
  starters.set(api, () => {
    state = { ...state, started: true }
  })
  return api
})
