/**
 * No orphans: an embedded server does not outlive the process that started it, however that process dies.
 * Real child processes (`fixtures/owner.ts`) start a server and are killed (SIGKILL, SIGQUIT); the server's
 * watchdog stops it and removes its directory. A watchdog that died too leaves the cleanup to the next
 * start, which must never touch a directory whose owner lives.
 *
 * Linux only (`/proc`), as the embedded binaries the suite runs.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as childProcess from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as EmbeddedPostgres from "../../src/pg/EmbeddedPostgres.ts"
import { nodeBinary } from "../node/fixtures/child.ts"
import * as PgTest from "./support.ts"

const { PgServer } = EmbeddedPostgres

const fixture = path.join(import.meta.dirname, "fixtures", "owner.ts")

/** The owner's death must be followed by its server's and its directory's within this bound. */
const cleanupBound = 10_000

/** An owner process and what it printed: its server (the postmaster), port and directory. */
interface Owner {
  readonly child: childProcess.ChildProcess
  readonly pid: number
  readonly server: number
  readonly port: number
  readonly directory: string
}

const hasExited = (child: childProcess.ChildProcess) => child.exitCode !== null || child.signalCode !== null

/**
 * Starts `fixtures/owner.ts` on the repository's Node 24, without core dumps (SIGQUIT would write one into
 * the working directory), and waits for its `server <pid> <port> <directory>` line. SIGKILLed with the
 * scope if still running.
 */
const startOwner = Effect.acquireRelease(
  Effect.callback<Owner, Error>((resume) => {
    const child = childProcess.spawn("/bin/sh", ["-c", "ulimit -c 0; exec \"$0\" \"$@\"", nodeBinary, fixture], {
      stdio: ["ignore", "pipe", "pipe"]
    })
    const output: Array<string> = []
    let settled = false
    const onData = (chunk: Buffer) => {
      output.push(chunk.toString("utf8"))
      const match = /^server (\d+) (\d+) (\S+)$/m.exec(output.join(""))
      if (match !== null && !settled) {
        settled = true
        resume(Effect.succeed({
          child,
          pid: child.pid!,
          server: Number(match[1]),
          port: Number(match[2]),
          directory: match[3]!
        }))
      }
    }
    child.stdout.on("data", onData)
    child.stderr.on("data", onData)
    child.once("exit", (code, signal) => {
      if (settled) return
      settled = true
      const how = code ?? signal
      resume(Effect.fail(new Error(`the owner exited (${how}) before starting its server:\n${output.join("")}`)))
    })
  }).pipe(Effect.timeout("30 seconds")),
  (owner) => Effect.sync(() => hasExited(owner.child) || owner.child.kill("SIGKILL"))
)

/** Kills the owner with `signal` and waits until this process has seen it die. */
const killOwner = (owner: Owner, signal: NodeJS.Signals) =>
  Effect.callback<void>((resume) => {
    if (hasExited(owner.child)) return resume(Effect.void)
    owner.child.once("exit", () => resume(Effect.void))
    owner.child.kill(signal)
  })

/** `/proc/<pid>/stat`: state, parent and start time, or `undefined` when there is no such process. */
const procStat = (pid: number) => {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ")
    return { state: fields[0]!, ppid: Number(fields[1]), startTime: fields[19]! }
  } catch {
    return undefined
  }
}

/**
 * Whether process `pid` still runs. `process.kill(pid, 0)` throwing ESRCH says it does not; so does a
 * zombie: an orphan that has exited waits for PID 1 to reap it, and some PID 1s never do (a container's
 * own program, or this sandbox's init), so the pid stays taken though nothing runs.
 */
const runs = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
  } catch (error) {
    assert.strictEqual((error as NodeJS.ErrnoException).code, "ESRCH")
    return false
  }
  return procStat(pid)?.state !== "Z"
}

/** Waits until `done` holds (polling every 20 ms) and returns how long that took; fails after `bound` ms. */
const waitUntil = (what: string, done: () => boolean, bound = cleanupBound) =>
  Effect.gen(function*() {
    const started = Date.now()
    while (!done()) {
      if (Date.now() - started > bound) return assert.fail(`${what}: still not the case after ${bound} ms`)
      yield* Effect.sleep("20 millis")
    }
    return Date.now() - started
  })

/** The watchdog of `directory`: a child of `parent` running `effect-bgworker-pg-watchdog <directory>`. */
const watchdogOf = (parent: number, directory: string): number | undefined => {
  for (const entry of fs.readdirSync("/proc")) {
    const pid = Number(entry)
    if (!Number.isInteger(pid) || procStat(pid)?.ppid !== parent) continue
    const argv = (() => {
      try {
        return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")
      } catch {
        return []
      }
    })()
    if (argv.includes("effect-bgworker-pg-watchdog") && argv.includes(directory)) return pid
  }
  return undefined
}

/** A directory named like a server's, owned like one (`uid`/`gid` of a real one), removed with the scope. */
const scopedServerLikeDirectory = (owner: { readonly uid: number; readonly gid: number }) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const directory = fs.mkdtempSync(path.join(os.tmpdir(), "effect-bgworker-pg-"))
      fs.chownSync(directory, owner.uid, owner.gid)
      return directory
    }),
    (directory) => Effect.sync(() => fs.rmSync(directory, { recursive: true, force: true }))
  )

/** The server a layer built in the current scope provides. */
const scopedServer = Layer.build(EmbeddedPostgres.layerEmbedded()).pipe(
  Effect.map((context) => Context.get(context, PgServer))
)

const killedOwnerIsCleanedUp = (signal: NodeJS.Signals) =>
  Effect.gen(function*() {
    const owner = yield* startOwner
    assert.isTrue(runs(owner.server), "the server runs")
    assert.isTrue(fs.existsSync(path.join(owner.directory, "owner.json")), "the directory names its owner")
    assert.isTrue(yield* PgTest.accepts(owner.port))
    yield* killOwner(owner, signal)
    const serverGone = yield* waitUntil(`the server (pid ${owner.server}) exits`, () => !runs(owner.server))
    const directoryGone = yield* waitUntil(`"${owner.directory}" is removed`, () => !fs.existsSync(owner.directory))
    assert.isFalse(yield* PgTest.accepts(owner.port), "the port still accepts connections")
    // Measured after the owner's death, one after the other: both well inside the bound.
    assert.isBelow(serverGone + directoryGone, cleanupBound)
  }).pipe(Effect.scoped)

describe("EmbeddedPostgres: no orphans", () => {
  it.live("SIGKILL of the owner: its watchdog stops the server and removes its directory within 10 s", () =>
    killedOwnerIsCleanedUp("SIGKILL"))

  it.live("SIGQUIT of the owner (Node's default: die, no finalizers): the same", () =>
    killedOwnerIsCleanedUp("SIGQUIT"))

  it.live("releasing the layer stops the server, removes its directory, then dismisses its watchdog", () =>
    Effect.gen(function*() {
      const { server, watchdog } = yield* Effect.gen(function*() {
        const server = yield* scopedServer
        const watchdog = watchdogOf(process.pid, server.directory!)
        assert.isDefined(watchdog, "the server has a watchdog, a child of this process")
        // Its own session: a Ctrl-C or hang-up meant for this process's group does not reach it.
        const session = fs.readFileSync(`/proc/${watchdog}/stat`, "utf8").split(") ")[1]!.split(" ")[3]
        assert.strictEqual(session, String(watchdog))
        // The server's OS user, not root: it may stop the server and delete the directory, nothing more.
        assert.strictEqual(fs.statSync(`/proc/${watchdog}`).uid, fs.statSync(`/proc/${server.pid}`).uid)
        return { server, watchdog: watchdog! }
      }).pipe(Effect.scoped)
      assert.isFalse(fs.existsSync(server.directory!))
      yield* waitUntil(`the watchdog (pid ${watchdog}) exits`, () => !runs(watchdog), 2_000)
    }))

  it.live("a start stops the server of an owner that died with its watchdog, and leaves live owners' alone", () =>
    Effect.gen(function*() {
      const owner = yield* startOwner
      const watchdog = watchdogOf(owner.pid, owner.directory)
      assert.isDefined(watchdog)
      process.kill(watchdog!, "SIGKILL")
      yield* waitUntil("the watchdog dies", () => !runs(watchdog!), 2_000)
      yield* killOwner(owner, "SIGKILL")
      assert.isTrue(runs(owner.server) || !fs.existsSync(owner.directory), "the server is orphaned")

      // Directories named after this process, as its own server's would be (it lives), and as those of an
      // earlier process with this pid would be (another start time: gone).
      const ownership = fs.statSync(owner.directory)
      const record = JSON.parse(fs.readFileSync(path.join(owner.directory, "owner.json"), "utf8")) as object
      const withRecord = (fields: object) =>
        Effect.tap(
          scopedServerLikeDirectory(ownership),
          (directory) =>
            Effect.sync(() =>
              fs.writeFileSync(path.join(directory, "owner.json"), JSON.stringify({ ...record, ...fields }))
            )
        )
      const alive = yield* withRecord({ pid: process.pid, startTime: procStat(process.pid)!.startTime })
      const reused = yield* withRecord({ pid: process.pid, startTime: "1" })

      yield* scopedServer
      // Another test file's start may get there first: the same cleanup either way.
      yield* waitUntil(`the orphaned server (pid ${owner.server}) exits`, () => !runs(owner.server))
      yield* waitUntil(`"${owner.directory}" is removed`, () => !fs.existsSync(owner.directory))
      yield* waitUntil(`"${reused}" is removed`, () => !fs.existsSync(reused))
      assert.isFalse(yield* PgTest.accepts(owner.port))
      assert.isTrue(fs.existsSync(alive), "the directory of a live owner was removed")
    }).pipe(Effect.scoped))

  it.live("a directory without an owner record is removed only once a minute old; the binaries' cache never", () =>
    Effect.gen(function*() {
      // This process's own, as a directory is between its creation and its owner record.
      const ownership = { uid: process.getuid!(), gid: process.getgid!() }
      const young = yield* scopedServerLikeDirectory(ownership)
      const old = yield* scopedServerLikeDirectory(ownership)
      const aMinuteAgo = new Date(Date.now() - 70_000)
      fs.utimesSync(old, aMinuteAgo, aMinuteAgo)
      const caches = fs.readdirSync(os.tmpdir()).filter((name) => name.startsWith("effect-bgworker-pg-bin-"))

      yield* scopedServer
      yield* waitUntil(`"${old}" is removed`, () => !fs.existsSync(old))
      assert.isTrue(fs.existsSync(young), "a directory being set up right now was removed")
      for (const cache of caches) assert.isTrue(fs.existsSync(path.join(os.tmpdir(), cache)), `"${cache}" was removed`)
    }).pipe(Effect.scoped))
})
