/**
 * Shared state: the structs workers declared with `shmem: true` share (`ShmemInitStruct` in
 * `shmem_startup_hook`), created lazily or, for the ones listed in `Supervisor.layer({ shmem })`, before
 * any worker starts (`CreateSharedMemoryAndSemaphores`).
 *
 * Structs belong to a generation. A crash restart ends the generation (each struct's finalizers run,
 * newest first) and creates the listed structs afresh, as PostgreSQL re-initialises shared memory; so does
 * postmaster death, without the re-creation. Finalizers and initialisers are bounded by `abandonTimeout`:
 * one that hangs is named in the log and abandoned, still running (or, for a listed struct's initialiser,
 * fails the supervisor with `ShmemInitFailed`).
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import type { ShmemApi, ShmemStruct } from "../../Shmem.ts"
import * as Errors from "../../SupervisorError.ts"
import { withRootCause } from "../causeChain.ts"
import { escape } from "../logText.ts"
import type { Postmaster } from "./postmaster.ts"

export class SharedState {
  private readonly postmaster: Postmaster
  private generation = 0
  /** The current generation's structs, each with its own scope, in creation order. */
  private scopes: Array<{ readonly name: string; readonly scope: Scope.Closeable }> = []
  private values = new Map<string, Deferred.Deferred<unknown>>()
  /** Finalizers and initialisers given up on (see `within`) whose fiber still runs. */
  readonly abandonedTasks = new Set<Fiber.Fiber<unknown, unknown>>()

  constructor(postmaster: Postmaster) {
    this.postmaster = postmaster
  }

  /** The `Shmem` service of an incarnation started now: bound to the current generation. */
  api(): ShmemApi {
    return { generation: this.generation, get: <A>(struct: ShmemStruct<A>) => this.get(struct) }
  }

  /** `ShmemInitStruct`: the struct's value in the current generation, created by the first caller. */
  get<A>(struct: ShmemStruct<A>): Effect.Effect<A> {
    return Effect.suspend(() => {
      const existing = this.values.get(struct.name)
      if (existing !== undefined) return Deferred.await(existing) as Effect.Effect<A>
      const deferred = Deferred.makeUnsafe<unknown>()
      this.values.set(struct.name, deferred)
      // One scope per struct, so that a struct whose finalizers hang can be named and abandoned alone.
      const scope = Scope.makeUnsafe()
      this.scopes.push({ name: struct.name, scope })
      return Effect.uninterruptible(
        Effect.flatMap(
          Effect.exit(Scope.provide(struct.init, scope)),
          (exit) => Effect.andThen(Deferred.done(deferred, exit), exit)
        )
      ) as Effect.Effect<A>
    })
  }

  /** At start: creates the listed structs; the first that dies or hangs fails with `ShmemInitFailed`. */
  initialize(): Effect.Effect<void, Errors.SupervisorError> {
    return this.createListed()
  }

  /** A crash restart's re-initialisation: ends the current generation, then creates the listed structs. */
  reset(): Effect.Effect<void, Errors.SupervisorError> {
    return Effect.andThen(
      Effect.suspend(() => {
        this.generation++
        return this.release("the crash restart")
      }),
      this.createListed()
    )
  }

  /**
   * Ends the current generation: its structs' finalizers run (newest first), each bounded by
   * `abandonTimeout`. `after` completes the log line of one that hangs.
   */
  release(after: string): Effect.Effect<void> {
    return Effect.suspend(() => {
      const scopes = this.scopes
      this.scopes = []
      this.values = new Map()
      if (scopes.length === 0) return Effect.void
      const timeout = this.postmaster.options.abandonTimeout()
      return Effect.forEach(
        scopes.reverse(),
        ({ name, scope }) =>
          Effect.flatMap(
            this.within(Scope.close(scope, Exit.void), timeout),
            (closed) =>
              Option.isSome(closed) ? Effect.void : Effect.sync(() =>
                this.postmaster.log(
                  "Warn",
                  `shared state "${name}": its finalizers did not finish within ${
                    Duration.format(timeout)
                  } after ${after}; abandoned`,
                  { struct: name }
                )
              )
          ),
        { discard: true }
      )
    })
  }

  /**
   * Creates the structs listed in `Supervisor.layer({ shmem })` for the current generation, each within
   * `abandonTimeout`; the first that dies or hangs fails with `ShmemInitFailed`.
   */
  private createListed(): Effect.Effect<void, Errors.SupervisorError> {
    const listed = this.postmaster.options.shmem
    if (listed.length === 0) return Effect.void
    return Effect.suspend(() => {
      const timeout = this.postmaster.options.abandonTimeout()
      const failed = (struct: ShmemStruct<unknown>, detail: string) =>
        Errors.fail(
          new Errors.ShmemInitFailed({
            struct: struct.name,
            detail,
            hint: "Every struct listed in Supervisor.layer({ shmem }) is created at start and again after each crash " +
              "restart: its initialiser must succeed each time, within abandonTimeout."
          })
        )
      return Effect.forEach(listed, (struct) =>
        Effect.flatMap(this.within(this.get(struct), timeout), (created) => {
          if (Option.isNone(created)) {
            return Effect.fail(failed(struct, `initialization did not finish within ${Duration.format(timeout)}`))
          }
          if (Exit.isSuccess(created.value)) return Effect.void
          return Effect.fail(failed(struct, escape(withRootCause(Cause.squash(created.value.cause)))))
        }), { discard: true })
    })
  }

  /**
   * Runs `effect` (a scope's finalizers, an initialiser: uninterruptible) in a supervisor fiber of its own,
   * at once, and waits for its exit at most `timeout`. Unlike `Effect.timeoutOption`, which waits for the
   * interruption of what it gives up on, this leaves an effect that hangs running on its own: abandoned, it
   * leaves the supervisor's fibers (death does not wait for it again) and counts in `liveFibers` until it
   * ends. Until then it is one of the supervisor's fibers, so a death waits for it (boundedly) before
   * releasing shared state.
   */
  private within<A, E>(
    effect: Effect.Effect<A, E>,
    timeout: Duration.Duration
  ): Effect.Effect<Option.Option<Exit.Exit<A, E>>> {
    return Effect.suspend(() => {
      const supervisorFibers = this.postmaster.supervisorFibers
      const fiber = this.postmaster.fork(effect)
      const exit = fiber.pollUnsafe()
      if (exit !== undefined) return Effect.succeed(Option.some(exit))
      supervisorFibers.add(fiber)
      fiber.addObserver(() => supervisorFibers.delete(fiber))
      return Effect.tap(Effect.timeoutOption(Fiber.await(fiber), timeout), (ended) =>
        Effect.sync(() => {
          if (Option.isSome(ended) || fiber.pollUnsafe() !== undefined) return
          supervisorFibers.delete(fiber)
          this.abandonedTasks.add(fiber)
          fiber.addObserver(() => this.abandonedTasks.delete(fiber))
        }))
    })
  }
}
