/**
 * What the OTLP/protobuf encoders' tests (`otlpTraces.test.ts`, `otlpLogs.test.ts`) share: the oracle
 * (`effect`'s `OtlpSerialization.layerProtobuf`), bytes as hex for readable failures, and generators of text
 * with non-ASCII and lone surrogates, times up to 2^64 - 1, identifiers in either case, 64-bit and unsafe
 * integers, NaN, infinities and negative zero, and AnyValue/KeyValue of every kind nested two deep.
 */
import { assert } from "@effect/vitest"
import * as Arbitrary from "effect/Arbitrary"
import * as Effect from "effect/Effect"
import type * as HttpBody from "effect/http/HttpBody"
import type { AnyValue, KeyValue } from "effect/observability/OtlpResource"
import * as OtlpSerialization from "effect/observability/OtlpSerialization"
import * as Schema from "effect/Schema"

/** `effect`'s protobuf serialization, the oracle our encoders' bytes are compared with. */
export const effectProtobuf = Effect.runSync(
  Effect.gen(function*() {
    return yield* OtlpSerialization.OtlpSerialization
  }).pipe(Effect.provide(OtlpSerialization.layerProtobuf))
)

/** The bytes of a body `effectProtobuf` made, checked to be protobuf. */
export const protobufBytes = (body: HttpBody.HttpBody): Uint8Array => {
  assert.strictEqual(body._tag, "Uint8Array")
  const bytes = body as HttpBody.Uint8Array
  assert.strictEqual(bytes.contentType, "application/x-protobuf")
  return bytes.body
}

export const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex")

export const intBetween = (minimum: number, maximum: number) =>
  Arbitrary.schema(Schema.Int.check(Schema.isBetween({ minimum, maximum })))

export const oneOf = <A>(...choices: ReadonlyArray<Arbitrary.Arbitrary<A>>): Arbitrary.Arbitrary<A> =>
  Arbitrary.flatMap(intBetween(0, choices.length - 1), (i) => choices[i]!)

export const pick = <A>(values: ReadonlyArray<A>): Arbitrary.Arbitrary<A> =>
  Arbitrary.map(intBetween(0, values.length - 1), (i) => values[i]!)

export const anyString = Arbitrary.schema(Schema.String)

export const text: Arbitrary.Arbitrary<string> = oneOf(
  anyString,
  pick(["", "é", "日本語", "emoji 🎉", "\ud800", "a\udc00b", "\udbff\udfff", "x".repeat(200), "é".repeat(100)]),
  Arbitrary.map(Arbitrary.all([anyString, anyString]), ([a, b]) => `${a}😀ü\ud83d${b}`)
)

export const uint64 = Arbitrary.map(Arbitrary.schema(Schema.BigInt), (n) => BigInt.asUintN(64, n))

export const nanos: Arbitrary.Arbitrary<string> = oneOf(
  Arbitrary.map(uint64, (n) => String(BigInt.asUintN(63, n))),
  Arbitrary.map(uint64, String),
  Arbitrary.map(intBetween(0, 2 ** 31), String),
  pick(["0", "9223372036854775807", "18446744073709551615", "1700000000123456789", "0000000001"])
)

export const byte = intBetween(0, 255)
export const hexOf = (length: number): Arbitrary.Arbitrary<string> =>
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
export const traceId = hexOf(16)
export const spanId = hexOf(8)

export const int64 = Arbitrary.map(Arbitrary.schema(Schema.BigInt), (n) => BigInt.asIntN(64, n))
export const intValue: Arbitrary.Arbitrary<number | string> = oneOf<number | string>(
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

export const double: Arbitrary.Arbitrary<number> = oneOf(
  Arbitrary.schema(Schema.Number),
  pick([0, -0, NaN, Infinity, -Infinity, 1.5, -2.25, Number.MIN_VALUE, Number.MAX_VALUE])
)

export const bytes = Arbitrary.map(Arbitrary.array(byte, { maxLength: 40 }), (b) => new Uint8Array(b))

export const scalarValue: Arbitrary.Arbitrary<AnyValue> = oneOf<AnyValue>(
  Arbitrary.map(text, (stringValue) => ({ stringValue })),
  Arbitrary.map(Arbitrary.schema(Schema.Boolean), (boolValue) => ({ boolValue })),
  Arbitrary.map(intValue, (intValue) => ({ intValue })),
  Arbitrary.map(double, (doubleValue) => ({ doubleValue })),
  Arbitrary.map(bytes, (bytesValue) => ({ bytesValue })),
  // Nulls fall through to the next kind, and an empty value is an empty message.
  Arbitrary.map(intValue, (intValue) => ({ stringValue: null, boolValue: null, intValue })),
  Arbitrary.Constant({})
)

export const keyValueOf = (value: Arbitrary.Arbitrary<AnyValue>): Arbitrary.Arbitrary<KeyValue> =>
  Arbitrary.map(Arbitrary.all([text, value]), ([key, v]) => ({ key, value: v }))

export const valueOf = (depth: number): Arbitrary.Arbitrary<AnyValue> => {
  if (depth === 0) return scalarValue
  const inner = valueOf(depth - 1)
  return oneOf<AnyValue>(
    scalarValue,
    scalarValue,
    Arbitrary.map(Arbitrary.array(inner, { maxLength: 4 }), (values) => ({ arrayValue: { values } })),
    Arbitrary.map(Arbitrary.array(keyValueOf(inner), { maxLength: 4 }), (values) => ({ kvlistValue: { values } }))
  )
}

export const attributes = Arbitrary.array(keyValueOf(valueOf(2)), { maxLength: 5 })
export const dropped = oneOf(Arbitrary.Constant(0), intBetween(0, 2 ** 31), intBetween(-5, -1))

export const optionalText = oneOf<string | undefined>(Arbitrary.Constant(undefined), text)
