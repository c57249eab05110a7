/**
 * Result rows and the final table.
 *
 * Every benchmark returns `Row`s: our figure, the raw-Effect baseline measured in the same process run, the
 * ratio between them expressed as a cost factor (how many times the raw cost ours is: >1 means slower,
 * later or bigger, whatever the unit), the target as text and whether it is met. `printTable` prints them
 * as one aligned table; the helpers here (statistics, heap snapshots, clock) are shared by the benchmarks.
 */
import * as os from "node:os"

export interface Row {
  readonly figure: string
  /** Unit of `ours` and `baseline`. */
  readonly unit: Unit
  readonly ours: number
  readonly baseline: number
  /** Cost factor versus raw Effect: >1 = ours is worse (fewer cycles/s, more µs, more bytes). */
  readonly ratio: number
  readonly target: string
  /** `undefined`: informational row without a target. */
  readonly ok: boolean | undefined
}

export type Unit = "cycles/s" | "ns" | "µs" | "KB" | "MB" | "ms"

/** Cost factor for a throughput (higher is better): raw / ours. */
export const throughputRatio = (ours: number, raw: number): number => raw / ours
/** Cost factor for a cost (latency, bytes, time; lower is better): ours / raw. */
export const costRatio = (ours: number, raw: number): number => ours / raw

export const now = (): number => performance.now()

/** The q-quantile (0..1) of samples, by nearest rank; sorts `samples` in place. */
export const quantile = (samples: Float64Array, q: number): number => {
  samples.sort()
  const rank = Math.min(samples.length - 1, Math.max(0, Math.ceil(q * samples.length) - 1))
  return samples[rank]!
}

export const median = (xs: ReadonlyArray<number>): number => {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** Full garbage collection (several passes, so weak and finalizable objects go too), then `heapUsed`. */
export const heapAfterGc = (): number => {
  const gc = globalThis.gc
  if (gc === undefined) {
    throw new Error("global.gc is not exposed: run the benchmarks with `npm run bench` (node --expose-gc)")
  }
  for (let i = 0; i < 4; i++) gc()
  return process.memoryUsage().heapUsed
}

/** Progress lines go to stderr so stdout carries only the results. */
export const progress = (line: string): void => {
  process.stderr.write(`  ${line}\n`)
}

const formatValue = (value: number, unit: Unit): string => {
  switch (unit) {
    case "cycles/s":
      return value >= 1e6
        ? `${(value / 1e6).toFixed(2)}M/s`
        : value >= 1e3
        ? `${(value / 1e3).toFixed(1)}k/s`
        : `${value.toFixed(0)}/s`
    case "ns":
      return `${value < 10 ? value.toFixed(2) : value.toFixed(1)} ns`
    case "µs":
      return `${value < 10 ? value.toFixed(3) : value.toFixed(1)} µs`
    case "KB":
      return `${value.toFixed(2)} KB`
    case "MB":
      return `${value.toFixed(1)} MB`
    case "ms":
      return `${value < 100 ? value.toFixed(1) : value.toFixed(0)} ms`
  }
}

export const header = (): string => {
  const cpus = os.cpus()
  return `effect-bgworker benchmarks: node ${process.version}, ${cpus.length} × ${cpus[0]?.model ?? "cpu"}, ` +
    `${os.platform()}-${os.arch()}`
}

export const printTable = (rows: ReadonlyArray<Row>): void => {
  const head = ["figure", "ours", "baseline (raw Effect)", "ratio", "target", "ok"] as const
  const body = rows.map((r) => [
    r.figure,
    formatValue(r.ours, r.unit),
    formatValue(r.baseline, r.unit),
    `${r.ratio.toFixed(2)}×`,
    r.target,
    r.ok === undefined ? "—" : r.ok ? "yes" : "NO"
  ])
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((cells) => cells[i]!.length)))
  // Text columns left-aligned, numbers right-aligned.
  const right = [false, true, true, true, false, false]
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((c, i) => right[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)).join(" | ").trimEnd()
  const out: Array<string> = []
  out.push(line(head))
  out.push(widths.map((w) => "-".repeat(w)).join("-|-"))
  for (const cells of body) out.push(line(cells))
  const failed = rows.filter((r) => r.ok === false).length
  const checked = rows.filter((r) => r.ok !== undefined).length
  out.push("")
  out.push(
    "ratio = cost factor versus raw Effect (raw/ours for throughput, ours/raw for latency, memory and time; " +
      ">1 = ours is worse)"
  )
  out.push(`targets met: ${checked - failed}/${checked}`)
  process.stdout.write(out.join("\n") + "\n")
}
