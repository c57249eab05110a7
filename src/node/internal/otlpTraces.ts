/**
 * OTLP/protobuf encoding of traces (`opentelemetry.proto.trace.v1.TracesData`), written for `NodeOtlp`'s
 * `http/protobuf` exports in place of `effect`'s own encoder (`effect/observability/OtlpSerialization`'s
 * `layerProtobuf`). The machinery, and why it is ours, is in `./otlpProtobuf.ts`, shared with `./otlpLogs.ts`.
 *
 * **Contract**
 *
 * For every `TraceData` the bytes are those of `effect`'s `layerProtobuf` `traces` body: the same fields in the
 * same order, with the same omissions (an empty optional string, a zero dropped count) and the same treatment
 * of odd input (malformed hex as `parseInt` reads it, negative integers as 10-byte varints, an integer above
 * 2^64 as the longer varint `effect` writes). `test/node/otlpTraces.test.ts` checks it against `effect`'s.
 * Fields `effect` writes that `TraceData`'s types do not have (a span's `traceState` and `flags`) are not
 * written.
 *
 * @internal
 */
import type { ResourceSpan, ScopeSpan, TraceData } from "effect/observability/OtlpTracer"
import {
  closeMessage,
  encodeRepeated,
  fixed64Size,
  hexFieldSize,
  intFieldSize,
  keyValuesSize,
  LEN,
  optionalStringSize,
  repeatedSize,
  reserve,
  resourceMessageSize,
  scopeMessageSize,
  stringFieldSize,
  tag,
  writeFixed64Field,
  writeHeader,
  writeHexField,
  writeIntField,
  writeKeyValues,
  writeOptionalString,
  writeRepeated,
  writeResourceMessage,
  writeScopeMessage,
  writeStringField
} from "./otlpProtobuf.ts"

type Span = ScopeSpan["spans"][number]
type Event = Span["events"][number]
type Link = Span["links"][number]
type Status = Span["status"]

// --- Pass 1: sizes of messages ---------------------------------------------------------------------------------

const eventSize = (event: Event): number =>
  fixed64Size +
  stringFieldSize(event.name) +
  keyValuesSize(event.attributes) +
  (event.droppedAttributesCount > 0 ? intFieldSize(event.droppedAttributesCount) : 0)

const linkSize = (link: Link): number =>
  hexFieldSize(link.traceId) +
  hexFieldSize(link.spanId) +
  keyValuesSize(link.attributes) +
  (link.droppedAttributesCount > 0 ? intFieldSize(link.droppedAttributesCount) : 0)

const statusSize = (status: Status): number => optionalStringSize(status.message) + intFieldSize(status.code)

const spanSize = (span: Span): number => {
  let size = hexFieldSize(span.traceId) + hexFieldSize(span.spanId)
  if (span.parentSpanId !== undefined) size += hexFieldSize(span.parentSpanId)
  size += stringFieldSize(span.name) + intFieldSize(span.kind) + 2 * fixed64Size
  size += keyValuesSize(span.attributes)
  if (span.droppedAttributesCount > 0) size += intFieldSize(span.droppedAttributesCount)
  // The loops over a span's events and links and a scope's spans are written out: through `repeatedSize` and
  // `writeRepeated` (one call site for every kind of message) traces cost a tenth more.
  const events = span.events
  for (let i = 0; i < events.length; i++) {
    const index = reserve()
    size += closeMessage(index, eventSize(events[i]!))
  }
  if (span.droppedEventsCount > 0) size += intFieldSize(span.droppedEventsCount)
  const links = span.links
  for (let i = 0; i < links.length; i++) {
    const index = reserve()
    size += closeMessage(index, linkSize(links[i]!))
  }
  if (span.droppedLinksCount > 0) size += intFieldSize(span.droppedLinksCount)
  const index = reserve()
  return size + closeMessage(index, statusSize(span.status))
}

const scopeSpansSize = (scopeSpans: ScopeSpan): number => {
  let size = scopeMessageSize(scopeSpans.scope)
  const spans = scopeSpans.spans
  for (let i = 0; i < spans.length; i++) {
    const index = reserve()
    size += closeMessage(index, spanSize(spans[i]!))
  }
  return size + optionalStringSize(scopeSpans.schemaUrl)
}

const resourceSpansSize = (resourceSpans: ResourceSpan): number =>
  resourceMessageSize(resourceSpans.resource) +
  repeatedSize(resourceSpans.scopeSpans, scopeSpansSize) +
  optionalStringSize(resourceSpans.schemaUrl)

// --- Pass 2: writing -------------------------------------------------------------------------------------------

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
  writeScopeMessage(scopeSpans.scope)
  const spans = scopeSpans.spans
  for (let i = 0; i < spans.length; i++) {
    writeHeader(tag(2, LEN))
    writeSpan(spans[i]!)
  }
  writeOptionalString(tag(3, LEN), scopeSpans.schemaUrl)
}

const writeResourceSpans = (resourceSpans: ResourceSpan): void => {
  writeResourceMessage(resourceSpans.resource)
  writeRepeated(tag(2, LEN), resourceSpans.scopeSpans, writeScopeSpans)
  writeOptionalString(tag(3, LEN), resourceSpans.schemaUrl)
}

/**
 * `data` as an OTLP `TracesData` (the body of an `ExportTraceServiceRequest`), in a new `Uint8Array`.
 *
 * @internal
 */
export const encodeTraces = (data: TraceData): Uint8Array =>
  encodeRepeated(data.resourceSpans, resourceSpansSize, writeResourceSpans)
