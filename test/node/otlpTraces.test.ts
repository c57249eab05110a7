/**
 * Our OTLP/protobuf traces encoder (src/node/internal/otlpTraces.ts) against the oracle it replaces: for the
 * same `TraceData`, its bytes are those of `effect`'s `OtlpSerialization.layerProtobuf` `traces` body, byte for
 * byte, over generated data (every AnyValue kind, nested arrays and lists, non-ASCII and lone surrogates,
 * times up to 2^64 - 1, negative and 64-bit integers, NaN, infinities and negative zero) and a few examples.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Arbitrary from "effect/Arbitrary"
import * as Effect from "effect/Effect"
import type * as HttpBody from "effect/http/HttpBody"
import type { AnyValue, KeyValue } from "effect/observability/OtlpResource"
import * as OtlpSerialization from "effect/observability/OtlpSerialization"
import type { TraceData } from "effect/observability/OtlpTracer"
import * as Schema from "effect/Schema"
import { encodeTraces } from "../../src/node/internal/otlpTraces.ts"

type Span = TraceData["resourceSpans"][number]["scopeSpans"][number]["spans"][number]

const effectSerialization = Effect.runSync(
  Effect.gen(function*() {
    return yield* OtlpSerialization.OtlpSerialization
  }).pipe(Effect.provide(OtlpSerialization.layerProtobuf))
)

const effectBytes = (data: TraceData): Uint8Array => {
  const body = effectSerialization.traces(data) as HttpBody.Uint8Array
  assert.strictEqual(body.contentType, "application/x-protobuf")
  return body.body
}

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex")

const assertSameBytes = (data: TraceData): void => assert.strictEqual(hex(encodeTraces(data)), hex(effectBytes(data)))

// --- Generators ------------------------------------------------------------------------------------------------

const intBetween = (minimum: number, maximum: number) =>
  Arbitrary.schema(Schema.Int.check(Schema.isBetween({ minimum, maximum })))

const oneOf = <A>(...choices: ReadonlyArray<Arbitrary.Arbitrary<A>>): Arbitrary.Arbitrary<A> =>
  Arbitrary.flatMap(intBetween(0, choices.length - 1), (i) => choices[i]!)

const pick = <A>(values: ReadonlyArray<A>): Arbitrary.Arbitrary<A> =>
  Arbitrary.map(intBetween(0, values.length - 1), (i) => values[i]!)

const anyString = Arbitrary.schema(Schema.String)

const text: Arbitrary.Arbitrary<string> = oneOf(
  anyString,
  pick(["", "é", "日本語", "emoji 🎉", "\ud800", "a\udc00b", "\udbff\udfff", "x".repeat(200), "é".repeat(100)]),
  Arbitrary.map(Arbitrary.all([anyString, anyString]), ([a, b]) => `${a}😀ü\ud83d${b}`)
)

const uint64 = Arbitrary.map(Arbitrary.schema(Schema.BigInt), (n) => BigInt.asUintN(64, n))

const nanos: Arbitrary.Arbitrary<string> = oneOf(
  Arbitrary.map(uint64, (n) => String(BigInt.asUintN(63, n))),
  Arbitrary.map(uint64, String),
  Arbitrary.map(intBetween(0, 2 ** 31), String),
  pick(["0", "9223372036854775807", "18446744073709551615", "1700000000123456789", "0000000001"])
)

const byte = intBetween(0, 255)
const hexOf = (length: number): Arbitrary.Arbitrary<string> =>
  oneOf(
    Arbitrary.map(
      Arbitrary.array(byte, { minLength: length, maxLength: length }),
      (bytes) => Buffer.from(bytes).toString("hex")
    ),
    Arbitrary.map(
      Arbitrary.array(byte, { minLength: length, maxLength: length }),
      (bytes) => Buffer.from(bytes).toString("hex").toUpperCase()
    )
  )
const traceId = hexOf(16)
const spanId = hexOf(8)

const int64 = Arbitrary.map(Arbitrary.schema(Schema.BigInt), (n) => BigInt.asIntN(64, n))
const intValue: Arbitrary.Arbitrary<number | string> = oneOf<number | string>(
  intBetween(-(2 ** 31), 2 ** 31),
  Arbitrary.schema(
    Schema.Int.check(Schema.isBetween({ minimum: Number.MIN_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER }))
  ),
  Arbitrary.map(int64, String),
  // Integers beyond 2^53 given as numbers (effect's own tracer gives them as strings): exact powers of two.
  Arbitrary.map(intBetween(53, 70), (e) => 2 ** e),
  Arbitrary.map(intBetween(53, 63), (e) => -(2 ** e)),
  pick<number | string>([0, -1, 2 ** 31, 2 ** 32, -(2 ** 31) - 1, "9223372036854775807", "-9223372036854775808"])
)

const double: Arbitrary.Arbitrary<number> = oneOf(
  Arbitrary.schema(Schema.Number),
  pick([0, -0, NaN, Infinity, -Infinity, 1.5, -2.25, Number.MIN_VALUE, Number.MAX_VALUE])
)

const bytes = Arbitrary.map(Arbitrary.array(byte, { maxLength: 40 }), (b) => new Uint8Array(b))

const scalarValue: Arbitrary.Arbitrary<AnyValue> = oneOf<AnyValue>(
  Arbitrary.map(text, (stringValue) => ({ stringValue })),
  Arbitrary.map(Arbitrary.schema(Schema.Boolean), (boolValue) => ({ boolValue })),
  Arbitrary.map(intValue, (intValue) => ({ intValue })),
  Arbitrary.map(double, (doubleValue) => ({ doubleValue })),
  Arbitrary.map(bytes, (bytesValue) => ({ bytesValue })),
  // Nulls fall through to the next kind, and an empty value is an empty message.
  Arbitrary.map(intValue, (intValue) => ({ stringValue: null, boolValue: null, intValue })),
  Arbitrary.Constant({})
)

const keyValueOf = (value: Arbitrary.Arbitrary<AnyValue>): Arbitrary.Arbitrary<KeyValue> =>
  Arbitrary.map(Arbitrary.all([text, value]), ([key, v]) => ({ key, value: v }))

const valueOf = (depth: number): Arbitrary.Arbitrary<AnyValue> => {
  if (depth === 0) return scalarValue
  const inner = valueOf(depth - 1)
  return oneOf<AnyValue>(
    scalarValue,
    scalarValue,
    Arbitrary.map(Arbitrary.array(inner, { maxLength: 4 }), (values) => ({ arrayValue: { values } })),
    Arbitrary.map(Arbitrary.array(keyValueOf(inner), { maxLength: 4 }), (values) => ({ kvlistValue: { values } }))
  )
}

const attributes = Arbitrary.array(keyValueOf(valueOf(2)), { maxLength: 5 })
const dropped = oneOf(Arbitrary.Constant(0), intBetween(0, 2 ** 31), intBetween(-5, -1))

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

const optionalText = oneOf<string | undefined>(Arbitrary.Constant(undefined), text)

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
