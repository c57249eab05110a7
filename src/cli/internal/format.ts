/**
 * The CLI's output: aligned tables in the style of `Activity.formatTable` (and psql's `(N rows)` footer),
 * and JSON for scripts. Every cell is escaped: names and messages come from other roles.
 *
 * @internal
 */
import { alignedTable } from "../../internal/table.ts"

/** A table: a header, a `-+-` rule, the rows (escaped), and psql's row count. */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string =>
  `${alignedTable(header, rows)}\n${rows.length === 1 ? "(1 row)" : `(${rows.length} rows)`}`

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
