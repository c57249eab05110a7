/**
 * The machinery our OTLP/protobuf encoders share (`./otlpTraces.ts`, `./otlpLogs.ts`): the two passes' state,
 * scalar sizes and writers, and the messages every signal holds (`AnyValue`, `KeyValue`, `Resource`,
 * `InstrumentationScope`). They stand in for `effect`'s encoder (`effect/observability/OtlpSerialization`'s
 * `layerProtobuf`); metrics keep `effect`'s (they are few).
 *
 * **Why our own**
 *
 * `effect`'s encoder builds every field as its own `Uint8Array` (a tag, a varint computed with `BigInt`
 * arithmetic into a JS array, a fresh `TextEncoder` per string) and concatenates them message by message, so a
 * field's bytes are copied once per nesting level. A CPU profile of `npm run bench -- launch` with protobuf
 * export on had `Bytes.concat` at 17%, `encodeVarint` at 16% and `TextEncoder` at 12%, and the launch cycle
 * cost 5.4 times as much as with tracing off (2.3 times with `http/json`).
 *
 * An encoder here makes two passes over the data: the first computes each message's length (and each string's
 * UTF-8 length), in the order the second meets them; the second writes every field once into one `Uint8Array`
 * of the exact size. Integers are plain numbers; `BigInt` is left for what can exceed 2^53 (an `intValue` given
 * as a string or an unsafe number, a time that is not a plain decimal string). Identifiers are written from
 * hex straight into the buffer; ASCII strings byte by byte, others with `TextEncoder.encodeInto`.
 *
 * **Contract**
 *
 * Each piece writes the bytes `effect`'s `internal/otlpProtobuf.js` writes for the same message: the same
 * fields in the same order, with the same omissions (an empty optional string, a zero dropped count) and the
 * same treatment of odd input (malformed hex as `parseInt` reads it, negative integers as 10-byte varints, an
 * integer above 2^64 as the longer varint `effect` writes, a time as `BigInt` reads it modulo 2^64). Input
 * `effect` throws on (a non-integer where it calls `BigInt`, a missing message) throws here too.
 *
 * **Use**
 *
 * Pass 1 calls the `...Size` functions: a message's caller takes a slot with `reserve()` before sizing the
 * message's fields and records the sum with `closeMessage`. Pass 2 calls the `write...` functions in the same
 * order, and `writeHeader` reads the slots back. `repeatedSize` and `writeRepeated` do both for a repeated
 * field, and `encodeRepeated` runs both passes for a top-level `repeated ... = 1` message (`TracesData`,
 * `LogsData`). The hot loops (over spans, events, links, log records) are written out instead: through these
 * helpers, whose callback is called for every kind of message, a traces batch cost a tenth more.
 *
 * @internal
 */
import type { AnyValue, KeyValue, Resource } from "effect/observability/OtlpResource"

/** An `InstrumentationScope` as `effect`'s encoder reads it. */
export interface Scope {
  readonly name: string
  readonly version?: string | undefined
  readonly attributes?: ReadonlyArray<KeyValue> | undefined
  readonly droppedAttributesCount?: number | undefined
}

/** An OTLP `fixed64`, as `effect`'s types allow it (`OtlpResource.Fixed64`; a `LongBits` throws, as in `effect`). */
export type Fixed64 = string | number | { readonly low: number; readonly high: number }

// Tags (field number << 3 | wire type): every field here is numbered below 16, so each tag is one byte.
export const VARINT = 0
export const FIXED64 = 1
export const LEN = 2
export const FIXED32 = 5
export const tag = (field: number, wireType: number): number => (field << 3) | wireType

// --- Pass 1 state: lengths of messages and strings, in the order pass 2 meets them ----------------------------

let lengths: Array<number> = []
let count = 0

/** A slot for the length of the message about to be sized. */
export const reserve = (): number => {
  const index = count++
  lengths[index] = 0
  return index
}

/** Records the length of the message whose slot is `index`; the size of it as a field. */
export const closeMessage = (index: number, length: number): number => {
  lengths[index] = length
  return lenFieldSize(length)
}

// --- Pass 2 state ----------------------------------------------------------------------------------------------

let buf = new Uint8Array(0)
let view = new DataView(buf.buffer)
let pos = 0
let cursor = 0
const textEncoder = new TextEncoder()

// --- Sizes of scalars ------------------------------------------------------------------------------------------

/** Bytes of a varint of `n`, 0 <= n < 2^53. */
const varintSize = (n: number): number => {
  if (n < 0x80) return 1
  if (n < 0x4000) return 2
  if (n < 0x200000) return 3
  if (n < 0x10000000) return 4
  let size = 4
  n = Math.floor(n / 0x10000000)
  while (n > 0) {
    size++
    n = Math.floor(n / 0x80)
  }
  return size
}

/** A field of wire type 2 holding `length` bytes: tag, length, body. */
export const lenFieldSize = (length: number): number => 1 + varintSize(length) + length

/** UTF-8 bytes of `s` as `TextEncoder` writes it (a lone surrogate is U+FFFD, 3 bytes). */
const utf8Length = (s: string): number => {
  const n = s.length
  let bytes = n
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x80) continue
    if (c < 0x800) {
      bytes += 1
      continue
    }
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
      const d = s.charCodeAt(i + 1)
      if (d >= 0xdc00 && d <= 0xdfff) {
        bytes += 2 // 2 code units, 4 bytes
        i++
        continue
      }
    }
    bytes += 2
  }
  return bytes
}

/** A string field, its UTF-8 length recorded for pass 2. */
export const stringFieldSize = (s: string): number => {
  const length = utf8Length(s)
  lengths[count++] = length
  return lenFieldSize(length)
}

/** A string field `effect` leaves out when the string is absent or empty. */
export const optionalStringSize = (s: string | undefined): number =>
  s !== undefined && s !== "" ? stringFieldSize(s) : 0

/** A varint of a (64-bit) integer as `effect` writes it: `BigInt(v)`, negatives as two's complement. */
const bigVarint = (v: number | string): bigint => {
  const n = BigInt(v)
  return n < 0n ? BigInt.asUintN(64, n) : n
}

const bigVarintSize = (n: bigint): number => {
  let size = 1
  while (n > 127n) {
    n >>= 7n
    size++
  }
  return size
}

/** Bytes of the varint of an integer field's value (`kind`, a status code, a dropped count, an `intValue`). */
const intVarintSize = (v: number | string): number => {
  if (typeof v === "number" && Number.isSafeInteger(v)) return v < 0 ? 10 : varintSize(v)
  return bigVarintSize(bigVarint(v))
}

/** An integer field (a varint): tag and value. */
export const intFieldSize = (v: number | string): number => 1 + intVarintSize(v)

/** An identifier given in hex (or, as `effect`'s types allow for logs, as bytes read the way `effect` reads them). */
export const hexFieldSize = (hex: string | Uint8Array): number => lenFieldSize(Math.floor(hex.length / 2))

export const fixed64Size = 9

export const fixed32Size = 5

/** A fixed64 time given as a decimal string: digits only and at most 19 of them need no `BigInt`. */
const isPlainDecimal = (s: string): boolean => {
  const n = s.length
  if (n === 0 || n > 19) return false
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i)
    if (c < 48 || c > 57) return false
  }
  return true
}

// --- Pass 1: sizes of shared messages ---------------------------------------------------------------------------

const anyValueSize = (value: AnyValue): number => {
  if (value.stringValue !== undefined && value.stringValue !== null) return stringFieldSize(value.stringValue)
  if (value.boolValue !== undefined && value.boolValue !== null) return 2
  if (value.intValue !== undefined && value.intValue !== null) return intFieldSize(value.intValue)
  if (value.doubleValue !== undefined && value.doubleValue !== null) return 9
  if (value.arrayValue !== undefined) {
    const index = reserve()
    let size = 0
    const values = value.arrayValue.values
    for (let i = 0; i < values.length; i++) size += anyValueMessageSize(values[i]!)
    return closeMessage(index, size)
  }
  if (value.kvlistValue !== undefined) {
    const index = reserve()
    return closeMessage(index, keyValuesSize(value.kvlistValue.values))
  }
  if (value.bytesValue !== undefined) return lenFieldSize(value.bytesValue.length)
  return 0
}

/** An AnyValue as an embedded message (a KeyValue's value, an ArrayValue's element, a log record's body). */
export const anyValueMessageSize = (value: AnyValue): number => {
  const index = reserve()
  return closeMessage(index, anyValueSize(value))
}

/** Repeated KeyValue messages. */
export const keyValuesSize = (values: ReadonlyArray<KeyValue>): number => {
  let total = 0
  for (let i = 0; i < values.length; i++) {
    const kv = values[i]!
    const index = reserve()
    total += closeMessage(index, stringFieldSize(kv.key) + anyValueMessageSize(kv.value))
  }
  return total
}

/** A `Resource` as an embedded message. */
export const resourceMessageSize = (resource: Resource): number => {
  const index = reserve()
  return closeMessage(
    index,
    keyValuesSize(resource.attributes) +
      (resource.droppedAttributesCount > 0 ? intFieldSize(resource.droppedAttributesCount) : 0)
  )
}

/** An `InstrumentationScope` as an embedded message. */
export const scopeMessageSize = (scope: Scope): number => {
  const index = reserve()
  let size = stringFieldSize(scope.name) + optionalStringSize(scope.version)
  if (scope.attributes) size += keyValuesSize(scope.attributes)
  if (scope.droppedAttributesCount) size += intFieldSize(scope.droppedAttributesCount)
  return closeMessage(index, size)
}

// --- Pass 2: writing -------------------------------------------------------------------------------------------

/** A varint of `n`, 0 <= n < 2^53. */
const writeVarint = (n: number): void => {
  while (n > 0x7f) {
    buf[pos++] = (n & 0x7f) | 0x80
    n = n < 0x80000000 ? n >>> 7 : Math.floor(n / 0x80)
  }
  buf[pos++] = n
}

const writeBigVarint = (n: bigint): void => {
  while (n > 127n) {
    buf[pos++] = Number(n & 127n) | 0x80
    n >>= 7n
  }
  buf[pos++] = Number(n)
}

const writeIntVarint = (v: number | string): void => {
  if (typeof v === "number" && Number.isSafeInteger(v)) {
    if (v >= 0) return writeVarint(v)
    // Two's complement over 64 bits: 10 bytes.
    let lo = v >>> 0
    let hi = Math.floor(v / 0x100000000) >>> 0
    for (let i = 0; i < 9; i++) {
      buf[pos++] = (lo & 0x7f) | 0x80
      lo = ((lo >>> 7) | (hi << 25)) >>> 0
      hi = hi >>> 7
    }
    buf[pos++] = lo
    return
  }
  writeBigVarint(bigVarint(v))
}

/** The field's tag and the length pass 1 recorded for it. */
export const writeHeader = (t: number): number => {
  buf[pos++] = t
  const length = lengths[cursor++]!
  writeVarint(length)
  return length
}

export const writeStringField = (t: number, s: string): void => {
  const length = writeHeader(t)
  const n = s.length
  if (length === n && n < 64) {
    for (let i = 0; i < n; i++) buf[pos + i] = s.charCodeAt(i)
  } else {
    textEncoder.encodeInto(s, buf.subarray(pos, pos + length))
  }
  pos += length
}

export const writeOptionalString = (t: number, s: string | undefined): void => {
  if (s !== undefined && s !== "") writeStringField(t, s)
}

// Hex digit values, -1 for any other character code below 128.
const hexValues = new Int8Array(128).fill(-1)
for (let i = 0; i < 10; i++) hexValues[48 + i] = i
for (let i = 0; i < 6; i++) {
  hexValues[65 + i] = 10 + i
  hexValues[97 + i] = 10 + i
}

/**
 * An identifier given in hex, as bytes: a pair that is not two hex digits is read as `parseInt` reads it. Given
 * as a `Uint8Array` (logs' types allow it), each pair is read as `effect` reads it, `parseInt` of the pair's
 * decimal rendering (`"171,205"`): no real caller gives one.
 */
export const writeIdField = (t: number, id: string | Uint8Array): void => {
  if (typeof id === "string") return writeHexField(t, id)
  const length = Math.floor(id.length / 2)
  buf[pos++] = t
  writeVarint(length)
  for (let i = 0; i < length; i++) buf[pos + i] = parseInt(String(id.subarray(2 * i, 2 * i + 2)), 16)
  pos += length
}

/** An identifier given in hex, as bytes: a pair that is not two hex digits is read as `parseInt` reads it. */
export const writeHexField = (t: number, hex: string): void => {
  const length = Math.floor(hex.length / 2)
  buf[pos++] = t
  writeVarint(length)
  for (let i = 0; i < length; i++) {
    const a = hex.charCodeAt(2 * i)
    const b = hex.charCodeAt(2 * i + 1)
    const high = a < 128 ? hexValues[a]! : -1
    const low = b < 128 ? hexValues[b]! : -1
    buf[pos + i] = high >= 0 && low >= 0 ? (high << 4) | low : parseInt(hex.slice(2 * i, 2 * i + 2), 16)
  }
  pos += length
}

export const writeIntField = (field: number, v: number | string): void => {
  buf[pos++] = tag(field, VARINT)
  writeIntVarint(v)
}

/** A fixed64 (a time in nanoseconds), as `BigInt(v)` modulo 2^64; a plain decimal string without `BigInt`. */
export const writeFixed64Field = (field: number, v: Fixed64): void => {
  buf[pos++] = tag(field, FIXED64)
  if (typeof v === "string" && isPlainDecimal(v)) {
    const n = v.length
    const head = n > 15 ? n - 15 : 0
    // The first up to 15 digits are exact as a number; the up to 4 others are multiplied in with 32-bit words.
    let first = 0
    for (let i = 0; i < n - head; i++) first = first * 10 + (v.charCodeAt(i) - 48)
    let rest = 0
    let scale = 1
    for (let i = n - head; i < n; i++) {
      rest = rest * 10 + (v.charCodeAt(i) - 48)
      scale *= 10
    }
    const firstHi = Math.floor(first / 0x100000000)
    const low = (first - firstHi * 0x100000000) * scale + rest
    const carry = Math.floor(low / 0x100000000)
    view.setUint32(pos, low - carry * 0x100000000, true)
    view.setUint32(pos + 4, (firstHi * scale + carry) >>> 0, true)
  } else {
    view.setBigUint64(pos, BigInt(v as string | number), true)
  }
  pos += 8
}

/** A fixed32 as `DataView.setUint32` writes it (modulo 2^32). */
export const writeFixed32Field = (field: number, v: number): void => {
  buf[pos++] = tag(field, FIXED32)
  view.setUint32(pos, v, true)
  pos += 4
}

const writeAnyValue = (value: AnyValue): void => {
  if (value.stringValue !== undefined && value.stringValue !== null) {
    return writeStringField(tag(1, LEN), value.stringValue)
  }
  if (value.boolValue !== undefined && value.boolValue !== null) {
    buf[pos++] = tag(2, VARINT)
    buf[pos++] = value.boolValue ? 1 : 0
    return
  }
  if (value.intValue !== undefined && value.intValue !== null) return writeIntField(3, value.intValue)
  if (value.doubleValue !== undefined && value.doubleValue !== null) {
    buf[pos++] = tag(4, FIXED64)
    view.setFloat64(pos, value.doubleValue, true)
    pos += 8
    return
  }
  if (value.arrayValue !== undefined) {
    writeHeader(tag(5, LEN))
    const values = value.arrayValue.values
    for (let i = 0; i < values.length; i++) writeAnyValueMessage(tag(1, LEN), values[i]!)
    return
  }
  if (value.kvlistValue !== undefined) {
    writeHeader(tag(6, LEN))
    return writeKeyValues(tag(1, LEN), value.kvlistValue.values)
  }
  if (value.bytesValue !== undefined) {
    const bytes = value.bytesValue
    buf[pos++] = tag(7, LEN)
    writeVarint(bytes.length)
    buf.set(bytes, pos)
    pos += bytes.length
  }
}

export const writeAnyValueMessage = (t: number, value: AnyValue): void => {
  writeHeader(t)
  writeAnyValue(value)
}

export const writeKeyValues = (t: number, values: ReadonlyArray<KeyValue>): void => {
  for (let i = 0; i < values.length; i++) {
    const kv = values[i]!
    writeHeader(t)
    writeStringField(tag(1, LEN), kv.key)
    writeAnyValueMessage(tag(2, LEN), kv.value)
  }
}

/** A `Resource` as field 1 (of `ResourceSpans`, `ResourceLogs`). */
export const writeResourceMessage = (resource: Resource): void => {
  writeHeader(tag(1, LEN))
  writeKeyValues(tag(1, LEN), resource.attributes)
  if (resource.droppedAttributesCount > 0) writeIntField(2, resource.droppedAttributesCount)
}

/** An `InstrumentationScope` as field 1 (of `ScopeSpans`, `ScopeLogs`). */
export const writeScopeMessage = (scope: Scope): void => {
  writeHeader(tag(1, LEN))
  writeStringField(tag(1, LEN), scope.name)
  writeOptionalString(tag(2, LEN), scope.version)
  if (scope.attributes) writeKeyValues(tag(3, LEN), scope.attributes)
  if (scope.droppedAttributesCount) writeIntField(4, scope.droppedAttributesCount)
}

/** Repeated embedded messages: `size` sizes one's body. */
export const repeatedSize = <A>(all: ReadonlyArray<A>, size: (a: A) => number): number => {
  let total = 0
  for (let i = 0; i < all.length; i++) {
    const index = reserve()
    total += closeMessage(index, size(all[i]!))
  }
  return total
}

/** Repeated embedded messages with tag `t`: `write` writes one's body. */
export const writeRepeated = <A>(t: number, all: ReadonlyArray<A>, write: (a: A) => void): void => {
  for (let i = 0; i < all.length; i++) {
    writeHeader(t)
    write(all[i]!)
  }
}

/**
 * A top-level message of one repeated field numbered 1 (`TracesData`, `LogsData`) in a new `Uint8Array`:
 * `size` sizes an element's body (pass 1), `write` writes it (pass 2).
 */
export const encodeRepeated = <A>(
  all: ReadonlyArray<A>,
  size: (a: A) => number,
  write: (a: A) => void
): Uint8Array => {
  count = 0
  const out = new Uint8Array(repeatedSize(all, size))
  buf = out
  view = new DataView(out.buffer)
  pos = 0
  cursor = 0
  try {
    writeRepeated(tag(1, LEN), all, write)
  } finally {
    buf = new Uint8Array(0)
    view = new DataView(buf.buffer)
    // A large batch's lengths are not kept alive.
    if (lengths.length > 65536) lengths = []
  }
  return out
}
