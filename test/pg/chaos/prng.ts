/**
 * A small seeded PRNG for the chaos suite (mulberry32): every random choice of a run (fault kind, timing,
 * target, delta values) is drawn from one of these, so `CHAOS_SEED` reproduces the schedule of a failing run.
 * (What the system under test does in between is timing-dependent; the schedule of faults is not.)
 */
export interface Prng {
  /** A number in [0, 1). */
  readonly next: () => number
  /** An integer in [lo, hi] (both inclusive). */
  readonly int: (lo: number, hi: number) => number
  /** One element of a non-empty array. */
  readonly pick: <A>(xs: ReadonlyArray<A>) => A
  /** Chooses a key with probability proportional to its weight. */
  readonly weighted: <K extends string>(weights: Readonly<Record<K, number>>) => K
  /** Up to `n` distinct elements, in random order. */
  readonly sample: <A>(xs: ReadonlyArray<A>, n: number) => Array<A>
  /** An independent generator seeded from this one (one per concurrent fiber keeps each stream reproducible). */
  readonly fork: () => Prng
}

export const make = (seed: number): Prng => {
  let state = seed >>> 0
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1))
  const self: Prng = {
    next,
    int,
    pick: (xs) => xs[Math.floor(next() * xs.length)]!,
    weighted: (weights) => {
      const entries = Object.entries(weights) as Array<[keyof typeof weights, number]>
      const total = entries.reduce((n, [, w]) => n + w, 0)
      let x = next() * total
      for (const [key, w] of entries) {
        if (x < w) return key as never
        x -= w
      }
      return entries[entries.length - 1]![0] as never
    },
    sample: (xs, n) => {
      const copy = [...xs]
      for (let i = copy.length - 1; i > 0; i--) {
        const j = Math.floor(next() * (i + 1))
        ;[copy[i], copy[j]] = [copy[j]!, copy[i]!]
      }
      return copy.slice(0, Math.max(0, n))
    },
    fork: () => make(Math.floor(next() * 4294967296))
  }
  return self
}

/** `CHAOS_SEED` when set (a decimal integer), else a random one. */
export const seedFromEnv = (): number => {
  const text = process.env["CHAOS_SEED"]
  if (text !== undefined && text.trim() !== "") {
    const seed = Number(text)
    if (!Number.isInteger(seed) || seed < 0 || seed > 4294967295) {
      throw new Error(`CHAOS_SEED must be an integer from 0 to 4294967295, not "${text}"`)
    }
    return seed
  }
  return Math.floor(Math.random() * 4294967296)
}
