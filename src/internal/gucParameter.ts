/**
 * A parameter definition as a value: its type id, its constructor, a check hook's refusal, and the spec that
 * the value parser reads. `Guc.ts` binds these to its public names, and the registry uses them without
 * importing `Guc.ts` at run time.
 *
 * @internal
 */
import * as Predicate from "effect/Predicate"
import type * as Guc from "../Guc.ts"
import type * as value from "./gucValue.ts"

/** The type id of a parameter definition. */
export const TypeId = "~effect-bgworker/Guc/Parameter" as const

/** The type id of a check hook's refusal. */
export const CheckFailureTypeId = "~effect-bgworker/Guc/CheckFailure" as const

const variance = { _A: <A>(a: A): A => a }

/** The options every constructor takes (`Guc.int`, `Guc.bool`, ...). */
export interface CommonOptions<A> {
  readonly context: Guc.GucContext
  /** `short_desc`. */
  readonly description: string
  /** `extra_desc`. */
  readonly longDescription?: string | undefined
  /** Defaults to "Customized Options" for `prefix.name` parameters. */
  readonly category?: string | undefined
  readonly noShowAll?: boolean | undefined
  readonly notInSample?: boolean | undefined
  readonly check?: ((value: A, source: Guc.Source) => A | Guc.CheckFailure) | undefined
  readonly assign?: ((value: A) => void) | undefined
  readonly show?: ((value: A) => string) | undefined
}

/** Builds a parameter definition; the public constructors fill in `vartype` and the type's extras. */
export const make = <A>(
  name: string,
  vartype: Guc.VarType,
  options: CommonOptions<A> & { readonly default: A },
  extra: Partial<Pick<Guc.Parameter<A>, "unit" | "min" | "max" | "enumValues">>
): Guc.Parameter<A> => ({
  [TypeId]: variance,
  name,
  vartype,
  default: options.default,
  context: options.context,
  category: options.category ?? (name.includes(".") ? "Customized Options" : "Background Workers"),
  shortDesc: options.description,
  longDesc: options.longDescription,
  unit: extra.unit,
  min: extra.min,
  max: extra.max,
  enumValues: extra.enumValues,
  noShowAll: options.noShowAll === true,
  notInSample: options.notInSample === true,
  check: options.check,
  assign: options.assign,
  show: options.show
})

/** Whether `u` is a parameter definition made by one of `Guc`'s constructors. */
export const isParameter = (u: unknown): u is Guc.Any => Predicate.hasProperty(u, TypeId)

/** A check hook's refusal (`GUC_check_errmsg` and `GUC_check_errhint`). */
export const reject = (message: string, hint?: string): Guc.CheckFailure => ({
  [CheckFailureTypeId]: CheckFailureTypeId,
  message,
  hint
})

/** Whether a check hook refused its value (returned {@link reject}'s result) rather than returning a value. */
export const isCheckFailure = (u: unknown): u is Guc.CheckFailure => Predicate.hasProperty(u, CheckFailureTypeId)

/** What the value parser needs to know about a parameter. */
export const specOf = (p: Guc.Any): value.Spec => {
  switch (p.vartype) {
    case "integer":
      return { kind: "int", name: p.name, min: p.min!, max: p.max!, unit: p.unit }
    case "real":
      return { kind: "real", name: p.name, min: p.min!, max: p.max!, unit: p.unit }
    case "bool":
      return { kind: "bool", name: p.name }
    case "string":
      return { kind: "string", name: p.name }
    case "enum":
      return { kind: "enum", name: p.name, values: p.enumValues! }
  }
}
