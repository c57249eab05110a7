/** Small statistics and formatting helpers for the chaos suite's report. */

/** The `p`-th percentile (0..100) of `xs` by nearest rank; `undefined` for an empty list. */
export const percentile = (xs: ReadonlyArray<number>, p: number): number | undefined => {
  if (xs.length === 0) return undefined
  const sorted = [...xs].sort((a, b) => a - b)
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length))
  return sorted[rank - 1]
}

const ms = (x: number | undefined) => x === undefined ? "-" : `${Math.round(x)} ms`

/** A fixed-width table: the first row is the header. */
export const table = (rows: ReadonlyArray<ReadonlyArray<string | number>>): string => {
  const widths: Array<number> = []
  for (const row of rows) row.forEach((cell, i) => widths[i] = Math.max(widths[i] ?? 0, String(cell).length))
  return rows.map((row) => row.map((cell, i) => String(cell).padEnd(widths[i]!)).join("  ").trimEnd()).join("\n")
}

export interface Recovery {
  readonly kind: string
  /** Milliseconds from the fault until recovered; `undefined` when it did not recover within the bound. */
  readonly ms: number | undefined
}

/** One line per kind: faults, recovered, p50, max. */
export const recoveryTable = (
  injected: ReadonlyMap<string, number>,
  recoveries: ReadonlyArray<Recovery>
): string => {
  const rows: Array<Array<string | number>> = [["fault", "injected", "recovered", "not recovered", "p50", "max"]]
  for (const [kind, count] of [...injected].sort(([a], [b]) => a.localeCompare(b))) {
    const mine = recoveries.filter((r) => r.kind === kind)
    const times = mine.flatMap((r) => r.ms === undefined ? [] : [r.ms])
    rows.push([
      kind,
      count,
      times.length,
      mine.length - times.length,
      ms(percentile(times, 50)),
      ms(times.length === 0 ? undefined : Math.max(...times))
    ])
  }
  const all = recoveries.flatMap((r) => r.ms === undefined ? [] : [r.ms])
  rows.push([
    "all",
    [...injected.values()].reduce((a, b) => a + b, 0),
    all.length,
    recoveries.length - all.length,
    ms(percentile(all, 50)),
    ms(all.length === 0 ? undefined : Math.max(...all))
  ])
  return table(rows)
}
