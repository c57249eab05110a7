/**
 * Aligned text tables (psql's unaligned-off output): `Activity.formatTable`'s and the CLI's.
 *
 * @internal
 */
import { escape } from "./logText.ts"

/**
 * A header, a `-+-` rule and the rows, columns padded to their widest cell. Every cell is escaped
 * (`logText.escape`): names and messages come from other roles, and a control character in one could
 * otherwise add a row or rewrite the terminal.
 */
export const alignedTable = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const body = rows.map((row) => row.map(escape))
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]?.length ?? 0)))
  const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ").trimEnd()
  return [line(header), widths.map((w) => "-".repeat(w)).join("-+-"), ...body.map(line)].join("\n")
}
