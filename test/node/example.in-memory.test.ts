import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type { Child } from "./fixtures/child.ts"
import { spawn } from "./fixtures/child.ts"

const example = "examples/10_in-memory.ts"

const assertLine = (child: Child, pattern: RegExp) =>
  Effect.gen(function*() {
    const output = yield* child.output
    const found = output.some((line) => pattern.test(line))
    assert.isTrue(found, `expected a line matching ${pattern} in:\n${output.join("\n")}`)
  })

describe("examples/10_in-memory.ts", () => {
  it.live(
    "walks through its scenario and exits with code 0 once EXAMPLE_EXIT_AFTER_MS has passed",
    () =>
      Effect.gen(function*() {
        const child = yield* spawn(example, { EXAMPLE_EXIT_AFTER_MS: "5000" })
        yield* child.waitFor("supervisor ready")
        // The latch wake-up, the crash restart and the terminate, in the order the session drives them.
        yield* child.waitFor(/ napper \(napper\) LOG: +woken early by its latch/)
        yield* child.waitFor(/\] Supervisor ERROR: +background worker "flaky" \(PID \d+\) crashed/)
        yield* child.waitFor("all server processes terminated; reinitializing")
        yield* child.waitFor(/ flaky \(flaky\) LOG: +shared counters are consistent in generation 1/)
        yield* child.waitFor(/\] session LOG: +sampler is Stopped/)
        const exit = yield* child.awaitExit("8 seconds")
        assert.deepStrictEqual(exit, { code: 0 })
        yield* assertLine(child, /^\tpid +\| name +\| type +\| registration/)
        yield* assertLine(child, / sampler \(sampler\) LOG: +finalizer ran/)
        yield* assertLine(child, /\] shmem LOG: +shared counters discarded/)
      }).pipe(Effect.provide(NodeServices.layer)),
    20_000
  )

  it.live(
    "Ctrl-C (SIGINT) stops it with a fast shutdown: every worker's finalizer runs, exit code 130",
    () =>
      Effect.gen(function*() {
        const child = yield* spawn(example)
        yield* child.waitFor("supervisor ready")
        // After the crash restart: a signal during the restart finds the workers already stopped, or not yet back.
        yield* child.waitFor(/ flaky \(flaky\) LOG: +shared counters are consistent in generation 1/)
        yield* child.signal("SIGHUP")
        yield* child.waitFor(/ ticker \(ticker\) LOG: +reload requested/)
        yield* child.signal("SIGINT")
        const exit = yield* child.awaitExit("5 seconds")
        assert.deepStrictEqual(exit, { code: 130 })
        yield* assertLine(child, /\] Supervisor LOG: +received fast shutdown request/)
        for (const worker of ["ticker", "napper"]) {
          const output = yield* child.output
          const shutdownAt = output.findIndex((line) => line.includes("received fast shutdown request"))
          assert.isTrue(
            output.slice(shutdownAt).some((line) => line.includes(`${worker} (${worker}) LOG:  finalizer ran`)),
            `no finalizer line from ${worker} after the shutdown request:\n${output.join("\n")}`
          )
        }
      }).pipe(Effect.provide(NodeServices.layer)),
    15_000
  )
})
