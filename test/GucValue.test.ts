/**
 * GUC values as text (src/internal/gucValue.ts), checked against PostgreSQL's rules in guc.c (parse_int, parse_real,
 * convert_to_base_unit, convert_int_from_base_unit, convert_real_from_base_unit, config_enum_lookup_by_name,
 * parse_and_validate_value, ShowGUCOption) and bool.c (parse_bool), including their messages and hints.
 *
 * PROPERTY_RUNS=n (default 1000) and PROPERTY_SEED=s tune the property search.
 */
import { assert, describe, it } from "@effect/vitest"
import { Arbitrary, Schema } from "effect"
import type { Parsed, Spec, Unit, Value } from "../src/internal/gucValue.ts"
import { baseUnitLabel, formatValue, parseValue, unitsHint, validateValue } from "../src/internal/gucValue.ts"

const INT_MAX = 2147483647
const INT_MIN = -2147483648
const timeHint = "Valid units for this parameter are \"us\", \"ms\", \"s\", \"min\", \"h\", and \"d\"."
const memoryHint = "Valid units for this parameter are \"B\", \"kB\", \"MB\", \"GB\", and \"TB\"."

const int = (unit?: Unit, min = INT_MIN, max = INT_MAX): Spec => ({ kind: "int", name: "test.int", min, max, unit })
const real = (unit?: Unit, min = -Infinity, max = Infinity): Spec => ({
  kind: "real",
  name: "test.real",
  min,
  max,
  unit
})
const bool: Spec = { kind: "bool", name: "test.bool" }
const level: Spec = {
  kind: "enum",
  name: "test.level",
  values: [{ name: "off" }, { name: "on" }, { name: "auto" }, { name: "true", hidden: true }]
}

/** The parsed value; fails the test with the message if parsing failed. */
const value = (parsed: Parsed): Value => parsed.ok ? parsed.value : assert.fail(`${parsed.message} (${parsed.hint})`)

/** The error as `[message, hint]`; fails the test if parsing succeeded. */
const error = (parsed: Parsed): readonly [string, string | undefined] =>
  parsed.ok ? assert.fail(`parsed as ${String(parsed.value)}`) : [parsed.message, parsed.hint]

const invalid = (name: string, text: string) => `invalid value for parameter "${name}": "${text}"`
const notBoolean = ["parameter \"test.bool\" requires a Boolean value", undefined] as const
const levelHint = "Available values: off, on, auto."

describe("GucValue", () => {
  describe("bool", () => {
    it("bool accepts true, false, yes, no, on, off, 1 and 0 in any case", () => {
      for (const text of ["true", "TRUE", "yes", "Yes", "on", "ON", "1"]) {
        assert.strictEqual(value(parseValue(bool, text)), true)
      }
      for (const text of ["false", "False", "no", "NO", "off", "oFF", "0"]) {
        assert.strictEqual(value(parseValue(bool, text)), false)
      }
    })

    it("bool accepts unique prefixes but not \"o\"", () => {
      for (const text of ["t", "tr", "tru", "y", "ye"]) assert.strictEqual(value(parseValue(bool, text)), true)
      for (const text of ["f", "fa", "fals", "n", "of"]) assert.strictEqual(value(parseValue(bool, text)), false)
      assert.deepStrictEqual(error(parseValue(bool, "o")), notBoolean)
    })

    it("bool rejects longer words, other digits, the empty string and surrounding whitespace (parse_bool)", () => {
      for (const text of ["truex", "onn", "offf", "yess", "10", "01", "2", "", " on", "on ", "\ttrue"]) {
        assert.deepStrictEqual(error(parseValue(bool, text)), notBoolean)
      }
    })
  })

  describe("int", () => {
    it("a unitless int parameter accepts decimal, hexadecimal and octal integers with a sign and whitespace", () => {
      const cases: ReadonlyArray<readonly [string, number]> = [
        ["42", 42],
        ["-7", -7],
        ["+5", 5],
        ["0x1F", 31],
        ["0X1f", 31],
        ["-0x10", -16],
        ["010", 8],
        ["0", 0],
        ["-0", 0],
        [" 12", 12],
        ["12 \t", 12],
        ["2147483647", INT_MAX],
        ["-2147483648", INT_MIN]
      ]
      for (const [text, expected] of cases) assert.strictEqual(value(parseValue(int(), text)), expected, text)
    })

    it("a leading zero means octal, so \"08\" and \"09\" are invalid", () => {
      assert.deepStrictEqual(error(parseValue(int(), "08")), [invalid("test.int", "08"), undefined])
      assert.deepStrictEqual(error(parseValue(int(), "09")), [invalid("test.int", "09"), undefined])
    })

    it("an int parameter reads fractions and exponents and rounds half to even, as rint does", () => {
      const cases: ReadonlyArray<readonly [string, number]> = [
        ["1.5", 2],
        ["2.5", 2],
        ["3.5", 4],
        ["-2.5", -2],
        ["0.4", 0],
        [".5", 0],
        ["1e3", 1000],
        ["1.5E2", 150],
        ["0x1.8", 2]
      ]
      for (const [text, expected] of cases) assert.strictEqual(value(parseValue(int(), text)), expected, text)
    })

    it("text that is not a number is rejected without a hint", () => {
      for (const text of ["abc", "", " ", "1e", "- 5", "+", "0x", "inf", "nan", "1,000", " .5"]) {
        assert.deepStrictEqual(error(parseValue(int(), text)), [invalid("test.int", text), undefined], text)
      }
    })

    it("a time parameter in seconds accepts \"1min\" as 60", () => {
      assert.strictEqual(value(parseValue(int("s"), "1min")), 60)
    })

    it("time units convert to the base unit: us, ms, s, min, h and d", () => {
      const cases: ReadonlyArray<readonly [Unit, string, number]> = [
        ["ms", "1d", 86_400_000],
        ["ms", "2h", 7_200_000],
        ["ms", "3min", 180_000],
        ["ms", "4s", 4_000],
        ["ms", "5ms", 5],
        ["ms", "6000us", 6],
        ["s", "1h", 3_600],
        ["min", "1d", 1_440],
        ["us", "1s", 1_000_000],
        ["d", "48h", 2]
      ]
      for (const [unit, text, expected] of cases) assert.strictEqual(value(parseValue(int(unit), text)), expected, text)
    })

    it("memory units are powers of 1024", () => {
      const cases: ReadonlyArray<readonly [Unit, string, number]> = [
        ["kB", "1MB", 1024],
        ["kB", "1GB", 1_048_576],
        ["kB", "1TB", 1_073_741_824],
        ["kB", "2048B", 2],
        ["B", "1kB", 1024],
        ["MB", "1TB", 1_048_576]
      ]
      for (const [unit, text, expected] of cases) assert.strictEqual(value(parseValue(int(unit), text)), expected, text)
    })

    it("whitespace may separate the number from its unit and follow the unit", () => {
      assert.strictEqual(value(parseValue(int("s"), "1 min")), 60)
      assert.strictEqual(value(parseValue(int("s"), "  1min \t")), 60)
    })

    it("a fraction is rounded at the next smaller unit, then to an integer: 1.5s in s is 2, 2.5s is 2", () => {
      assert.strictEqual(value(parseValue(int("s"), "1.5s")), 2)
      assert.strictEqual(value(parseValue(int("s"), "2.5s")), 2)
      assert.strictEqual(value(parseValue(int("s"), "0.5min")), 30)
      assert.strictEqual(value(parseValue(int("ms"), "1500us")), 2)
      // 30.1GB = 30822.4MB is first rounded to whole MB (30822), then converted: 30822 * 1024 kB.
      assert.strictEqual(value(parseValue(int("kB"), "30.1GB")), 30822 * 1024)
    })

    it("units are case-sensitive: \"kb\" and \"Min\" are not units", () => {
      assert.deepStrictEqual(error(parseValue(int("kB"), "1kb")), [invalid("test.int", "1kb"), memoryHint])
      assert.deepStrictEqual(error(parseValue(int("s"), "1Min")), [invalid("test.int", "1Min"), timeHint])
    })

    it("a unitless parameter rejects \"10s\" without a hint", () => {
      assert.deepStrictEqual(error(parseValue(int(), "10s")), [invalid("test.int", "10s"), undefined])
      assert.deepStrictEqual(error(parseValue(int(), "10 kB")), [invalid("test.int", "10 kB"), undefined])
    })

    it("a unit of the wrong family, an unknown unit or text after the unit gets the valid units as hint", () => {
      assert.deepStrictEqual(error(parseValue(int("s"), "10kB")), [invalid("test.int", "10kB"), timeHint])
      assert.deepStrictEqual(error(parseValue(int("kB"), "10s")), [invalid("test.int", "10s"), memoryHint])
      assert.deepStrictEqual(error(parseValue(int("s"), "10 mins")), [invalid("test.int", "10 mins"), timeHint])
      assert.deepStrictEqual(error(parseValue(int("s"), "10 min 5")), [invalid("test.int", "10 min 5"), timeHint])
      assert.deepStrictEqual(error(parseValue(int("ms"), "10sec")), [invalid("test.int", "10sec"), timeHint])
    })

    it("a value out of range names the valid range, in the base unit after a space", () => {
      assert.deepStrictEqual(error(parseValue(int(undefined, 0, 10), "11")), [
        "11 is outside the valid range for parameter \"test.int\" (0 .. 10)",
        undefined
      ])
      assert.deepStrictEqual(error(parseValue(int("s", 1, 60), "2min")), [
        "120 s is outside the valid range for parameter \"test.int\" (1 s .. 60 s)",
        undefined
      ])
      assert.deepStrictEqual(error(parseValue(int("kB", 64, 1024), "-1")), [
        "-1 kB is outside the valid range for parameter \"test.int\" (64 kB .. 1024 kB)",
        undefined
      ])
    })

    it("values beyond the 32-bit integer range fail with the hint \"Value exceeds integer range.\"", () => {
      for (const text of ["2147483648", "-2147483649", "99999999999999999999", "1e10", "3TB"]) {
        const spec = text === "3TB" ? int("kB") : int()
        assert.deepStrictEqual(error(parseValue(spec, text)), [
          invalid("test.int", text),
          "Value exceeds integer range."
        ])
      }
    })

    it("a number too large for a double is rejected without a hint", () => {
      assert.deepStrictEqual(error(parseValue(int(), "1e400")), [invalid("test.int", "1e400"), undefined])
    })
  })

  describe("real", () => {
    it("a real parameter reads decimals, exponents, hexadecimal floats and units", () => {
      const cases: ReadonlyArray<readonly [Unit | undefined, string, number]> = [
        [undefined, "0.5", 0.5],
        [undefined, "-1e-3", -0.001],
        [undefined, ".25", 0.25],
        [undefined, "010", 10],
        [undefined, "0x1.8p1", 3],
        ["s", "1.5min", 90],
        ["s", "250ms", 0.25],
        ["s", " 2 h ", 7200],
        ["kB", "1.5MB", 1536]
      ]
      for (const [unit, text, expected] of cases) {
        assert.strictEqual(value(parseValue(real(unit), text)), expected, text)
      }
    })

    it("a real parameter keeps negative zero and accepts infinities when the range allows them", () => {
      assert.isTrue(Object.is(value(parseValue(real(), "-0")), -0))
      assert.strictEqual(value(parseValue(real(), "inf")), Infinity)
      assert.strictEqual(value(parseValue(real(), "-Infinity")), -Infinity)
    })

    it("a real parameter rejects NaN, non-numbers and numbers a double cannot hold, without a hint", () => {
      for (const text of ["NaN", "nan", "abc", "", "1e400", "1e-400", "1e-310", "0x"]) {
        assert.deepStrictEqual(error(parseValue(real(), text)), [invalid("test.real", text), undefined], text)
      }
    })

    it("a real parameter with a unit rejects a unit of another family with the valid units as hint", () => {
      assert.deepStrictEqual(error(parseValue(real("ms"), "1.5GB")), [invalid("test.real", "1.5GB"), timeHint])
      assert.deepStrictEqual(error(parseValue(real(), "1.5s")), [invalid("test.real", "1.5s"), undefined])
    })

    it("a real value out of range is reported with %g formatting", () => {
      assert.deepStrictEqual(error(parseValue(real(undefined, 0, 100), "1e7")), [
        "1e+07 is outside the valid range for parameter \"test.real\" (0 .. 100)",
        undefined
      ])
      assert.deepStrictEqual(error(parseValue(real("s", 0.001, 1.5), "2min")), [
        "120 s is outside the valid range for parameter \"test.real\" (0.001 s .. 1.5 s)",
        undefined
      ])
      assert.deepStrictEqual(error(parseValue(real(undefined, 0, 1), "inf")), [
        "inf is outside the valid range for parameter \"test.real\" (0 .. 1)",
        undefined
      ])
      assert.deepStrictEqual(error(parseValue(real(undefined, 0, 1), "-0.0000123456789")), [
        "-1.23457e-05 is outside the valid range for parameter \"test.real\" (0 .. 1)",
        undefined
      ])
    })

    it("%g in range messages rounds to six significant digits, exact halves to even", () => {
      const message = (text: string) => error(parseValue(real(undefined, 0, 1), text))[0]
      const outside = " is outside the valid range for parameter \"test.real\" (0 .. 1)"
      assert.strictEqual(message("1234565"), `1.23456e+06${outside}`)
      assert.strictEqual(message("1234575"), `1.23458e+06${outside}`)
      assert.strictEqual(message("123456.5"), `123456${outside}`)
      assert.strictEqual(message("999999.5"), `1e+06${outside}`)
      assert.strictEqual(message("100000"), `100000${outside}`)
    })
  })

  describe("enum", () => {
    it("enum matches names ignoring case and returns the canonical name", () => {
      assert.strictEqual(value(parseValue(level, "AUTO")), "auto")
      assert.strictEqual(value(parseValue(level, "On")), "on")
    })

    it("hidden enum values are accepted", () => {
      assert.strictEqual(value(parseValue(level, "TRUE")), "true")
    })

    it("enum errors list the visible values", () => {
      assert.deepStrictEqual(error(parseValue(level, "maybe")), [
        invalid("test.level", "maybe"),
        "Available values: off, on, auto."
      ])
    })

    it("enum names are not trimmed or abbreviated", () => {
      for (const text of [" on", "au", "", "onn"]) {
        assert.deepStrictEqual(error(parseValue(level, text)), [invalid("test.level", text), levelHint])
      }
    })
  })

  describe("string", () => {
    it("a string parameter accepts any text unchanged", () => {
      const spec: Spec = { kind: "string", name: "test.string" }
      for (const text of ["", " padded ", "10s", "'quoted'", "caf\u00e9"]) {
        assert.strictEqual(value(parseValue(spec, text)), text)
      }
    })
  })

  describe("formatValue", () => {
    it("bool is shown as on or off", () => {
      assert.strictEqual(formatValue(bool, true), "on")
      assert.strictEqual(formatValue(bool, false), "off")
    })

    it("an int with a time unit is shown in the largest unit that divides it", () => {
      const cases: ReadonlyArray<readonly [Unit, number, string]> = [
        ["ms", 60_000, "1min"],
        ["ms", 1_500, "1500ms"],
        ["ms", 1_000, "1s"],
        ["ms", 3_600_000, "1h"],
        ["ms", 86_400_000, "1d"],
        ["ms", 90_000, "90s"],
        ["s", 60, "1min"],
        ["s", 59, "59s"],
        ["min", 1_440, "1d"],
        ["us", 1_500, "1500us"],
        ["us", 2_000, "2ms"]
      ]
      for (const [unit, n, expected] of cases) assert.strictEqual(formatValue(int(unit), n), expected)
    })

    it("an int with a memory unit is shown in the largest power-of-1024 unit that divides it", () => {
      const cases: ReadonlyArray<readonly [Unit, number, string]> = [
        ["kB", 1_048_576, "1GB"],
        ["kB", 512, "512kB"],
        ["kB", 1_536, "1536kB"],
        ["kB", 1_073_741_824, "1TB"],
        ["B", 8_192, "8kB"],
        ["MB", 1_024, "1GB"]
      ]
      for (const [unit, n, expected] of cases) assert.strictEqual(formatValue(int(unit), n), expected)
    })

    it("zero and negative ints are shown without a unit, as SHOW does", () => {
      assert.strictEqual(formatValue(int("ms"), 0), "0")
      assert.strictEqual(formatValue(int("ms"), -1), "-1")
      assert.strictEqual(formatValue(int("kB"), -60_000), "-60000")
    })

    it("a unitless int is shown as a plain decimal", () => {
      assert.strictEqual(formatValue(int(), 60_000), "60000")
      assert.strictEqual(formatValue(int(), INT_MIN), "-2147483648")
    })

    it("a real is shown like %g, with more digits only when needed to read it back", () => {
      const cases: ReadonlyArray<readonly [number, string]> = [
        [0.1, "0.1"],
        [1.5, "1.5"],
        [1e6, "1e+06"],
        [100_000, "100000"],
        [1_234_567, "1234567"],
        [0.0001, "0.0001"],
        [0.00001, "1e-05"],
        [1 / 3, "0.3333333333333333"],
        [1e21, "1e+21"],
        [-2.5e-7, "-2.5e-07"],
        [-0, "-0"],
        [Infinity, "inf"],
        [-Infinity, "-inf"]
      ]
      for (const [x, expected] of cases) assert.strictEqual(formatValue(real(), x), expected)
    })

    it("a real with a unit is shown in the largest unit that gives an integer", () => {
      const cases: ReadonlyArray<readonly [Unit, number, string]> = [
        ["s", 60, "1min"],
        ["s", 90, "90s"],
        ["s", 0.25, "250ms"],
        ["s", 1.5, "1500ms"],
        ["ms", 0.5, "500us"],
        ["kB", 1.5, "1536B"],
        ["kB", 1_048_576, "1GB"],
        ["s", -60, "-60"],
        ["s", 0, "0"]
      ]
      for (const [unit, x, expected] of cases) assert.strictEqual(formatValue(real(unit), x), expected)
    })

    it("a real with a unit that would not read back exactly is shown as a plain number in the base unit", () => {
      // Within 1e-8 of 1s, so PostgreSQL picks "s"; but "1.0000000001s" is rounded to whole ms when read back.
      assert.strictEqual(formatValue(real("s"), 1.0000000001), "1.0000000001")
      assert.strictEqual(value(parseValue(real("s"), "1.0000000001s")), 1)
    })

    it("a subnormal real is written out in full, since strtod rejects an inexact subnormal", () => {
      const text = formatValue(real(), 5e-324)
      assert.isTrue(text.length > 700 && text.startsWith("4.9406564584124654") && text.endsWith("e-324"), text)
      assert.strictEqual(value(parseValue(real(), text)), 5e-324)
      assert.deepStrictEqual(error(parseValue(real(), "5e-324")), [invalid("test.real", "5e-324"), undefined])
    })

    it("an enum is shown by its canonical name and a string as is", () => {
      assert.strictEqual(formatValue(level, "AUTO"), "auto")
      assert.strictEqual(formatValue({ kind: "string", name: "test.string" }, " x "), " x ")
    })
  })

  describe("validateValue", () => {
    it("typed values of the right type and in range are accepted unchanged", () => {
      assert.strictEqual(value(validateValue(int("s", 1, 60), 10)), 10)
      assert.strictEqual(value(validateValue(real(undefined, 0, 1), 0.5)), 0.5)
      assert.strictEqual(value(validateValue(bool, false)), false)
      assert.strictEqual(value(validateValue({ kind: "string", name: "test.string" }, "x")), "x")
    })

    it("an enum name is accepted ignoring case and returned canonical", () => {
      assert.strictEqual(value(validateValue(level, "AUTO")), "auto")
    })

    it("a string for a non-string parameter is parsed as text", () => {
      assert.strictEqual(value(validateValue(int("s", 1, 600), "2min")), 120)
      assert.strictEqual(value(validateValue(bool, "yes")), true)
      assert.deepStrictEqual(error(validateValue(int("s", 1, 60), "2min")), [
        "120 s is outside the valid range for parameter \"test.int\" (1 s .. 60 s)",
        undefined
      ])
    })

    it("an int must be a safe integer within 32 bits and the range", () => {
      assert.deepStrictEqual(error(validateValue(int(), 1.5)), [invalid("test.int", "1.5"), undefined])
      assert.deepStrictEqual(error(validateValue(int(), NaN)), [invalid("test.int", "nan"), undefined])
      assert.deepStrictEqual(error(validateValue(int(), 2 ** 31)), [
        invalid("test.int", "2147483648"),
        "Value exceeds integer range."
      ])
      assert.deepStrictEqual(error(validateValue(int(undefined, 0, 10), 11)), [
        "11 is outside the valid range for parameter \"test.int\" (0 .. 10)",
        undefined
      ])
      assert.deepStrictEqual(error(validateValue(int(), true)), [invalid("test.int", "true"), undefined])
    })

    it("a real must be a number other than NaN within the range", () => {
      assert.deepStrictEqual(error(validateValue(real(), NaN)), [invalid("test.real", "nan"), undefined])
      assert.deepStrictEqual(error(validateValue(real(undefined, 0, 1), Infinity)), [
        "inf is outside the valid range for parameter \"test.real\" (0 .. 1)",
        undefined
      ])
      assert.deepStrictEqual(error(validateValue(real(), null)), [invalid("test.real", "null"), undefined])
    })

    it("a bool must be a boolean, an enum a name and a string a string", () => {
      assert.deepStrictEqual(error(validateValue(bool, 1)), notBoolean)
      assert.deepStrictEqual(error(validateValue(level, 1)), [invalid("test.level", "1"), levelHint])
      assert.deepStrictEqual(error(validateValue({ kind: "string", name: "test.string" }, 5)), [
        invalid("test.string", "5"),
        undefined
      ])
    })
  })

  describe("units", () => {
    it("unitsHint names the units of the parameter's family", () => {
      for (const unit of ["us", "ms", "s", "min", "h", "d"] as const) assert.strictEqual(unitsHint(unit), timeHint)
      for (const unit of ["B", "kB", "MB", "GB", "TB"] as const) assert.strictEqual(unitsHint(unit), memoryHint)
    })

    it("baseUnitLabel gives the pg_settings unit column, null without a unit", () => {
      assert.strictEqual(baseUnitLabel("ms"), "ms")
      assert.strictEqual(baseUnitLabel("kB"), "kB")
      assert.strictEqual(baseUnitLabel(undefined), null)
    })
  })
})

// -------------------------------------------------------------------------------------------------------------
// Properties
// -------------------------------------------------------------------------------------------------------------

const runs = Number(process.env.PROPERTY_RUNS ?? 1000)
const seed = process.env.PROPERTY_SEED
const propOptions = { arbitrary: { runs, ...(seed === undefined ? {} : { seed }) } }

const units: ReadonlyArray<Unit> = ["us", "ms", "s", "min", "h", "d", "B", "kB", "MB", "GB", "TB"]
const timeSizes: Record<string, number> = { us: 1, ms: 1e3, s: 1e6, min: 6e7, h: 3.6e9, d: 8.64e10 }
const memorySizes: Record<string, number> = { B: 1, kB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 }
/** The sizes of every unit of `unit`'s family, in `unit`. */
const multipliers = (unit: Unit): ReadonlyArray<number> => {
  const sizes = unit in timeSizes ? timeSizes : memorySizes
  return Object.values(sizes).map((size) => size / sizes[unit]!)
}

const Int = (minimum: number, maximum: number) =>
  Arbitrary.schema(Schema.Int.check(Schema.isBetween({ minimum, maximum })))

/** One of `arbitraries`, chosen uniformly. */
const oneOf = <A>(arbitraries: ReadonlyArray<Arbitrary.Arbitrary<A>>): Arbitrary.Arbitrary<A> =>
  Arbitrary.flatMap(Int(0, arbitraries.length - 1), (i) => arbitraries[i]!)

const pick = <A>(values: ReadonlyArray<A>): Arbitrary.Arbitrary<A> =>
  Arbitrary.map(Int(0, values.length - 1), (i) => values[i]!)

const OptionalUnit: Arbitrary.Arbitrary<Unit | undefined> = pick([...units, undefined])

/** Ints: anywhere in 32 bits, small, or whole multiples of one of the family's units. */
const intValue = (unit: Unit | undefined): Arbitrary.Arbitrary<number> =>
  oneOf([
    Int(INT_MIN, INT_MAX),
    Int(-1000, 1000),
    Arbitrary.flatMap(pick(unit === undefined ? [1, 10, 1000] : multipliers(unit).filter((m) => m >= 1)), (m) => {
      const k = Math.floor(INT_MAX / m)
      return Arbitrary.map(Int(-k, k), (n) => n * m)
    })
  ])

/** Reals: any finite double (subnormals included), infinities, short decimals, or multiples of a unit's size. */
const realValue = (unit: Unit | undefined): Arbitrary.Arbitrary<number> =>
  oneOf([
    Arbitrary.schema(Schema.Finite),
    pick([Infinity, -Infinity, 0, -0, 5e-324, Number.MAX_VALUE, Number.MIN_VALUE * 3]),
    Arbitrary.map(Arbitrary.all([Int(-100_000, 100_000), pick([1, 10, 100, 1000, 1e6])]), ([n, d]) => n / d),
    Arbitrary.map(
      Arbitrary.all([
        Int(-5000, 5000),
        pick([1, 0.5, 0.25, 0.1, 1.5]),
        pick(unit === undefined ? [1] : multipliers(unit))
      ]),
      ([n, f, m]) => n * f * m
    )
  ])

const asciiLower = (s: string): string => s.replace(/[A-Z]/g, (c) => c.toLowerCase())

interface Case {
  readonly spec: Spec
  readonly value: Value
}

/** A random parameter of each kind (int and real with each unit or none, random ranges) with a valid value. */
const ValidCase: Arbitrary.Arbitrary<Case> = oneOf<Case>([
  Arbitrary.flatMap(OptionalUnit, (unit) =>
    Arbitrary.map(
      Arbitrary.all([intValue(unit), Int(INT_MIN, INT_MAX), Int(INT_MIN, INT_MAX)]),
      ([v, a, b]): Case => ({
        spec: { kind: "int", name: "prop.int", min: Math.min(v, a), max: Math.max(v, b), unit },
        value: v
      })
    )),
  Arbitrary.flatMap(OptionalUnit, (unit) =>
    Arbitrary.map(
      Arbitrary.all([realValue(unit), realValue(unit), realValue(unit)]),
      ([v, a, b]): Case => ({
        spec: { kind: "real", name: "prop.real", min: Math.min(v, a), max: Math.max(v, b), unit },
        value: v
      })
    )),
  Arbitrary.map(Arbitrary.schema(Schema.Boolean), (v): Case => ({ spec: { kind: "bool", name: "prop.b" }, value: v })),
  Arbitrary.map(Arbitrary.schema(Schema.String), (v): Case => ({ spec: { kind: "string", name: "prop.s" }, value: v })),
  Arbitrary.flatMap(
    Arbitrary.schema(Schema.Array(Schema.Struct({ name: Schema.String, hidden: Schema.Boolean }))),
    (entries) => {
      const seen = new Set<string>()
      const distinct = entries.filter((entry) => !seen.has(asciiLower(entry.name)) && seen.add(asciiLower(entry.name)))
      const values = distinct.length === 0 ? [{ name: "only", hidden: false }] : distinct
      return Arbitrary.map(pick(values), (entry): Case => ({
        spec: { kind: "enum", name: "prop.enum", values },
        value: entry.name
      }))
    }
  )
])

const sameValue = (spec: Spec, a: Value, b: Value): boolean => spec.kind === "int" ? a === b : Object.is(a, b)

const tokens = [
  " ",
  "\t",
  "+",
  "-",
  "0",
  "1",
  "7",
  "8",
  "12",
  "0x",
  "1F",
  ".",
  "5",
  "e",
  "E",
  "3",
  "-2",
  "p",
  "inf",
  "nan",
  "99999999999",
  "us",
  "ms",
  "s",
  "min",
  "h",
  "d",
  "B",
  "kB",
  "MB",
  "GB",
  "TB",
  "kb",
  "Min",
  "mins",
  "x"
]

/** Text made of number and unit fragments (mostly malformed), or a well-formed number with an optional unit. */
const NumericText = oneOf([
  Arbitrary.map(Arbitrary.array(pick(tokens), { maxLength: 6 }), (parts) => parts.join("")),
  Arbitrary.map(
    Arbitrary.all([
      pick(["", " "]),
      pick(["", "-", "+"]),
      pick(["0", "1", "7", "12", "0x1F", "010", "1.5", ".5", "2.5", "1e3", "2.5e-3", "99999999999", "0.001", "1e-400"]),
      pick(["", " "]),
      pick(["", "", ...units, "kb", "sec"]),
      pick(["", " "])
    ]),
    (parts) => parts.join("")
  )
])

const NumericSpec: Arbitrary.Arbitrary<Spec> = Arbitrary.map(
  Arbitrary.all([pick(["int", "real"] as const), OptionalUnit, Int(INT_MIN, INT_MAX), Int(INT_MIN, INT_MAX)]),
  ([kind, unit, a, b]) => ({ kind, name: "prop.num", min: Math.min(a, b), max: Math.max(a, b), unit })
)

describe("properties", () => {
  it.prop(
    "parsing a formatted value gives the value back, for every type and unit",
    [ValidCase],
    ([{ spec, value: v }]) => {
      const text = formatValue(spec, v)
      const parsed = parseValue(spec, text)
      assert.isTrue(
        parsed.ok && sameValue(spec, parsed.value, v),
        `${JSON.stringify(spec)}: ${String(v)} -> ${JSON.stringify(text)} -> ${JSON.stringify(parsed)}`
      )
    },
    propOptions
  )

  it.prop(
    "a valid typed value passes validateValue unchanged, and so does its formatted text",
    [ValidCase],
    ([{ spec, value: v }]) => {
      const typed = validateValue(spec, v)
      assert.isTrue(typed.ok && sameValue(spec, typed.value, v), `${JSON.stringify(spec)}: ${String(v)}`)
      const text = validateValue(spec, formatValue(spec, v))
      assert.isTrue(text.ok && sameValue(spec, text.value, v), `${JSON.stringify(spec)}: ${String(v)} as text`)
    },
    propOptions
  )

  it.prop(
    "any text parses to an in-range value of the parameter's type that formats and parses back the same, " +
      "or fails with one of PostgreSQL's messages",
    [NumericSpec, NumericText],
    ([spec, text]) => {
      if (spec.kind !== "int" && spec.kind !== "real") return
      const parsed = parseValue(spec, text)
      if (parsed.ok) {
        const n = parsed.value
        assert.isTrue(typeof n === "number" && n >= spec.min && n <= spec.max, `${text} -> ${String(n)}`)
        if (spec.kind === "int") assert.isTrue(Number.isInteger(n) && !Object.is(n, -0), `${text} -> ${String(n)}`)
        const again = parseValue(spec, formatValue(spec, n))
        const trace = `${text} -> ${String(n)} -> ${JSON.stringify(again)}`
        assert.isTrue(again.ok && sameValue(spec, again.value, n), trace)
      } else {
        const unitHint = spec.unit === undefined ? undefined : unitsHint(spec.unit)
        const unitSuffix = spec.unit === undefined ? "" : ` ${spec.unit}`
        const range = spec.kind === "int" ? `(${spec.min}${unitSuffix} .. ${spec.max}${unitSuffix})` : "("
        const outOfRange = parsed.message.includes(` is outside the valid range for parameter "${spec.name}" ${range}`)
        assert.isTrue(parsed.message === invalid(spec.name, text) || outOfRange, `${text}: ${parsed.message}`)
        const hints = outOfRange ? [undefined] : [undefined, unitHint, "Value exceeds integer range."]
        assert.isTrue(hints.includes(parsed.hint), `${text}: ${parsed.message} (${parsed.hint})`)
      }
    },
    propOptions
  )
})
