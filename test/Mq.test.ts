import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Option, pipe, Ref, Schema, Scope } from "effect"
import * as Activity from "../src/Activity.ts"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import * as Mq from "../src/Mq.ts"
import * as ProcLatch from "../src/ProcLatch.ts"
import * as Supervisor from "../src/Supervisor.ts"
import { eventually, untilWaiting } from "./fixtures.ts"

const withSupervisor = (options: Supervisor.Options = {}) =>
  Effect.provide(Supervisor.layer({ maxWorkerProcesses: 4, ...options }))

/** Receives until the sender is gone; returns the messages and the final error. */
const drain = <A>(rx: Mq.Receiver<A>) =>
  Effect.gen(function*() {
    const out: Array<A> = []
    while (true) {
      const next = yield* Effect.result(Mq.receive(rx))
      if (next._tag === "Failure") return { messages: out, error: next.failure }
      out.push(next.success)
    }
  })

class Boom extends Schema.TaggedError<Boom>()("Boom", {}) {}

/** A worker that fails before touching the queue whose id it is given. */
const failsBeforeAttaching = BackgroundWorker.make({
  name: "fails before attaching",
  argument: Schema.String,
  main: (_queueId) => Effect.fail(new Boom())
})

interface EchoRequest {
  readonly text: string
  readonly replyTo: string
}

/** test_shm_mq's worker: receives on the queue named by its argument, echoes to the queue named in each message. */
const echo = BackgroundWorker.make({
  name: "echo",
  argument: Schema.String,
  main: (requests) =>
    Effect.gen(function*() {
      const rx = yield* Mq.attachReceiver<EchoRequest>(requests)
      let tx: Mq.Sender<string> | undefined
      while (true) {
        const request = yield* Mq.receive(rx)
        tx ??= yield* Mq.attachSender<string>(request.replyTo)
        yield* Mq.send(tx, request.text.toUpperCase())
      }
    }).pipe(Effect.catchTag("MqDetached", () => Effect.void))
})

describe("Mq", () => {
  it.effect("send blocks while the queue is full and resumes when the receiver takes a message", () =>
    Effect.gen(function*() {
      const mq = yield* Mq.create<number>({ capacity: 2 })
      const tx = yield* Mq.attachSender(mq)
      const rx = yield* Mq.attachReceiver(mq)
      yield* Mq.send(tx, 1)
      yield* Mq.send(tx, 2)
      const third = yield* Effect.forkChild(Mq.send(tx, 3), { startImmediately: true })
      assert.isUndefined(third.pollUnsafe(), "the third send waits while two messages are buffered")
      assert.strictEqual(yield* Mq.receive(rx), 1)
      yield* Fiber.join(third)
      assert.deepStrictEqual([yield* Mq.receive(rx), yield* Mq.receive(rx)], [2, 3])
    }).pipe(Effect.scoped, withSupervisor()))

  it.effect("receive blocks while the queue is empty and resumes when a message is sent", () =>
    Effect.gen(function*() {
      const mq = yield* Mq.create<string>({ capacity: 1 })
      const tx = yield* Mq.attachSender(mq)
      const rx = yield* Mq.attachReceiver(mq)
      const receiving = yield* Effect.forkChild(Mq.receive(rx), { startImmediately: true })
      assert.isUndefined(receiving.pollUnsafe())
      yield* Mq.send(tx, "hello")
      assert.strictEqual(yield* Fiber.join(receiving), "hello")
    }).pipe(Effect.scoped, withSupervisor()))

  it.effect("messages arrive in order and intact", () =>
    Effect.gen(function*() {
      const mq = yield* Mq.create<{ readonly n: number; readonly tags: ReadonlyArray<string> }>({ capacity: 3 })
      const tx = yield* Mq.attachSender(mq)
      const rx = yield* Mq.attachReceiver(mq)
      const sent = Array.from({ length: 10 }, (_, n) => ({ n, tags: [`t${n}`, "x".repeat(n)] }))
      const receiving = yield* Effect.forkChild(drain(rx))
      for (const message of sent) yield* Mq.send(tx, message)
      yield* Mq.detach(tx)
      const { messages } = yield* Fiber.join(receiving)
      assert.deepStrictEqual(messages, sent)
    }).pipe(Effect.scoped, withSupervisor()))

  it.effect("sendNow and receiveNow report WouldBlock instead of waiting", () =>
    Effect.gen(function*() {
      const mq = yield* Mq.create<number>({ capacity: 1 })
      const tx = yield* Mq.attachSender(mq)
      const rx = yield* Mq.attachReceiver(mq)
      assert.isTrue(Option.isNone(yield* Mq.receiveNow(rx)))
      assert.strictEqual(yield* Mq.sendNow(tx, 7), "Sent")
      assert.strictEqual(yield* Mq.sendNow(tx, 8), "WouldBlock")
      assert.deepStrictEqual(yield* Mq.receiveNow(rx), Option.some(7))
      assert.strictEqual(yield* Mq.sendNow(tx, 8), "Sent")
      assert.deepStrictEqual(yield* Mq.receiveNow(rx), Option.some(8))
    }).pipe(Effect.scoped, withSupervisor()))

  it.effect("a sender may fill the queue before the receiver attaches", () =>
    Effect.gen(function*() {
      const mq = yield* Mq.create<number>({ capacity: 2 })
      const tx = yield* Mq.attachSender(mq)
      yield* Mq.send(tx, 1)
      yield* Mq.send(tx, 2)
      assert.strictEqual(yield* Mq.sendNow(tx, 3), "WouldBlock")
      const rx = yield* Mq.attachReceiver(mq)
      assert.deepStrictEqual([yield* Mq.receive(rx), yield* Mq.receive(rx)], [1, 2])
    }).pipe(Effect.scoped, withSupervisor()))

  it.effect("the receiver drains the buffered messages, then sees MqDetached after the sender detaches", () =>
    Effect.gen(function*() {
      const mq = yield* Mq.create<string>({ capacity: 4 })
      const rx = yield* Mq.attachReceiver(mq)
      yield* Effect.scoped(Effect.gen(function*() {
        const tx = yield* Mq.attachSender(mq)
        yield* Mq.send(tx, "a")
        yield* Mq.send(tx, "b")
        yield* Mq.send(tx, "c")
      }))
      const { error, messages } = yield* drain(rx)
      assert.deepStrictEqual(messages, ["a", "b", "c"])
      assert.strictEqual(error._tag, "MqDetached")
      assert.strictEqual(error.side, "sender")
      assert.strictEqual(error.reason, "detached")
      assert.strictEqual(error.message, `message queue "${mq.id}": the sender has detached`)
      // Detached is final: asking again gives the same answer.
      assert.strictEqual((yield* Effect.flip(Mq.receive(rx)))._tag, "MqDetached")
    }).pipe(Effect.scoped, withSupervisor()))

  it.effect("a receive waiting on an empty queue fails with MqDetached when the sender detaches", () =>
    Effect.gen(function*() {
      const mq = yield* Mq.create<number>({ capacity: 1 })
      const tx = yield* Mq.attachSender(mq)
      const rx = yield* Mq.attachReceiver(mq)
      const waiting = yield* Effect.forkChild(Effect.flip(Mq.receive(rx)), { startImmediately: true })
      assert.isUndefined(waiting.pollUnsafe())
      yield* Mq.detach(tx)
      const error = yield* Fiber.join(waiting)
      assert.strictEqual(error.side, "sender")
    }).pipe(Effect.scoped, withSupervisor()))

  it.effect("the sender sees MqDetached once the receiver has detached, even with room in the queue", () =>
    Effect.gen(function*() {
      const mq = yield* Mq.create<number>({ capacity: 1 })
      const tx = yield* Mq.attachSender(mq)
      const rx = yield* Mq.attachReceiver(mq)
      yield* Mq.send(tx, 1)
      const blocked = yield* Effect.forkChild(Effect.flip(Mq.send(tx, 2)), { startImmediately: true })
      assert.isUndefined(blocked.pollUnsafe())
      yield* Mq.detach(rx)
      const error = yield* Fiber.join(blocked)
      assert.strictEqual(error.side, "receiver")
      assert.strictEqual(error.reason, "detached")
      const again = yield* Effect.flip(Mq.sendNow(tx, 3))
      assert.strictEqual(again.message, `message queue "${mq.id}": the receiver has detached`)
    }).pipe(Effect.scoped, withSupervisor()))

  it.effect("operations on a handle that has detached fail with MqDetached naming its own side", () =>
    Effect.gen(function*() {
      const mq = yield* Mq.create<number>({ capacity: 1 })
      const tx = yield* Mq.attachSender(mq)
      yield* Mq.attachReceiver(mq)
      yield* Mq.detach(tx)
      yield* Mq.detach(tx) // idempotent
      const error = yield* Effect.flip(Mq.send(tx, 1))
      assert.strictEqual(error.side, "sender")
    }).pipe(Effect.scoped, withSupervisor()))

  it.effect("attaching the same side twice fails with MqAlreadyAttached, also after a detach", () =>
    Effect.gen(function*() {
      const mq = yield* Mq.create<number>({ capacity: 1 })
      const rx = yield* Mq.attachReceiver(mq)
      const twice = yield* Effect.flip(Mq.attachReceiver(mq))
      assert.strictEqual(twice._tag, "MqAlreadyAttached")
      assert.strictEqual(twice.message, `message queue "${mq.id}": a receiver has already attached`)
      yield* Mq.detach(rx)
      const afterDetach = yield* Effect.flip(Mq.attachReceiver(mq))
      assert.strictEqual(afterDetach._tag, "MqAlreadyAttached")
      yield* Mq.attachSender(mq) // the other side is still free
    }).pipe(Effect.scoped, withSupervisor()))

  it.effect("an unknown id fails with MqNotFound, and a bad capacity with MqInvalidCapacity", () =>
    Effect.gen(function*() {
      const missing = yield* Effect.flip(Mq.attachSender("mq-999"))
      assert.strictEqual(missing._tag, "MqNotFound")
      assert.strictEqual(missing.message, `message queue "mq-999" does not exist`)
      for (const capacity of [0, -1, 1.5, Number.NaN]) {
        const invalid = yield* Effect.flip(Mq.create({ capacity }))
        assert.strictEqual(invalid._tag, "MqInvalidCapacity")
      }
    }).pipe(Effect.scoped, withSupervisor()))

  it.effect("the queue is destroyed once its creator and both sides are gone", () =>
    Effect.gen(function*() {
      const id = yield* Effect.scoped(Effect.gen(function*() {
        const mq = yield* Mq.create<number>({ capacity: 1 })
        const tx = yield* Mq.attachSender(mq)
        const rx = yield* Mq.attachReceiver(mq)
        yield* Mq.send(tx, 1)
        assert.strictEqual(yield* Mq.receive(rx), 1)
        return mq.id
      }))
      const error = yield* Effect.flip(Effect.scoped(Mq.attachReceiver(id)))
      assert.strictEqual(error._tag, "MqNotFound")
    }).pipe(withSupervisor()))

  it.effect("a queue outlives its creator's scope while a side is attached", () =>
    Effect.gen(function*() {
      const creator = yield* Scope.make()
      const mq = yield* Mq.create<number>({ capacity: 1 }).pipe(Scope.provide(creator))
      const senderScope = yield* Scope.make()
      const tx = yield* Mq.attachSender(mq).pipe(Scope.provide(senderScope))
      yield* Scope.close(creator, Exit.void)
      yield* Mq.send(tx, 42)
      yield* Effect.scoped(Effect.gen(function*() {
        const rx = yield* Mq.attachReceiver(mq)
        assert.strictEqual(yield* Mq.receive(rx), 42)
      }))
      yield* Scope.close(senderScope, Exit.void)
      assert.strictEqual((yield* Effect.flip(Effect.scoped(Mq.attachSender(mq))))._tag, "MqNotFound")
    }).pipe(withSupervisor()))

  it.effect("an interrupted receive takes nothing and an interrupted send sends nothing", () =>
    Effect.gen(function*() {
      const mq = yield* Mq.create<number>({ capacity: 1 })
      const tx = yield* Mq.attachSender(mq)
      const rx = yield* Mq.attachReceiver(mq)
      const receiving = yield* Effect.forkChild(Mq.receive(rx), { startImmediately: true })
      yield* Fiber.interrupt(receiving)
      yield* Mq.send(tx, 1)
      const sending = yield* Effect.forkChild(Mq.send(tx, 2), { startImmediately: true })
      yield* Fiber.interrupt(sending)
      assert.strictEqual(yield* Mq.receive(rx), 1)
      assert.isTrue(Option.isNone(yield* Mq.receiveNow(rx)))
    }).pipe(Effect.scoped, withSupervisor()))

  it.effect("two fibers receiving through one handle each get a different message", () =>
    Effect.gen(function*() {
      const mq = yield* Mq.create<number>({ capacity: 2 })
      const tx = yield* Mq.attachSender(mq)
      const rx = yield* Mq.attachReceiver(mq)
      const a = yield* Effect.forkChild(Mq.receive(rx), { startImmediately: true })
      const b = yield* Effect.forkChild(Mq.receive(rx), { startImmediately: true })
      yield* Mq.send(tx, 1)
      yield* Mq.send(tx, 2)
      const got = [yield* Fiber.join(a), yield* Fiber.join(b)].sort()
      assert.deepStrictEqual(got, [1, 2])
    }).pipe(Effect.scoped, withSupervisor()))

  describe("with workers", () => {
    it.effect("a registrant and a dynamic worker echo messages through two queues", () =>
      Effect.gen(function*() {
        const requests = yield* Mq.create<EchoRequest>({ capacity: 2 })
        const replies = yield* Mq.create<string>({ capacity: 2 })
        const worker = yield* Supervisor.register(echo, requests.id)
        const tx = yield* Mq.attachSender(requests, { handle: worker })
        const rx = yield* Mq.attachReceiver(replies, { handle: worker })
        const texts = ["one", "two", "three", "four", "five"]
        const echoed: Array<string> = []
        for (const text of texts) {
          yield* Mq.send(tx, { text, replyTo: replies.id })
          echoed.push(yield* Mq.receive(rx))
        }
        assert.deepStrictEqual(echoed, ["ONE", "TWO", "THREE", "FOUR", "FIVE"])
        // Ending the conversation: the worker sees MqDetached, returns, and its side of `replies` detaches.
        yield* Mq.detach(tx)
        const end = yield* Effect.flip(Mq.receive(rx))
        assert.strictEqual(end.side, "sender")
        assert.strictEqual(end.reason, "detached")
        assert.strictEqual((yield* Supervisor.awaitShutdown(worker))._tag, "Stopped")
      }).pipe(Effect.scoped, withSupervisor()))

    it.effect("a receiver bound to a worker handle gets MqDetached if that worker fails before attaching", () =>
      Effect.gen(function*() {
        const mq = yield* Mq.create<string>({ capacity: 4 })
        const worker = yield* Supervisor.register(failsBeforeAttaching, mq.id)
        const rx = yield* Mq.attachReceiver(mq, { handle: worker })
        const error = yield* Effect.flip(Mq.receive(rx))
        assert.strictEqual(error.side, "sender")
        assert.strictEqual(error.reason, "stoppedBeforeAttach")
        assert.strictEqual(
          error.message,
          `message queue "${mq.id}": the sender's background worker stopped before attaching`
        )
        assert.strictEqual((yield* Supervisor.status(worker))._tag, "Stopped")
      }).pipe(Effect.scoped, withSupervisor()))

    it.effect("a sender bound to a worker handle gets MqDetached from a full queue if that worker stops first", () =>
      Effect.gen(function*() {
        const mq = yield* Mq.create<number>({ capacity: 1 })
        const worker = yield* Supervisor.register(failsBeforeAttaching, mq.id)
        const tx = yield* Mq.attachSender(mq, { handle: worker })
        yield* Mq.send(tx, 1) // room for one: accepted before anybody receives
        const error = yield* Effect.flip(Mq.send(tx, 2))
        assert.strictEqual(error.side, "receiver")
        assert.strictEqual(error.reason, "stoppedBeforeAttach")
        assert.strictEqual((yield* Effect.flip(Mq.waitForAttach(tx)))._tag, "MqDetached")
      }).pipe(Effect.scoped, withSupervisor()))

    it.effect("a worker that sends and returns leaves its messages to the bound receiver, then MqDetached", () =>
      Effect.gen(function*() {
        const producer = BackgroundWorker.make({
          name: "producer",
          argument: Schema.String,
          main: (id) =>
            Effect.gen(function*() {
              const tx = yield* Mq.attachSender<number>(id)
              for (let n = 1; n <= 3; n++) yield* Mq.send(tx, n)
            })
        })
        const mq = yield* Mq.create<number>({ capacity: 8 })
        const worker = yield* Supervisor.register(producer, mq.id)
        yield* Supervisor.awaitShutdown(worker)
        const rx = yield* Mq.attachReceiver(mq, { handle: worker })
        const { error, messages } = yield* drain(rx)
        assert.deepStrictEqual(messages, [1, 2, 3])
        assert.strictEqual(error.reason, "detached", "it attached, so its exit is a detach, not a death")
      }).pipe(Effect.scoped, withSupervisor()))

    it.effect("waitForAttach returns once the worker has attached its side", () =>
      Effect.gen(function*() {
        const gate = yield* Deferred.make<void>()
        const lateReceiver = BackgroundWorker.make({
          name: "late receiver",
          argument: Schema.String,
          main: (id) =>
            Effect.gen(function*() {
              yield* Deferred.await(gate)
              const rx = yield* Mq.attachReceiver<number>(id)
              yield* Mq.receive(rx)
            })
        })
        const mq = yield* Mq.create<number>({ capacity: 1 })
        const worker = yield* Supervisor.register(lateReceiver, mq.id)
        const tx = yield* Mq.attachSender(mq, { handle: worker })
        const waiting = yield* Effect.forkChild(Mq.waitForAttach(tx), { startImmediately: true })
        assert.isUndefined(waiting.pollUnsafe())
        yield* Deferred.succeed(gate, undefined)
        yield* Fiber.join(waiting)
        yield* Mq.send(tx, 1)
        assert.strictEqual((yield* Supervisor.awaitShutdown(worker))._tag, "Stopped")
      }).pipe(Effect.scoped, withSupervisor()))

    it.effect("a worker whose registrant closed the queue before it attached fails with MqNotFound", () =>
      Effect.gen(function*() {
        const result = yield* Deferred.make<Exit.Exit<unknown, unknown>>()
        const gate = yield* Deferred.make<void>()
        const slow = BackgroundWorker.make({
          name: "slow",
          argument: Schema.String,
          main: (id) =>
            Deferred.await(gate).pipe(
              Effect.andThen(Effect.exit(Mq.attachReceiver<number>(id))),
              Effect.flatMap((exit) => Deferred.succeed(result, exit))
            )
        })
        const worker = yield* Effect.scoped(Effect.gen(function*() {
          const mq = yield* Mq.create<number>({ capacity: 1 })
          return yield* Supervisor.register(slow, mq.id)
        }))
        yield* Deferred.succeed(gate, undefined)
        const exit = yield* Deferred.await(result)
        assert.isTrue(Exit.isFailure(exit))
        assert.strictEqual(Exit.isFailure(exit) ? (exit.cause.reasons[0] as any).error._tag : "", "MqNotFound")
        yield* Supervisor.awaitShutdown(worker)
      }).pipe(Effect.scoped, withSupervisor()))

    it.effect("a worker blocked in receive shows the wait event MessageQueueReceive", () =>
      Effect.gen(function*() {
        const waiter = BackgroundWorker.make({
          name: "waiter",
          argument: Schema.String,
          main: (id) => Effect.flatMap(Mq.attachReceiver<number>(id), Mq.receive)
        })
        const mq = yield* Mq.create<number>({ capacity: 1 })
        const worker = yield* Supervisor.register(waiter, mq.id)
        const tx = yield* Mq.attachSender(mq, { handle: worker })
        yield* Mq.waitForAttach(tx)
        yield* untilWaiting(worker)
        const row = (yield* Activity.snapshot).find((r) => r.name === "waiter")
        assert.strictEqual(row?.waitEventType, "IPC")
        assert.strictEqual(row?.waitEvent, "MessageQueueReceive")
        yield* Mq.send(tx, 1)
        yield* Supervisor.awaitShutdown(worker)
      }).pipe(Effect.scoped, withSupervisor()))

    it.effect("a worker polling with receiveNow is woken from ProcLatch.wait by each message", () =>
      Effect.gen(function*() {
        const received = yield* Ref.make<ReadonlyArray<number>>([])
        const poller = BackgroundWorker.make({
          name: "poller",
          argument: Schema.String,
          main: (id) =>
            Effect.gen(function*() {
              const rx = yield* Mq.attachReceiver<number>(id)
              while (true) {
                yield* ProcLatch.reset
                while (true) {
                  const next = yield* Mq.receiveNow(rx)
                  if (Option.isNone(next)) break
                  const all = yield* Ref.updateAndGet(received, (xs) => [...xs, next.value])
                  if (all.length === 3) return
                }
                yield* ProcLatch.wait({ onPostmasterDeath: "exit", waitEvent: "MqPoll" })
              }
            })
        })
        const mq = yield* Mq.create<number>({ capacity: 4 })
        const worker = yield* Supervisor.register(poller, mq.id)
        const tx = yield* Mq.attachSender(mq, { handle: worker })
        yield* Mq.waitForAttach(tx)
        for (const n of [1, 2, 3]) {
          yield* eventually(
            `the poller has taken ${n - 1} message(s) and waits on its latch again`,
            Effect.gen(function*() {
              const row = yield* Supervisor.info(worker)
              return (yield* Ref.get(received)).length === n - 1 && row._tag === "Some" && row.value.waitEvent !== null
            })
          )
          yield* Mq.send(tx, n)
        }
        yield* Supervisor.awaitShutdown(worker)
        assert.deepStrictEqual(yield* Ref.get(received), [1, 2, 3])
      }).pipe(Effect.scoped, withSupervisor()))

    it.effect("terminating a worker blocked in receive ends it at once and detaches its side", () =>
      Effect.gen(function*() {
        const waiter = BackgroundWorker.make({
          name: "blocked",
          argument: Schema.String,
          main: (id) => Effect.flatMap(Mq.attachReceiver<number>(id), (rx) => Effect.forever(Mq.receive(rx)))
        })
        const mq = yield* Mq.create<number>({ capacity: 1 })
        const worker = yield* Supervisor.register(waiter, mq.id)
        const tx = yield* Mq.attachSender(mq, { handle: worker })
        yield* Mq.waitForAttach(tx)
        yield* untilWaiting(worker) // now blocked in receive
        yield* Supervisor.terminate(worker)
        assert.strictEqual((yield* Supervisor.awaitShutdown(worker))._tag, "Stopped")
        const error = yield* Effect.flip(Mq.send(tx, 1))
        assert.strictEqual(error.side, "receiver")
        assert.strictEqual(error.reason, "detached")
      }).pipe(Effect.scoped, withSupervisor({ terminateTimeout: "1 hour" })))

    it.effect("a terminate request pending when a worker reaches a blocking receive ends it there", () =>
      Effect.gen(function*() {
        const gate = yield* Deferred.make<void>()
        const lateWaiter = BackgroundWorker.make({
          name: "late waiter",
          argument: Schema.String,
          main: (id) =>
            Effect.gen(function*() {
              const rx = yield* Mq.attachReceiver<number>(id)
              yield* Deferred.await(gate)
              yield* Mq.receive(rx)
            })
        })
        const mq = yield* Mq.create<number>({ capacity: 1 })
        const worker = yield* Supervisor.register(lateWaiter, mq.id)
        const tx = yield* Mq.attachSender(mq, { handle: worker })
        yield* Mq.waitForAttach(tx)
        yield* Supervisor.terminate(worker)
        yield* Deferred.succeed(gate, undefined)
        // No clock adjustment: the worker ends at the receive's interrupt check, not by the forced interruption.
        assert.strictEqual((yield* Supervisor.awaitShutdown(worker))._tag, "Stopped")
        assert.strictEqual((yield* Effect.flip(Mq.send(tx, 1))).side, "receiver")
      }).pipe(Effect.scoped, withSupervisor({ terminateTimeout: "1 hour" })))
  })

  describe("properties", () => {
    it.effect.prop(
      "any sequence of messages sent through a queue of capacity 1..8 is received in order and intact",
      [Schema.Array(Schema.Int), Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 8 }))],
      ([messages, capacity]) =>
        Effect.gen(function*() {
          const mq = yield* Mq.create<number>({ capacity })
          const rx = yield* Mq.attachReceiver(mq)
          const sending = yield* Effect.forkChild(Effect.scoped(Effect.gen(function*() {
            const tx = yield* Mq.attachSender(mq)
            for (const message of messages) yield* Mq.send(tx, message)
          })))
          const { error, messages: received } = yield* drain(rx)
          yield* Fiber.join(sending)
          assert.strictEqual(error.side, "sender")
          assert.deepStrictEqual(received, messages)
        }).pipe(Effect.scoped, withSupervisor())
    )
  })
})

describe("Mq: identity", () => {
  it.effect("every error of the module is an MqError, and none is retryable", () =>
    Effect.gen(function*() {
      const mq = yield* Mq.create<number>({ capacity: 1 })
      const tx = yield* Mq.attachSender(mq)
      const rx = yield* Mq.attachReceiver(mq)
      const invalid = yield* Effect.flip(Mq.create({ capacity: 0 }))
      const missing = yield* Effect.flip(Mq.attachSender("mq-999"))
      const twice = yield* Effect.flip(Mq.attachSender(mq))
      yield* Mq.detach(rx)
      const detached = yield* Effect.flip(Mq.send(tx, 1))
      const errors = [invalid, missing, twice, detached]
      assert.deepStrictEqual(
        errors.map((e) => [e._tag, Mq.isMqError(e), Mq.isMqDetached(e), e.isRetryable]),
        [
          ["MqInvalidCapacity", true, false, false],
          ["MqNotFound", true, false, false],
          ["MqAlreadyAttached", true, false, false],
          ["MqDetached", true, true, false]
        ]
      )
      for (const e of errors) assert.notInclude(JSON.stringify(e), "~effect-bgworker")
    }).pipe(Effect.scoped, withSupervisor()))

  it("isMqError refuses look-alikes: the same tag and fields, another tagged error, no object", () => {
    const lookalikes: ReadonlyArray<unknown> = [
      { _tag: "MqDetached", id: "mq-1", side: "sender", reason: "detached" },
      new Boom(),
      null,
      undefined,
      "MqDetached"
    ]
    for (const u of lookalikes) {
      assert.isFalse(Mq.isMqError(u))
      assert.isFalse(Mq.isMqDetached(u))
    }
    assert.isFalse(Mq.isMqDetached(new Mq.MqNotFound({ id: "mq-1" })))
  })

  it.effect("a queue, its sender and its receiver are told apart by their guards", () =>
    Effect.gen(function*() {
      const mq = yield* Mq.create<number>({ capacity: 1 })
      const tx = yield* Mq.attachSender(mq)
      const rx = yield* Mq.attachReceiver(mq)
      const kinds = (u: unknown) => [Mq.isMessageQueue(u), Mq.isSender(u), Mq.isReceiver(u)]
      assert.deepStrictEqual(kinds(mq), [true, false, false])
      assert.deepStrictEqual(kinds(tx), [false, true, false])
      assert.deepStrictEqual(kinds(rx), [false, false, true])
      assert.deepStrictEqual(kinds(mq.id), [false, false, false])
      assert.deepStrictEqual(kinds({ id: mq.id, capacity: 1, side: "sender" }), [false, false, false])
      // The markers live on the prototype: a queue still serialises to its id and capacity.
      assert.strictEqual(JSON.stringify(mq), JSON.stringify({ id: mq.id, capacity: 1 }))
    }).pipe(Effect.scoped, withSupervisor()))

  it.effect("send and sendNow also take the message first, for pipe", () =>
    Effect.gen(function*() {
      const mq = yield* Mq.create<string>({ capacity: 1 })
      const tx = yield* Mq.attachSender(mq)
      const rx = yield* Mq.attachReceiver(mq)
      yield* pipe(tx, Mq.send("a"))
      assert.strictEqual(yield* pipe(tx, Mq.sendNow("b")), "WouldBlock")
      assert.strictEqual(yield* Mq.receive(rx), "a")
      assert.strictEqual(yield* pipe(tx, Mq.sendNow("b")), "Sent")
      assert.strictEqual(yield* Mq.receive(rx), "b")
    }).pipe(Effect.scoped, withSupervisor()))
})
