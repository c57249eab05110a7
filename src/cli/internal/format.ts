/**
 * The CLI's output: aligned tables in the style of `Activity.formatTable` (and psql's `(N rows)` footer),
 * and JSON for scripts. Every cell is escaped: names and messages come from other roles.
 *
 * @internal
 */
import { escape } from "../../internal/logText.ts"

/** A table: a header, a `-+-` rule, the rows, and psql's row count. */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const body = rows.map((row) => row.map(escape))
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]?.length ?? 0)))
  const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ").trimEnd()
  const count = rows.length === 1 ? "(1 row)" : `(${rows.length} rows)`
  return [line(header), widths.map((w) => "-".repeat(w)).join("-+-"), ...body.map(line), count].join("\n")
}

/** JSON for scripts: bigints as numbers (as strings past 2^53), dates in ISO 8601. */
export const json = (value: unknown): string =>
  JSON.stringify(value, (_key, v: unknown) =>
    typeof v === "bigint"
      ? v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v.toString()
      : v)

/** A cell: empty for SQL NULL. */
export const cell = (value: unknown): string =>
  value === null || value === undefined
    ? ""
    : value instanceof Date
    ? value.toISOString()
    : String(value)

/** A text cut to `max` characters, with an ellipsis. */
export const cut = (text: string, max: number): string => text.length > max ? `${text.slice(0, max - 1)}…` : text
