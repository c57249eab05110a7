/**
 * Errors with identity (src/SupervisorError.ts, src/WorkerConnector.ts): a type id that the guards read,
 * whatever the static type says, and an `isRetryable` that says whether the same call may succeed later
 * without a change by the caller.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Schema } from "effect"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import * as ProcLatch from "../src/ProcLatch.ts"
import * as Supervisor from "../src/Supervisor.ts"
import * as SupervisorError from "../src/SupervisorError.ts"
import * as WorkerConnector from "../src/WorkerConnector.ts"

const denied = { caller: "alice", worker: "w", problem: `permission denied to set role "postgres"` }

/** Every reason, with the retryability the module comment's table gives it. */
const table: ReadonlyArray<readonly [SupervisorError.SupervisorErrorReason, boolean]> = [
  [new SupervisorError.NoFreeSlot({ maxWorkerProcesses: 1 }), true],
  [new SupervisorError.InvalidDefinition({ worker: "w", field: "name", detail: "empty" }), false],
  [new SupervisorError.InvalidArgument({ worker: "w", detail: "expected a number" }), false],
  [new SupervisorError.UnknownEntryPoint({ library: "lib", function: "main" }), false],
  [new SupervisorError.ShuttingDown({ mode: "fast" }), false],
  [new SupervisorError.PermissionDenied(denied), false],
  [new SupervisorError.PermissionDenied({ ...denied, sqlstate: "42704" }), false],
  [new SupervisorError.PermissionDenied({ ...denied, sqlstate: "08000" }), true],
  [new SupervisorError.ShmemInitFailed({ struct: "counters", detail: "initializer died" }), false],
  [new SupervisorError.DatabaseLost({ detail: "the server exited" }), false]
]

class Lookalike extends Schema.TaggedError<Lookalike>()("SupervisorError", { reason: Schema.Unknown }) {}

/** Naps on its latch, so a terminate request ends it at its wait, without the clock. */
const sleeper = BackgroundWorker.make({
  name: "sleeper",
  main: () => Effect.forever(Effect.andThen(ProcLatch.wait({ onPostmasterDeath: "exit" }), ProcLatch.reset))
})

describe("SupervisorError", () => {
  it("the table covers every reason of the union", () => {
    const tags = new Set<string>(table.map(([reason]) => reason._tag))
    assert.deepStrictEqual(
      SupervisorError.SupervisorErrorReason.members.map((member) => tags.has(member.identifier)),
      SupervisorError.SupervisorErrorReason.members.map(() => true)
    )
  })

  it("each reason is retryable as the table says, and the wrapper says what its reason says", () => {
    for (const [reason, retryable] of table) {
      assert.strictEqual(reason.isRetryable, retryable, reason._tag)
      const error = new SupervisorError.SupervisorError({ reason })
      assert.strictEqual(error.isRetryable, retryable, reason._tag)
      assert.strictEqual(error.message, reason.message)
    }
  })

  it("isSupervisorError recognises the wrapper only, isSupervisorErrorReason each reason only", () => {
    for (const [reason] of table) {
      const error = new SupervisorError.SupervisorError({ reason })
      assert.isTrue(SupervisorError.isSupervisorError(error))
      assert.isFalse(SupervisorError.isSupervisorErrorReason(error))
      assert.isTrue(SupervisorError.isSupervisorErrorReason(reason))
      assert.isFalse(SupervisorError.isSupervisorError(reason))
    }
  })

  it("the guards refuse look-alikes: same tag, same fields, or no object at all", () => {
    const reason = table[0]![0]
    const lookalikes: ReadonlyArray<unknown> = [
      new Lookalike({ reason }),
      { _tag: "SupervisorError", reason, message: reason.message },
      { _tag: "NoFreeSlot", maxWorkerProcesses: 1 },
      new Error("no free background worker slot"),
      null,
      undefined,
      "SupervisorError"
    ]
    for (const u of lookalikes) {
      assert.isFalse(SupervisorError.isSupervisorError(u))
      assert.isFalse(SupervisorError.isSupervisorErrorReason(u))
    }
  })

  it("the type ids stay out of an error's JSON and own keys", () => {
    const reason = new SupervisorError.NoFreeSlot({ maxWorkerProcesses: 1 })
    const error = new SupervisorError.SupervisorError({ reason })
    assert.notInclude(JSON.stringify(error), "~effect-bgworker")
    assert.isFalse(Object.keys(error).some((key) => key.startsWith("~")))
    assert.isFalse(Object.keys(reason).some((key) => key.startsWith("~")))
  })

  it.effect("a full slot table fails retryably (seen in the Cause), and the same call succeeds once a slot frees", () =>
    Effect.gen(function*() {
      const first = yield* Supervisor.register(sleeper)
      const exit = yield* Effect.exit(Supervisor.register(sleeper))
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
      assert.isTrue(SupervisorError.isSupervisorError(error))
      assert.isTrue(SupervisorError.isSupervisorError(error) && error.isRetryable)
      yield* Supervisor.terminate(first)
      yield* Supervisor.awaitShutdown(first)
      yield* Supervisor.register(sleeper)
    }).pipe(Effect.provide(Supervisor.layer({ maxWorkerProcesses: 1 }))))

  it.effect("registration after a shutdown fails with ShuttingDown, which is not retryable", () =>
    Effect.gen(function*() {
      yield* Supervisor.shutdown("fast")
      const error = yield* Effect.flip(Supervisor.register(sleeper))
      assert.strictEqual(error.reason._tag, "ShuttingDown")
      assert.isFalse(error.isRetryable)
    }).pipe(Effect.provide(Supervisor.layer({ maxWorkerProcesses: 1 }))))
})

describe("WorkerConnector.WorkerConnectionError", () => {
  const failure = (sqlstate?: string) =>
    new WorkerConnector.WorkerConnectionError({
      message: `database "nope" does not exist`,
      database: "nope",
      ...(sqlstate === undefined ? {} : { sqlstate })
    })

  it("isWorkerConnectionError recognises the error, not a look-alike", () => {
    assert.isTrue(WorkerConnector.isWorkerConnectionError(failure()))
    assert.isFalse(WorkerConnector.isWorkerConnectionError({ _tag: "WorkerConnectionError", message: "x" }))
    assert.isFalse(WorkerConnector.isWorkerConnectionError(new Error("x")))
    assert.isFalse(WorkerConnector.isWorkerConnectionError(null))
    assert.isFalse(SupervisorError.isSupervisorError(failure()))
  })

  it("is retryable without a SQLSTATE and for the classes that pass by themselves, not for the rest", () => {
    const cases: ReadonlyArray<readonly [string | undefined, boolean]> = [
      [undefined, true],
      ["08006", true], // connection_failure
      ["53300", true], // too_many_connections
      ["57P03", true], // cannot_connect_now
      ["57P01", true], // admin_shutdown
      ["3D000", false], // invalid_catalog_name
      ["42704", false], // undefined_object (a role)
      ["28000", false], // invalid_authorization_specification
      ["55000", false] // object_not_in_prerequisite_state (datallowconn)
    ]
    for (const [sqlstate, retryable] of cases) assert.strictEqual(failure(sqlstate).isRetryable, retryable, sqlstate)
  })
})
