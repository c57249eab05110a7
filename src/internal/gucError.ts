/**
 * The GUC errors: `GucError` and its reasons, with their type ids and guards. `Guc.ts` binds them to its
 * public names (with their documentation there); the registry builds them without importing `Guc.ts` at run
 * time.
 *
 * The type ids are getters on the prototype, not fields, so an error's own properties (what a JSON log line
 * shows) are only its schema's fields.
 *
 * @internal
 */
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"

/** The type id of `GucError`. */
export const TypeId = "~effect-bgworker/GucError" as const

/** The type id shared by every reason of a `GucError`. */
export const ReasonTypeId = "~effect-bgworker/GucError/Reason" as const

const hint = Schema.optionalKey(Schema.String)
const file = Schema.optionalKey(Schema.String)
const line = Schema.optionalKey(Schema.Number)
/** What a value from a file (or another source) was refused for: the parameter, the words, where. */
const located = { parameter: Schema.String, message: Schema.String, hint, file, line }

/** `Guc.InvalidValue`. */
export class InvalidValue extends Schema.TaggedError<InvalidValue>()("InvalidValue", located) {
  get [ReasonTypeId](): typeof ReasonTypeId {
    return ReasonTypeId
  }
}

/** `Guc.UnknownParameter`. */
export class UnknownParameter extends Schema.TaggedError<UnknownParameter>()("UnknownParameter", located) {
  get [ReasonTypeId](): typeof ReasonTypeId {
    return ReasonTypeId
  }
}

/** `Guc.CannotChange`. */
export class CannotChange extends Schema.TaggedError<CannotChange>()("CannotChange", located) {
  get [ReasonTypeId](): typeof ReasonTypeId {
    return ReasonTypeId
  }
}

/** `Guc.ConfigFileError`. */
export class ConfigFileError extends Schema.TaggedError<ConfigFileError>()("ConfigFileError", {
  message: Schema.String,
  hint,
  file,
  line
}) {
  get [ReasonTypeId](): typeof ReasonTypeId {
    return ReasonTypeId
  }
}

/** `Guc.ReservedPrefix`. */
export class ReservedPrefix extends Schema.TaggedError<ReservedPrefix>()("ReservedPrefix", located) {
  get [ReasonTypeId](): typeof ReasonTypeId {
    return ReasonTypeId
  }
}

/** `Guc.InvalidDefinition`. */
export class InvalidDefinition extends Schema.TaggedError<InvalidDefinition>()("InvalidDefinition", {
  parameter: Schema.String,
  message: Schema.String,
  hint
}) {
  get [ReasonTypeId](): typeof ReasonTypeId {
    return ReasonTypeId
  }
}

/** `Guc.GucErrorReason`. */
export const GucErrorReason = Schema.Union([
  InvalidValue,
  UnknownParameter,
  CannotChange,
  ConfigFileError,
  ReservedPrefix,
  InvalidDefinition
])

/** `Guc.GucErrorReason`. */
export type GucErrorReason = typeof GucErrorReason.Type

/** `Guc.GucError`. */
export class GucError extends Schema.TaggedError<GucError>()("GucError", { reason: GucErrorReason }) {
  get [TypeId](): typeof TypeId {
    return TypeId
  }
  override get message(): string {
    return this.reason.message
  }
  get hint(): string | undefined {
    return this.reason.hint
  }
}

/** `Guc.isGucError`. */
export const isGucError = (u: unknown): u is GucError => Predicate.hasProperty(u, TypeId)

/** `Guc.isGucErrorReason`. */
export const isGucErrorReason = (u: unknown): u is GucErrorReason => Predicate.hasProperty(u, ReasonTypeId)

/** Wraps a reason. */
export const fail = (reason: GucErrorReason): GucError => new GucError({ reason })
