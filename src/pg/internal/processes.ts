/**
 * The child processes of an embedded server (`initdb`, `postgres`, `useradd`): started in a process group
 * of their own, with a minimal environment, as the server's OS user when this process is root, their
 * output kept, and each one announced to the watchdog that ends it should this process die first.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as childProcess from "node:child_process"
import * as path from "node:path"
import { EmbeddedPostgresError } from "./embeddedError.ts"

/** How a child process ended: an exit code, a signal, or an error before it could run. */
export interface ExitStatus {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly error: Error | undefined
}

/** The OS user a child process runs as (the server's, when this process is root). */
export interface Owner {
  readonly name: string
  readonly uid: number
  readonly gid: number
}

/**
 * The process that stops this process's server and removes its directory once this process is gone (see
 * `startWatchdog`). `guard` tells it about a process to end then: "stop" (the postmaster: SIGINT, then
 * SIGKILL) or "kill" (`initdb` and its children: SIGKILL to the process group); `forget` says the process
 * has exited. Both are safe to call after the watchdog has gone.
 */
export interface Watchdog {
  readonly guard: (pid: number, how: "stop" | "kill") => void
  readonly forget: (pid: number) => void
  /** Tells the watchdog that this process cleaned up itself: it exits without doing anything. */
  readonly dismiss: () => void
}

/** A started child process. */
export interface Spawned {
  readonly pid: number | undefined
  readonly exited: Deferred.Deferred<ExitStatus>
  readonly hasExited: () => boolean
  /** Signals the process, or with `group` its whole process group (the children it started too). */
  readonly kill: (signal: NodeJS.Signals, group?: boolean) => void
  /** The last lines printed on stdout and stderr, interleaved. */
  readonly logTail: () => string
}

/** How many of a process's last output lines are kept, for error messages. */
const logLines = 40

/** How a process ended, in words: `exited with code 1`, `was killed by signal SIGKILL`. */
export const describeExit = (status: ExitStatus): string =>
  status.error !== undefined
    ? `could not be run: ${status.error.message}`
    : status.signal !== null
    ? `was killed by signal ${status.signal}`
    : `exited with code ${status.code}`

/**
 * Starts `command` in its own process group (a Ctrl-C in the terminal reaches this process, whose
 * finalizers then stop the server, not the server directly), with a minimal environment, as `owner` when
 * given. Output is read continuously, so the server never blocks on a full pipe.
 */
export const spawn = (
  command: string,
  args: ReadonlyArray<string>,
  options: {
    readonly cwd: string
    readonly owner: Owner | undefined
    readonly onLine?: (line: string) => void
    /** Who ends the process, and how, should this process die first. */
    readonly watchdog?: { readonly watchdog: Watchdog; readonly how: "stop" | "kill" } | undefined
  }
): Effect.Effect<Spawned> =>
  Effect.sync(() => {
    const exited = Deferred.makeUnsafe<ExitStatus>()
    const tail: Array<string> = []
    let done = false
    let pid: number | undefined
    const finish = (status: ExitStatus) => {
      if (!done && pid !== undefined) options.watchdog?.watchdog.forget(pid)
      done = true
      Deferred.doneUnsafe(exited, Effect.succeed(status))
    }
    const env: Record<string, string> = { LANG: "C", LC_ALL: "C", PATH: process.env["PATH"] ?? "/usr/bin:/bin" }
    if (process.env["TZ"] !== undefined) env["TZ"] = process.env["TZ"]
    let child: childProcess.ChildProcess
    try {
      child = childProcess.spawn(command, args, {
        cwd: options.cwd,
        env,
        detached: true,
        stdio: ["ignore", "pipe", "pipe"],
        ...(options.owner === undefined ? {} : { uid: options.owner.uid, gid: options.owner.gid })
      })
    } catch (error) {
      finish({ code: null, signal: null, error: error instanceof Error ? error : new Error(String(error)) })
      return { pid: undefined, exited, hasExited: () => true, kill: () => {}, logTail: () => "" }
    }
    // In the same tick as the spawn: no moment where the process runs and the watchdog does not know it.
    pid = child.pid
    if (pid !== undefined) options.watchdog?.watchdog.guard(pid, options.watchdog.how)
    const readLines = (stream: NodeJS.ReadableStream | null) => {
      if (stream === null) return
      let partial = ""
      stream.setEncoding("utf8")
      stream.on("data", (chunk: string) => {
        const lines = (partial + chunk).split("\n")
        partial = lines.pop() ?? ""
        for (const line of lines) {
          tail.push(line)
          if (tail.length > logLines) tail.shift()
          options.onLine?.(line)
        }
      })
    }
    readLines(child.stdout)
    readLines(child.stderr)
    child.once("error", (error) => finish({ code: null, signal: null, error }))
    child.once("exit", (code, signal) => finish({ code, signal, error: undefined }))
    return {
      pid: child.pid,
      exited,
      hasExited: () => done,
      kill: (signal, group = false) => {
        if (group && child.pid !== undefined) {
          try {
            process.kill(-child.pid, signal)
          } catch {
            // The group is gone already.
          }
        } else if (!done) {
          child.kill(signal)
        }
      },
      logTail: () => tail.map((line) => `  | ${line}`).join("\n")
    }
  })

/**
 * Sends `signal` to the process and waits for it to exit; after `timeout`, kills its whole process group
 * (SIGKILL). Returns whether it exited in time. Never fails.
 */
export const terminate: (proc: Spawned, signal: NodeJS.Signals, timeout: Duration.Input) => Effect.Effect<boolean> =
  Effect.fnUntraced(function*(proc: Spawned, signal: NodeJS.Signals, timeout: Duration.Input) {
    if (proc.hasExited()) return true
    proc.kill(signal)
    const status = yield* Deferred.await(proc.exited).pipe(Effect.timeoutOption(timeout))
    if (Option.isSome(status)) return true
    proc.kill("SIGKILL", true)
    yield* Deferred.await(proc.exited).pipe(Effect.timeoutOption("5 seconds"))
    return false
  })

/** Runs a command to completion within `timeout`, failing with its output unless it exits with code 0. */
export const runToCompletion = (
  step: "user" | "initdb",
  command: string,
  args: ReadonlyArray<string>,
  options: {
    readonly cwd: string
    readonly owner: Owner | undefined
    readonly timeout: Duration.Duration
    readonly watchdog?: Watchdog | undefined
  }
): Effect.Effect<string, EmbeddedPostgresError> =>
  Effect.acquireUseRelease(
    spawn(command, args, {
      cwd: options.cwd,
      owner: options.owner,
      watchdog: options.watchdog === undefined ? undefined : { watchdog: options.watchdog, how: "kill" }
    }),
    (proc) =>
      Deferred.await(proc.exited).pipe(
        Effect.timeoutOrElse({
          duration: options.timeout,
          orElse: () =>
            Effect.fail(
              new EmbeddedPostgresError({
                step,
                detail: `${path.basename(command)} did not finish within ${Duration.format(options.timeout)}`,
                log: proc.logTail()
              })
            )
        }),
        Effect.flatMap((status) =>
          status.code === 0
            ? Effect.succeed(proc.logTail())
            : Effect.fail(
              new EmbeddedPostgresError({
                step,
                detail: `${path.basename(command)} ${describeExit(status)}`,
                log: proc.logTail()
              })
            )
        )
      ),
    // initdb runs `postgres --boot` and `postgres --single` through a shell: kill them all.
    (proc) =>
      proc.hasExited() ? Effect.void : Effect.sync(() => proc.kill("SIGKILL", true)).pipe(
        Effect.andThen(Deferred.await(proc.exited).pipe(Effect.timeoutOption("5 seconds")))
      )
  )
