/**
 * OTLP export end to end: a child process runs a supervisor through `NodeSupervisor.runMain` with the
 * `OTEL_*` variables pointing at a local OTLP/HTTP receiver (a node:http server on 127.0.0.1, JSON
 * encoding), and a scripted scenario (test/node/fixtures/otlp.ts): a worker that fails once and restarts,
 * a database worker running `Spi.transaction`, a worker launched from SQL through the control plane. The
 * receiver then holds the spans and the pushed metrics.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Tracer from "effect/Tracer"
import * as Http from "node:http"
import type * as Net from "node:net"
import * as NodeOtlp from "../../src/node/NodeOtlp.ts"
import { spawn } from "./fixtures/child.ts"

interface Received {
  readonly path: string
  readonly headers: Http.IncomingHttpHeaders
  readonly body: any
  readonly raw: Buffer
}

/** An OTLP/HTTP JSON receiver on a free loopback port, for the test's scope. */
const receiver = Effect.acquireRelease(
  Effect.callback<{ readonly server: Http.Server; readonly port: number; readonly received: Array<Received> }>(
    (resume) => {
      const received: Array<Received> = []
      const server = Http.createServer((request, response) => {
        const chunks: Array<Buffer> = []
        request.on("data", (chunk: Buffer) => chunks.push(chunk))
        request.on("end", () => {
          const raw = Buffer.concat(chunks)
          const text = raw.toString("utf8")
          let body: unknown = undefined
          try {
            body = JSON.parse(text)
          } catch {
            body = { unparsed: text.slice(0, 200) }
          }
          received.push({ path: request.url ?? "", headers: request.headers, body, raw })
          response.writeHead(200, { "content-type": "application/json" }).end("{}")
        })
      })
      server.listen(
        0,
        "127.0.0.1",
        () => resume(Effect.succeed({ server, port: (server.address() as Net.AddressInfo).port, received }))
      )
    }
  ),
  ({ server }) =>
    Effect.callback<void>((resume) => {
      server.close(() => resume(Effect.void))
      server.closeAllConnections()
    })
)

interface OtlpValue {
  readonly stringValue?: string
  readonly intValue?: number | string
  readonly doubleValue?: number
  readonly boolValue?: boolean
}
interface KeyValue {
  readonly key: string
  readonly value: OtlpValue
}
interface OtlpSpan {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly name: string
  readonly startTimeUnixNano: string
  readonly attributes: ReadonlyArray<KeyValue>
  readonly links: ReadonlyArray<{ readonly traceId: string; readonly spanId: string }>
  readonly status: { readonly code: number; readonly message?: string }
}

const valueOf = (v: OtlpValue | undefined): unknown =>
  v === undefined
    ? undefined
    : v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : undefined) ?? v.doubleValue ?? v.boolValue

const attr = (attributes: ReadonlyArray<KeyValue> | undefined, key: string): unknown =>
  valueOf(attributes?.find((a) => a.key === key)?.value)

const spansOf = (received: ReadonlyArray<Received>): Array<OtlpSpan> =>
  received.filter((r) => r.path === "/v1/traces").flatMap((r) =>
    (r.body.resourceSpans ?? []).flatMap((rs: any) => rs.scopeSpans.flatMap((ss: any) => ss.spans as Array<OtlpSpan>))
  ).sort((a, b) => (BigInt(a.startTimeUnixNano) < BigInt(b.startTimeUnixNano) ? -1 : 1))

/** The value of a series in the latest metrics export that has it (counters: sum; histograms: count). */
const latest = (received: ReadonlyArray<Received>, name: string, attributes: Record<string, string>) => {
  let found: number | undefined
  for (const r of received.filter((r) => r.path === "/v1/metrics")) {
    for (const rm of r.body.resourceMetrics ?? []) {
      for (const sm of rm.scopeMetrics) {
        for (const metric of sm.metrics) {
          if (metric.name !== name) continue
          const points = metric.sum?.dataPoints ?? metric.gauge?.dataPoints ?? metric.histogram?.dataPoints ?? []
          for (const point of points) {
            const matches = Object.entries(attributes).every(([k, v]) => attr(point.attributes, k) === v) &&
              point.attributes.length === Object.keys(attributes).length
            if (!matches) continue
            found = metric.histogram !== undefined
              ? Number(point.count)
              : Number(point.asDouble ?? point.asInt)
          }
        }
      }
    }
  }
  return found
}

describe("NodeSupervisor.runMain with OTEL_EXPORTER_OTLP_ENDPOINT", () => {
  it.live(
    "exports incarnation, Spi and control-plane spans with their parents, and the bgworker metrics, to an OTLP receiver",
    () =>
      Effect.gen(function*() {
        const { port, received } = yield* receiver
        const child = yield* spawn("test/node/fixtures/otlp.ts", {
          OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
          OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
          OTEL_EXPORTER_OTLP_HEADERS: "authorization=Bearer%20s3cret",
          OTEL_SERVICE_NAME: "otlp-fixture",
          OTEL_RESOURCE_ATTRIBUTES: "deployment.environment=test",
          OTEL_METRIC_EXPORT_INTERVAL: "300",
          OTEL_BSP_SCHEDULE_DELAY: "200",
          OTEL_LOGS_EXPORTER: "none"
        })
        yield* child.waitFor("scenario done", { timeout: "40 seconds" })
        const exit = yield* child.awaitExit("15 seconds")
        const output = (yield* child.output).join("\n")
        assert.deepStrictEqual(exit, { code: 0 }, output)

        // What the exporter said at start: where, how, and the header's name without its value.
        assert.match(output, /exporting traces to http:\/\/127\.0\.0\.1:\d+\/v1\/traces \(http\/json/)
        assert.include(output, "authorization=<redacted>")
        assert.notInclude(output, "s3cret")
        assert.isTrue(received.some((r) => r.path === "/v1/traces"), "no traces received")
        assert.isTrue(received.some((r) => r.path === "/v1/metrics"), "no metrics received")
        assert.isFalse(received.some((r) => r.path === "/v1/logs"), "OTEL_LOGS_EXPORTER=none still exported logs")
        for (const r of received) {
          assert.strictEqual(r.headers["authorization"], "Bearer s3cret")
          assert.match(String(r.headers["content-type"]), /application\/json/)
        }
        const resource = received.find((r) => r.path === "/v1/traces")!.body.resourceSpans[0].resource
        assert.strictEqual(attr(resource.attributes, "service.name"), "otlp-fixture")
        assert.strictEqual(attr(resource.attributes, "deployment.environment"), "test")

        const spans = spansOf(received)
        const named = (name: string) => spans.filter((s) => s.name === name)

        // flaky: two incarnations; the restart is a new trace linked to the failed one.
        const flaky = named("bgworker flaky")
        assert.strictEqual(flaky.length, 2, spans.map((s) => s.name).join(", "))
        const [first, second] = flaky as [OtlpSpan, OtlpSpan]
        assert.strictEqual(attr(first.attributes, "bgworker.name"), "flaky")
        assert.strictEqual(attr(first.attributes, "bgworker.type"), "flaky")
        assert.strictEqual(attr(first.attributes, "bgworker.exit"), "failed")
        assert.strictEqual(attr(first.attributes, "bgworker.exit.reason"), "error")
        assert.strictEqual(attr(first.attributes, "bgworker.exit.message"), "flaky fails once")
        assert.strictEqual(first.status.code, 2) // Error
        assert.isNumber(attr(first.attributes, "bgworker.pid"))
        assert.notStrictEqual(attr(second.attributes, "bgworker.pid"), attr(first.attributes, "bgworker.pid"))
        assert.strictEqual(attr(second.attributes, "bgworker.exit"), "killed") // by the shutdown
        assert.isTrue(second.parentSpanId === undefined || second.parentSpanId === "")
        assert.notStrictEqual(second.traceId, first.traceId)
        assert.deepInclude(second.links.map((l) => ({ traceId: l.traceId, spanId: l.spanId })), {
          traceId: first.traceId,
          spanId: first.spanId
        })

        // counter: its Spi transactions are children of its incarnation's span, effect/sql's under them.
        const [counter] = named("bgworker counter")
        assert.isDefined(counter)
        const spi = named("spi.transaction").filter((s) => s.parentSpanId === counter!.spanId)
        assert.isAtLeast(spi.length, 2)
        const one = spi.find((s) => attr(s.attributes, "spi.outcome") === "commit")!
        assert.strictEqual(one.traceId, counter!.traceId)
        assert.strictEqual(attr(one.attributes, "bgworker.name"), "counter")
        assert.strictEqual(attr(one.attributes, "db.system.name"), "postgresql")
        assert.strictEqual(attr(one.attributes, "spi.outcome"), "commit")
        assert.strictEqual(attr(one.attributes, "spi.depth"), 1)
        // A database worker's pid is its session's backend pid, on its span and on its transactions'.
        assert.strictEqual(attr(counter!.attributes, "bgworker.pid"), attr(one.attributes, "bgworker.pid"))
        assert.isNumber(attr(counter!.attributes, "bgworker.incarnation"))
        assert.notStrictEqual(
          attr(counter!.attributes, "bgworker.incarnation"),
          attr(counter!.attributes, "bgworker.pid")
        )
        assert.isTrue(named("sql.transaction").some((s) => s.parentSpanId === one.spanId))
        const rolledBack = spi.filter((s) => attr(s.attributes, "spi.outcome") === "rollback")
        assert.strictEqual(rolledBack.length, 1)
        assert.strictEqual(rolledBack[0]!.status.code, 2) // Error
        assert.strictEqual(rolledBack[0]!.status.message, "rolled back")

        // The SQL launch: a control-plane request span, parent of the launched worker's first incarnation.
        const requests = named("bgworker.request launch")
        assert.strictEqual(requests.length, 1)
        const request = requests[0]!
        assert.strictEqual(attr(request.attributes, "bgworker.request.kind"), "launch")
        assert.strictEqual(attr(request.attributes, "bgworker.request.outcome"), "launched")
        assert.strictEqual(attr(request.attributes, "bgworker.request.entry_point"), "otlp_fixture.launched")
        assert.isString(attr(request.attributes, "bgworker.request.requested_by"))
        const [launchedSpan] = named("bgworker launched")
        assert.isDefined(launchedSpan)
        assert.strictEqual(launchedSpan!.parentSpanId, request.spanId)
        assert.strictEqual(launchedSpan!.traceId, request.traceId)
        assert.strictEqual(attr(launchedSpan!.attributes, "bgworker.name"), "launched")

        // The supervisor's background loops (control-plane polls and publishers, the settings check, the
        // database probe) make no traces: the only root statements are the scenario's own two.
        const rootStatements = spans.filter((s) => !s.parentSpanId && s.name !== "" && !s.name.startsWith("bgworker"))
        assert.isAtMost(rootStatements.length, 2, rootStatements.map((s) => s.name).join(", "))

        // The metrics pushed: the bgworker counters by worker_type, with the scenario's values.
        assert.strictEqual(latest(received, "bgworker_starts", { worker_type: "flaky" }), 2)
        assert.strictEqual(latest(received, "bgworker_restarts", { worker_type: "flaky" }), 1)
        assert.strictEqual(latest(received, "bgworker_exits", { worker_type: "flaky", outcome: "failed" }), 1)
        assert.strictEqual(latest(received, "bgworker_starts", { worker_type: "counter" }), 1)
        assert.strictEqual(latest(received, "bgworker_starts", { worker_type: "launched" }), 1)
        assert.strictEqual(latest(received, "bgworker_launches_accepted", { worker_type: "launched" }), 1)
        assert.isAtLeast(latest(received, "bgworker_spi_transaction_seconds", { worker_type: "counter" }) ?? 0, 2)
      }).pipe(Effect.provide(NodeServices.layer)),
    90_000
  )
})

describe("NodeOtlp.settingsFromEnvironment", () => {
  it("is off without an endpoint, and with OTEL_SDK_DISABLED=true", () => {
    assert.isFalse(NodeOtlp.isConfigured({}))
    assert.isFalse(NodeOtlp.isConfigured({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://x:4318", OTEL_SDK_DISABLED: "true" }))
    assert.isTrue(NodeOtlp.isConfigured({ OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: "http://x:4318/m" }))
  })

  it("derives each signal's URL from the base endpoint, and a signal's own endpoint is used as is", () => {
    const s = NodeOtlp.settingsFromEnvironment({
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/base/",
      OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: "https://logs.example/ingest",
      OTEL_METRICS_EXPORTER: "none"
    })
    assert.strictEqual(s.traces?.url, "http://collector:4318/base/v1/traces")
    assert.strictEqual(s.traces?.protocol, "http/protobuf")
    assert.isUndefined(s.metrics)
    assert.strictEqual(s.logs?.url, "https://logs.example/ingest")
    assert.strictEqual(s.serviceName, "unknown_service:node")
    assert.deepStrictEqual(s.warnings, [])
  })

  it("reads headers, resource attributes and intervals, and warns about values it ignores", () => {
    const s = NodeOtlp.settingsFromEnvironment({
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318",
      OTEL_EXPORTER_OTLP_HEADERS: "api-key=a%2Cb, x-tenant = t1 ,broken",
      OTEL_EXPORTER_OTLP_TRACES_HEADERS: "only=traces",
      OTEL_RESOURCE_ATTRIBUTES: "service.name=from-attributes,team=db%20ops",
      OTEL_METRIC_EXPORT_INTERVAL: "15000",
      OTEL_BSP_SCHEDULE_DELAY: "soon",
      OTEL_EXPORTER_OTLP_LOGS_PROTOCOL: "grpc"
    })
    assert.deepStrictEqual(s.metrics?.headers, { "api-key": "a,b", "x-tenant": "t1" })
    assert.deepStrictEqual(s.traces?.headers, { only: "traces" })
    assert.strictEqual(s.serviceName, "from-attributes")
    assert.strictEqual(s.resourceAttributes["team"], "db ops")
    assert.strictEqual(Duration.toMillis(s.metrics!.interval), 15000)
    assert.isUndefined(s.logs)
    assert.strictEqual(s.warnings.length, 3, s.warnings.join("\n"))
    assert.isTrue(s.warnings.some((w) => w.includes("OTEL_BSP_SCHEDULE_DELAY")))
    assert.isTrue(s.warnings.some((w) => w.includes("grpc")))
  })

  it("never quotes a headers entry without a name in its warning (it may be a credential)", () => {
    const s = NodeOtlp.settingsFromEnvironment({
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318",
      OTEL_EXPORTER_OTLP_HEADERS: "Bearer s3cret",
      OTEL_TRACES_EXPORTER: "none",
      OTEL_LOGS_EXPORTER: "none"
    })
    assert.deepStrictEqual(s.metrics?.headers, {})
    assert.strictEqual(s.warnings.length, 1, s.warnings.join("\n"))
    assert.include(s.warnings[0], "OTEL_EXPORTER_OTLP_HEADERS")
    assert.notInclude(s.warnings[0], "s3cret")
  })

  it("reads the sampler, parentbased_always_on by default", () => {
    assert.deepStrictEqual(NodeOtlp.settingsFromEnvironment({}).sampler, {
      kind: "always_on",
      parentBased: true,
      ratio: 1
    })
    const s = NodeOtlp.settingsFromEnvironment({
      OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
      OTEL_TRACES_SAMPLER_ARG: "0.25"
    })
    assert.deepStrictEqual(s.sampler, { kind: "traceidratio", parentBased: true, ratio: 0.25 })
    const bad = NodeOtlp.settingsFromEnvironment({ OTEL_TRACES_SAMPLER: "jaeger_remote", OTEL_TRACES_SAMPLER_ARG: "2" })
    assert.deepStrictEqual(bad.sampler, { kind: "always_on", parentBased: true, ratio: 1 })
    assert.strictEqual(bad.warnings.length, 2, bad.warnings.join("\n"))
  })
})

describe("NodeOtlp.layer", () => {
  const sampledWith = (port: number, environment: Record<string, string>, parent?: Tracer.AnySpan) =>
    Effect.gen(function*() {
      const context = yield* Layer.build(NodeOtlp.layer({
        environment: {
          OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
          OTEL_METRICS_EXPORTER: "none",
          OTEL_LOGS_EXPORTER: "none",
          ...environment
        }
      }))
      const span = yield* Effect.currentSpan.pipe(
        Effect.withSpan("probe", parent === undefined ? {} : { parent }),
        Effect.provideContext(context)
      )
      return span.sampled
    }).pipe(Effect.scoped)

  it.live("samples as OTEL_TRACES_SAMPLER says: a span not sampled is not exported, a child follows its parent", () =>
    Effect.gen(function*() {
      const { port, received } = yield* receiver
      assert.isTrue(yield* sampledWith(port, {}))
      assert.isFalse(yield* sampledWith(port, { OTEL_TRACES_SAMPLER: "always_off" }))
      const ratioZero = { OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "0" }
      assert.isFalse(yield* sampledWith(port, ratioZero))
      const remote = Tracer.externalSpan({ traceId: "1".repeat(32), spanId: "2".repeat(16), sampled: true })
      assert.isTrue(yield* sampledWith(port, ratioZero, remote))
      // Exported (protobuf, flushed when each layer closed): the two sampled spans only.
      assert.strictEqual(received.filter((r) => r.path === "/v1/traces").length, 2)
    }))

  it.live("exports logs over http/protobuf (our encoder): the record's body and trace id are in the request", () =>
    Effect.gen(function*() {
      const { port, received } = yield* receiver
      const traceId = yield* Effect.logInfo("worker exited: café 🎉").pipe(
        Effect.andThen(Effect.currentSpan),
        Effect.map((span) => span.traceId),
        Effect.withSpan("probe"),
        Effect.provide(NodeOtlp.layer({
          environment: {
            OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
            OTEL_TRACES_EXPORTER: "none",
            OTEL_METRICS_EXPORTER: "none"
          }
        }))
      )
      // Flushed when the layer closed.
      const logs = received.filter((r) => r.path === "/v1/logs")
      assert.strictEqual(logs.length, 1)
      assert.match(String(logs[0]!.headers["content-type"]), /application\/x-protobuf/)
      assert.include(logs[0]!.raw.toString("utf8"), "worker exited: café 🎉")
      assert.include(logs[0]!.raw.toString("hex"), traceId.padStart(32, "0"))
    }))
})
