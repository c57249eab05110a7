/**
 * OTLP/protobuf encoding of logs (`opentelemetry.proto.logs.v1.LogsData`), written for `NodeOtlp`'s
 * `http/protobuf` exports in place of `effect`'s own encoder (`effect/observability/OtlpSerialization`'s
 * `layerProtobuf`): the supervisor logs a line per worker exit, so with logs exported every exit's record is
 * encoded. The machinery, and why it is ours, is in `./otlpProtobuf.ts`, shared with `./otlpTraces.ts`.
 *
 * **Contract**
 *
 * For every `LogsData` the bytes are those of `effect`'s `layerProtobuf` `logs` body: a record's fields in
 * `effect`'s order (time, severity number and text, body, attributes, dropped count, flags, trace and span id,
 * observed time, the last out of field order as `effect` writes it), with the same omissions (an absent
 * severity, body, flags or observed time, an empty severity text or identifier, a zero dropped count) and the
 * same treatment of odd input (times as `BigInt` reads them modulo 2^64, flags modulo 2^32, malformed hex as
 * `parseInt` reads it, a scope's `schemaUrl` of `null` as the string `"null"`). A scope's attributes and
 * dropped count are written when given. Input `effect` throws on (a missing resource, scope or record list, a
 * time as `LongBits` or a fraction) throws here too. `test/node/otlpLogs.test.ts` checks it against `effect`'s.
 *
 * @internal
 */
import type { LogsData } from "effect/observability/OtlpLogger"
import {
  anyValueMessageSize,
  closeMessage,
  encodeRepeated,
  fixed32Size,
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
  tag,
  writeAnyValueMessage,
  writeFixed32Field,
  writeFixed64Field,
  writeHeader,
  writeIdField,
  writeIntField,
  writeKeyValues,
  writeOptionalString,
  writeRepeated,
  writeResourceMessage,
  writeScopeMessage
} from "./otlpProtobuf.ts"

type ResourceLogs = LogsData["resourceLogs"][number]
type ScopeLogs = ResourceLogs["scopeLogs"][number]
type LogRecord = NonNullable<ScopeLogs["logRecords"]>[number]

/** An identifier `effect` writes: present and not the empty string (an empty `Uint8Array` is written). */
const hasId = (id: string | Uint8Array | undefined): id is string | Uint8Array => id !== undefined && id !== ""

/** `effect` writes a `schemaUrl` of `null` through `TextEncoder`, which reads it as `"null"`. */
const schemaUrlOf = (s: string | null | undefined): string | undefined => s === null ? "null" : s

// --- Pass 1: sizes of messages ---------------------------------------------------------------------------------

const logRecordSize = (record: LogRecord): number => {
  let size = fixed64Size
  if (record.severityNumber !== undefined) size += intFieldSize(record.severityNumber)
  size += optionalStringSize(record.severityText)
  if (record.body !== undefined) size += anyValueMessageSize(record.body)
  size += keyValuesSize(record.attributes)
  if (record.droppedAttributesCount !== undefined && record.droppedAttributesCount > 0) {
    size += intFieldSize(record.droppedAttributesCount)
  }
  if (record.flags !== undefined) size += fixed32Size
  if (hasId(record.traceId)) size += hexFieldSize(record.traceId)
  if (hasId(record.spanId)) size += hexFieldSize(record.spanId)
  if (record.observedTimeUnixNano !== undefined) size += fixed64Size
  return size
}

// The loops over a scope's records are written out, as in `./otlpTraces.ts`: through `repeatedSize` and
// `writeRepeated` (one call site for every kind of message) the hot loop would cost more.
const scopeLogsSize = (scopeLogs: ScopeLogs): number => {
  let size = scopeMessageSize(scopeLogs.scope!)
  const records = scopeLogs.logRecords!
  for (let i = 0; i < records.length; i++) {
    const index = reserve()
    size += closeMessage(index, logRecordSize(records[i]!))
  }
  return size + optionalStringSize(schemaUrlOf(scopeLogs.schemaUrl))
}

const resourceLogsSize = (resourceLogs: ResourceLogs): number =>
  resourceMessageSize(resourceLogs.resource!) +
  repeatedSize(resourceLogs.scopeLogs, scopeLogsSize) +
  optionalStringSize(resourceLogs.schemaUrl)

// --- Pass 2: writing -------------------------------------------------------------------------------------------

const writeLogRecord = (record: LogRecord): void => {
  writeFixed64Field(1, record.timeUnixNano)
  if (record.severityNumber !== undefined) writeIntField(2, record.severityNumber)
  writeOptionalString(tag(3, LEN), record.severityText)
  if (record.body !== undefined) writeAnyValueMessage(tag(5, LEN), record.body)
  writeKeyValues(tag(6, LEN), record.attributes)
  if (record.droppedAttributesCount !== undefined && record.droppedAttributesCount > 0) {
    writeIntField(7, record.droppedAttributesCount)
  }
  if (record.flags !== undefined) writeFixed32Field(8, record.flags)
  if (hasId(record.traceId)) writeIdField(tag(9, LEN), record.traceId)
  if (hasId(record.spanId)) writeIdField(tag(10, LEN), record.spanId)
  if (record.observedTimeUnixNano !== undefined) writeFixed64Field(11, record.observedTimeUnixNano)
}

const writeScopeLogs = (scopeLogs: ScopeLogs): void => {
  writeScopeMessage(scopeLogs.scope!)
  const records = scopeLogs.logRecords!
  for (let i = 0; i < records.length; i++) {
    writeHeader(tag(2, LEN))
    writeLogRecord(records[i]!)
  }
  writeOptionalString(tag(3, LEN), schemaUrlOf(scopeLogs.schemaUrl))
}

const writeResourceLogs = (resourceLogs: ResourceLogs): void => {
  writeResourceMessage(resourceLogs.resource!)
  writeRepeated(tag(2, LEN), resourceLogs.scopeLogs, writeScopeLogs)
  writeOptionalString(tag(3, LEN), resourceLogs.schemaUrl)
}

/**
 * `data` as an OTLP `LogsData` (the body of an `ExportLogsServiceRequest`), in a new `Uint8Array`.
 *
 * @internal
 */
export const encodeLogs = (data: LogsData): Uint8Array =>
  encodeRepeated(data.resourceLogs, resourceLogsSize, writeResourceLogs)
