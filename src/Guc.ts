/**
 * Typed configuration parameters (GUCs): definitions, `postgresql.conf` files, reload rules, the settings
 * view.
 *
 * PostgreSQL: `DefineCustom{Bool,Int,Real,String,Enum}Variable`, `MarkGUCPrefixReserved`,
 * `ProcessConfigFile(PGC_SIGHUP)`, `ALTER SYSTEM` and `pg_settings` (src/backend/utils/misc/guc.c,
 * guc-file.l, src/include/utils/guc.h).
 *
 * **Definitions.** A parameter is a plain value made by {@link int}, {@link real}, {@link bool},
 * {@link string} or {@link enumeration}: a name (`prefix.name` for custom ones), a default, bounds, a unit, a
 * context, descriptions, flags and hooks. It becomes live when defined in a registry ({@link define}, or
 * `Guc.layer({ parameters })`); defining twice, or defining a `postmaster` parameter after the supervisor
 * started, is a typed error.
 *
 * **Sources, lowest to highest:** the default; the configuration file (`postgresql.conf` syntax, with
 * `include`, `include_if_exists`, `include_dir`); the auto file written by {@link alterSystem}; the server's
 * configuration (source `server configuration`: an external source that a module outside the core replaces
 * as a whole with {@link replaceExternal}, in practice `ServerSettings` from `effect-bgworker/pg`, which
 * follows `ALTER SYSTEM` and `postgresql.conf` on the PostgreSQL server the supervisor runs against);
 * environment variables (`BGW_` + the name in capitals with `.` written `__`: `worker_spi.naptime` is
 * `BGW_WORKER_SPI__NAPTIME`); values set in code (`Guc.layer({ overrides })`, source `override`); and
 * {@link set} (source `session`, for `user` and `superuser` parameters). Each value knows its source, file
 * and line. The order follows PostgreSQL's: the supervisor's own files are its `postgresql.conf`, the
 * server's configuration beats them as `ALTER SYSTEM` beats `postgresql.conf`, and the environment beats
 * both as the server's command line beats `ALTER SYSTEM`.
 *
 * **Reload** ({@link reload}, or SIGHUP through `NodeSupervisor`) re-reads every file and validates
 * everything before applying anything. A syntax error anywhere changes nothing. An invalid value keeps the old
 * one and is reported, while the other valid changes apply. A changed `postmaster` parameter keeps its value
 * and is marked `pending_restart`. A line removed from the files returns its parameter to the next source,
 * or to the default. The server's configuration is not re-read by a reload: its values are the ones last
 * given to {@link replaceExternal}, and they go through the same validation, refusals and pending restarts
 * as the files' values.
 *
 * **How a worker sees a reload.** There is one registry per process, so the reload applies the new values
 * centrally, as one new snapshot, before the supervisor sets every worker's reload flag and latch. A worker
 * reads parameters through a {@link snapshot} taken at the top of its loop, so one cycle sees one consistent
 * set of values; `Interrupts.reloadPending` tells it that values may have changed (worker_spi's
 * `ProcessConfigFile` step becomes: take a new snapshot, rebuild what depends on it).
 *
 * **Contexts.** `internal`: never settable. `postmaster`: read at start; a reload only marks a change as
 * pending restart. `sighup`: changes on reload. `superuser` and `user`: change on reload and through
 * {@link set}.
 *
 * Deliberate differences: there are no sessions, so `superuser` and `user` behave alike and {@link set} is
 * process-wide; `ALTER SYSTEM` is an effect on the registry ({@link alterSystem}); a value given in code is
 * a typed JavaScript value, validated like a file value.
 *
 * @since 0.1.0
 */
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as FileSystem from "effect/FileSystem"
import * as Layer from "effect/Layer"
import type * as Path from "effect/Path"
import type * as Stream from "effect/Stream"
import * as errors from "./internal/gucError.ts"
import * as parameterInternal from "./internal/gucParameter.ts"
import * as internal from "./internal/gucRegistry.ts"
import * as supervisorParameters from "./internal/gucSupervisor.ts"
import type { Unit } from "./internal/gucValue.ts"

export type { Unit } from "./internal/gucValue.ts"

/**
 * The type id of a parameter definition (see {@link isParameter}).
 *
 * @internal
 */
export const TypeId: typeof parameterInternal.TypeId = parameterInternal.TypeId

/**
 * `PGC_INTERNAL`, `PGC_POSTMASTER`, `PGC_SIGHUP`, `PGC_SUSET`, `PGC_USERSET`.
 *
 * @category models
 * @since 0.1.0
 */
export type GucContext = "internal" | "postmaster" | "sighup" | "superuser" | "user"

/**
 * Where a value came from (`pg_settings.source`).
 *
 * @category models
 * @since 0.1.0
 */
export type Source =
  | "default"
  | "configuration file"
  | "server configuration"
  | "environment variable"
  | "override"
  | "session"

/**
 * One value of the external source (`server configuration`, see {@link replaceExternal}): text, as in a
 * configuration file, with the file and line it came from when they are known.
 *
 * @category models
 * @since 0.2.0
 */
export interface ExternalSetting {
  readonly name: string
  readonly value: string
  readonly file?: string | undefined
  readonly line?: number | undefined
}

/**
 * @category models
 * @since 0.1.0
 */
export type VarType = "integer" | "real" | "bool" | "string" | "enum"

/**
 * A check hook's refusal, made with {@link reject}.
 *
 * @category models
 * @since 0.1.0
 */
export interface CheckFailure {
  readonly [parameterInternal.CheckFailureTypeId]: typeof parameterInternal.CheckFailureTypeId
  readonly message: string
  readonly hint: string | undefined
}

/**
 * Refuses a value from a check hook, with a message and an optional hint (`GUC_check_errmsg`,
 * `GUC_check_errhint`).
 *
 * @category hooks
 * @since 0.1.0
 */
export const reject: (message: string, hint?: string) => CheckFailure = parameterInternal.reject

/**
 * Whether a check hook's result is a refusal made with {@link reject} (rather than a value).
 *
 * @category guards
 * @since 0.2.0
 */
export const isCheckFailure: (u: unknown) => u is CheckFailure = parameterInternal.isCheckFailure

/**
 * A parameter definition.
 *
 * @category models
 * @since 0.1.0
 */
export interface Parameter<A> {
  readonly [parameterInternal.TypeId]: { readonly _A: (a: A) => A }
  readonly name: string
  readonly vartype: VarType
  readonly default: A
  readonly context: GucContext
  readonly category: string
  readonly shortDesc: string
  readonly longDesc: string | undefined
  readonly unit: Unit | undefined
  readonly min: number | undefined
  readonly max: number | undefined
  readonly enumValues: ReadonlyArray<{ readonly name: string; readonly hidden: boolean }> | undefined
  /** `GUC_NO_SHOW_ALL`: hidden from the settings view. */
  readonly noShowAll: boolean
  /** `GUC_NOT_IN_SAMPLE`: left out of {@link sampleConfig}. */
  readonly notInSample: boolean
  /** May refuse (with {@link reject}) or normalise (by returning another value). Runs before any change. */
  readonly check: ((value: A, source: Source) => A | CheckFailure) | undefined
  /** Runs after a value is applied; cannot fail. */
  readonly assign: ((value: A) => void) | undefined
  /** What the settings view and {@link show} print. */
  readonly show: ((value: A) => string) | undefined
}

/**
 * @category models
 * @since 0.1.0
 */
export type Any = Parameter<any>

/**
 * Whether `u` is a parameter definition made by {@link int}, {@link real}, {@link bool}, {@link string} or
 * {@link enumeration}.
 *
 * @category guards
 * @since 0.2.0
 */
export const isParameter: (u: unknown) => u is Any = parameterInternal.isParameter

type CommonOptions<A> = parameterInternal.CommonOptions<A>

/**
 * An integer parameter (`DefineCustomIntVariable`). With a `unit`, values are stored in that unit and input
 * like `"1min"` or `"250ms"` is converted (and rounded to the nearest integer); without one, only bare
 * numbers are valid.
 *
 * @category constructors
 * @since 0.1.0
 */
export const int = (
  name: string,
  options: CommonOptions<number> & {
    readonly default: number
    readonly min: number
    readonly max: number
    readonly unit?: Unit | undefined
  }
): Parameter<number> =>
  parameterInternal.make(name, "integer", options, { unit: options.unit, min: options.min, max: options.max })

/**
 * A floating-point parameter (`DefineCustomRealVariable`).
 *
 * @category constructors
 * @since 0.1.0
 */
export const real = (
  name: string,
  options: CommonOptions<number> & {
    readonly default: number
    readonly min: number
    readonly max: number
    readonly unit?: Unit | undefined
  }
): Parameter<number> =>
  parameterInternal.make(name, "real", options, { unit: options.unit, min: options.min, max: options.max })

/**
 * A Boolean parameter (`DefineCustomBoolVariable`): `on`/`off`, `true`/`false`, `yes`/`no`, `1`/`0` and
 * unique prefixes.
 *
 * @category constructors
 * @since 0.1.0
 */
export const bool = (
  name: string,
  options: CommonOptions<boolean> & { readonly default: boolean }
): Parameter<boolean> => parameterInternal.make(name, "bool", options, {})

/**
 * A string parameter (`DefineCustomStringVariable`). A `null` default is PostgreSQL's NULL boot value: the
 * parameter reads `null` until something sets it.
 *
 * @category constructors
 * @since 0.1.0
 */
export const string = <D extends string | null>(
  name: string,
  options: CommonOptions<D extends null ? string | null : string> & { readonly default: D }
): Parameter<D extends null ? string | null : string> =>
  parameterInternal.make<D extends null ? string | null : string>(
    name,
    "string",
    options as CommonOptions<D extends null ? string | null : string> & {
      readonly default: D extends null ? string | null : string
    },
    {}
  )

/**
 * An enum parameter (`DefineCustomEnumVariable`). Values are matched without regard to case; hidden ones
 * are accepted but not listed in hints or the settings view.
 *
 * @category constructors
 * @since 0.1.0
 */
export const enumeration = <const V extends string>(
  name: string,
  options: CommonOptions<V> & {
    readonly values: ReadonlyArray<V | { readonly name: V; readonly hidden?: boolean | undefined }>
    readonly default: NoInfer<V>
  }
): Parameter<V> =>
  parameterInternal.make(name, "enum", options, {
    enumValues: options.values.map((v) =>
      typeof v === "string" ? { name: v, hidden: false } : { name: v.name, hidden: v.hidden === true }
    )
  })

// --- errors ---

/**
 * A value that does not parse, is out of range, or was refused by a check hook.
 *
 * @category errors
 * @since 0.1.0
 */
export const InvalidValue: typeof errors.InvalidValue = errors.InvalidValue

/**
 * @category errors
 * @since 0.1.0
 */
export type InvalidValue = errors.InvalidValue

/**
 * No parameter by that name (`unrecognized configuration parameter "x"`).
 *
 * @category errors
 * @since 0.1.0
 */
export const UnknownParameter: typeof errors.UnknownParameter = errors.UnknownParameter

/**
 * @category errors
 * @since 0.1.0
 */
export type UnknownParameter = errors.UnknownParameter

/**
 * The parameter cannot change now: a `postmaster` parameter after start, an `internal` one ever, a
 * `sighup` one outside a reload.
 *
 * @category errors
 * @since 0.1.0
 */
export const CannotChange: typeof errors.CannotChange = errors.CannotChange

/**
 * @category errors
 * @since 0.1.0
 */
export type CannotChange = errors.CannotChange

/**
 * A configuration file does not parse, or cannot be read (the message names the file and line).
 *
 * @category errors
 * @since 0.1.0
 */
export const ConfigFileError: typeof errors.ConfigFileError = errors.ConfigFileError

/**
 * @category errors
 * @since 0.1.0
 */
export type ConfigFileError = errors.ConfigFileError

/**
 * A name under a reserved prefix that no parameter has (`MarkGUCPrefixReserved`).
 *
 * @category errors
 * @since 0.1.0
 */
export const ReservedPrefix: typeof errors.ReservedPrefix = errors.ReservedPrefix

/**
 * @category errors
 * @since 0.1.0
 */
export type ReservedPrefix = errors.ReservedPrefix

/**
 * Defining a parameter twice, defining a `postmaster` parameter after start, or an invalid name.
 *
 * @category errors
 * @since 0.1.0
 */
export const InvalidDefinition: typeof errors.InvalidDefinition = errors.InvalidDefinition

/**
 * @category errors
 * @since 0.1.0
 */
export type InvalidDefinition = errors.InvalidDefinition

/**
 * The reasons of a {@link GucError}, as a schema.
 *
 * @category errors
 * @since 0.1.0
 */
export const GucErrorReason: typeof errors.GucErrorReason = errors.GucErrorReason

/**
 * @category errors
 * @since 0.1.0
 */
export type GucErrorReason = errors.GucErrorReason

/**
 * The error of every GUC operation that can fail; match on `reason._tag` or with `Effect.catchReason`.
 * Its `message` and `hint` are the reason's.
 *
 * @category errors
 * @since 0.1.0
 */
export const GucError: typeof errors.GucError = errors.GucError

/**
 * @category errors
 * @since 0.1.0
 */
export type GucError = errors.GucError

/**
 * Whether `u` is a {@link GucError}.
 *
 * @category guards
 * @since 0.2.0
 */
export const isGucError: (u: unknown) => u is GucError = errors.isGucError

/**
 * Whether `u` is one of a {@link GucError}'s reasons ({@link InvalidValue}, {@link UnknownParameter}, ...).
 *
 * @category guards
 * @since 0.2.0
 */
export const isGucErrorReason: (u: unknown) => u is GucErrorReason = errors.isGucErrorReason

// --- the registry ---

/**
 * One consistent set of values.
 *
 * @category models
 * @since 0.1.0
 */
export interface Snapshot {
  /** Increases with every change. */
  readonly version: number
  get<A>(parameter: Parameter<A>): A
}

/**
 * What a reload did.
 *
 * @category models
 * @since 0.1.0
 */
export interface ReloadReport {
  /** False when a file could not be read or parsed: then nothing changed. */
  readonly applied: boolean
  /** Parameters whose value changed. */
  readonly changed: ReadonlyArray<string>
  /** `postmaster` parameters whose file value differs from the running one. */
  readonly pendingRestart: ReadonlyArray<string>
  /** Everything that was refused, with file and line. */
  readonly errors: ReadonlyArray<GucError>
}

/**
 * A row of the settings view: `pg_settings`' columns.
 *
 * **Details**
 *
 * The field names are `pg_settings`' column names, snake_case included (`short_desc`, `pending_restart`),
 * unlike the camelCase of the other models (`ActivityRow`): a row is a `pg_settings` row, the control plane
 * writes it as columns of the same names (`bgworker.settings`), and a reader who knows PostgreSQL's view
 * finds each column where it expects it.
 *
 * @category models
 * @since 0.1.0
 */
export interface SettingRow {
  readonly name: string
  readonly setting: string | null
  readonly unit: string | null
  readonly category: string
  readonly short_desc: string
  readonly extra_desc: string | null
  readonly context: GucContext
  readonly vartype: VarType
  readonly source: Source
  readonly min_val: string | null
  readonly max_val: string | null
  readonly enumvals: ReadonlyArray<string> | null
  readonly boot_val: string | null
  readonly reset_val: string | null
  readonly sourcefile: string | null
  readonly sourceline: number | null
  readonly pending_restart: boolean
}

/**
 * The registry's shape.
 *
 * @category models
 * @since 0.1.0
 */
export interface GucsApi {
  define(parameter: Any): Effect.Effect<void, GucError>
  reservePrefix(prefix: string): Effect.Effect<void>
  get<A>(parameter: Parameter<A>): Effect.Effect<A>
  /** The current snapshot, read synchronously (the cheapest read). */
  currentSnapshot(): Snapshot
  readonly snapshot: Effect.Effect<Snapshot>
  readonly changes: Stream.Stream<Snapshot>
  readonly reload: Effect.Effect<ReloadReport>
  set(name: string, value: unknown): Effect.Effect<void, GucError>
  resetValue(name: string): Effect.Effect<void, GucError>
  alterSystem(name: string, value: unknown): Effect.Effect<void, GucError>
  show(name: string): Effect.Effect<string, GucError>
  readonly settings: Effect.Effect<ReadonlyArray<SettingRow>>
  /**
   * Replaces every value of the external source (see {@link replaceExternal}).
   *
   * @since 0.2.0
   */
  replaceExternal(settings: ReadonlyArray<ExternalSetting>): Effect.Effect<ExternalUpdate>
  /**
   * The names of every defined parameter, `noShowAll` ones included.
   *
   * @since 0.2.0
   */
  parameterNames(): ReadonlyArray<string>
  readonly configProvider: ConfigProvider.ConfigProvider
  sampleConfig(): string
}

/**
 * The registry service.
 *
 * @category services
 * @since 0.1.0
 */
export class Gucs extends Context.Service<Gucs, GucsApi>()("effect-bgworker/Gucs") {}

/**
 * @category models
 * @since 0.1.0
 */
export interface Options {
  /** `postgresql.conf`. Without it, values come from defaults, the environment and code only. */
  readonly configFile?: string | undefined
  /** Where {@link alterSystem} writes; defaults to `postgresql.auto.conf` beside `configFile`. */
  readonly autoFile?: string | undefined
  /** Environment variables to read (`BGW_...`), for example `process.env`; none by default. */
  readonly environment?: Readonly<Record<string, string | undefined>> | undefined
  /** Values set in code (source `override`), by parameter name. */
  readonly overrides?: Readonly<Record<string, unknown>> | undefined
  /** Defined when the registry is built, before the supervisor's preloads. */
  readonly parameters?: ReadonlyArray<Any> | undefined
  readonly reservedPrefixes?: ReadonlyArray<string> | undefined
}

/**
 * `max_worker_processes`: how many workers may run at once (`postmaster`, default 8). One of the supervisor's
 * own parameters, which every registry defines.
 *
 * @category parameters
 * @since 0.1.0
 */
export const maxWorkerProcesses: Parameter<number> = supervisorParameters.maxWorkerProcesses

/**
 * `restart_after_crash`: whether a worker's crash restarts the others (`sighup`, default on).
 *
 * @category parameters
 * @since 0.1.0
 */
export const restartAfterCrash: Parameter<boolean> = supervisorParameters.restartAfterCrash

/**
 * `shutdown_timeout`: how long a shutdown waits for workers before interrupting them by force (`sighup`, in
 * milliseconds, default 5s).
 *
 * @category parameters
 * @since 0.1.0
 */
export const shutdownTimeout: Parameter<number> = supervisorParameters.shutdownTimeout

/**
 * The registry as a layer. Reads the files (if any) and fails with `GucError` when they do not parse or
 * hold an invalid value for a parameter defined here (PostgreSQL refuses to start then). Needs
 * `FileSystem` and `Path` (from `@effect/platform-node`'s `NodeServices.layer`) when `configFile` is set.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer: {
  (options?: Options & { readonly configFile?: undefined; readonly autoFile?: undefined }): Layer.Layer<Gucs, GucError>
  (options: Options): Layer.Layer<Gucs, GucError, FileSystem.FileSystem | Path.Path>
} = (options: Options = {}) => Layer.effect(Gucs, internal.make(options)) as any

/**
 * Defines a parameter in the registry (`DefineCustom*Variable`). A value already given for it by a file,
 * the environment or code is adopted, or refused with a warning if invalid.
 *
 * @category definitions
 * @since 0.1.0
 */
export const define = (parameter: Any): Effect.Effect<void, GucError, Gucs> => Gucs.use((g) => g.define(parameter))

/**
 * `MarkGUCPrefixReserved`: removes unknown `prefix.*` settings with a warning, and refuses them from now on.
 *
 * @category definitions
 * @since 0.1.0
 */
export const reservePrefix = (prefix: string): Effect.Effect<void, never, Gucs> =>
  Gucs.use((g) => g.reservePrefix(prefix))

/**
 * The parameter's current value.
 *
 * **Gotchas**
 *
 * Reading a parameter that was never defined is a programming error (a defect). Inside a loop, prefer one
 * {@link snapshot} per cycle.
 *
 * @category values
 * @since 0.1.0
 */
export const get = <A>(parameter: Parameter<A>): Effect.Effect<A, never, Gucs> =>
  Gucs.useSync((g) => g.currentSnapshot().get(parameter))

/**
 * All values at once, consistent with each other.
 *
 * @category values
 * @since 0.1.0
 */
export const snapshot: Effect.Effect<Snapshot, never, Gucs> = Gucs.useSync((g) => g.currentSnapshot())

/**
 * Every new snapshot, the current one first.
 *
 * @category values
 * @since 0.1.0
 */
export const changes: Effect.Effect<Stream.Stream<Snapshot>, never, Gucs> = Gucs.useSync((g) => g.changes)

/**
 * Re-reads the files and applies what may change now (see the module doc). Logs each change, each refusal,
 * and PostgreSQL's summary line.
 *
 * @category reload
 * @since 0.1.0
 */
export const reload: Effect.Effect<ReloadReport, never, Gucs> = Gucs.use((g) => g.reload)

/**
 * `SET`: a process-wide value with source `session`, for `user` and `superuser` parameters only.
 *
 * @category values
 * @since 0.1.0
 */
export const set = (name: string, value: unknown): Effect.Effect<void, GucError, Gucs> =>
  Gucs.use((g) => g.set(name, value))

/**
 * `RESET`: drops a value set with {@link set}.
 *
 * @category values
 * @since 0.1.0
 */
export const resetValue = (name: string): Effect.Effect<void, GucError, Gucs> => Gucs.use((g) => g.resetValue(name))

/**
 * `ALTER SYSTEM SET name = value` (or `RESET` with `null`): validates the value and rewrites the auto file
 * atomically. Like PostgreSQL, it takes effect at the next reload.
 *
 * @category values
 * @since 0.1.0
 */
export const alterSystem = (name: string, value: unknown): Effect.Effect<void, GucError, Gucs> =>
  Gucs.use((g) => g.alterSystem(name, value))

/**
 * `SHOW name`: the value as text, through the show hook.
 *
 * @category values
 * @since 0.1.0
 */
export const show = (name: string): Effect.Effect<string, GucError, Gucs> => Gucs.use((g) => g.show(name))

/**
 * The settings view (`pg_settings`), in name order, without `noShowAll` parameters.
 *
 * @category views
 * @since 0.1.0
 */
export const settings: Effect.Effect<ReadonlyArray<SettingRow>, never, Gucs> = Gucs.use((g) => g.settings)

/**
 * What {@link replaceExternal} did: `"unchanged"` (the same values, files and lines as before), `"applied"`
 * (applied at once, before the supervisor started), `"stored"` (waiting for the next reload).
 *
 * @category models
 * @since 0.2.0
 */
export type ExternalUpdate = "unchanged" | "applied" | "stored"

/**
 * Replaces every value of the external source, shown as `server configuration`, which ranks above the
 * configuration files and below environment variables (see the module doc). The core knows nothing of
 * where the values come from; `ServerSettings` (in `effect-bgworker/pg`) fills it from the PostgreSQL
 * server's own configuration.
 *
 * **Details**
 *
 * - Values identical to the previous ones (with the same files and lines) change nothing: `"unchanged"`.
 * - Before the supervisor has started (until its preloads have run), the values apply at once, as the
 *   files' values do at start: `postmaster` parameters included, a value for a parameter not defined yet
 *   kept as a placeholder and adopted at its definition, refusals logged as warnings: `"applied"`.
 * - Once the supervisor has started, the values are only stored (`"stored"`): they apply at the next
 *   reload, which the caller runs, normally `Supervisor.reload` (the registry's reload, then every worker's
 *   reload flag and latch, as SIGHUP does), else {@link reload}. That reload validates them like the files' values: an invalid value keeps the
 *   old one and is logged with its file and line, a changed `postmaster` parameter is marked
 *   `pending_restart`, a name the new values no longer hold falls back to the next source.
 * - Values are text (the server's), parsed like a file's. Names under a reserved prefix that no parameter
 *   has are refused at each reload, as in a file.
 *
 * @category values
 * @since 0.2.0
 */
export const replaceExternal = (
  settings: ReadonlyArray<ExternalSetting>
): Effect.Effect<ExternalUpdate, never, Gucs> => Gucs.use((g) => g.replaceExternal(settings))

/**
 * A `ConfigProvider` over the registry, so `Config` works as usual: `Config.Int("worker_spi.naptime")`
 * (or `Config.Int("naptime").pipe(Config.nested("worker_spi"))`). Numbers are in the parameter's unit,
 * Booleans `true`/`false`. It reads the current values each time a `Config` is loaded.
 *
 * @category config
 * @since 0.1.0
 */
export const layerConfigProvider: Layer.Layer<never, never, Gucs> = Layer.unwrap(
  Gucs.useSync((g) => ConfigProvider.layer(g.configProvider))
)

/**
 * A sample `postgresql.conf` with every parameter's default, commented out (leaves out `notInSample` and
 * `internal` ones).
 *
 * @category views
 * @since 0.1.0
 */
export const sampleConfig: Effect.Effect<string, never, Gucs> = Gucs.useSync((g) => g.sampleConfig())

/**
 * The environment variable that sets `name`: `BGW_` + capitals, with `.` written `__`.
 *
 * @category config
 * @since 0.1.0
 */
export const environmentVariable = (name: string): string => `BGW_${name.toUpperCase().replaceAll(".", "__")}`
