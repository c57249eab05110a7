import { assert, describe, it } from "@effect/vitest"
import { Clock, Deferred, Effect, Exit, Option, Tracer } from "effect"
import { TestClock } from "effect/testing"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import * as Supervisor from "../src/Supervisor.ts"
import { commanded, napForever, tell, untilQuiet, untilState, untilStatus, withSupervisor } from "./fixtures.ts"

/** A tracer that keeps every span it makes, in order (effect's own span implementation, in memory). */
const recorder = () => {
  const spans: Array<Tracer.NativeSpan> = []
  const tracer = Tracer.make({
    span: (options) => {
      const span = new Tracer.NativeSpan(options)
      spans.push(span)
      return span
    }
  })
  const named = (name: string) => spans.filter((s) => s.name === name)
  return { spans, tracer, named }
}

const parentOf = (span: Tracer.Span) => Option.getOrUndefined(span.parent)

describe("Supervisor tracing", () => {
  it.effect("each incarnation is a span; a restart is a new trace linked to the previous incarnation", () => {
    const { named, tracer } = recorder()
    return Effect.gen(function*() {
      const command = { current: "nap" as "nap" | "return" | "fail" }
      const h = yield* Supervisor.register(
        commanded("flaky", { restart: BackgroundWorker.restartAfter("2 seconds"), command })
      ).pipe(Effect.withSpan("caller"))
      yield* untilQuiet
      yield* tell(h, command, "fail")
      command.current = "nap"
      yield* TestClock.adjust("2 seconds")
      yield* untilStatus(h, "restarted", (s) => s._tag === "Started")
      yield* tell(h, command, "return")
      yield* untilQuiet

      const [caller] = named("caller")
      const incarnations = named("bgworker flaky")
      assert.strictEqual(incarnations.length, 2)
      const [first, second] = incarnations as [Tracer.NativeSpan, Tracer.NativeSpan]
      // The first incarnation is a child of the span that registered the worker.
      assert.strictEqual(parentOf(first), caller)
      assert.strictEqual(first.traceId, caller!.traceId)
      assert.strictEqual(first.attributes.get("bgworker.name"), "flaky")
      assert.strictEqual(first.attributes.get("bgworker.type"), "flaky")
      assert.isNumber(first.attributes.get("bgworker.pid"))
      assert.strictEqual(first.attributes.get("bgworker.exit"), "failed")
      assert.strictEqual(first.attributes.get("bgworker.exit.reason"), "error")
      assert.strictEqual(first.attributes.get("bgworker.exit.message"), "boom")
      assert.strictEqual(first.status._tag, "Ended")
      if (first.status._tag === "Ended") assert.strictEqual(first.status.exit._tag, "Failure")
      // The restart: a root span of its own trace, linked to the previous incarnation and to the caller.
      assert.isUndefined(parentOf(second))
      assert.notStrictEqual(second.traceId, first.traceId)
      assert.deepStrictEqual(
        second.links.map((l) => [l.span.traceId, l.span.spanId, l.attributes["bgworker.link"]]),
        [[first.traceId, first.spanId, "previous incarnation"], [caller!.traceId, caller!.spanId, "registered by"]]
      )
      // The link holds the previous span's identifiers, not the span (no chain of every earlier incarnation).
      assert.strictEqual(second.links[0]!.span._tag, "ExternalSpan")
      assert.isAbove(second.attributes.get("bgworker.pid") as number, first.attributes.get("bgworker.pid") as number)
      assert.strictEqual(second.attributes.get("bgworker.exit"), "done")
      if (second.status._tag === "Ended") assert.strictEqual(second.status.exit._tag, "Success")
    }).pipe(withSupervisor(), Effect.withTracer(tracer))
  })

  it.effect("a crash ends the crashed incarnation's span as crashed and an abandoned sibling's as abandoned", () => {
    const { named, tracer } = recorder()
    return Effect.gen(function*() {
      const release = yield* Deferred.make<void>()
      const command = { current: "nap" as "nap" | "die" }
      const crasher = yield* Supervisor.register(
        commanded("crasher", { shmem: true, restart: BackgroundWorker.restartAfter("1 minute"), command })
      )
      let incarnations = 0
      yield* Supervisor.register(BackgroundWorker.make({
        name: "stuck",
        restart: BackgroundWorker.restartAfter("1 hour"),
        main: () =>
          Effect.gen(function*() {
            // The first incarnation's finalizer waits for `release`: the crash restart abandons it.
            if (++incarnations === 1) yield* Effect.addFinalizer(() => Deferred.await(release))
            yield* napForever()
          })
      }))
      yield* untilQuiet
      yield* tell(crasher, command, "die")
      command.current = "nap"
      yield* TestClock.adjust("5 seconds")
      yield* untilState("running")
      const [crashed] = named("bgworker crasher")
      assert.strictEqual(crashed!.attributes.get("bgworker.exit"), "crashed")
      assert.strictEqual(crashed!.attributes.get("bgworker.exit.message"), "segfault")
      if (crashed!.status._tag === "Ended") assert.isTrue(Exit.hasDies(crashed!.status.exit))
      const [abandoned] = named("bgworker stuck")
      assert.strictEqual(abandoned!.attributes.get("bgworker.exit"), "abandoned")
      assert.match(String(abandoned!.attributes.get("bgworker.exit.message")), /^abandoned after /)
      assert.strictEqual(abandoned!.status._tag, "Ended")
      yield* Deferred.succeed(release, undefined)
    }).pipe(withSupervisor({ abandonTimeout: "5 seconds" }), Effect.withTracer(tracer))
  })

  it.effect("a worker's own spans are children of its incarnation's span", () => {
    const { named, tracer } = recorder()
    return Effect.gen(function*() {
      const worker = BackgroundWorker.make({
        name: "spanner",
        type: "spanners",
        main: () => Effect.withSpan(Effect.void, "spanner.work")
      })
      const h = yield* Supervisor.register(worker)
      yield* untilStatus(h, "stopped", (s) => s._tag === "Stopped")
      const [incarnation] = named("bgworker spanners")
      const [work] = named("spanner.work")
      assert.isDefined(incarnation)
      assert.strictEqual(parentOf(work!), incarnation)
      assert.strictEqual(incarnation!.attributes.get("bgworker.name"), "spanner")
      assert.strictEqual(incarnation!.attributes.get("bgworker.exit"), "done")
      // Registered outside any span: a trace of its own.
      assert.isUndefined(parentOf(incarnation!))
    }).pipe(withSupervisor(), Effect.withTracer(tracer))
  })

  it.effect("an incarnation's span is timed by the supervisor's clock, around the worker's own spans, even after the clock is set back", () => {
    const { named, tracer } = recorder()
    return Effect.gen(function*() {
      const worker = (name: string) =>
        BackgroundWorker.make({ name, main: () => Effect.withSpan(Effect.sleep("3 seconds"), `${name}.work`) })
      const run = (name: string) =>
        Effect.gen(function*() {
          const startedAt = yield* Clock.currentTimeNanos
          const h = yield* Supervisor.register(worker(name))
          yield* untilStatus(h, "started", (s) => s._tag === "Started")
          yield* TestClock.adjust("3 seconds")
          yield* untilStatus(h, "stopped", (s) => s._tag === "Stopped")
          const [incarnation] = named(`bgworker ${name}`)
          const [work] = named(`${name}.work`)
          assert.strictEqual(parentOf(work!), incarnation)
          assert.strictEqual(incarnation!.status._tag, "Ended")
          assert.strictEqual(work!.status._tag, "Ended")
          if (incarnation!.status._tag !== "Ended" || work!.status._tag !== "Ended") return
          assert.strictEqual(incarnation!.status.startTime, startedAt)
          assert.strictEqual(incarnation!.status.endTime, startedAt + 3_000_000_000n)
          assert.isAtLeast(Number(work!.status.startTime - incarnation!.status.startTime), 0)
          assert.isAtLeast(Number(incarnation!.status.endTime - work!.status.endTime), 0)
        })
      yield* TestClock.adjust("1 hour")
      yield* run("timed")
      // The wall clock set back half an hour; the monotonic clock does not go back.
      yield* TestClock.setTime(30 * 60 * 1000)
      yield* run("timed.again")
    }).pipe(withSupervisor(), Effect.withTracer(tracer))
  })

  it.effect("tracing: false makes no span, even with a tracer installed", () => {
    const { spans, tracer } = recorder()
    return Effect.gen(function*() {
      const parent: Array<boolean> = []
      const worker = BackgroundWorker.make({
        name: "quiet",
        main: () => Effect.map(Effect.option(Effect.currentParentSpan), (s) => void parent.push(Option.isSome(s)))
      })
      const h = yield* Supervisor.register(worker)
      yield* untilStatus(h, "stopped", (s) => s._tag === "Stopped")
      assert.deepStrictEqual(spans.map((s) => s.name), [])
      assert.deepStrictEqual(parent, [false])
    }).pipe(withSupervisor({ tracing: false }), Effect.withTracer(tracer))
  })

  it.effect("without a tracer that records spans, a worker runs with no span of the supervisor's", () =>
    Effect.gen(function*() {
      const parent: Array<boolean> = []
      const worker = BackgroundWorker.make({
        name: "untraced",
        main: () => Effect.map(Effect.option(Effect.currentParentSpan), (s) => void parent.push(Option.isSome(s)))
      })
      const h = yield* Supervisor.register(worker)
      yield* untilStatus(h, "stopped", (s) => s._tag === "Stopped")
      assert.deepStrictEqual(parent, [false])
    }).pipe(withSupervisor()))
})
