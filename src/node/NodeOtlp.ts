/**
 * Pushes the supervisor's traces, metrics and logs over OTLP/HTTP, configured by the standard `OTEL_*`
 * environment variables, through `effect`'s `effect/observability` exporters (`OtlpTracer`, `OtlpMetrics`,
 * `OtlpLogger`) and the platform's `fetch`.
 *
 * PostgreSQL has no exporter of its own (its statistics are read with SQL, or scraped by an exporter
 * process); this is the OpenTelemetry SDK's environment configuration, as every OpenTelemetry SDK reads it.
 *
 * **Variables** (OpenTelemetry's specification; OTLP over HTTP only)
 *
 * | variable | meaning | default |
 * |---|---|---|
 * | `OTEL_EXPORTER_OTLP_ENDPOINT` | base URL; each signal goes to `<base>/v1/traces`, `/v1/metrics`, `/v1/logs` | none: nothing is exported |
 * | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `..._METRICS_ENDPOINT`, `..._LOGS_ENDPOINT` | one signal's full URL, used as is | from the base |
 * | `OTEL_EXPORTER_OTLP_HEADERS`, `..._TRACES_HEADERS`, ... | `key=value,key2=value2` (values URL-decoded), sent with every export; never logged | none |
 * | `OTEL_EXPORTER_OTLP_PROTOCOL`, `..._TRACES_PROTOCOL`, ... | `http/protobuf` or `http/json` (`grpc` is not supported: that signal stays off, with a warning) | `http/protobuf` |
 * | `OTEL_EXPORTER_OTLP_COMPRESSION`, `..._TRACES_COMPRESSION`, ... | `gzip` or `none` | `none` |
 * | `OTEL_TRACES_EXPORTER`, `OTEL_METRICS_EXPORTER`, `OTEL_LOGS_EXPORTER` | `otlp`, or `none` to turn a signal off | `otlp` |
 * | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | `always_on`, `always_off`, `traceidratio` (the argument: 0 to 1), or their `parentbased_` forms | `parentbased_always_on` |
 * | `OTEL_SERVICE_NAME` | the resource's `service.name` | `OTEL_RESOURCE_ATTRIBUTES`'s, else `unknown_service:node` |
 * | `OTEL_RESOURCE_ATTRIBUTES` | `key=value,...` (values URL-decoded): the resource's attributes | none |
 * | `OTEL_METRIC_EXPORT_INTERVAL` | milliseconds between metric exports | 60000 |
 * | `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` | `cumulative` or `delta` | `cumulative` |
 * | `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BLRP_SCHEDULE_DELAY` | milliseconds between span (log) batches | 5000 (1000) |
 * | `OTEL_SDK_DISABLED` | `true`: export nothing | `false` |
 *
 * An invalid value is a warning and its default applies, as the specification asks. `NodeSupervisor.runMain`
 * installs {@link layer} for its supervisor by itself (`runMain(app, { otlp: false })` does not).
 *
 * **Example** (Traces and metrics to a local collector)
 *
 * ```ts
 * import * as Layer from "effect/Layer"
 * import * as Supervisor from "effect-bgworker/Supervisor"
 * import { NodeOtlp } from "effect-bgworker/node"
 *
 * // OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 OTEL_SERVICE_NAME=billing node app.js
 * export const app = Supervisor.layer().pipe(Layer.provide(NodeOtlp.layer()))
 * ```
 *
 * **Gotchas**
 *
 * - The tracer must be in the context the supervisor is built in (`Layer.provide`, not `Layer.merge`): the
 *   workers' spans go to the tracer of that context (or of the registrant's).
 * - Metrics are pushed cumulative (`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta` for delta), from
 *   the context's `MetricRegistry`, the supervisor's by default. A batch not yet sent is flushed when the
 *   layer's scope closes (within 3 seconds), so the last incarnations' spans are exported at shutdown.
 * - `OTEL_EXPORTER_OTLP_TIMEOUT` and `OTEL_EXPORTER_OTLP_CERTIFICATE` are not applied: the exporter retries a
 *   failed batch and trusts what Node trusts (`NODE_EXTRA_CA_CERTS`).
 * - Log records: those written in the layer's context (the workers', the supervisor's). `runMain`'s own
 *   lines (`supervisor ready`, a `FATAL` failure, `database system is shut down`) stay on standard output.
 * - Exporting a span per incarnation costs more than making it (figure 1t of `npm run bench -- launch`):
 *   a program that starts tens of thousands of workers a second samples (`OTEL_TRACES_SAMPLER`).
 *
 * **Deliberate differences**
 *
 * - Not `effect`'s `Otlp.layerFromConfig`, which exports nothing unless `OTEL_TRACES_EXPORTER=otlp` (or the
 *   metrics' and logs' own) is also set, where the specification's default is `otlp`, and dies without
 *   `OTEL_SERVICE_NAME`, where the default is `unknown_service:node`.
 * - `traceidratio` decides a root span at random with the ratio, and every span with a parent follows the
 *   parent (the specification hashes the trace id, which decides alike for a whole trace).
 * - `http/protobuf` traces and logs are encoded by our own encoders, the same bytes as `effect`'s at about a
 *   twentieth of its cost (`effect`'s builds and concatenates an array per field); metrics keep `effect`'s.
 *
 * @since 0.2.0
 */
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FetchHttpClient from "effect/http/FetchHttpClient"
import * as HttpBody from "effect/http/HttpBody"
import * as Layer from "effect/Layer"
import * as OtlpExporter from "effect/observability/OtlpExporter"
import * as OtlpLogger from "effect/observability/OtlpLogger"
import * as OtlpMetrics from "effect/observability/OtlpMetrics"
import * as OtlpSerialization from "effect/observability/OtlpSerialization"
import * as OtlpTracer from "effect/observability/OtlpTracer"
import * as Tracer from "effect/Tracer"
import { escape } from "../internal/logText.ts"
import { encodeLogs } from "./internal/otlpLogs.ts"
import { encodeTraces } from "./internal/otlpTraces.ts"

/**
 * One signal's export, as the variables configure it.
 *
 * @category models
 * @since 0.2.0
 */
export interface SignalSettings {
  readonly url: string
  readonly protocol: "http/protobuf" | "http/json"
  readonly headers: Readonly<Record<string, string>>
  readonly compression: "gzip" | "none"
  /** Time between exports (metrics) or batches (spans, logs). */
  readonly interval: Duration.Duration
}

/**
 * What the variables say: each signal's export (`undefined` when off), the resource, and the warnings about
 * values that were ignored.
 *
 * @category models
 * @since 0.2.0
 */
export interface Settings {
  readonly traces: SignalSettings | undefined
  /** Which traces are exported (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`). */
  readonly sampler: Sampler
  readonly metrics: SignalSettings | undefined
  readonly logs: SignalSettings | undefined
  readonly serviceName: string
  readonly resourceAttributes: Readonly<Record<string, string>>
  readonly warnings: ReadonlyArray<string>
}

/**
 * `OTEL_TRACES_SAMPLER`: `always_on`, `always_off` or `traceidratio` (`ratio` from `OTEL_TRACES_SAMPLER_ARG`,
 * 0 to 1), each `parentBased` (the `parentbased_*` forms, the default `parentbased_always_on`) or not. A span
 * with a parent always follows its parent's decision under `traceidratio`, as the specification's trace-id
 * test would decide for every span of the trace alike; a root span is sampled with probability `ratio`.
 *
 * @category models
 * @since 0.2.0
 */
export interface Sampler {
  readonly kind: "always_on" | "always_off" | "traceidratio"
  readonly parentBased: boolean
  readonly ratio: number
}

type Signal = "TRACES" | "METRICS" | "LOGS"

const samplerOf = (env: Readonly<Record<string, string | undefined>>, warnings: Array<string>): Sampler => {
  const text = (env["OTEL_TRACES_SAMPLER"] ?? "parentbased_always_on").trim().toLowerCase()
  const parentBased = text.startsWith("parentbased_")
  const kind = parentBased ? text.slice("parentbased_".length) : text
  const argText = env["OTEL_TRACES_SAMPLER_ARG"]?.trim()
  let ratio = 1
  if (argText !== undefined && argText !== "") {
    const n = Number(argText)
    if (Number.isFinite(n) && n >= 0 && n <= 1) ratio = n
    else warnings.push(`invalid value for OTEL_TRACES_SAMPLER_ARG: "${escape(argText.slice(0, 32))}"; using 1`)
  }
  if (kind === "always_on" || kind === "always_off" || kind === "traceidratio") return { kind, parentBased, ratio }
  warnings.push(
    `OTEL_TRACES_SAMPLER: sampler "${escape(text.slice(0, 48))}" is not supported; using parentbased_always_on`
  )
  return { kind: "always_on", parentBased: true, ratio: 1 }
}

/** `tracer` with `sampler`'s decisions: a span not sampled is made (its children follow it) but not exported. */
const withSampler = (tracer: Tracer.Tracer, sampler: Sampler): Tracer.Tracer => {
  if (sampler.kind === "always_on" && sampler.parentBased) return tracer
  return Tracer.make({
    span(options) {
      let sampled = options.sampled
      const parent = options.parent
      if (parent._tag === "Some" && (sampler.parentBased || sampler.kind === "traceidratio")) {
        sampled = sampled && parent.value.sampled
      } else if (sampler.kind === "always_off") sampled = false
      else if (sampler.kind === "traceidratio") sampled = sampled && Math.random() < sampler.ratio
      return tracer.span(sampled === options.sampled ? options : { ...options, sampled })
    },
    ...(tracer.context === undefined ? {} : { context: tracer.context })
  })
}

/**
 * `key=value,key2=value2` with URL-encoded values (W3C baggage, as the specification defines the lists).
 * `secret`: an entry without `key=` is not quoted in its warning (in a headers variable, it is likely a
 * credential without its header's name).
 */
const parseList = (
  text: string,
  variable: string,
  warnings: Array<string>,
  secret = false
): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const item of text.split(",")) {
    if (item.trim() === "") continue
    const eq = item.indexOf("=")
    const key = eq < 0 ? "" : item.slice(0, eq).trim()
    if (key === "") {
      warnings.push(
        `ignoring an entry of ${variable} without "key="` +
          (secret ? " (not shown: it may hold a credential)" : `: "${escape(item.slice(0, 64))}"`)
      )
      continue
    }
    let value = item.slice(eq + 1).trim()
    try {
      value = decodeURIComponent(value)
    } catch {
      warnings.push(`ignoring the value of "${escape(key)}" in ${variable}: invalid percent-encoding`)
      continue
    }
    out[key] = value
  }
  return out
}

const millis = (
  env: Readonly<Record<string, string | undefined>>,
  variable: string,
  fallback: number,
  warnings: Array<string>
): Duration.Duration => {
  const text = env[variable]?.trim()
  if (text === undefined || text === "") return Duration.millis(fallback)
  const n = Number(text)
  if (!Number.isInteger(n) || n <= 0) {
    warnings.push(`invalid value for ${variable}: "${escape(text.slice(0, 64))}"; using ${fallback}`)
    return Duration.millis(fallback)
  }
  return Duration.millis(n)
}

const signalSettings = (
  env: Readonly<Record<string, string | undefined>>,
  signal: Signal,
  interval: Duration.Duration,
  warnings: Array<string>
): SignalSettings | undefined => {
  const exporters = (env[`OTEL_${signal}_EXPORTER`] ?? "otlp").split(",").map((e) => e.trim().toLowerCase())
    .filter((e) => e !== "")
  for (const e of exporters) {
    if (e !== "otlp" && e !== "none") {
      warnings.push(`OTEL_${signal}_EXPORTER: exporter "${escape(e.slice(0, 32))}" is not supported; ignored`)
    }
  }
  if (exporters.length > 0 && !exporters.includes("otlp")) return undefined
  let url: string | undefined
  const own = env[`OTEL_EXPORTER_OTLP_${signal}_ENDPOINT`]?.trim()
  const base = env["OTEL_EXPORTER_OTLP_ENDPOINT"]?.trim()
  const parse = (text: string, variable: string) => {
    try {
      const parsed = new URL(text)
      if (parsed.protocol === "http:" || parsed.protocol === "https:") return parsed
      warnings.push(`${variable} must be an http or https URL; ${signal.toLowerCase()} are not exported`)
    } catch {
      warnings.push(`${variable} is not a URL; ${signal.toLowerCase()} are not exported`)
    }
    return undefined
  }
  if (own !== undefined && own !== "") {
    url = parse(own, `OTEL_EXPORTER_OTLP_${signal}_ENDPOINT`)?.toString()
  } else if (base !== undefined && base !== "") {
    const parsed = parse(base, "OTEL_EXPORTER_OTLP_ENDPOINT")
    if (parsed !== undefined) {
      parsed.pathname = `${parsed.pathname.replace(/\/$/, "")}/v1/${signal.toLowerCase()}`
      url = parsed.toString()
    }
  }
  if (url === undefined) return undefined
  const protocolVariable = env[`OTEL_EXPORTER_OTLP_${signal}_PROTOCOL`] !== undefined
    ? `OTEL_EXPORTER_OTLP_${signal}_PROTOCOL`
    : "OTEL_EXPORTER_OTLP_PROTOCOL"
  const protocolText = (env[protocolVariable] ?? "http/protobuf").trim()
  if (protocolText !== "http/protobuf" && protocolText !== "http/json") {
    warnings.push(
      `${protocolVariable}: protocol "${escape(protocolText.slice(0, 32))}" is not supported (only http/protobuf ` +
        `and http/json); ${signal.toLowerCase()} are not exported`
    )
    return undefined
  }
  const compressionVariable = env[`OTEL_EXPORTER_OTLP_${signal}_COMPRESSION`] !== undefined
    ? `OTEL_EXPORTER_OTLP_${signal}_COMPRESSION`
    : "OTEL_EXPORTER_OTLP_COMPRESSION"
  const compressionText = (env[compressionVariable] ?? "none").trim()
  let compression: "gzip" | "none" = "none"
  if (compressionText === "gzip") compression = "gzip"
  else if (compressionText !== "none" && compressionText !== "") {
    warnings.push(`invalid value for ${compressionVariable}: "${escape(compressionText.slice(0, 32))}"; using none`)
  }
  const headersVariable = env[`OTEL_EXPORTER_OTLP_${signal}_HEADERS`] !== undefined
    ? `OTEL_EXPORTER_OTLP_${signal}_HEADERS`
    : "OTEL_EXPORTER_OTLP_HEADERS"
  const headers = parseList(env[headersVariable] ?? "", headersVariable, warnings, true)
  return { url, protocol: protocolText, headers, compression, interval }
}

/**
 * Reads the `OTEL_*` variables of `env` (see the module doc). Pure: nothing is logged or started.
 *
 * @category constructors
 * @since 0.2.0
 */
export const settingsFromEnvironment = (env: Readonly<Record<string, string | undefined>>): Settings => {
  const warnings: Array<string> = []
  const resourceAttributes = parseList(env["OTEL_RESOURCE_ATTRIBUTES"] ?? "", "OTEL_RESOURCE_ATTRIBUTES", warnings)
  const named = env["OTEL_SERVICE_NAME"]?.trim()
  const serviceName = named !== undefined && named !== ""
    ? named
    : resourceAttributes["service.name"] ?? "unknown_service:node"
  const disabledText = env["OTEL_SDK_DISABLED"]?.trim().toLowerCase()
  if (disabledText !== undefined && disabledText !== "" && disabledText !== "true" && disabledText !== "false") {
    warnings.push(`invalid value for OTEL_SDK_DISABLED: "${escape(disabledText.slice(0, 32))}"; using false`)
  }
  const sampler = samplerOf(env, warnings)
  if (disabledText === "true") {
    return {
      traces: undefined,
      sampler,
      metrics: undefined,
      logs: undefined,
      serviceName,
      resourceAttributes,
      warnings
    }
  }
  return {
    traces: signalSettings(env, "TRACES", millis(env, "OTEL_BSP_SCHEDULE_DELAY", 5000, warnings), warnings),
    sampler,
    metrics: signalSettings(env, "METRICS", millis(env, "OTEL_METRIC_EXPORT_INTERVAL", 60000, warnings), warnings),
    logs: signalSettings(env, "LOGS", millis(env, "OTEL_BLRP_SCHEDULE_DELAY", 1000, warnings), warnings),
    serviceName,
    resourceAttributes,
    warnings
  }
}

/**
 * Whether `env` asks for any OTLP export (an endpoint is set and the SDK is not disabled).
 *
 * @category constructors
 * @since 0.2.0
 */
export const isConfigured = (env: Readonly<Record<string, string | undefined>>): boolean => {
  const s = settingsFromEnvironment(env)
  return s.traces !== undefined || s.metrics !== undefined || s.logs !== undefined
}

/** A URL as it can be logged: without its user name and password. */
const shownUrl = (url: string): string => {
  const parsed = new URL(url)
  if (parsed.username !== "" || parsed.password !== "") {
    parsed.username = "redacted"
    parsed.password = ""
  }
  return escape(parsed.toString())
}

/** A signal as the start-up line shows it: URL, protocol, and the headers' names (their values redacted). */
const describe = (what: string, s: SignalSettings): string => {
  const names = Object.keys(s.headers)
  const headers = names.length === 0 ? "" : `, headers ${names.map((n) => `${escape(n)}=<redacted>`).join(", ")}`
  return `${what} to ${shownUrl(s.url)} (${s.protocol}, every ${Duration.format(s.interval)}${headers})`
}

// OTLP/protobuf: traces and logs with our encoders (./internal/otlpTraces.ts, ./internal/otlpLogs.ts, the same
// bytes at a fraction of the cost; the supervisor logs a line per worker exit), metrics with effect's.
const serializationProtobuf: Layer.Layer<OtlpSerialization.OtlpSerialization> = Layer.effect(
  OtlpSerialization.OtlpSerialization
)(Effect.gen(function*() {
  const effects = yield* OtlpSerialization.OtlpSerialization
  return OtlpSerialization.OtlpSerialization.of({
    traces: (data) => HttpBody.uint8Array(encodeTraces(data), "application/x-protobuf"),
    metrics: effects.metrics,
    logs: (data) => HttpBody.uint8Array(encodeLogs(data), "application/x-protobuf")
  })
})).pipe(Layer.provide(OtlpSerialization.layerProtobuf))

/**
 * Options of {@link layer}.
 *
 * @category layers
 * @since 0.2.0
 */
export interface Options {
  /** Where the variables are read. Default `process.env`. */
  readonly environment?: Readonly<Record<string, string | undefined>> | undefined
  /** Overrides `OTEL_SERVICE_NAME`. */
  readonly serviceName?: string | undefined
  /** The resource's `service.version`. */
  readonly serviceVersion?: string | undefined
}

/**
 * The OTLP exporters the variables ask for (see the module doc): a tracer (`Tracer.Tracer`), a metrics
 * exporter reading the context's `MetricRegistry`, and a logger added to the existing ones. A no-op layer when
 * no endpoint is set or `OTEL_SDK_DISABLED=true`.
 *
 * **Details**
 *
 * Building it logs one line saying what goes where (`exporting traces to http://127.0.0.1:4318/v1/traces
 * (http/protobuf, every 5s, headers authorization=<redacted>)`): header values and a URL's password are
 * never logged. Ignored values are logged as warnings. Closing its scope sends what is left.
 *
 * @category layers
 * @since 0.2.0
 */
export const layer = (options: Options = {}): Layer.Layer<OtlpExporter.Flusher> =>
  Layer.unwrap(Effect.gen(function*() {
    const settings = settingsFromEnvironment(options.environment ?? process.env)
    const annotations = { module: "effect-bgworker/NodeOtlp" }
    for (const warning of settings.warnings) yield* Effect.logWarning(warning).pipe(Effect.annotateLogs(annotations))
    const { logs, metrics, traces } = settings
    // Off: a flusher with nothing to flush, as effect's own exporters are when not configured.
    if (traces === undefined && metrics === undefined && logs === undefined) return OtlpExporter.layerFlusher
    const resource = {
      serviceName: options.serviceName ?? settings.serviceName,
      ...(options.serviceVersion === undefined ? {} : { serviceVersion: options.serviceVersion }),
      attributes: settings.resourceAttributes
    }
    const serialization = (s: SignalSettings) =>
      s.protocol === "http/json" ? OtlpSerialization.layerJson : serializationProtobuf
    const layers: Array<Layer.Layer<OtlpExporter.Flusher>> = []
    const shown: Array<string> = []
    if (traces !== undefined) {
      shown.push(describe("traces", traces))
      const sampler = settings.sampler
      if (sampler.kind !== "always_on" || !sampler.parentBased) {
        shown.push(
          `sampler ${sampler.parentBased ? "parentbased_" : ""}${sampler.kind}` +
            (sampler.kind === "traceidratio" ? ` ${sampler.ratio}` : "")
        )
      }
      layers.push(
        Layer.effect(Tracer.Tracer)(Effect.map(
          OtlpTracer.make({
            url: traces.url,
            resource,
            headers: traces.headers,
            compression: traces.compression,
            exportInterval: traces.interval
          }),
          (tracer) => withSampler(tracer, sampler)
        )).pipe(
          Layer.provideMerge(OtlpExporter.layerFlusher),
          Layer.provide(serialization(traces)),
          Layer.provide(FetchHttpClient.layer)
        )
      )
    }
    if (metrics !== undefined) {
      shown.push(describe("metrics", metrics))
      const delta = (options.environment ?? process.env)["OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"]
      layers.push(
        OtlpMetrics.layer({
          url: metrics.url,
          resource,
          headers: metrics.headers,
          compression: metrics.compression,
          exportInterval: metrics.interval,
          temporality: delta?.trim().toLowerCase() === "delta" ? "delta" : "cumulative"
        }).pipe(Layer.provide(serialization(metrics)), Layer.provide(FetchHttpClient.layer))
      )
    }
    if (logs !== undefined) {
      shown.push(describe("logs", logs))
      layers.push(
        OtlpLogger.layer({
          url: logs.url,
          resource,
          headers: logs.headers,
          compression: logs.compression,
          exportInterval: logs.interval,
          mergeWithExisting: true
        }).pipe(Layer.provide(serialization(logs)), Layer.provide(FetchHttpClient.layer))
      )
    }
    yield* Effect.logInfo(`exporting ${shown.join("; ")} over OTLP/HTTP as service "${escape(resource.serviceName)}"`)
      .pipe(Effect.annotateLogs(annotations))
    // The exporters read nothing more from the environment: every setting above is explicit.
    return Layer.mergeAll(...layers as [Layer.Layer<OtlpExporter.Flusher>]).pipe(
      Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({})))
    )
  }))
