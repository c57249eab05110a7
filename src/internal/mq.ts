/**
 * Message queues between a registrant and its workers: the registry, the queue state and the waits.
 *
 * Protocol essay (compare the header of src/backend/storage/ipc/shm_mq.c):
 *
 * - A queue lives in a registry that belongs to one supervisor: a `WeakMap` keyed by the supervisor's
 *   service object, which both a registrant and every worker of that supervisor can reach. Nothing in the
 *   supervisor knows about queues; the registry goes away with it.
 * - A queue is reference counted like a DSM segment: the creator holds one reference until its scope
 *   closes, each attached side holds one until it detaches. The last release removes the queue from the
 *   registry, so a late attach fails with `MqNotFound` (`dsm_attach` failing after the last detach).
 * - Each side (`End`) is attached at most once: `unattached` -> `attached` -> `detached`.
 * - `detached` on the queue is shm_mq's `mq_detached`: set by the first side to detach, or when the worker
 *   bound to an unattached side stops (`shm_mq_counterparty_gone`). From then on a send fails, and a receive
 *   fails once the buffer is empty.
 * - All state changes happen in synchronous blocks, so each is atomic with respect to every fiber. A waiter
 *   checks its condition and registers itself in the same block (inside `Effect.callback`), so a wake-up
 *   cannot slip between the check and the wait. Resuming a fiber can run it synchronously (Effect's
 *   `callback` resumes in place), so every operation finishes its mutations before it wakes anybody, and
 *   wakes from a snapshot of the waiters.
 * - A wake-up resumes the side's blocked operations; when none is blocked and the side was attached inside
 *   a worker, it sets that worker's latch instead (shm_mq's `SetLatch(&receiver->procLatch)`), so a worker
 *   polling with the nowait variants can sleep in `ProcLatch.wait`. Woken operations re-check: wake-ups are
 *   hints, never results.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import { dual, identity } from "effect/Function"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { AttachOptions, MessageQueue, Receiver, Sender, SendResult, Side } from "../Mq.ts"
import type { WorkerStatus } from "../WorkerHandle.ts"
import { CurrentWorker, Supervisor } from "./context.ts"
import type { LatchImpl } from "./latch.ts"
import { checkInterrupts, Proc, withWaitEvent } from "./proc.ts"

// --- errors ---

const SideSchema = Schema.Literals(["sender", "receiver"])

/**
 * The type id every error of `Mq` carries, read through the prototype (so it stays out of `toJSON` and of
 * an inspected error's own fields).
 *
 * @internal
 */
export const ErrorTypeId = "~effect-bgworker/Mq/MqError" as const

/** @internal */
export const isMqError = (u: unknown): u is MqDetached | MqNotFound | MqAlreadyAttached | MqInvalidCapacity =>
  Predicate.hasProperty(u, ErrorTypeId)

/** @internal */
export const isMqDetached = (u: unknown): u is MqDetached => isMqError(u) && u._tag === "MqDetached"

/** @internal */
export class MqDetached extends Schema.TaggedError<MqDetached>()("MqDetached", {
  id: Schema.String,
  side: SideSchema,
  reason: Schema.Literals(["detached", "stoppedBeforeAttach"])
}) {
  get [ErrorTypeId](): typeof ErrorTypeId {
    return ErrorTypeId
  }
  /** Detaching is final for the whole queue (`mq_detached`): the conversation is over. */
  get isRetryable(): boolean {
    return false
  }
  override get message(): string {
    return this.reason === "detached"
      ? `message queue "${this.id}": the ${this.side} has detached`
      : `message queue "${this.id}": the ${this.side}'s background worker stopped before attaching`
  }
}

/** @internal */
export class MqNotFound extends Schema.TaggedError<MqNotFound>()("MqNotFound", {
  id: Schema.String
}) {
  get [ErrorTypeId](): typeof ErrorTypeId {
    return ErrorTypeId
  }
  /** A destroyed queue never comes back, and ids are never reused. */
  get isRetryable(): boolean {
    return false
  }
  override get message(): string {
    return `message queue "${this.id}" does not exist`
  }
  get hint(): string {
    return "A queue is destroyed once its creator's scope has closed and no side is attached."
  }
}

/** @internal */
export class MqAlreadyAttached extends Schema.TaggedError<MqAlreadyAttached>()("MqAlreadyAttached", {
  id: Schema.String,
  side: SideSchema
}) {
  get [ErrorTypeId](): typeof ErrorTypeId {
    return ErrorTypeId
  }
  /** Each side attaches once, ever. */
  get isRetryable(): boolean {
    return false
  }
  override get message(): string {
    return `message queue "${this.id}": a ${this.side} has already attached`
  }
}

/** @internal */
export class MqInvalidCapacity extends Schema.TaggedError<MqInvalidCapacity>()("MqInvalidCapacity", {
  capacity: Schema.Number
}) {
  get [ErrorTypeId](): typeof ErrorTypeId {
    return ErrorTypeId
  }
  /** The capacity must change. */
  get isRetryable(): boolean {
    return false
  }
  override get message(): string {
    return `invalid message queue capacity ${this.capacity}: must be a positive integer`
  }
}

// --- state ---

/** @internal */
export const SenderTypeId = "~effect-bgworker/Mq/Sender" as const
/** @internal */
export const ReceiverTypeId = "~effect-bgworker/Mq/Receiver" as const
/** @internal */
export const QueueTypeId = "~effect-bgworker/Mq/MessageQueue" as const

/** @internal */
export const isMessageQueue = (u: unknown): u is MessageQueue<unknown> => Predicate.hasProperty(u, QueueTypeId)
/** @internal */
export const isSender = (u: unknown): u is Sender<unknown> => Predicate.hasProperty(u, SenderTypeId)
/** @internal */
export const isReceiver = (u: unknown): u is Receiver<unknown> => Predicate.hasProperty(u, ReceiverTypeId)

/** What `create` returns: the id and the capacity, marked as a queue (the marker carries the message type). */
class MessageQueueImpl {
  readonly id: string
  readonly capacity: number
  constructor(id: string, capacity: number) {
    this.id = id
    this.capacity = capacity
  }
  get [QueueTypeId]() {
    return identity
  }
}

type Waiter = () => void

/** One side of a queue (`mq_sender` / `mq_receiver`). */
class End {
  state: "unattached" | "attached" | "detached" = "unattached"
  /** The latch of the worker that attached this side, if it attached inside a worker. */
  latch: LatchImpl | undefined = undefined
  readonly waiters = new Set<Waiter>()

  wake(): void {
    if (this.waiters.size === 0) {
      if (this.state === "attached") this.latch?.setUnsafe()
      return
    }
    const waiters = Array.from(this.waiters)
    this.waiters.clear()
    for (const waiter of waiters) waiter()
  }
}

/** The buffer: an array with a moving head, compacted now and then. */
class Buffer {
  private items: Array<unknown> = []
  private head = 0
  get size(): number {
    return this.items.length - this.head
  }
  push(message: unknown): void {
    this.items.push(message)
  }
  take(): unknown {
    const message = this.items[this.head]
    this.items[this.head] = undefined
    this.head++
    if (this.head === this.items.length) {
      this.items = []
      this.head = 0
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return message
  }
  clear(): void {
    this.items = []
    this.head = 0
  }
}

interface Registry {
  nextId: number
  readonly queues: Map<string, QueueState>
}

const registries = new WeakMap<object, Registry>()

const registryOf = (supervisor: object): Registry => {
  let registry = registries.get(supervisor)
  if (registry === undefined) {
    registry = { nextId: 0, queues: new Map() }
    registries.set(supervisor, registry)
  }
  return registry
}

class QueueState {
  readonly buffer = new Buffer()
  readonly sender = new End()
  readonly receiver = new End()
  /** Creator's reference plus one per attached side. */
  refs = 1
  creatorReleased = false
  /** `mq_detached`: who went away first, and how. */
  detached: MqDetached | undefined = undefined
  readonly registry: Registry
  readonly id: string
  readonly capacity: number
  constructor(registry: Registry, id: string, capacity: number) {
    this.registry = registry
    this.id = id
    this.capacity = capacity
  }
  end(side: Side): End {
    return side === "sender" ? this.sender : this.receiver
  }
  release(): void {
    if (--this.refs > 0) return
    if (this.registry.queues.get(this.id) === this) this.registry.queues.delete(this.id)
    this.buffer.clear()
  }
}

/**
 * What `attachSender` / `attachReceiver` return: a side of a queue, seen through `Sender<A>` or `Receiver<A>`
 * (the subclass carries the matching marker, so `isSender` and `isReceiver` tell the sides apart).
 */
abstract class HandleImpl {
  readonly queue: QueueState
  readonly side: Side
  readonly end: End
  readonly other: End
  constructor(queue: QueueState, side: Side) {
    this.queue = queue
    this.side = side
    this.end = queue.end(side)
    this.other = queue.end(side === "sender" ? "receiver" : "sender")
  }
  get id(): string {
    return this.queue.id
  }
  toJSON() {
    return { _id: "Mq", id: this.queue.id, side: this.side }
  }
}

class SenderImpl extends HandleImpl {
  get [SenderTypeId]() {
    return identity
  }
}

class ReceiverImpl extends HandleImpl {
  get [ReceiverTypeId]() {
    return identity
  }
}

const implOf = (handle: Sender<any> | Receiver<any>): HandleImpl => {
  if (handle instanceof HandleImpl) return handle
  throw new Error("not a message queue handle: use Mq.attachSender or Mq.attachReceiver")
}

// --- synchronous steps (undefined = would block) ---

const ownDetached = (h: HandleImpl): MqDetached | undefined =>
  h.end.state === "detached" ? new MqDetached({ id: h.queue.id, side: h.side, reason: "detached" }) : undefined

const sendStep = (h: HandleImpl, message: unknown): Effect.Effect<"Sent", MqDetached> | undefined => {
  const q = h.queue
  const error = ownDetached(h) ?? q.detached
  if (error !== undefined) return Effect.fail(error)
  if (q.buffer.size >= q.capacity) return undefined
  q.buffer.push(message)
  q.receiver.wake()
  return Effect.succeed("Sent")
}

const receiveStep = (h: HandleImpl): Effect.Effect<unknown, MqDetached> | undefined => {
  const q = h.queue
  const own = ownDetached(h)
  if (own !== undefined) return Effect.fail(own)
  if (q.buffer.size > 0) {
    const message = q.buffer.take()
    q.sender.wake()
    return Effect.succeed(message)
  }
  if (q.detached !== undefined) return Effect.fail(q.detached)
  return undefined
}

const attachStep = (h: HandleImpl): Effect.Effect<void, MqDetached> | undefined => {
  const own = ownDetached(h)
  if (own !== undefined) return Effect.fail(own)
  if (h.other.state !== "unattached") return Effect.void
  if (h.queue.detached !== undefined) return Effect.fail(h.queue.detached)
  return undefined
}

// --- waiting ---

/** Suspends until `end` is woken, unless `ready()` already holds (checked in the same synchronous block). */
const waitOn = (end: End, ready: () => boolean, proc: Proc | undefined): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    if (ready() || proc !== undefined && (proc.terminateDue || proc.latch.postmasterDead)) return resume(Effect.void)
    // Woken by the other side, or (inside a worker) by a terminate request or postmaster death.
    const waiter: Waiter = () => {
      end.waiters.delete(waiter)
      proc?.interruptListeners?.delete(waiter)
      resume(Effect.void)
    }
    end.waiters.add(waiter)
    proc?.addInterruptListener(waiter)
    return Effect.sync(() => {
      end.waiters.delete(waiter)
      proc?.interruptListeners?.delete(waiter)
    })
  })

const currentProc: Effect.Effect<Proc | undefined> = Effect.map(
  Effect.serviceOption(CurrentWorker),
  (worker) => Option.isSome(worker) && worker.value instanceof Proc ? worker.value : undefined
)

/**
 * Runs `step` until it does not block. Inside a worker each wait is preceded by `CHECK_FOR_INTERRUPTS()`
 * and shows the wait event `IPC`/`event` in the activity view.
 */
const blocking = <A>(
  h: HandleImpl,
  step: () => Effect.Effect<A, MqDetached> | undefined,
  ready: () => boolean,
  event: string
): Effect.Effect<A, MqDetached> =>
  Effect.suspend(() => {
    const first = step()
    if (first !== undefined) return first
    return Effect.flatMap(currentProc, (proc) => {
      const wait = proc === undefined
        ? waitOn(h.end, ready, undefined)
        : Effect.andThen(checkInterrupts(proc), withWaitEvent(proc, "IPC", event, waitOn(h.end, ready, proc)))
      const loop: Effect.Effect<A, MqDetached> = Effect.suspend(() => step() ?? Effect.andThen(wait, loop))
      return Effect.andThen(wait, loop)
    })
  })

// --- operations ---

const supervisorService = Supervisor.useSync((supervisor): object => supervisor)

/** @internal */
export const create = <A>(
  options: { readonly capacity: number }
): Effect.Effect<MessageQueue<A>, MqInvalidCapacity, Supervisor | Scope.Scope> =>
  Effect.suspend(() => {
    const capacity = options.capacity
    if (!Number.isSafeInteger(capacity) || capacity < 1) return Effect.fail(new MqInvalidCapacity({ capacity }))
    return Effect.flatMap(supervisorService, (supervisor) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          const registry = registryOf(supervisor)
          const id = `mq-${++registry.nextId}`
          const queue = new QueueState(registry, id, capacity)
          registry.queues.set(id, queue)
          return queue
        }),
        (queue) =>
          Effect.sync(() => {
            if (queue.creatorReleased) return
            queue.creatorReleased = true
            queue.release()
          })
      )).pipe(
        Effect.map((queue): MessageQueue<A> => new MessageQueueImpl(queue.id, capacity))
      )
  })

const gone = (status: WorkerStatus) => status._tag === "Stopped" || status._tag === "PostmasterDied"

/** `shm_mq_counterparty_gone`: the worker that was to attach `side` stopped before it did. */
const counterpartyGone = (queue: QueueState, side: Side): void => {
  if (queue.end(side).state !== "unattached" || queue.detached !== undefined) return
  queue.detached = new MqDetached({ id: queue.id, side, reason: "stoppedBeforeAttach" })
  queue.sender.wake()
  queue.receiver.wake()
}

const detachUnsafe = (h: HandleImpl): void => {
  if (h.end.state !== "attached") return
  h.end.state = "detached"
  h.end.latch = undefined
  const q = h.queue
  q.detached ??= new MqDetached({ id: q.id, side: h.side, reason: "detached" })
  q.release()
  h.other.wake()
  h.end.wake()
}

/** @internal */
export const attachSender = <A>(
  queue: string | MessageQueue<A>,
  options: AttachOptions | undefined
): Effect.Effect<Sender<A>, MqNotFound | MqAlreadyAttached, Supervisor | Scope.Scope> =>
  attach("sender", queue, options) as Effect.Effect<any, MqNotFound | MqAlreadyAttached, Supervisor | Scope.Scope>

/** @internal */
export const attachReceiver = <A>(
  queue: string | MessageQueue<A>,
  options: AttachOptions | undefined
): Effect.Effect<Receiver<A>, MqNotFound | MqAlreadyAttached, Supervisor | Scope.Scope> =>
  attach("receiver", queue, options) as Effect.Effect<any, MqNotFound | MqAlreadyAttached, Supervisor | Scope.Scope>

const attach = (
  side: Side,
  queue: string | MessageQueue<any>,
  options: AttachOptions | undefined
): Effect.Effect<HandleImpl, MqNotFound | MqAlreadyAttached, Supervisor | Scope.Scope> =>
  Effect.gen(function*() {
    const id = typeof queue === "string" ? queue : queue.id
    const supervisor = yield* Supervisor
    const proc = yield* currentProc
    const handle = yield* Effect.acquireRelease(
      Effect.suspend((): Effect.Effect<HandleImpl, MqNotFound | MqAlreadyAttached> => {
        const q = registries.get(supervisor)?.queues.get(id)
        if (q === undefined) return Effect.fail(new MqNotFound({ id }))
        const end = q.end(side)
        if (end.state !== "unattached") return Effect.fail(new MqAlreadyAttached({ id, side }))
        end.state = "attached"
        end.latch = proc?.latch
        q.refs++
        const h = side === "sender" ? new SenderImpl(q, side) : new ReceiverImpl(q, side)
        h.other.wake()
        return Effect.succeed(h)
      }),
      (h) => Effect.sync(() => detachUnsafe(h))
    )
    const counterparty = options?.handle
    if (counterparty !== undefined) {
      const other: Side = side === "sender" ? "receiver" : "sender"
      yield* Effect.forkScoped(
        Stream.runForEach(
          supervisor.changes(counterparty),
          (status) => gone(status) ? Effect.sync(() => counterpartyGone(handle.queue, other)) : Effect.void
        )
      )
    }
    return handle
  })

/** @internal */
export const send: {
  <A>(message: A): (sender: Sender<A>) => Effect.Effect<void, MqDetached>
  <A>(sender: Sender<A>, message: A): Effect.Effect<void, MqDetached>
} = dual(2, (sender: Sender<any>, message: unknown): Effect.Effect<void, MqDetached> => {
  const h = implOf(sender)
  return Effect.asVoid(
    blocking(
      h,
      () => sendStep(h, message),
      () => h.end.state !== "attached" || h.queue.detached !== undefined || h.queue.buffer.size < h.queue.capacity,
      "MessageQueueSend"
    )
  )
})

/** @internal */
export const sendNow: {
  <A>(message: A): (sender: Sender<A>) => Effect.Effect<SendResult, MqDetached>
  <A>(sender: Sender<A>, message: A): Effect.Effect<SendResult, MqDetached>
} = dual(
  2,
  (sender: Sender<any>, message: unknown): Effect.Effect<SendResult, MqDetached> =>
    Effect.suspend(() => sendStep(implOf(sender), message) ?? Effect.succeed("WouldBlock" as const))
)

/** @internal */
export const receive = <A>(receiver: Receiver<A>): Effect.Effect<A, MqDetached> => {
  const h = implOf(receiver)
  return blocking(
    h,
    () => receiveStep(h) as Effect.Effect<A, MqDetached> | undefined,
    () => h.end.state !== "attached" || h.queue.buffer.size > 0 || h.queue.detached !== undefined,
    "MessageQueueReceive"
  )
}

/** @internal */
export const receiveNow = <A>(receiver: Receiver<A>): Effect.Effect<Option.Option<A>, MqDetached> =>
  Effect.suspend(() => {
    const step = receiveStep(implOf(receiver)) as Effect.Effect<A, MqDetached> | undefined
    return step === undefined ? Effect.succeed(Option.none()) : Effect.map(step, Option.some)
  })

/** @internal */
export const waitForAttach = (handle: Sender<any> | Receiver<any>): Effect.Effect<void, MqDetached> => {
  const h = implOf(handle)
  return blocking(
    h,
    () => attachStep(h),
    () => h.end.state !== "attached" || h.other.state !== "unattached" || h.queue.detached !== undefined,
    "MessageQueueInternal"
  )
}

/** @internal */
export const detach = (handle: Sender<any> | Receiver<any>): Effect.Effect<void> =>
  Effect.sync(() => detachUnsafe(implOf(handle)))
