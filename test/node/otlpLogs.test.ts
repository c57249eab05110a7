/**
 * Our OTLP/protobuf logs encoder (src/node/internal/otlpLogs.ts) against the oracle it replaces: for the same
 * `LogsData`, its bytes are those of `effect`'s `OtlpSerialization.layerProtobuf` `logs` body, byte for byte,
 * over generated data (every AnyValue kind as body and attributes, absent and present optional fields, ids as
 * hex, malformed hex and bytes, times as strings and numbers up to and past 2^64, flags outside 32 bits, scope
 * attributes, a `null` schema URL) and a few examples.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Arbitrary from "effect/Arbitrary"
import type { LogsData } from "effect/observability/OtlpLogger"
import type { AnyValue } from "effect/observability/OtlpResource"
import * as Schema from "effect/Schema"
import { encodeLogs } from "../../src/node/internal/otlpLogs.ts"
import {
  attributes,
  byte,
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
  traceId,
  valueOf
} from "./otlpProtobufTesting.ts"

type ResourceLogs = LogsData["resourceLogs"][number]
type ScopeLogs = ResourceLogs["scopeLogs"][number]
type LogRecord = NonNullable<ScopeLogs["logRecords"]>[number]

const effectBytes = (data: LogsData): Uint8Array => protobufBytes(effectProtobuf.logs(data))

const assertSameBytes = (data: LogsData): void => assert.strictEqual(hex(encodeLogs(data)), hex(effectBytes(data)))

/** `{ [key]: value }`, or `{}` when `value` is undefined (the types' optional fields take no `undefined`). */
const optional = <K extends string, A>(key: K, value: A | undefined): { [P in K]?: A } =>
  (value === undefined ? {} : { [key]: value }) as { [P in K]?: A }

// --- Generators ------------------------------------------------------------------------------------------------

const maybe = <A>(arbitrary: Arbitrary.Arbitrary<A>): Arbitrary.Arbitrary<A | undefined> =>
  oneOf<A | undefined>(Arbitrary.Constant(undefined), arbitrary)

// `OtlpResource.Fixed64` is a string, a number or `LongBits`; `effect` throws on the last (see the examples).
const time: Arbitrary.Arbitrary<string | number> = oneOf<string | number>(
  nanos,
  intBetween(0, 2 ** 31),
  Arbitrary.schema(Schema.Int.check(Schema.isBetween({ minimum: -(2 ** 53) + 1, maximum: 2 ** 53 - 1 }))),
  Arbitrary.map(intBetween(53, 70), (e) => 2 ** e),
  pick<string | number>([1700000000123456789, 2 ** 64, -1, "18446744073709551615"])
)

const id = (hexId: Arbitrary.Arbitrary<string>): Arbitrary.Arbitrary<string | Uint8Array | undefined> =>
  oneOf<string | Uint8Array | undefined>(
    Arbitrary.Constant(undefined),
    hexId,
    hexId,
    pick(["", "abc", "zz1g-1 fG"]),
    Arbitrary.map(Arbitrary.array(byte, { maxLength: 17 }), (b) => new Uint8Array(b))
  )

const flags = oneOf<number | undefined>(
  Arbitrary.Constant(undefined),
  intBetween(0, 255),
  Arbitrary.schema(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 2 ** 32 - 1 }))),
  pick([-1, 2 ** 32 + 5, 1.5, NaN])
)

const severityNumber = maybe(intBetween(0, 24)) as Arbitrary.Arbitrary<LogRecord["severityNumber"]>

const logRecord: Arbitrary.Arbitrary<LogRecord> = Arbitrary.map(
  Arbitrary.all({
    timeUnixNano: time,
    observedTimeUnixNano: time,
    severityNumber,
    severityText: optionalText,
    body: maybe(valueOf(2)),
    attributes,
    droppedAttributesCount: dropped,
    flags,
    traceId: id(traceId),
    spanId: id(spanId)
  }),
  (r) => ({
    timeUnixNano: r.timeUnixNano,
    observedTimeUnixNano: r.observedTimeUnixNano,
    attributes: r.attributes,
    droppedAttributesCount: r.droppedAttributesCount,
    ...optional("severityNumber", r.severityNumber),
    ...optional("severityText", r.severityText),
    ...optional("body", r.body),
    ...optional("flags", r.flags),
    ...optional("traceId", r.traceId),
    ...optional("spanId", r.spanId)
  })
)

const scopeLogs: Arbitrary.Arbitrary<ScopeLogs> = Arbitrary.map(
  Arbitrary.all({
    name: text,
    version: optionalText,
    scopeAttributes: maybe(attributes),
    scopeDropped: maybe(dropped),
    logRecords: Arbitrary.array(logRecord, { maxLength: 4 }),
    schemaUrl: oneOf<string | null | undefined>(optionalText, Arbitrary.Constant(null))
  }),
  (s) => ({
    scope: {
      name: s.name,
      ...optional("version", s.version),
      ...optional("attributes", s.scopeAttributes),
      ...optional("droppedAttributesCount", s.scopeDropped)
    },
    logRecords: s.logRecords,
    ...optional("schemaUrl", s.schemaUrl)
  })
)

const logsData: Arbitrary.Arbitrary<LogsData> = Arbitrary.map(
  Arbitrary.array(
    Arbitrary.all([attributes, dropped, Arbitrary.array(scopeLogs, { maxLength: 3 }), optionalText]),
    { maxLength: 3 }
  ),
  (all) => ({
    resourceLogs: all.map(([attributes, droppedAttributesCount, scopeLogs, schemaUrl]) => ({
      resource: { attributes, droppedAttributesCount },
      scopeLogs,
      ...optional("schemaUrl", schemaUrl)
    }))
  })
)

// --- Examples --------------------------------------------------------------------------------------------------

/** A record as `effect`'s `OtlpLogger` makes one for `Effect.logInfo("worker exited")` inside a span. */
const exampleRecord = (overrides: Partial<LogRecord> = {}): LogRecord => ({
  severityNumber: 9,
  severityText: "Info",
  timeUnixNano: "1700000000123000000",
  observedTimeUnixNano: "1700000000123456789",
  attributes: [
    { key: "worker.name", value: { stringValue: "billing" } },
    { key: "effect.fiberId", value: { intValue: 42 } }
  ],
  body: { stringValue: "worker exited" },
  droppedAttributesCount: 0,
  traceId: "0af7651916cd43dd8448eb211c80319c",
  spanId: "b7ad6b7169203331",
  ...overrides
})

const dataOf = (...logRecords: Array<LogRecord>): LogsData => ({
  resourceLogs: [{
    resource: { attributes: [{ key: "service.name", value: { stringValue: "svc" } }], droppedAttributesCount: 0 },
    scopeLogs: [{ scope: { name: "effect", version: "4.1.0" }, logRecords }]
  }]
})

const withoutIds = (record: LogRecord): LogRecord => {
  const { spanId: _spanId, traceId: _traceId, ...rest } = record
  return rest
}

describe("otlpLogs.encodeLogs", () => {
  it("writes an empty batch as no bytes", () => {
    assert.strictEqual(encodeLogs({ resourceLogs: [] }).length, 0)
    assertSameBytes({ resourceLogs: [] })
  })

  it("writes a typical record as effect's encoder does, the ids as raw bytes", () => {
    const data = dataOf(exampleRecord(), exampleRecord({ severityNumber: 17, severityText: "Error" }))
    assertSameBytes(data)
    // The trace id's 16 bytes follow its tag (field 9, length-delimited) and length.
    assert.include(hex(encodeLogs(data)), "4a100af7651916cd43dd8448eb211c80319c")
  })

  it("writes a non-ASCII body, emoji and lone surrogates in UTF-8 as TextEncoder does", () => {
    assertSameBytes(dataOf(
      exampleRecord({ body: { stringValue: "arrêt du worker « facturation » 日本 🎉 \ud800" } }),
      exampleRecord({ body: { stringValue: "é".repeat(100) }, severityText: "Ünfo" })
    ))
  })

  it("writes a key-value list body with nested values as effect's encoder does", () => {
    const body: AnyValue = {
      kvlistValue: {
        values: [
          { key: "exit", value: { intValue: -1 } },
          { key: "signal", value: { stringValue: "SIGTERM" } },
          { key: "args", value: { arrayValue: { values: [{ doubleValue: NaN }, { boolValue: true }, {}] } } },
          { key: "raw", value: { bytesValue: new Uint8Array([0, 255]) } }
        ]
      }
    }
    assertSameBytes(dataOf(exampleRecord({ body })))
  })

  it("writes every severity number and its text, and leaves out an absent severity, as effect's encoder does", () => {
    const texts = ["Trace", "Debug", "Info", "Warn", "Error", "Fatal"]
    const records = Array.from({ length: 25 }, (_, n) =>
      exampleRecord({
        severityNumber: n as NonNullable<LogRecord["severityNumber"]>,
        severityText: n === 0 ? "" : texts[Math.floor((n - 1) / 4)]!
      }))
    const { severityNumber: _number, severityText: _text, ...unspecified } = exampleRecord()
    assertSameBytes(dataOf(...records, unspecified))
  })

  it("leaves out missing and empty trace and span ids as effect's encoder does", () => {
    const data = dataOf(withoutIds(exampleRecord()), exampleRecord({ traceId: "", spanId: "" }))
    assertSameBytes(data)
    assert.notInclude(hex(encodeLogs(data)), "0af7651916cd43dd8448eb211c80319c")
  })

  it("writes the largest times, times as numbers and times past 2^64 (modulo 2^64) as effect's encoder does", () => {
    assertSameBytes(dataOf(
      exampleRecord({ timeUnixNano: "18446744073709551615", observedTimeUnixNano: "9223372036854775807" }),
      exampleRecord({ timeUnixNano: 1700000000123456800, observedTimeUnixNano: 2 ** 64 + 2 ** 12 }),
      exampleRecord({ timeUnixNano: "36893488147419103232", observedTimeUnixNano: -1 }),
      exampleRecord({ timeUnixNano: "0x10", observedTimeUnixNano: "" })
    ))
  })

  it("writes a scope's attributes and dropped count, flags and a null schema URL as effect's encoder does", () => {
    assertSameBytes({
      resourceLogs: [{
        resource: { attributes: [], droppedAttributesCount: 3 },
        scopeLogs: [{
          scope: {
            name: "effect",
            attributes: [{ key: "k", value: { boolValue: false } }],
            droppedAttributesCount: 2
          },
          logRecords: [exampleRecord({ flags: 1, droppedAttributesCount: 5 }), exampleRecord({ flags: 2 ** 32 + 1 })],
          schemaUrl: null
        }],
        schemaUrl: "https://opentelemetry.io/schemas/1.24.0"
      }]
    })
  })

  it("throws where effect's encoder throws: a time given as LongBits or as a fraction", () => {
    for (const timeUnixNano of [{ low: 1, high: 0 }, 1.5]) {
      const data = dataOf(exampleRecord({ timeUnixNano }))
      assert.throws(() => effectBytes(data))
      assert.throws(() => encodeLogs(data))
    }
    // A failed batch leaves nothing behind: the next is written whole.
    assertSameBytes(dataOf(exampleRecord()))
  })

  it.prop("writes the same bytes as effect's protobuf encoder for any logs data", [logsData], ([data]) => {
    assertSameBytes(data)
  }, { arbitrary: { runs: 300 } })
})
