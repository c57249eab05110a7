/**
 * GUC values as text: how a setting written in a configuration file, an environment variable or `SET` becomes a
 * typed value, and how `SHOW` prints it back.
 *
 * The rules are PostgreSQL's (src/backend/utils/misc/guc.c: parse_int, parse_real, convert_to_base_unit,
 * convert_int_from_base_unit, convert_real_from_base_unit, get_config_unit_name, config_enum_lookup_by_name,
 * config_enum_get_options, parse_and_validate_value, ShowGUCOption; src/backend/utils/adt/bool.c: parse_bool),
 * with the C library's strtol/strtod/rint/printf("%g") behaviour (glibc, "C" locale) rewritten here, so that the
 * same text is accepted or rejected, converted and rounded the same way, with the same messages and hints.
 *
 * Whitespace, as in PostgreSQL: a number may have whitespace before it (strtol/strtod skip it), between it and its
 * unit, and after both; a Boolean or an enum name is taken exactly as given (" on" is not a Boolean value).
 * A configuration-file reader strips the whitespace around unquoted values before they get here.
 *
 * Deliberate differences, each because PostgreSQL has no counterpart:
 * - Base units: PostgreSQL's are B, kB, MB, 8kB blocks, ms, s and min. Any unit of {@link Unit} can be a base unit
 *   here; its conversion table is built the way guc.c's are (every unit of the family, largest first).
 * - Reals are shown with as many significant digits as it takes to read the same double back (at least the six
 *   of `%g`), and a real whose unit-scaled form would not read back exactly is shown without a unit, in its base
 *   unit (as `pg_settings.setting` shows it), so that parsing what was formatted always gives the value back.
 * - {@link validateValue} checks values that code sets directly, without text.
 *
 * @internal
 */

// --- Model ------------------------------------------------------------------------------------------------------

/** A unit a numeric parameter is measured in (its base unit) or that a value may be written in. */
export type Unit = "us" | "ms" | "s" | "min" | "h" | "d" | "B" | "kB" | "MB" | "GB" | "TB"

/** What parsing needs to know about a parameter. `min`/`max` are in the base unit `unit`. */
export type Spec =
  | {
    readonly kind: "int"
    readonly name: string
    readonly min: number
    readonly max: number
    readonly unit?: Unit | undefined
  }
  | {
    readonly kind: "real"
    readonly name: string
    readonly min: number
    readonly max: number
    readonly unit?: Unit | undefined
  }
  | { readonly kind: "bool"; readonly name: string }
  | { readonly kind: "string"; readonly name: string }
  | {
    readonly kind: "enum"
    readonly name: string
    readonly values: ReadonlyArray<{ readonly name: string; readonly hidden?: boolean | undefined }>
  }

/** A parameter's value: an int or real in the base unit, a boolean, a string, or an enum's canonical name. */
export type Value = number | boolean | string

/** The outcome of parsing or validating: the value, or PostgreSQL's message and optional hint. */
export type Parsed =
  | { readonly ok: true; readonly value: Value }
  | { readonly ok: false; readonly message: string; readonly hint?: string | undefined }

// --- Units ------------------------------------------------------------------------------------------------------

type Family = "time" | "memory"

/** Each unit's size in the smallest unit of its family (microseconds, bytes). */
const unitInfo: Record<Unit, { readonly family: Family; readonly size: number }> = {
  d: { family: "time", size: 86_400_000_000 },
  h: { family: "time", size: 3_600_000_000 },
  min: { family: "time", size: 60_000_000 },
  s: { family: "time", size: 1_000_000 },
  ms: { family: "time", size: 1_000 },
  us: { family: "time", size: 1 },
  TB: { family: "memory", size: 1024 * 1024 * 1024 * 1024 },
  GB: { family: "memory", size: 1024 * 1024 * 1024 },
  MB: { family: "memory", size: 1024 * 1024 },
  kB: { family: "memory", size: 1024 },
  B: { family: "memory", size: 1 }
}

/** Largest first, as guc.c's tables are ordered (convert_xxx_from_base_unit relies on it). */
const familyUnits: Record<Family, ReadonlyArray<Unit>> = {
  time: ["d", "h", "min", "s", "ms", "us"],
  memory: ["TB", "GB", "MB", "kB", "B"]
}

/** guc.c's memory_units_hint and time_units_hint. */
const familyHint: Record<Family, string> = {
  time: "Valid units for this parameter are \"us\", \"ms\", \"s\", \"min\", \"h\", and \"d\".",
  memory: "Valid units for this parameter are \"B\", \"kB\", \"MB\", \"GB\", and \"TB\"."
}

interface Conversion {
  readonly unit: Unit
  /** Factor from `unit` to the base unit. */
  readonly multiplier: number
}

/**
 * The conversion table for one base unit, as guc.c's memory_unit_conversion_table / time_unit_conversion_table
 * hold it: every unit of the family, largest first. Each multiplier is the correctly rounded quotient of two exact
 * sizes, the same double guc.c's constant expressions (`1.0 / 1000`, `1000 * 60`) evaluate to.
 */
const conversionTables = Object.fromEntries(
  (Object.keys(unitInfo) as Array<Unit>).map((base) => {
    const { family, size } = unitInfo[base]
    const table: ReadonlyArray<Conversion> = familyUnits[family].map((unit) => ({
      unit,
      multiplier: unitInfo[unit].size / size
    }))
    return [base, table]
  })
) as Record<Unit, ReadonlyArray<Conversion>>

/** guc.c's MAX_UNIT_LEN: the longest unit name ("min"). */
const MAX_UNIT_LEN = 3

/**
 * The hint for a value with an invalid unit: the units of `unit`'s family, e.g.
 * `Valid units for this parameter are "B", "kB", "MB", "GB", and "TB".`
 */
export const unitsHint = (unit: Unit): string => familyHint[unitInfo[unit].family]

/**
 * The `pg_settings.unit` column: the base unit's name, or `null` for a unitless parameter
 * (guc.c's get_config_unit_name; PostgreSQL also has block units shown as "8kB", which we do not).
 */
export const baseUnitLabel = (unit: Unit | undefined): string | null => unit ?? null

// --- C library behaviour ----------------------------------------------------------------------------------------

const INT_MAX = 2147483647
const INT_MIN = -2147483648
const LONG_MAX = 2n ** 63n - 1n
const LONG_MIN = -(2n ** 63n)
/** The smallest normal double: below it, glibc's strtod reports ERANGE unless the result is exact. */
const DBL_MIN = 2.2250738585072014e-308

/** isspace() in the "C" locale. */
const isSpace = (c: string): boolean => c === " " || c === "\t" || c === "\n" || c === "\v" || c === "\f" || c === "\r"

const skipSpaces = (text: string, from: number): number => {
  let i = from
  while (i < text.length && isSpace(text.charAt(i))) i++
  return i
}

/** C's rint() in the default rounding mode: to the nearest integer, halves to the even one. */
const rint = (x: number): number => {
  if (!Number.isFinite(x)) return x
  const floor = Math.floor(x)
  const fraction = x - floor // exact for doubles
  const rounded = fraction < 0.5 ? floor : fraction > 0.5 ? floor + 1 : floor % 2 === 0 ? floor : floor + 1
  return rounded === 0 && x < 0 ? -0 : rounded
}

/** pg_strcasecmp's folding: ASCII letters only. */
const asciiLower = (s: string): string => s.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32))

interface Scanned {
  readonly value: number
  /** Index just past the number; 0 when nothing was converted (C sets endptr to the start of the string). */
  readonly end: number
  /** errno == ERANGE. */
  readonly erange: boolean
}

const noConversion: Scanned = { value: 0, end: 0, erange: false }

const isDigitIn = (c: string, base: 8 | 10 | 16): boolean =>
  base === 16 ? /^[0-9a-fA-F]$/.test(c) : base === 10 ? c >= "0" && c <= "9" : c >= "0" && c <= "7"

/**
 * strtol(text, &end, 0): leading whitespace, an optional sign, then `0x`/`0X` + hex digits, `0` + octal digits, or
 * decimal digits. "0x" not followed by a hex digit is the number 0 ending before the "x".
 */
const strtol = (text: string): Scanned => {
  let i = skipSpaces(text, 0)
  let negative = false
  if (text.charAt(i) === "+" || text.charAt(i) === "-") {
    negative = text.charAt(i) === "-"
    i++
  }
  let base: 8 | 10 | 16 = 10
  const hexPrefix = text.charAt(i + 1) === "x" || text.charAt(i + 1) === "X"
  if (text.charAt(i) === "0" && hexPrefix && isDigitIn(text.charAt(i + 2), 16)) {
    base = 16
    i += 2
  } else if (text.charAt(i) === "0") {
    base = 8
  }
  const start = i
  while (i < text.length && isDigitIn(text.charAt(i), base)) i++
  if (i === start) return noConversion
  const digits = text.slice(start, i)
  const magnitude = BigInt(base === 16 ? `0x${digits}` : base === 8 ? `0o${digits}` : digits)
  const n = negative ? -magnitude : magnitude
  if (n > LONG_MAX || n < LONG_MIN) return { value: negative ? -Infinity : Infinity, end: i, erange: true }
  return { value: Number(n), end: i, erange: false }
}

/** x * 2^exp without intermediate overflow or underflow (C's ldexp for finite x). */
const ldexp = (x: number, exp: number): number => {
  let result = x
  let e = exp
  while (e > 1000) {
    result *= 2 ** 1000
    e -= 1000
  }
  while (e < -1000) {
    result *= 2 ** -1000
    e += 1000
  }
  return result * 2 ** e
}

const decimalFloat = /^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?/
const hexFloat = /^0[xX](?:([0-9a-fA-F]+)(?:\.([0-9a-fA-F]*))?|\.([0-9a-fA-F]+))(?:[pP]([+-]?[0-9]+))?/
const infOrNan = /^(?:inf(?:inity)?|nan(?:\([0-9A-Za-z_]*\))?)/i

/**
 * strtod(text, &end): leading whitespace, an optional sign, then a decimal float, a hexadecimal float
 * (`0x1.8p3`), `inf`/`infinity` or `nan`/`nan(chars)` (any case), with glibc's ERANGE (see finishDouble).
 */
const strtod = (text: string): Scanned => {
  let i = skipSpaces(text, 0)
  let sign = 1
  if (text.charAt(i) === "+" || text.charAt(i) === "-") {
    sign = text.charAt(i) === "-" ? -1 : 1
    i++
  }
  const rest = text.slice(i)
  const special = infOrNan.exec(rest)
  if (special !== null) {
    const value = special[0].charAt(0).toLowerCase() === "i" ? Infinity : NaN
    return { value: sign * value, end: i + special[0].length, erange: false }
  }
  const hex = hexFloat.exec(rest)
  if (hex !== null) {
    const intDigits = hex[1] ?? ""
    const fracDigits = hex[2] ?? hex[3] ?? ""
    const mantissa = BigInt(`0x${intDigits}${fracDigits}`)
    const exponent = Number(hex[4] ?? "0") - 4 * fracDigits.length
    const magnitude = mantissa === 0n ? 0 : ldexp(Number(mantissa), exponent)
    return finishDouble(sign * magnitude, () => binaryToDecimal(mantissa, exponent), i + hex[0].length)
  }
  const decimal = decimalFloat.exec(rest)
  if (decimal !== null) {
    const [mantissa = "", exponent = "0"] = decimal[0].split(/[eE]/)
    const [whole = "", fraction = ""] = mantissa.split(".")
    const exact = () => trimDecimal(BigInt(whole + fraction).toString(), Number(exponent) - fraction.length)
    return finishDouble(sign * Number(decimal[0]), exact, i + decimal[0].length)
  }
  return noConversion
}

/**
 * glibc's ERANGE: the result overflowed to an infinity, or underflowed (to zero, or to a subnormal that is not
 * exactly the input). `exact` is the input's exact decimal value, computed only when needed.
 */
const finishDouble = (value: number, exact: () => Decimal, end: number): Scanned => {
  const magnitude = Math.abs(value)
  if (magnitude === Infinity) return { value, end, erange: true }
  if (magnitude >= DBL_MIN) return { value, end, erange: false }
  const input = exact()
  if (input.digits === "0") return { value, end, erange: false }
  if (magnitude === 0) return { value, end, erange: true }
  const output = exactDecimal(magnitude)
  return { value, end, erange: input.digits !== output.digits || input.power !== output.power }
}

/** A non-negative decimal `digits` × 10^`power`; `digits` has no leading or trailing zeros ("0" for zero). */
interface Decimal {
  readonly digits: string
  readonly power: number
}

const trimDecimal = (digits: string, power: number): Decimal => {
  const significant = digits.replace(/^0+/, "")
  if (significant === "") return { digits: "0", power: 0 }
  const trimmed = significant.replace(/0+$/, "")
  return { digits: trimmed, power: power + significant.length - trimmed.length }
}

/** mantissa × 2^exponent, exactly, in decimal. */
const binaryToDecimal = (mantissa: bigint, exponent: number): Decimal =>
  exponent >= 0
    ? trimDecimal((mantissa << BigInt(exponent)).toString(), 0)
    : trimDecimal((mantissa * 5n ** BigInt(-exponent)).toString(), exponent)

/** The exact decimal expansion of a finite double's magnitude. */
const exactDecimal = (x: number): Decimal => {
  const view = new DataView(new ArrayBuffer(8))
  view.setFloat64(0, Math.abs(x))
  const high = view.getUint32(0)
  const low = view.getUint32(4)
  const biased = (high >>> 20) & 0x7ff
  const fraction = (BigInt(high & 0xfffff) << 32n) | BigInt(low)
  return biased === 0 ? binaryToDecimal(fraction, -1074) : binaryToDecimal(fraction | (1n << 52n), biased - 1075)
}

/**
 * printf's `%g` layout of a positive number whose significant digits are `digits` (no trailing zeros) and whose
 * decimal exponent is `exponent` (the value is d.ddd × 10^exponent): scientific when the exponent is below -4 or at
 * least the precision, fixed otherwise; trailing zeros dropped; at least two exponent digits.
 */
const layoutG = (digits: string, exponent: number, precision: number): string => {
  if (exponent < -4 || exponent >= precision) {
    const mantissa = digits.length > 1 ? `${digits.charAt(0)}.${digits.slice(1)}` : digits
    const e = Math.abs(exponent)
    return `${mantissa}e${exponent < 0 ? "-" : "+"}${e < 10 ? `0${e}` : e}`
  }
  if (exponent < 0) return `0.${"0".repeat(-exponent - 1)}${digits}`
  const integerLength = exponent + 1
  if (digits.length <= integerLength) return digits + "0".repeat(integerLength - digits.length)
  return `${digits.slice(0, integerLength)}.${digits.slice(integerLength)}`
}

const signOf = (x: number): string => (x < 0 || Object.is(x, -0) ? "-" : "")

const nonFinite = (x: number): string => (Number.isNaN(x) ? "nan" : x < 0 ? "-inf" : "inf")

/** printf("%g", x) as glibc prints it: six significant digits, rounded half to even on the exact binary value. */
const formatG = (x: number, precision = 6): string => {
  if (!Number.isFinite(x)) return nonFinite(x)
  if (x === 0) return `${signOf(x)}0`
  const { digits, power } = exactDecimal(x)
  let kept = digits
  let exponent = digits.length - 1 + power
  if (digits.length > precision) {
    const head = digits.slice(0, precision)
    const tail = digits.slice(precision)
    const up = tail > "5" || (tail === "5" && "13579".includes(head.charAt(head.length - 1)))
    kept = up ? (BigInt(head) + 1n).toString() : head
    if (kept.length > precision) {
      kept = kept.slice(0, precision)
      exponent += 1
    }
  }
  return signOf(x) + layoutG(kept.replace(/0+$/, ""), exponent, precision)
}

/**
 * `%g` with as many significant digits (at least six) as it takes for strtod to give back exactly `x`. A subnormal
 * is written out in full: glibc's strtod sets ERANGE for any subnormal that is not the exact input.
 */
const formatShortest = (x: number): string => {
  if (!Number.isFinite(x)) return nonFinite(x)
  if (x === 0) return `${signOf(x)}0`
  if (Math.abs(x) < DBL_MIN) {
    const { digits, power } = exactDecimal(x)
    return signOf(x) + layoutG(digits, digits.length - 1 + power, digits.length)
  }
  const [mantissa = "", exponent = "0"] = Math.abs(x).toExponential().split("e")
  const digits = mantissa.replace(".", "")
  return signOf(x) + layoutG(digits, Number(exponent), Math.max(6, digits.length))
}

// --- Parsing ----------------------------------------------------------------------------------------------------

type NumberResult = { readonly ok: true; readonly value: number } | { readonly ok: false; readonly hint?: string }

const numberFailure: NumberResult = { ok: false }

/**
 * convert_to_base_unit: `unitText` is the rest of the input after the number and any whitespace: at most three
 * characters of unit name (case-sensitive), then only whitespace. A fractional value is rounded to the nearest
 * multiple of the next smaller unit ("30.1GB" to whole MB), if there is one. `undefined`: not a unit of the family.
 */
const convertToBaseUnit = (value: number, unitText: string, base: Unit): number | undefined => {
  let i = 0
  while (i < unitText.length && !isSpace(unitText.charAt(i)) && i < MAX_UNIT_LEN) i++
  const name = unitText.slice(0, i)
  if (skipSpaces(unitText, i) < unitText.length) return undefined // unit too long, or garbage after it
  const table = conversionTables[base]
  const index = table.findIndex((conversion) => conversion.unit === name)
  if (index < 0) return undefined
  const converted = value * table[index]!.multiplier
  const smaller = table[index + 1]
  return smaller === undefined ? converted : rint(converted / smaller.multiplier) * smaller.multiplier
}

/** The part of parse_int / parse_real after the number: whitespace, then an optional unit. */
const applyUnit = (text: string, value: number, end: number, unit: Unit | undefined): NumberResult => {
  const unitStart = skipSpaces(text, end)
  if (unitStart === text.length) return { ok: true, value }
  if (unit === undefined) return numberFailure // this setting does not accept a unit: no hint
  const converted = convertToBaseUnit(value, text.slice(unitStart), unit)
  return converted === undefined ? { ok: false, hint: unitsHint(unit) } : { ok: true, value: converted }
}

/**
 * parse_int: strtol with base 0 (decimal, 0x hex, 0 octal); if it stops at '.', 'e' or 'E', or overflows a long,
 * strtod instead (fractional input is allowed and rounded after unit conversion). Then whitespace, an optional
 * unit, rint, and the 32-bit int range check.
 */
const parseIntText = (text: string, unit: Unit | undefined): NumberResult => {
  let scanned = strtol(text)
  const stop = text.charAt(scanned.end)
  if (stop === "." || stop === "e" || stop === "E" || scanned.erange) scanned = strtod(text)
  if (scanned.end === 0 || scanned.erange) return numberFailure
  if (Number.isNaN(scanned.value)) return numberFailure
  const converted = applyUnit(text, scanned.value, scanned.end, unit)
  if (!converted.ok) return converted
  const rounded = rint(converted.value)
  if (rounded > INT_MAX || rounded < INT_MIN) return { ok: false, hint: "Value exceeds integer range." }
  return { ok: true, value: rounded + 0 } // an int has no negative zero
}

/** parse_real: strtod, NaN rejected (infinities fail the range check later), whitespace, an optional unit. */
const parseRealText = (text: string, unit: Unit | undefined): NumberResult => {
  const scanned = strtod(text)
  if (scanned.end === 0 || scanned.erange) return numberFailure
  if (Number.isNaN(scanned.value)) return numberFailure
  return applyUnit(text, scanned.value, scanned.end, unit)
}

/** parse_bool (bool.c): a non-empty prefix of true/false/yes/no, of on/off with at least two letters, 1 or 0. */
const parseBoolText = (text: string): boolean | undefined => {
  const lower = asciiLower(text)
  const prefixOf = (word: string, minLength: number) => lower.length >= minLength && word.startsWith(lower)
  if (prefixOf("true", 1) || prefixOf("yes", 1) || prefixOf("on", 2) || lower === "1") return true
  if (prefixOf("false", 1) || prefixOf("no", 1) || prefixOf("off", 2) || lower === "0") return false
  return undefined
}

/** config_enum_lookup_by_name: the first entry (hidden or not) equal to `text` ignoring ASCII case. */
const lookupEnum = (spec: Extract<Spec, { kind: "enum" }>, text: string): string | undefined => {
  const lower = asciiLower(text)
  return spec.values.find((entry) => asciiLower(entry.name) === lower)?.name
}

/** config_enum_get_options(record, "Available values: ", ".", ", "): the visible names. */
const enumHint = (spec: Extract<Spec, { kind: "enum" }>): string =>
  `Available values: ${spec.values.filter((entry) => entry.hidden !== true).map((entry) => entry.name).join(", ")}.`

const ok = (value: Value): Parsed => ({ ok: true, value })

const invalidValue = (name: string, text: string, hint?: string | undefined): Parsed =>
  hint === undefined
    ? { ok: false, message: `invalid value for parameter "${name}": "${text}"` }
    : { ok: false, message: `invalid value for parameter "${name}": "${text}"`, hint }

const requiresBoolean = (name: string): Parsed => ({
  ok: false,
  message: `parameter "${name}" requires a Boolean value`
})

/** The range check of parse_and_validate_value, with its `%d` / `%g` message and the base unit after a space. */
const checkRange = (spec: Extract<Spec, { kind: "int" | "real" }>, value: number): Parsed => {
  if (value >= spec.min && value <= spec.max) return ok(value)
  const label = baseUnitLabel(spec.unit)
  const unit = label === null ? "" : ` ${label}`
  const show = spec.kind === "int" ? (n: number) => String(n) : (n: number) => formatG(n)
  return {
    ok: false,
    message: `${show(value)}${unit} is outside the valid range for parameter "${spec.name}" ` +
      `(${show(spec.min)}${unit} .. ${show(spec.max)}${unit})`
  }
}

/**
 * Parses `text` (from a configuration file, an environment variable or SQL) as parse_and_validate_value does:
 * the value in the parameter's base unit, or PostgreSQL's error message and hint. Check hooks are the caller's.
 */
export const parseValue = (spec: Spec, text: string): Parsed => {
  switch (spec.kind) {
    case "bool": {
      const value = parseBoolText(text)
      return value === undefined ? requiresBoolean(spec.name) : ok(value)
    }
    case "int":
    case "real": {
      const parsed = spec.kind === "int" ? parseIntText(text, spec.unit) : parseRealText(text, spec.unit)
      return parsed.ok ? checkRange(spec, parsed.value) : invalidValue(spec.name, text, parsed.hint)
    }
    case "string":
      return ok(text)
    case "enum": {
      const value = lookupEnum(spec, text)
      return value === undefined ? invalidValue(spec.name, text, enumHint(spec)) : ok(value)
    }
  }
}

/** How a value that is not text shows up in a message. */
const describe = (value: unknown): string => {
  if (value === null) return "null"
  switch (typeof value) {
    case "number":
      return formatShortest(value)
    case "string":
    case "boolean":
    case "bigint":
    case "undefined":
      return String(value)
    case "symbol":
      return value.toString()
    case "function":
      return "[function]"
    default:
      return Object.prototype.toString.call(value)
  }
}

/**
 * Checks a typed value set from code: an int must be a safe integer within the 32-bit range and [min, max]; a real
 * a number other than NaN within [min, max] (an infinity fails the range check, as "inf" does); a bool a boolean;
 * an enum one of the names, ignoring case (the canonical name is returned); a string a string. A string given for
 * any other kind is parsed with {@link parseValue}. Messages are parse_and_validate_value's.
 */
export const validateValue = (spec: Spec, value: unknown): Parsed => {
  if (typeof value === "string") return parseValue(spec, value)
  switch (spec.kind) {
    case "bool":
      return typeof value === "boolean" ? ok(value) : requiresBoolean(spec.name)
    case "int": {
      if (typeof value !== "number" || !Number.isSafeInteger(value)) return invalidValue(spec.name, describe(value))
      if (value > INT_MAX || value < INT_MIN) {
        return invalidValue(spec.name, describe(value), "Value exceeds integer range.")
      }
      return checkRange(spec, value + 0)
    }
    case "real":
      if (typeof value !== "number" || Number.isNaN(value)) return invalidValue(spec.name, describe(value))
      return checkRange(spec, value)
    case "string":
      return invalidValue(spec.name, describe(value))
    case "enum":
      return invalidValue(spec.name, describe(value), enumHint(spec))
  }
}

// --- Formatting -------------------------------------------------------------------------------------------------

/** convert_int_from_base_unit: the largest unit that divides the value evenly (at the latest the base unit). */
const formatInt = (value: number, unit: Unit | undefined): string => {
  if (unit === undefined || value <= 0) return String(value)
  for (const conversion of conversionTables[unit]) {
    if (conversion.multiplier <= 1 || value % conversion.multiplier === 0) {
      return `${rint(value / conversion.multiplier)}${conversion.unit}`
    }
  }
  return String(value)
}

/** The number of significant digits strtod needs to give back exactly `x` (finite, non-zero). */
const shortestDigits = (x: number): number => Math.abs(x).toExponential().split("e")[0]!.replace(".", "").length

/**
 * convert_real_from_base_unit: the largest unit in which the value is within 1e-8 of an integer, else the smallest
 * unit; printed with `%g`'s six significant digits, or more if that is what it takes to read exactly `value` back
 * (convert_to_base_unit multiplies, then rounds to the next smaller unit), but never with more digits than the
 * plain number in the base unit needs. Failing that, the plain number, which always reads back exactly.
 */
const formatReal = (value: number, unit: Unit | undefined): string => {
  const plain = formatShortest(value)
  if (unit === undefined || !(value > 0) || !Number.isFinite(value)) return plain
  let chosen: { readonly value: number; readonly unit: Unit } | undefined
  for (const conversion of conversionTables[unit]) {
    const scaled = value / conversion.multiplier
    chosen = { value: scaled, unit: conversion.unit }
    if (scaled > 0 && Math.abs(rint(scaled) / scaled - 1) <= 1e-8) break
  }
  if (chosen === undefined) return plain
  const budget = Math.max(6, shortestDigits(value))
  for (let precision = 6; precision <= budget; precision++) {
    const text = `${formatG(chosen.value, precision)}${chosen.unit}`
    const back = parseRealText(text, unit)
    if (back.ok && back.value === value) return text
  }
  return plain
}

/**
 * What `SHOW` prints (ShowGUCOption with units): bool as on/off; an enum by its canonical name; an int in the
 * largest unit that divides it, zero and negative values without a unit; a real likewise (see the module notes);
 * a string as is. Whatever this returns, {@link parseValue} reads back as the same value.
 */
export const formatValue = (spec: Spec, value: Value): string => {
  switch (spec.kind) {
    case "bool":
      return typeof value === "boolean" ? (value ? "on" : "off") : String(value)
    case "int":
      return typeof value === "number" && Number.isSafeInteger(value) ? formatInt(value + 0, spec.unit) : String(value)
    case "real":
      return typeof value === "number" ? formatReal(value, spec.unit) : String(value)
    case "string":
      return String(value)
    case "enum":
      return typeof value === "string" ? lookupEnum(spec, value) ?? value : String(value)
  }
}
