import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer, Metric } from "effect"
import * as Net from "node:net"
import * as BackgroundWorker from "../../src/BackgroundWorker.ts"
import * as NodeSupervisor from "../../src/node/NodeSupervisor.ts"
import * as Supervisor from "../../src/Supervisor.ts"
import { napForever, untilQuiet } from "../fixtures.ts"

const freePort = Effect.callback<number>((resume) => {
  const server = Net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const port = (server.address() as Net.AddressInfo).port
    server.close(() => resume(Effect.succeed(port)))
  })
})

describe("NodeSupervisor.layerMetrics", () => {
  it.live("serves the supervisor's metrics as Prometheus text on loopback", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const text = yield* Effect.gen(function*() {
        yield* Supervisor.register(BackgroundWorker.make({ name: "scraped", main: () => napForever() }))
        yield* untilQuiet
        const response = yield* Effect.promise(() => fetch(`http://127.0.0.1:${port}/metrics`))
        assert.strictEqual(response.status, 200)
        const missing = yield* Effect.promise(() => fetch(`http://127.0.0.1:${port}/other`))
        assert.strictEqual(missing.status, 404)
        return yield* Effect.promise(() => response.text())
      }).pipe(
        Effect.provide(
          Layer.merge(Supervisor.layer({ maxWorkerProcesses: 4 }), NodeSupervisor.layerMetrics({ port }))
        ),
        Effect.provideService(Metric.MetricRegistry, new Map())
      )
      assert.match(text, /bgworker_starts(_total)?\{worker_type="scraped"\} 1/)
      assert.match(text, /bgworker_launches_accepted(_total)?\{worker_type="scraped"\} 1/)
      assert.match(text, /bgworker_slots_used 1/)
      assert.match(text, /bgworker_slots_free 3/)
      assert.match(text, /bgworker_workers\{[^}]*state="running"[^}]*\} 1/)
      assert.match(text, /bgworker_latch_wait_seconds_bucket\{/)
    }))

  it.live("a port in use: the layer dies with EADDRINUSE (the process does not crash, nothing hangs)", () =>
    Effect.gen(function*() {
      const taken = Net.createServer()
      yield* Effect.acquireRelease(
        Effect.callback<void>((resume) => {
          taken.listen(0, "127.0.0.1", () => resume(Effect.void))
        }),
        () =>
          Effect.callback<void>((resume) => {
            taken.close(() => resume(Effect.void))
          })
      )
      const port = (taken.address() as Net.AddressInfo).port
      const exit = yield* Effect.exit(Layer.build(NodeSupervisor.layerMetrics({ port })))
      assert.isTrue(Exit.isFailure(exit))
      assert.include(String(Exit.isFailure(exit) ? Cause.squash(exit.cause) : ""), "EADDRINUSE")
    }).pipe(Effect.scoped))
})
