/**
 * Our OTLP/protobuf traces encoder (src/node/internal/otlpTraces.ts) against the oracle it replaces: for the
 * same `TraceData`, its bytes are those of `effect`'s `OtlpSerialization.layerProtobuf` `traces` body, byte for
 * byte, over generated data (every AnyValue kind, nested arrays and lists, non-ASCII and lone surrogates,
 * times up to 2^64 - 1, negative and 64-bit integers, NaN, infinities and negative zero) and a few examples.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Arbitrary from "effect/Arbitrary"
import type { TraceData } from "effect/observability/OtlpTracer"
import { encodeTraces } from "../../src/node/internal/otlpTraces.ts"
import {
  attributes,
  dropped,
  effectProtobuf,
  hex,
  intBetween,
  nanos,
  oneOf,
  optionalText,
  pick,
  protobufBytes,
  spanId,
  text,
  traceId
} from "./otlpProtobufTesting.ts"

type Span = TraceData["resourceSpans"][number]["scopeSpans"][number]["spans"][number]

const effectBytes = (data: TraceData): Uint8Array => protobufBytes(effectProtobuf.traces(data))

const assertSameBytes = (data: TraceData): void => assert.strictEqual(hex(encodeTraces(data)), hex(effectBytes(data)))

// --- Generators ------------------------------------------------------------------------------------------------

const event = Arbitrary.map(
  Arbitrary.all([text, nanos, attributes, dropped]),
  ([name, timeUnixNano, attributes, droppedAttributesCount]) => ({
    name,
    timeUnixNano,
    attributes,
    droppedAttributesCount
  })
)

const link = Arbitrary.map(
  Arbitrary.all([traceId, spanId, attributes, dropped]),
  ([traceId, spanId, attributes, droppedAttributesCount]) => ({ traceId, spanId, attributes, droppedAttributesCount })
)

const status = oneOf<Span["status"]>(
  Arbitrary.map(pick([0, 1, 2] as const), (code) => ({ code })),
  Arbitrary.map(Arbitrary.all([pick([0, 1, 2] as const), text]), ([code, message]) => ({ code, message }))
)

const span: Arbitrary.Arbitrary<Span> = Arbitrary.map(
  Arbitrary.all({
    traceId,
    spanId,
    parentSpanId: oneOf<string | undefined>(Arbitrary.Constant(undefined), spanId),
    name: text,
    kind: intBetween(0, 5),
    startTimeUnixNano: nanos,
    endTimeUnixNano: nanos,
    attributes,
    droppedAttributesCount: dropped,
    events: Arbitrary.array(event, { maxLength: 3 }),
    droppedEventsCount: dropped,
    status,
    links: Arbitrary.array(link, { maxLength: 2 }),
    droppedLinksCount: dropped
  }),
  (s) => s
)

const scopeSpan = Arbitrary.map(
  Arbitrary.all([text, optionalText, Arbitrary.array(span, { maxLength: 4 }), optionalText]),
  ([name, version, spans, schemaUrl]) => ({
    scope: version === undefined ? { name } : { name, version },
    spans,
    ...(schemaUrl === undefined ? {} : { schemaUrl })
  })
)

const traceData: Arbitrary.Arbitrary<TraceData> = Arbitrary.map(
  Arbitrary.array(
    Arbitrary.all([attributes, dropped, Arbitrary.array(scopeSpan, { maxLength: 3 }), optionalText]),
    { maxLength: 3 }
  ),
  (all) => ({
    resourceSpans: all.map(([attributes, droppedAttributesCount, scopeSpans, schemaUrl]) => ({
      resource: { attributes, droppedAttributesCount },
      scopeSpans,
      ...(schemaUrl === undefined ? {} : { schemaUrl })
    }))
  })
)

// --- Examples --------------------------------------------------------------------------------------------------

const exampleSpan = (overrides: Partial<Span> = {}): Span => ({
  traceId: "0af7651916cd43dd8448eb211c80319c",
  spanId: "b7ad6b7169203331",
  parentSpanId: undefined,
  name: "worker.run",
  kind: 1,
  startTimeUnixNano: "1700000000123456789",
  endTimeUnixNano: "1700000000223456789",
  attributes: [{ key: "worker.name", value: { stringValue: "billing" } }],
  droppedAttributesCount: 0,
  events: [],
  droppedEventsCount: 0,
  status: { code: 1 },
  links: [],
  droppedLinksCount: 0,
  ...overrides
})

const dataOf = (...spans: Array<Span>): TraceData => ({
  resourceSpans: [{
    resource: { attributes: [{ key: "service.name", value: { stringValue: "svc" } }], droppedAttributesCount: 0 },
    scopeSpans: [{ scope: { name: "effect-bgworker" }, spans }]
  }]
})

describe("otlpTraces.encodeTraces", () => {
  it("writes an empty batch as no bytes", () => {
    assert.strictEqual(encodeTraces({ resourceSpans: [] }).length, 0)
    assertSameBytes({ resourceSpans: [] })
  })

  it("writes a typical span as effect's encoder does, the ids as raw bytes", () => {
    const data = dataOf(
      exampleSpan(),
      exampleSpan({ parentSpanId: "b7ad6b7169203331", status: { code: 2, message: "boom" } })
    )
    assertSameBytes(data)
    // The trace id's 16 bytes follow the span's tag (field 1, length-delimited) and length.
    assert.include(hex(encodeTraces(data)), "0a100af7651916cd43dd8448eb211c80319c")
  })

  it("writes the largest times, a negative integer and an integer given as a string as effect's encoder does", () => {
    assertSameBytes(dataOf(exampleSpan({
      startTimeUnixNano: "18446744073709551615",
      endTimeUnixNano: "9223372036854775807",
      attributes: [
        { key: "negative", value: { intValue: -1 } },
        { key: "big", value: { intValue: "-9223372036854775808" } },
        { key: "wide", value: { intValue: 2 ** 40 + 3 } }
      ]
    })))
  })

  it("writes times that are not plain decimal strings as BigInt reads them, modulo 2^64", () => {
    assertSameBytes(dataOf(exampleSpan({ startTimeUnixNano: "", endTimeUnixNano: "0x10" })))
    assertSameBytes(dataOf(exampleSpan({ startTimeUnixNano: " 42 ", endTimeUnixNano: "-1" })))
    assertSameBytes(
      dataOf(exampleSpan({ startTimeUnixNano: "36893488147419103232", endTimeUnixNano: "00000000000000000000007" }))
    )
  })

  it("writes malformed identifiers as effect's encoder reads them (parseInt of each pair)", () => {
    assertSameBytes(dataOf(exampleSpan({ traceId: "abc", spanId: "zz1g-1 fG", parentSpanId: "" })))
  })

  it("writes non-ASCII text, emoji and lone surrogates in UTF-8 as TextEncoder does", () => {
    const data = dataOf(exampleSpan({
      name: "café 日本 🎉 \ud800 \udc00",
      attributes: [{ key: "é".repeat(80), value: { stringValue: "a".repeat(100) + "\u00e9" } }]
    }))
    assertSameBytes(data)
  })

  it("writes nested arrays and key-value lists, bytes, doubles and booleans as effect's encoder does", () => {
    assertSameBytes(dataOf(exampleSpan({
      attributes: [{
        key: "nested",
        value: {
          arrayValue: {
            values: [
              {
                kvlistValue: {
                  values: [{ key: "d", value: { doubleValue: -0 } }, { key: "n", value: { doubleValue: NaN } }]
                }
              },
              { bytesValue: new Uint8Array([0, 1, 255]) },
              { boolValue: false },
              { arrayValue: { values: [] } },
              {}
            ]
          }
        }
      }]
    })))
  })

  it.prop("writes the same bytes as effect's protobuf encoder for any trace data", [traceData], ([data]) => {
    assertSameBytes(data)
  }, { arbitrary: { runs: 300 } })
})
