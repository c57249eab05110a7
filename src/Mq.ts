/**
 * Bounded, typed, single-sender/single-receiver message queues between a registrant and a dynamic worker
 * (or between any two fibers under one supervisor).
 *
 * PostgreSQL: `shm_mq` (src/backend/storage/ipc/shm_mq.c: `shm_mq_create`, `shm_mq_set_sender`,
 * `shm_mq_set_receiver`, `shm_mq_attach`, `shm_mq_send`, `shm_mq_receive`, `shm_mq_wait_for_attach`,
 * `shm_mq_detach`), living in a dynamic shared memory segment (`dsm_create`, `dsm_attach`, `on_dsm_detach`)
 * whose handle is passed to the worker through `bgw_main_arg`. The model program is
 * src/test/modules/test_shm_mq.
 *
 * The pattern, as in test_shm_mq:
 *
 * ```ts
 * const echo = BackgroundWorker.make({
 *   name: "echo",
 *   argument: Schema.Struct({ input: Schema.String, output: Schema.String }),
 *   main: ({ input, output }) => Effect.gen(function*() {
 *     const rx = yield* Mq.attachReceiver<string>(input)
 *     const tx = yield* Mq.attachSender<string>(output)
 *     while (true) yield* Mq.send(tx, yield* Mq.receive(rx))
 *   }).pipe(Effect.catchTag("MqDetached", () => Effect.void))
 * })
 *
 * const program = Effect.gen(function*() {
 *   const input = yield* Mq.create<string>({ capacity: 16 })
 *   const output = yield* Mq.create<string>({ capacity: 16 })
 *   const worker = yield* Supervisor.register(echo, { input: input.id, output: output.id })
 *   const tx = yield* Mq.attachSender(input, { handle: worker })
 *   const rx = yield* Mq.attachReceiver(output, { handle: worker })
 *   yield* Mq.send(tx, "hello")
 *   return yield* Mq.receive(rx) // "hello", or MqDetached if the worker died first
 * })
 * ```
 *
 * **Semantics kept from shm_mq**
 *
 * - One sender and one receiver, each attached at most once; either may attach first. A sender may fill the
 *   buffer before the receiver attaches.
 * - `send` waits while the queue is full; `receive` waits while it is empty. Messages arrive in order, each
 *   exactly once.
 * - Detaching is final for the whole queue (`mq_detached`): after the receiver detaches every send fails
 *   with `MqDetached`; after the sender detaches the receiver still gets the messages already buffered, then
 *   `MqDetached`.
 * - A side attached with the counterparty's worker handle does not wait forever for a worker that is gone:
 *   when that worker stops (or the supervisor dies) before attaching, waits fail with `MqDetached`
 *   (`shm_mq_attach(mq, seg, handle)`). A restartable worker waiting for its restart counts as stopped, as
 *   `BGWH_STOPPED` does.
 * - The queue lives while anybody holds it (a DSM segment's reference count): the creator until its scope
 *   closes, each side until it detaches. After that an attach fails with `MqNotFound`, as a worker's
 *   `dsm_attach` fails when its registrant has already gone.
 * - Nowait variants return `"WouldBlock"` (or `None`) instead of waiting (`SHM_MQ_WOULD_BLOCK`). When one
 *   side attached inside a worker and is not blocked in the queue, progress by the other side sets that
 *   worker's latch, so a worker can poll with `receiveNow` and sleep in `ProcLatch.wait`.
 *
 * **Deliberate differences**
 *
 * - Capacity counts messages, not bytes: shm_mq's ring holds `size` bytes of length-prefixed messages, and
 *   a message larger than the ring is sent in pieces. Here a message is one JavaScript value of any size,
 *   passed by reference, not copied: send immutable values (or copy them) if the sender keeps using them.
 *   There is no `force_flush` or iovec variant: a message is visible to the receiver as soon as `send`
 *   returns.
 * - A queue is named by a string id in a registry that belongs to the supervisor, not by an address in a
 *   segment. The id is serialisable, so it is the natural `argument` of a worker (`Schema.String`).
 *   Queues are not shared across supervisors.
 * - `create` does `dsm_create` + `shm_mq_create`; `attachSender`/`attachReceiver` do `shm_mq_set_sender`/
 *   `shm_mq_set_receiver` + `shm_mq_attach`, and detach when their scope closes (`on_dsm_detach`). Attaching a
 *   side twice is a typed `MqAlreadyAttached`, not an assertion failure.
 * - Results are values and typed errors, not result codes: `SHM_MQ_DETACHED` is the failure `MqDetached`.
 * - Several fibers may share a handle: their calls are not interleaved within a message, and each message
 *   goes to exactly one receive.
 * - Inside a worker a blocked operation checks for interrupts before each wait and shows the wait event
 *   `IPC`/`MessageQueueSend`, `MessageQueueReceive` or `MessageQueueInternal`, but it does not wait on the
 *   worker's latch (so it never conflicts with `ProcLatch.wait`). A terminate request, or postmaster death,
 *   wakes a blocked operation at once and ends the worker there, as `CHECK_FOR_INTERRUPTS()` after a latch
 *   wake-up does.
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type * as Types from "effect/Types"
import type { Supervisor } from "./internal/context.ts"
import * as internal from "./internal/mq.ts"
import type { WorkerHandle } from "./WorkerHandle.ts"

// --- models ---

/**
 * A queue, as returned by {@link create}. Hand its `id` to the worker that attaches the other side.
 *
 * @category models
 * @since 0.1.0
 */
export interface MessageQueue<in out A> {
  readonly [internal.QueueTypeId]: Types.Invariant<A>
  /** The queue's name in its supervisor's registry (`"mq-1"`, ...): serialisable, pass it as an argument. */
  readonly id: string
  /** How many messages the queue holds before `send` waits. */
  readonly capacity: number
}

/**
 * The sending side of a queue (`shm_mq_handle` of the sender).
 *
 * @category models
 * @since 0.1.0
 */
export interface Sender<in A> {
  readonly [internal.SenderTypeId]: Types.Contravariant<A>
  readonly id: string
  readonly side: "sender"
}

/**
 * The receiving side of a queue (`shm_mq_handle` of the receiver).
 *
 * @category models
 * @since 0.1.0
 */
export interface Receiver<out A> {
  readonly [internal.ReceiverTypeId]: Types.Covariant<A>
  readonly id: string
  readonly side: "receiver"
}

/**
 * @category models
 * @since 0.1.0
 */
export type Side = "sender" | "receiver"

/**
 * @category models
 * @since 0.1.0
 */
export interface CreateOptions {
  /** How many messages the queue buffers: a positive integer. */
  readonly capacity: number
}

/**
 * @category models
 * @since 0.1.0
 */
export interface AttachOptions {
  /**
   * The counterparty's worker handle: if that worker stops (`Stopped`, `PostmasterDied`) before it attaches
   * its side, this side's waits fail with `MqDetached` instead of hanging.
   */
  readonly handle?: WorkerHandle | undefined
}

/**
 * What {@link sendNow} returns: `"Sent"`, or `"WouldBlock"` when the queue is full (`SHM_MQ_WOULD_BLOCK`).
 *
 * @category models
 * @since 0.1.0
 */
export type SendResult = "Sent" | "WouldBlock"

// --- guards ---

/**
 * Whether `u` is a queue returned by {@link create}.
 *
 * @category guards
 * @since 0.2.0
 */
export const isMessageQueue: (u: unknown) => u is MessageQueue<unknown> = internal.isMessageQueue

/**
 * Whether `u` is a sending side returned by {@link attachSender}.
 *
 * @category guards
 * @since 0.2.0
 */
export const isSender: (u: unknown) => u is Sender<unknown> = internal.isSender

/**
 * Whether `u` is a receiving side returned by {@link attachReceiver}.
 *
 * @category guards
 * @since 0.2.0
 */
export const isReceiver: (u: unknown) => u is Receiver<unknown> = internal.isReceiver

// --- errors ---

/**
 * The counterparty is gone (`SHM_MQ_DETACHED`): `side` names who went away, `reason` how: `"detached"`
 * (its scope closed, it called {@link detach}, or its worker ended after attaching) or
 * `"stoppedBeforeAttach"` (the worker bound with `handle` stopped before attaching). Also returned by an
 * operation on a handle that has itself detached; then `side` is the handle's own side.
 *
 * **When to use**
 *
 * Treat it as the end of the conversation: a receiver loop ends on it, as it would on end-of-file.
 *
 * @category errors
 * @since 0.1.0
 */
export const MqDetached = internal.MqDetached

/**
 * @category errors
 * @since 0.1.0
 */
export type MqDetached = internal.MqDetached

/**
 * No queue has this id under this supervisor: it never existed, or it was destroyed because its creator's
 * scope closed and no side was attached any more (PostgreSQL: `could not map dynamic shared memory
 * segment`).
 *
 * @category errors
 * @since 0.1.0
 */
export const MqNotFound = internal.MqNotFound

/**
 * @category errors
 * @since 0.1.0
 */
export type MqNotFound = internal.MqNotFound

/**
 * The side was already attached (perhaps attached and detached since): each side attaches once.
 *
 * @category errors
 * @since 0.1.0
 */
export const MqAlreadyAttached = internal.MqAlreadyAttached

/**
 * @category errors
 * @since 0.1.0
 */
export type MqAlreadyAttached = internal.MqAlreadyAttached

/**
 * `create` was given a capacity that is not a positive integer.
 *
 * @category errors
 * @since 0.1.0
 */
export const MqInvalidCapacity = internal.MqInvalidCapacity

/**
 * @category errors
 * @since 0.1.0
 */
export type MqInvalidCapacity = internal.MqInvalidCapacity

/**
 * Every error of this module.
 *
 * @category errors
 * @since 0.1.0
 */
export type MqError = MqDetached | MqNotFound | MqAlreadyAttached | MqInvalidCapacity

/**
 * Whether `u` is one of this module's errors ({@link MqError}), recognised by its type id.
 *
 * **Details**
 *
 * Every `MqError` has `isRetryable` = `false`: a detached queue stays detached, a destroyed one never comes
 * back (ids are not reused), a side attaches once, and a bad capacity stays bad. Retrying the same call
 * cannot help; a new queue can.
 *
 * @category guards
 * @since 0.2.0
 */
export const isMqError: (u: unknown) => u is MqError = internal.isMqError

/**
 * Whether `u` is an {@link MqDetached}: the end of the conversation, where the type is lost (a defect, a
 * `Cause` gathered from several fibers). In a typed error channel `Effect.catchTag("MqDetached", ...)` is
 * simpler.
 *
 * @category guards
 * @since 0.2.0
 */
export const isMqDetached: (u: unknown) => u is MqDetached = internal.isMqDetached

// --- constructors ---

/**
 * Creates a queue holding up to `capacity` messages (`dsm_create` + `shm_mq_create`) and returns its id.
 *
 * **When to use**
 *
 * In the registrant, before registering the worker that will use it; pass `queue.id` as the worker's
 * argument.
 *
 * **Details**
 *
 * The creator holds the queue until the current scope closes. Each attached side holds it too, until it
 * detaches; when nobody holds it any more it is destroyed and its id is unknown from then on. Nobody is
 * attached yet: attach one side here and let the worker attach the other.
 *
 * **Gotchas**
 *
 * If the creator's scope closes before the worker attaches, and no side is attached, the worker's attach
 * fails with `MqNotFound` (in PostgreSQL the worker fails to map the segment). Attach your own side in the
 * same scope, or keep the scope open until {@link waitForAttach} returns.
 *
 * @category constructors
 * @since 0.1.0
 */
export const create: <A>(
  options: CreateOptions
) => Effect.Effect<MessageQueue<A>, MqInvalidCapacity, Supervisor | Scope.Scope> = internal.create

/**
 * Attaches as the queue's sender (`shm_mq_set_sender` + `shm_mq_attach`) until the current scope closes.
 *
 * **Details**
 *
 * `queue` is a {@link MessageQueue} (its message type is inferred) or an id received as an argument (give
 * the type: `Mq.attachSender<Reply>(id)`). Fails with `MqNotFound` for an unknown or destroyed queue and
 * with `MqAlreadyAttached` if a sender attached before. Closing the scope detaches: the receiver still gets
 * what was sent, then `MqDetached`.
 *
 * With `handle` (the receiver's worker): if that worker stops before attaching, `send` fails with
 * `MqDetached` rather than waiting forever on a full queue.
 *
 * **Gotchas**
 *
 * Message types are not checked across the id: the receiver must use the same `A`. A side attaches once per
 * queue, so a restarted worker cannot re-attach the side its previous incarnation used (`MqAlreadyAttached`,
 * and the queue is detached anyway): give each incarnation a fresh queue.
 *
 * @category attaching
 * @since 0.1.0
 */
export const attachSender = <A = unknown>(
  queue: string | MessageQueue<A>,
  options?: AttachOptions
): Effect.Effect<Sender<A>, MqNotFound | MqAlreadyAttached, Supervisor | Scope.Scope> =>
  internal.attachSender(queue, options)

/**
 * Attaches as the queue's receiver (`shm_mq_set_receiver` + `shm_mq_attach`) until the current scope
 * closes.
 *
 * **Details**
 *
 * As {@link attachSender}. Closing the scope detaches: messages still buffered are dropped, and the sender's
 * next `send` fails with `MqDetached`.
 *
 * With `handle` (the sender's worker): if that worker stops before attaching, `receive` fails with
 * `MqDetached` rather than waiting forever on an empty queue (PostgreSQL's way of noticing that a worker
 * died or never started).
 *
 * @category attaching
 * @since 0.1.0
 */
export const attachReceiver = <A = unknown>(
  queue: string | MessageQueue<A>,
  options?: AttachOptions
): Effect.Effect<Receiver<A>, MqNotFound | MqAlreadyAttached, Supervisor | Scope.Scope> =>
  internal.attachReceiver(queue, options)

/**
 * Detaches now rather than when the scope closes (`shm_mq_detach`): the sender's way of saying "no more
 * messages". Idempotent; later operations on the handle fail with `MqDetached`.
 *
 * @category attaching
 * @since 0.1.0
 */
export const detach: (handle: Sender<any> | Receiver<any>) => Effect.Effect<void> = internal.detach

/**
 * Waits until the other side has attached (`shm_mq_wait_for_attach`). Succeeds at once if it already has
 * (even if it has detached since).
 *
 * **Details**
 *
 * Fails with `MqDetached` if the other side can no longer attach: its bound worker stopped, or this side
 * detached. Without a `handle` it may wait forever for a side that never comes.
 *
 * @category attaching
 * @since 0.1.0
 */
export const waitForAttach: (handle: Sender<any> | Receiver<any>) => Effect.Effect<void, MqDetached> =
  internal.waitForAttach

// --- sending and receiving ---

/**
 * Sends one message (`shm_mq_send` with `nowait = false`), waiting while the queue is full.
 *
 * **Details**
 *
 * Fails with `MqDetached` when the receiver has detached (whether or not there is room), when the
 * receiver's bound worker stopped before attaching, or when this handle has detached. Interrupting a
 * waiting `send` sends nothing.
 *
 * **Gotchas**
 *
 * Without a `handle`, a send into a full queue whose receiver never attaches waits forever. Inside a
 * worker, a terminate request ends a blocked send at once.
 *
 * **Example** (Both forms)
 *
 * ```ts
 * const hello = (tx: Mq.Sender<string>) => Mq.send(tx, "hello")
 * const world = (tx: Mq.Sender<string>) => pipe(tx, Mq.send("world")) // data-last
 * ```
 *
 * @category messaging
 * @since 0.1.0
 */
export const send: {
  <A>(message: A): (sender: Sender<A>) => Effect.Effect<void, MqDetached>
  <A>(sender: Sender<A>, message: A): Effect.Effect<void, MqDetached>
} = internal.send

/**
 * Sends one message if there is room (`shm_mq_send` with `nowait = true`): `"Sent"` or `"WouldBlock"`.
 * Fails with `MqDetached` as {@link send} does.
 *
 * @category messaging
 * @since 0.1.0
 */
export const sendNow: {
  <A>(message: A): (sender: Sender<A>) => Effect.Effect<SendResult, MqDetached>
  <A>(sender: Sender<A>, message: A): Effect.Effect<SendResult, MqDetached>
} = internal.sendNow

/**
 * Receives the next message (`shm_mq_receive` with `nowait = false`), waiting while the queue is empty.
 *
 * **Details**
 *
 * After the sender detaches, returns the messages already buffered, then fails with `MqDetached`. Also
 * fails when the sender's bound worker stopped before attaching, or when this handle has detached.
 * Interrupting a waiting `receive` takes nothing.
 *
 * **Example** (A receive loop that ends with the sender)
 *
 * ```ts
 * const drain = <A>(rx: Mq.Receiver<A>) =>
 *   Effect.gen(function*() {
 *     const out: Array<A> = []
 *     while (true) out.push(yield* Mq.receive(rx))
 *   }).pipe(Effect.catchTag("MqDetached", () => Effect.void))
 * ```
 *
 * @category messaging
 * @since 0.1.0
 */
export const receive: <A>(receiver: Receiver<A>) => Effect.Effect<A, MqDetached> = internal.receive

/**
 * Receives the next message if there is one (`shm_mq_receive` with `nowait = true`): `Some(message)`, or
 * `None` where PostgreSQL returns `SHM_MQ_WOULD_BLOCK`. Fails with `MqDetached` as {@link receive} does.
 *
 * **When to use**
 *
 * In a worker that serves several queues, or a queue and other work: poll each queue, then sleep in
 * `ProcLatch.wait`; a message sent to this worker's receiver sets its latch.
 *
 * @category messaging
 * @since 0.1.0
 */
export const receiveNow: <A>(receiver: Receiver<A>) => Effect.Effect<Option.Option<A>, MqDetached> = internal.receiveNow
