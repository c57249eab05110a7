/**
 * OTLP/protobuf encoding of traces (`opentelemetry.proto.trace.v1.TracesData`), written for `NodeOtlp`'s
 * `http/protobuf` exports in place of `effect`'s own encoder (`effect/observability/OtlpSerialization`'s
 * `layerProtobuf`); metrics and logs keep `effect`'s (they are few).
 *
 * **Why our own**
 *
 * `effect`'s encoder builds every field as its own `Uint8Array` (a tag, a varint computed with `BigInt`
 * arithmetic into a JS array, a fresh `TextEncoder` per string) and concatenates them message by message, so a
 * span's bytes are copied once per nesting level. A CPU profile of `npm run bench -- launch` with protobuf
 * export on had `Bytes.concat` at 17%, `encodeVarint` at 16% and `TextEncoder` at 12%, and the launch cycle
 * cost 5.4 times as much as with tracing off (2.3 times with `http/json`).
 *
 * This one makes two passes over the data: the first computes each message's length (and each string's UTF-8
 * length), in the order the second meets them; the second writes every field once into one `Uint8Array` of
 * the exact size. Integers are plain numbers; `BigInt` is left for what can exceed 2^53 (an `intValue` given
 * as a string or an unsafe number, a time that is not a plain decimal string). Identifiers are written from
 * hex straight into the buffer; ASCII strings byte by byte, others with `TextEncoder.encodeInto`.
 *
 * **Contract**
 *
 * For every `TraceData` the bytes are those of `effect`'s `layerProtobuf` `traces` body: the same fields in the
 * same order, with the same omissions (an empty optional string, a zero dropped count) and the same treatment
 * of odd input (malformed hex as `parseInt` reads it, negative integers as 10-byte varints, an integer above
 * 2^64 as the longer varint `effect` writes). `test/node/otlpTraces.test.ts` checks it against `effect`'s.
 * Fields `effect` writes that `TraceData`'s types do not have (a span's `traceState` and `flags`, a scope's
 * attributes) are not written.
 *
 * @internal
 */
import type { AnyValue, KeyValue, Resource } from "effect/observability/OtlpResource"
import type { ResourceSpan, ScopeSpan, TraceData } from "effect/observability/OtlpTracer"

type Span = ScopeSpan["spans"][number]
type Event = Span["events"][number]
type Link = Span["links"][number]
type Status = Span["status"]

// Tags (field number << 3 | wire type): every field here is numbered below 16, so each tag is one byte.
const VARINT = 0
const FIXED64 = 1
const LEN = 2
const tag = (field: number, wireType: number): number => (field << 3) | wireType

// --- Pass 1 state: lengths of messages and strings, in the order pass 2 meets them ----------------------------

let lengths: Array<number> = []
let count = 0

const reserve = (): number => {
  const index = count++
  lengths[index] = 0
  return index
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
const lenFieldSize = (length: number): number => 1 + varintSize(length) + length

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
const stringFieldSize = (s: string): number => {
  const length = utf8Length(s)
  lengths[count++] = length
  return lenFieldSize(length)
}

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

// --- Pass 1: sizes of messages ---------------------------------------------------------------------------------

const anyValueSize = (value: AnyValue): number => {
  if (value.stringValue !== undefined && value.stringValue !== null) return stringFieldSize(value.stringValue)
  if (value.boolValue !== undefined && value.boolValue !== null) return 2
  if (value.intValue !== undefined && value.intValue !== null) return 1 + intVarintSize(value.intValue)
  if (value.doubleValue !== undefined && value.doubleValue !== null) return 9
  if (value.arrayValue !== undefined) {
    const index = reserve()
    let size = 0
    const values = value.arrayValue.values
    for (let i = 0; i < values.length; i++) size += anyValueMessageSize(values[i]!)
    lengths[index] = size
    return lenFieldSize(size)
  }
  if (value.kvlistValue !== undefined) {
    const index = reserve()
    const size = keyValuesSize(value.kvlistValue.values)
    lengths[index] = size
    return lenFieldSize(size)
  }
  if (value.bytesValue !== undefined) return lenFieldSize(value.bytesValue.length)
  return 0
}

/** An AnyValue as an embedded message (a KeyValue's value, an ArrayValue's element). */
const anyValueMessageSize = (value: AnyValue): number => {
  const index = reserve()
  const size = anyValueSize(value)
  lengths[index] = size
  return lenFieldSize(size)
}

/** Repeated KeyValue messages. */
const keyValuesSize = (values: ReadonlyArray<KeyValue>): number => {
  let total = 0
  for (let i = 0; i < values.length; i++) {
    const kv = values[i]!
    const index = reserve()
    const size = stringFieldSize(kv.key) + anyValueMessageSize(kv.value)
    lengths[index] = size
    total += lenFieldSize(size)
  }
  return total
}

const hexFieldSize = (hex: string): number => lenFieldSize(Math.floor(hex.length / 2))

const fixed64Size = 9

const optionalStringSize = (s: string | undefined): number => s !== undefined && s !== "" ? stringFieldSize(s) : 0

const resourceSize = (resource: Resource): number =>
  keyValuesSize(resource.attributes) +
  (resource.droppedAttributesCount > 0 ? 1 + intVarintSize(resource.droppedAttributesCount) : 0)

const eventSize = (event: Event): number =>
  fixed64Size +
  stringFieldSize(event.name) +
  keyValuesSize(event.attributes) +
  (event.droppedAttributesCount > 0 ? 1 + intVarintSize(event.droppedAttributesCount) : 0)

const linkSize = (link: Link): number =>
  hexFieldSize(link.traceId) +
  hexFieldSize(link.spanId) +
  keyValuesSize(link.attributes) +
  (link.droppedAttributesCount > 0 ? 1 + intVarintSize(link.droppedAttributesCount) : 0)

const statusSize = (status: Status): number => optionalStringSize(status.message) + 1 + intVarintSize(status.code)

const spanSize = (span: Span): number => {
  let size = hexFieldSize(span.traceId) + hexFieldSize(span.spanId)
  if (span.parentSpanId !== undefined) size += hexFieldSize(span.parentSpanId)
  size += stringFieldSize(span.name) + 1 + intVarintSize(span.kind) + 2 * fixed64Size
  size += keyValuesSize(span.attributes)
  if (span.droppedAttributesCount > 0) size += 1 + intVarintSize(span.droppedAttributesCount)
  const events = span.events
  for (let i = 0; i < events.length; i++) {
    const index = reserve()
    const eventLength = eventSize(events[i]!)
    lengths[index] = eventLength
    size += lenFieldSize(eventLength)
  }
  if (span.droppedEventsCount > 0) size += 1 + intVarintSize(span.droppedEventsCount)
  const links = span.links
  for (let i = 0; i < links.length; i++) {
    const index = reserve()
    const linkLength = linkSize(links[i]!)
    lengths[index] = linkLength
    size += lenFieldSize(linkLength)
  }
  if (span.droppedLinksCount > 0) size += 1 + intVarintSize(span.droppedLinksCount)
  const index = reserve()
  const statusLength = statusSize(span.status)
  lengths[index] = statusLength
  return size + lenFieldSize(statusLength)
}

const scopeSpansSize = (scopeSpans: ScopeSpan): number => {
  const scopeIndex = reserve()
  const scopeLength = stringFieldSize(scopeSpans.scope.name) + optionalStringSize(scopeSpans.scope.version)
  lengths[scopeIndex] = scopeLength
  let size = lenFieldSize(scopeLength)
  const spans = scopeSpans.spans
  for (let i = 0; i < spans.length; i++) {
    const index = reserve()
    const spanLength = spanSize(spans[i]!)
    lengths[index] = spanLength
    size += lenFieldSize(spanLength)
  }
  return size + optionalStringSize(scopeSpans.schemaUrl)
}

const resourceSpansSize = (resourceSpans: ResourceSpan): number => {
  const resourceIndex = reserve()
  const resourceLength = resourceSize(resourceSpans.resource)
  lengths[resourceIndex] = resourceLength
  let size = lenFieldSize(resourceLength)
  const all = resourceSpans.scopeSpans
  for (let i = 0; i < all.length; i++) {
    const index = reserve()
    const scopeSpansLength = scopeSpansSize(all[i]!)
    lengths[index] = scopeSpansLength
    size += lenFieldSize(scopeSpansLength)
  }
  return size + optionalStringSize(resourceSpans.schemaUrl)
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
const writeHeader = (t: number): number => {
  buf[pos++] = t
  const length = lengths[cursor++]!
  writeVarint(length)
  return length
}

const writeStringField = (t: number, s: string): void => {
  const length = writeHeader(t)
  const n = s.length
  if (length === n && n < 64) {
    for (let i = 0; i < n; i++) buf[pos + i] = s.charCodeAt(i)
  } else {
    textEncoder.encodeInto(s, buf.subarray(pos, pos + length))
  }
  pos += length
}

const writeOptionalString = (t: number, s: string | undefined): void => {
  if (s !== undefined && s !== "") writeStringField(t, s)
}

// Hex digit values, -1 for any other character code below 128.
const hexValues = new Int8Array(128).fill(-1)
for (let i = 0; i < 10; i++) hexValues[48 + i] = i
for (let i = 0; i < 6; i++) {
  hexValues[65 + i] = 10 + i
  hexValues[97 + i] = 10 + i
}

/** An identifier given in hex, as bytes: a pair that is not two hex digits is read as `parseInt` reads it. */
const writeHexField = (t: number, hex: string): void => {
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

const writeIntField = (field: number, v: number | string): void => {
  buf[pos++] = tag(field, VARINT)
  writeIntVarint(v)
}

/** A fixed64 from a decimal string (a time in nanoseconds), as `BigInt(s)` modulo 2^64. */
const writeFixed64Field = (field: number, s: string): void => {
  buf[pos++] = tag(field, FIXED64)
  if (isPlainDecimal(s)) {
    const n = s.length
    const head = n > 15 ? n - 15 : 0
    // The first up to 15 digits are exact as a number; the up to 4 others are multiplied in with 32-bit words.
    let first = 0
    for (let i = 0; i < n - head; i++) first = first * 10 + (s.charCodeAt(i) - 48)
    let rest = 0
    let scale = 1
    for (let i = n - head; i < n; i++) {
      rest = rest * 10 + (s.charCodeAt(i) - 48)
      scale *= 10
    }
    const firstHi = Math.floor(first / 0x100000000)
    const low = (first - firstHi * 0x100000000) * scale + rest
    const carry = Math.floor(low / 0x100000000)
    view.setUint32(pos, low - carry * 0x100000000, true)
    view.setUint32(pos + 4, (firstHi * scale + carry) >>> 0, true)
  } else {
    view.setBigUint64(pos, BigInt(s), true)
  }
  pos += 8
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

const writeAnyValueMessage = (t: number, value: AnyValue): void => {
  writeHeader(t)
  writeAnyValue(value)
}

const writeKeyValues = (t: number, values: ReadonlyArray<KeyValue>): void => {
  for (let i = 0; i < values.length; i++) {
    const kv = values[i]!
    writeHeader(t)
    writeStringField(tag(1, LEN), kv.key)
    writeAnyValueMessage(tag(2, LEN), kv.value)
  }
}

const writeEvent = (event: Event): void => {
  writeFixed64Field(1, event.timeUnixNano)
  writeStringField(tag(2, LEN), event.name)
  writeKeyValues(tag(3, LEN), event.attributes)
  if (event.droppedAttributesCount > 0) writeIntField(4, event.droppedAttributesCount)
}

const writeLink = (link: Link): void => {
  writeHexField(tag(1, LEN), link.traceId)
  writeHexField(tag(2, LEN), link.spanId)
  writeKeyValues(tag(4, LEN), link.attributes)
  if (link.droppedAttributesCount > 0) writeIntField(5, link.droppedAttributesCount)
}

const writeSpan = (span: Span): void => {
  writeHexField(tag(1, LEN), span.traceId)
  writeHexField(tag(2, LEN), span.spanId)
  if (span.parentSpanId !== undefined) writeHexField(tag(4, LEN), span.parentSpanId)
  writeStringField(tag(5, LEN), span.name)
  writeIntField(6, span.kind)
  writeFixed64Field(7, span.startTimeUnixNano)
  writeFixed64Field(8, span.endTimeUnixNano)
  writeKeyValues(tag(9, LEN), span.attributes)
  if (span.droppedAttributesCount > 0) writeIntField(10, span.droppedAttributesCount)
  const events = span.events
  for (let i = 0; i < events.length; i++) {
    writeHeader(tag(11, LEN))
    writeEvent(events[i]!)
  }
  if (span.droppedEventsCount > 0) writeIntField(12, span.droppedEventsCount)
  const links = span.links
  for (let i = 0; i < links.length; i++) {
    writeHeader(tag(13, LEN))
    writeLink(links[i]!)
  }
  if (span.droppedLinksCount > 0) writeIntField(14, span.droppedLinksCount)
  writeHeader(tag(15, LEN))
  writeOptionalString(tag(2, LEN), span.status.message)
  writeIntField(3, span.status.code)
}

const writeScopeSpans = (scopeSpans: ScopeSpan): void => {
  writeHeader(tag(1, LEN))
  writeStringField(tag(1, LEN), scopeSpans.scope.name)
  writeOptionalString(tag(2, LEN), scopeSpans.scope.version)
  const spans = scopeSpans.spans
  for (let i = 0; i < spans.length; i++) {
    writeHeader(tag(2, LEN))
    writeSpan(spans[i]!)
  }
  writeOptionalString(tag(3, LEN), scopeSpans.schemaUrl)
}

const writeResourceSpans = (resourceSpans: ResourceSpan): void => {
  writeHeader(tag(1, LEN))
  writeKeyValues(tag(1, LEN), resourceSpans.resource.attributes)
  if (resourceSpans.resource.droppedAttributesCount > 0) {
    writeIntField(2, resourceSpans.resource.droppedAttributesCount)
  }
  const all = resourceSpans.scopeSpans
  for (let i = 0; i < all.length; i++) {
    writeHeader(tag(2, LEN))
    writeScopeSpans(all[i]!)
  }
  writeOptionalString(tag(3, LEN), resourceSpans.schemaUrl)
}

/**
 * `data` as an OTLP `TracesData` (the body of an `ExportTraceServiceRequest`), in a new `Uint8Array`.
 *
 * @internal
 */
export const encodeTraces = (data: TraceData): Uint8Array => {
  count = 0
  let total = 0
  const all = data.resourceSpans
  for (let i = 0; i < all.length; i++) {
    const index = reserve()
    const length = resourceSpansSize(all[i]!)
    lengths[index] = length
    total += lenFieldSize(length)
  }
  const out = new Uint8Array(total)
  buf = out
  view = new DataView(out.buffer)
  pos = 0
  cursor = 0
  try {
    for (let i = 0; i < all.length; i++) {
      writeHeader(tag(1, LEN))
      writeResourceSpans(all[i]!)
    }
  } finally {
    buf = new Uint8Array(0)
    view = new DataView(buf.buffer)
    // A large batch's lengths are not kept alive.
    if (lengths.length > 65536) lengths = []
  }
  return out
}
