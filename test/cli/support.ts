/**
 * Test support for the `bgworker` CLI: runs the real executable (`src/cli/bin.ts` on the repository's
 * Node 24, with the source condition, as the installed `bin` runs `dist/cli/bin.js`) as a child process to
 * its end, and returns its exit code and its two output streams apart.
 */
import * as Effect from "effect/Effect"
import type * as PlatformError from "effect/PlatformError"
import * as ChildProcess from "effect/process/ChildProcess"
import type { ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import * as Stream from "effect/Stream"
import * as path from "node:path"
import { nodeBinary, repoRoot, sourceCondition } from "../node/fixtures/child.ts"

/** The executable, relative to the repository root (for `spawn` of test/node/fixtures/child.ts). */
export const bin = "src/cli/bin.ts"

export interface Result {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/**
 * `bgworker <args>` with `env` over this process's environment, without `DATABASE_URL` and `PG*` unless
 * `env` sets them (so that a developer's own variables never point a test at their server).
 */
export const bgworker = (
  args: ReadonlyArray<string>,
  env: Record<string, string> = {}
): Effect.Effect<Result, PlatformError.PlatformError, ChildProcessSpawner> =>
  Effect.scoped(Effect.gen(function*() {
    const inherited = Object.fromEntries(
      Object.entries(process.env).filter(([name, value]) =>
        value !== undefined && name !== "DATABASE_URL" && !name.startsWith("PG")
      )
    ) as Record<string, string>
    const handle = yield* ChildProcess.make(nodeBinary, [sourceCondition, path.join(repoRoot, bin), ...args], {
      cwd: repoRoot,
      env: { ...inherited, ...env },
      extendEnv: false,
      stdin: "ignore",
      forceKillAfter: "2 seconds"
    })
    const text = (stream: Stream.Stream<Uint8Array, PlatformError.PlatformError>) =>
      Stream.mkString(Stream.decodeText(stream))
    const [stdout, stderr, code] = yield* Effect.all([text(handle.stdout), text(handle.stderr), handle.exitCode], {
      concurrency: "unbounded"
    })
    return { code: Number(code), stdout, stderr }
  }))

/** The result shown in an assertion's message. */
export const show = (result: Result): string =>
  `exit code ${result.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`
