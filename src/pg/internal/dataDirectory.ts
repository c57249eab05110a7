/**
 * An embedded server's directory under `os.tmpdir()` (`effect-bgworker-pg-XXXXXX`: data in `data/`, the
 * Unix socket, `owner.json`), the watchdog that removes it should this process die, and the removal of
 * directories whose owner died without cleaning up.
 *
 * PostgreSQL: the postmaster's `postmaster.pid` lock file (src/backend/utils/init/miscinit.c,
 * `CreateLockFile`), whose first line is the postmaster's pid.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as childProcess from "node:child_process"
import * as fs from "node:fs/promises"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import type { Writable } from "node:stream"
import { setTimeout as sleep } from "node:timers/promises"
import { attempt, EmbeddedPostgresError, errorCode, errorText, logAnnotations } from "./embeddedError.ts"
import type { Owner, Watchdog } from "./processes.ts"

/** What every embedded server's directory under `os.tmpdir()` is called: this, then six random characters. */
const directoryPrefix = "effect-bgworker-pg-"

/** Matches the directories of servers only, never the binaries' cache (`effect-bgworker-pg-bin-...`). */
const directoryPattern = /^effect-bgworker-pg-[A-Za-z0-9]{6}$/

/** The file in a server's directory that names the process that started the server. */
const ownerRecordFile = "owner.json"

/** How long a directory without an owner record (being created, or left by an older version) is left alone. */
const unrecordedGrace = 60_000

/**
 * The process that started a server, as written to `<directory>/owner.json`: its pid, and what tells a
 * live owner from a later process with the same pid (Linux: its start time in clock ticks since boot,
 * the boot's id, its pid namespace). Fields that cannot be read are left out.
 */
interface OwnerRecord {
  readonly pid: number
  readonly startTime?: string | undefined
  readonly bootId?: string | undefined
  readonly pidNamespace?: string | undefined
}

/** State, parent and start time of a process, from `/proc/<pid>/stat` (Linux); `undefined` elsewhere or when gone. */
const processStat = async (
  pid: number
): Promise<{ readonly state: string; readonly ppid: number; readonly startTime: string } | undefined> => {
  const text = await fs.readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined)
  if (text === undefined) return undefined
  // Fields 3 onwards follow the command name, which is in parentheses and may contain anything.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ")
  return { state: fields[0] ?? "", ppid: Number(fields[1]), startTime: fields[19] ?? "" }
}

/**
 * Whether process `pid` exists and has not exited. A zombie (exited, not yet reaped by its parent, which
 * after its owner's death is PID 1, or nobody when PID 1 does not reap) has exited: it holds no port, no
 * file and no memory.
 */
const processRuns = async (pid: number): Promise<boolean> => {
  try {
    process.kill(pid, 0)
  } catch (error) {
    if (errorCode(error) === "ESRCH") return false
  }
  const stat = await processStat(pid)
  return stat === undefined || !["Z", "X", "x"].includes(stat.state)
}

const readTrimmed = (file: string): Promise<string | undefined> =>
  fs.readFile(file, "utf8").then((text) => text.trim() || undefined, () => undefined)

const thisOwner = async (): Promise<OwnerRecord> => ({
  pid: process.pid,
  startTime: (await processStat(process.pid))?.startTime,
  bootId: await readTrimmed("/proc/sys/kernel/random/boot_id"),
  pidNamespace: await fs.readlink("/proc/self/ns/pid").catch(() => undefined)
})

/**
 * The owner record in `directory`, or `undefined` when there is none that this process's user wrote
 * (a record someone else could have written proves nothing).
 */
const readOwnerRecord = async (directory: string): Promise<OwnerRecord | undefined> => {
  const file = path.join(directory, ownerRecordFile)
  const stat = await fs.lstat(file).catch(() => undefined)
  if (stat === undefined || !stat.isFile() || stat.uid !== process.getuid?.()) return undefined
  const parsed = await fs.readFile(file, "utf8").then((text) => JSON.parse(text) as unknown, () => undefined)
  if (typeof parsed !== "object" || parsed === null) return undefined
  const record = parsed as Record<string, unknown>
  const text = (value: unknown) => typeof value === "string" ? value : undefined
  if (typeof record["pid"] !== "number" || !Number.isInteger(record["pid"]) || record["pid"] <= 0) return undefined
  return {
    pid: record["pid"],
    startTime: text(record["startTime"]),
    bootId: text(record["bootId"]),
    pidNamespace: text(record["pidNamespace"])
  }
}

/**
 * Whether the owner a record names still runs: "dead" when the machine has rebooted since, when no
 * process has its pid, or when the process with its pid is a zombie or started at another time (a reused
 * pid); "unknown" when it ran in another pid namespace (another container sharing the directory), where
 * its pid means nothing here.
 */
const ownerState = async (record: OwnerRecord, here: OwnerRecord): Promise<"alive" | "dead" | "unknown"> => {
  if (record.bootId !== undefined && here.bootId !== undefined && record.bootId !== here.bootId) return "dead"
  if (record.pidNamespace !== here.pidNamespace) return "unknown"
  if (!(await processRuns(record.pid))) return "dead"
  const stat = await processStat(record.pid)
  if (stat !== undefined && record.startTime !== undefined && stat.startTime !== record.startTime) return "dead"
  return "alive"
}

/**
 * The postmaster running on `<directory>/data`: the pid `postmaster.pid` names, if that process belongs
 * to `uid` (the servers' OS user) and runs with that data directory on its command line (both read from
 * `/proc`; elsewhere, never confirmed, so never signalled).
 */
const serverOf = async (directory: string, uid: number): Promise<number | undefined> => {
  const data = path.join(directory, "data")
  const lock = await fs.readFile(path.join(data, "postmaster.pid"), "utf8").catch(() => undefined)
  const pid = Number(lock?.split("\n")[0])
  if (!Number.isInteger(pid) || pid <= 0) return undefined
  const owner = await fs.stat(`/proc/${pid}`).then((stat) => stat.uid, () => undefined)
  const commandLine = await fs.readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => undefined)
  return owner === uid && commandLine !== undefined && commandLine.split("\0").includes(data) ? pid : undefined
}

/** Waits up to `ms` for process `pid` to exit; returns whether it did. */
const awaitExit = async (pid: number, ms: number): Promise<boolean> => {
  for (const deadline = Date.now() + ms; Date.now() < deadline; await sleep(50)) {
    if (!(await processRuns(pid))) return true
  }
  return !(await processRuns(pid))
}

/** A fast shutdown (SIGINT) of a server nobody owns any more; SIGKILL after 5 seconds. */
const stopStrayServer = async (pid: number): Promise<void> => {
  const signal = (name: NodeJS.Signals) => {
    try {
      process.kill(pid, name)
    } catch {
      // Gone already.
    }
  }
  signal("SIGINT")
  if (await awaitExit(pid, 5_000)) return
  signal("SIGKILL")
  await awaitExit(pid, 2_000)
}

/**
 * Why `directory` is stale (its owner is dead), or `undefined` to leave it alone. A directory with an
 * owner record is stale when {@link ownerState} says the owner is dead. One without (an older version's,
 * or one being created right now) only when it is older than `unrecordedGrace` and has no server running
 * (no `postmaster.pid`, or, read from `/proc`, no such postmaster) or one that has been orphaned (its
 * parent is PID 1). Without `/proc`, one with a `postmaster.pid` is left alone.
 */
const staleness = async (directory: string, uid: number, here: OwnerRecord): Promise<string | undefined> => {
  const record = await readOwnerRecord(directory)
  if (record !== undefined) {
    return (await ownerState(record, here)) === "dead" ? `its owner (pid ${record.pid}) is gone` : undefined
  }
  const stat = await fs.lstat(directory).catch(() => undefined)
  if (stat === undefined || Date.now() - stat.mtimeMs < unrecordedGrace) return undefined
  const server = await serverOf(directory, uid)
  if (server !== undefined) {
    return (await processStat(server))?.ppid === 1 ? "it has no owner record and its server is an orphan" : undefined
  }
  const lock = await fs.lstat(path.join(directory, "data", "postmaster.pid")).then(() => true, () => false)
  const procfs = await fs.access("/proc/self/stat").then(() => true, () => false)
  return !lock || procfs ? "it has no owner record and no server" : undefined
}

/**
 * Removes `directory` with everything in it, as `owner` when given: root deletes nothing the server's OS
 * user could not delete itself, so that user cannot steer root's `rm` elsewhere (a directory swapped for
 * a symbolic link while it runs). Returns whether the directory is gone.
 */
const removeDirectory = async (directory: string, owner: Owner | undefined): Promise<boolean> => {
  if (owner === undefined) {
    await fs.rm(directory, { recursive: true, force: true, maxRetries: 3 }).catch(() => undefined)
  } else {
    await new Promise<void>((resolve) =>
      childProcess.execFile("rm", ["-rf", "--", directory], {
        cwd: "/",
        uid: owner.uid,
        gid: owner.gid,
        timeout: 30_000
      }, () => resolve())
    )
  }
  return fs.lstat(directory).then(() => false, () => true)
}

/**
 * Stops the servers and removes the directories under `parent` that a dead process left behind (see
 * `staleness`): only server directories (never the binaries' cache), owned by the servers' OS user
 * (`owner`, else this process's user) or, before the owner handed it over, by this process's user; and
 * never one whose owner might be alive. Returns what it removed, and why. Never fails: what it cannot
 * inspect or remove, it leaves.
 */
const removeStale = async (parent: string, owner: Owner | undefined): Promise<Array<string>> => {
  const self = process.getuid?.()
  if (self === undefined) return []
  const uid = owner?.uid ?? self
  const names = await fs.readdir(parent).catch(() => [] as Array<string>)
  const candidates = names.filter((name) => directoryPattern.test(name)).map((name) => path.join(parent, name))
  if (candidates.length === 0) return []
  const here = await thisOwner()
  const removed = await Promise.all(candidates.map(async (directory) => {
    const stat = await fs.lstat(directory).catch(() => undefined)
    if (stat === undefined || !stat.isDirectory() || (stat.uid !== uid && stat.uid !== self)) return undefined
    const reason = await staleness(directory, uid, here).catch(() => undefined)
    if (reason === undefined) return undefined
    const server = await serverOf(directory, uid).catch(() => undefined)
    if (server !== undefined) await stopStrayServer(server)
    const gone = await removeDirectory(directory, stat.uid === self ? undefined : owner)
    const stopped = server === undefined ? "" : `, after stopping its server (pid ${server})`
    return gone ? `removed "${directory}": ${reason}${stopped}` : undefined
  }))
  return removed.filter((message) => message !== undefined)
}

/** {@link removeStale} under `os.tmpdir()`, for the servers run as `owner`; logs what it removed. */
export const removeStaleDirectories = (owner: Owner | undefined): Effect.Effect<void> =>
  Effect.promise(() => removeStale(os.tmpdir(), owner).catch(() => [])).pipe(
    Effect.flatMap((removed) => Effect.forEach(removed, (message) => Effect.logWarning(message), { discard: true })),
    Effect.annotateLogs(logAnnotations)
  )

/** What the watchdog is called in `ps` (its `$0`). */
const watchdogName = "effect-bgworker-pg-watchdog"

/**
 * The watchdog: a `/bin/sh` script, with the server's directory as `$1`. It reads lines from its standard
 * input, a pipe from this process:
 *
 * - `stop <pid>`: a postmaster; `kill <pid>`: a process group (`initdb` and its children); `exited
 *   <pid>`: that process has exited, forget it.
 * - `done`: this process has stopped its server and removed the directory; exit.
 *
 * The end of its input without `done` means this process is gone, however it died: the kernel closes the
 * pipe's write end with the last process holding it, and only this process holds it (libuv opens every
 * descriptor close-on-exec, so no child inherits it). The watchdog then kills the groups, sends SIGINT
 * (PostgreSQL's fast shutdown) to each postmaster still running on `<dir>/data` (the command line in
 * `/proc` must say so; where there is no `/proc`, the pid is trusted), including the one `postmaster.pid`
 * names, waits up to 5 seconds for them to exit, then SIGKILLs what is left and removes the directory.
 */
const watchdogScript = `# ${watchdogName}: stops the server in "$1" and removes "$1" once its owner has gone
dir=$1
servers=
groups=
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  if [ -r "/proc/$1/stat" ]; then
    { read -r line < "/proc/$1/stat"; } 2>/dev/null || return 1
    case \${line##*") "} in Z* | X* | x*) return 1 ;; esac
  fi
  return 0
}
ours() {
  alive "$1" || return 1
  [ -r /proc/self/cmdline ] || return 0
  tr '\\0' '\\n' < "/proc/$1/cmdline" 2>/dev/null | grep -qxF -e "$dir/data"
}
while IFS=' ' read -r verb pid; do
  case $verb in
    done) exit 0 ;;
    stop | kill | exited) ;;
    *) continue ;;
  esac
  case $pid in '' | *[!0-9]*) continue ;; esac
  case $verb in
    stop) servers="$servers $pid" ;;
    kill) groups="$groups $pid" ;;
    exited)
      left=; for p in $servers; do [ "$p" = "$pid" ] || left="$left $p"; done; servers=$left
      left=; for p in $groups; do [ "$p" = "$pid" ] || left="$left $p"; done; groups=$left ;;
  esac
done
for p in $groups; do kill -s KILL -- "-$p" 2>/dev/null; done
p=
if [ -r "$dir/data/postmaster.pid" ]; then
  { read -r p < "$dir/data/postmaster.pid"; } 2>/dev/null
  case $p in '' | *[!0-9]*) ;; *) servers="$servers $p" ;; esac
fi
live=
for p in $servers; do ours "$p" && kill -s INT "$p" 2>/dev/null && live="$live $p"; done
tries=0
while [ -n "$live" ] && [ $tries -lt 70 ]; do
  if [ $tries -ge 50 ]; then
    for p in $live; do kill -s KILL -- "-$p" 2>/dev/null; kill -s KILL "$p" 2>/dev/null; done
  fi
  sleep 0.1
  tries=$((tries + 1))
  left=; for p in $live; do alive "$p" && left="$left $p"; done; live=$left
done
tries=0
while [ -e "$dir" ] && [ $tries -lt 20 ]; do
  rm -rf -- "$dir" 2>/dev/null || sleep 0.1
  tries=$((tries + 1))
done
`

/**
 * Starts the watchdog of `directory` (see `watchdogScript`): in its own session (a Ctrl-C or a hang-up
 * meant for this process does not reach it), as the server's OS user `owner` (who may signal the server
 * and `initdb`, and delete the directory, and nothing of root's), with its output discarded. It keeps
 * neither this process's event loop alive nor a signal handler in it. Fails when `/bin/sh` cannot be
 * started, which `initdb` needs as well.
 */
const startWatchdog = (directory: string, owner: Owner | undefined): Effect.Effect<Watchdog, EmbeddedPostgresError> =>
  Effect.callback<Watchdog, EmbeddedPostgresError>((resume) => {
    let settled = false
    const settle = (effect: Effect.Effect<Watchdog, EmbeddedPostgresError>) => {
      if (!settled) resume(effect)
      settled = true
    }
    const failed = (error: unknown) =>
      Effect.fail(
        new EmbeddedPostgresError({
          step: "directory",
          detail: `could not start the watchdog of "${directory}": ${errorText(error)}`,
          log: ""
        })
      )
    let child: childProcess.ChildProcessByStdio<Writable, null, null>
    try {
      child = childProcess.spawn("/bin/sh", ["-c", watchdogScript, watchdogName, directory], {
        cwd: "/",
        env: { LANG: "C", LC_ALL: "C", PATH: process.env["PATH"] ?? "/usr/bin:/bin" },
        detached: true,
        stdio: ["pipe", "ignore", "ignore"],
        ...(owner === undefined ? {} : { uid: owner.uid, gid: owner.gid })
      })
    } catch (error) {
      return settle(failed(error))
    }
    const stdin = child.stdin
    // A watchdog that was killed cannot be told anything: writing to it fails with EPIPE, which is ignored.
    stdin.on("error", () => {})
    const tell = (line: string) => {
      if (stdin.writable) stdin.write(`${line}\n`)
    }
    child.unref()
    if (stdin instanceof net.Socket) stdin.unref()
    child.once("error", (error) => settle(failed(error)))
    child.once("spawn", () =>
      settle(Effect.succeed({
        guard: (pid, how) => tell(`${how} ${pid}`),
        forget: (pid) => tell(`exited ${pid}`),
        dismiss: () => {
          if (stdin.writable) stdin.end("done\n")
        }
      })))
  })

/**
 * A temporary directory owned by `owner`, holding this process's owner record, and its watchdog. The
 * directory is removed (with everything in it) when the scope closes, then the watchdog dismissed; should
 * this process die before, the watchdog removes it, and should the watchdog fail too, the next start's
 * `removeStaleDirectories` does.
 */
export const temporaryDirectory: (
  owner: Owner | undefined
) => Effect.Effect<{ readonly directory: string; readonly watchdog: Watchdog }, EmbeddedPostgresError, Scope.Scope> =
  Effect.fnUntraced(function*(owner: Owner | undefined) {
    let watchdog: Watchdog | undefined
    const directory = yield* Effect.acquireRelease(
      attempt(
        "directory",
        "could not create a temporary directory",
        () => fs.mkdtemp(path.join(os.tmpdir(), directoryPrefix))
      ),
      (directory) =>
        Effect.promise(() => fs.rm(directory, { recursive: true, force: true, maxRetries: 3 })).pipe(
          Effect.catchCause((cause) =>
            Effect.logWarning(`could not remove "${directory}"`, cause).pipe(Effect.annotateLogs(logAnnotations))
          ),
          // Only now: had this process died before this point, the watchdog would have done the above.
          Effect.ensuring(Effect.sync(() => watchdog?.dismiss()))
        )
    )
    yield* attempt("directory", "could not write the owner record", async () => {
      const record = await thisOwner()
      await fs.writeFile(path.join(directory, ownerRecordFile), `${JSON.stringify(record)}\n`, {
        mode: 0o644,
        flag: "wx"
      })
    })
    if (owner !== undefined) {
      yield* attempt(
        "directory",
        `could not give "${directory}" to "${owner.name}"`,
        () => fs.chown(directory, owner.uid, owner.gid)
      )
    }
    // After the chown: the watchdog runs as the server's OS user, who must be able to delete the directory.
    watchdog = yield* startWatchdog(directory, owner)
    return { directory, watchdog }
  })
