import { availableParallelism, tmpdir } from "node:os"
import * as path from "node:path"
import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Most test files wait on real processes, servers and cluster timings rather than compute: vitest's default
    // (one worker per core, less one) would run a 2-core machine's files one at a time (about 435 s there); two
    // workers keep both cores busy (about 230 s). Elsewhere the default stands. Files run longest first (the
    // sequencer's cache of the previous run's durations, else the largest file first).
    maxWorkers: Math.max(2, availableParallelism() - 1),
    // The child processes the tests start (cluster members, the CLI, the examples: Node on the TypeScript sources)
    // keep their compiled code in Node's compile cache (keyed by each file's contents) between runs: a start costs
    // about a third less CPU, with the same code run.
    env: {
      NODE_COMPILE_CACHE: process.env["NODE_COMPILE_CACHE"] ?? path.join(tmpdir(), "effect-bgworker-node-compile-cache")
    },
    // The JSON report lets .ci/run print a runner-neutral "N passed, N failed" closing line.
    reporters: ["default", ["json", { outputFile: ".vitest-report.json" }]]
  }
})
