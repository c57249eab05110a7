/**
 * @title Three supervisor processes, one singleton: kill its owner and watch it move in `bgworker.activity`
 *
 * `npm run example:cluster`: one program that plays a small cluster on one machine.
 *
 * - The server is `DATABASE_URL` when set, else a throwaway PostgreSQL started from the bundled binaries
 *   (about two seconds; deleted on exit). The program prints the `psql` line to watch it with `\watch 1`.
 * - It starts three *members*: this file again, as `40_cluster.ts member <n>`, each a supervisor of its own
 *   (`NodeSupervisor.runMain`) with `ClusterSupervisor.layer` on its own loopback runner address
 *   (`127.0.0.1:<free port>`) and a secret this program makes for the run (`CLUSTER_SECRET`: the runners talk
 *   TLS with a key derived from it), `ControlPlane.layer` (so each registers in `bgworker.processes` and publishes
 *   its workers into `bgworker.activity`), and the singleton worker `counter`.
 * - `counter` runs on exactly one member. Every second it adds one to `cluster_counter.n` in a write fenced by
 *   its token (`ClusterSupervisor.guard`): once another owner has started, an older owner's write never
 *   commits. It logs `count is now <n> (fencing token <t>)`.
 * - The program prints, as psql shows them, `bgworker.processes` and `SELECT process, name, pid, state FROM
 *   bgworker.activity`; then SIGKILLs the member that runs `counter`, waits until another member's fenced
 *   write commits (the time from the kill and the new token are printed) and until the killed member is
 *   marked dead (its heartbeat lapsed and its liveness lock is free), and prints both views again. Then it
 *   stops the members (SIGTERM: each stops its workers and leaves `bgworker.processes`) and exits with code 0.
 *
 * The members' lines are prefixed with their name (`[member 2]`). The members are started in process groups
 * of their own, so a Ctrl-C reaches this program only; it then stops them and waits for them (exit 130, as
 * every example). Should this program die without cleaning up (SIGKILL), each member sees its standard
 * input close and stops itself: no orphans.
 *
 * Timing: the members use the project's cluster defaults (`shardLockExpiration` 3 s: a SIGKILLed owner's
 * singleton runs elsewhere within about 3 s) and a control plane heartbeat of 500 ms with `deadAfter` 2 s
 * (defaults 1 s and 10 s), so the dead member leaves the view quickly. See `ClusterSupervisor`'s doc for the
 * trade-off against database load.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer, Redacted } from "effect"
import { BackgroundWorker, ProcLatch, Supervisor } from "effect-bgworker"
import { ClusterSupervisor } from "effect-bgworker/cluster"
import { NodeSupervisor } from "effect-bgworker/node"
import { ControlPlane, EmbeddedPostgres, WorkerConnection } from "effect-bgworker/pg"
import * as Clock from "effect/Clock"
import { SqlClient } from "effect/sql/SqlClient"
import * as childProcess from "node:child_process"
import * as crypto from "node:crypto"
import * as net from "node:net"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"

const say = (line: string) => Effect.sync(() => console.log(line))

// --- A member: one supervisor process of the cluster ---

const member = (n: number) => {
  const name = `member ${n}`
  const counter = BackgroundWorker.make({
    name: "counter",
    database: {},
    restart: BackgroundWorker.restartAfter("1 second"),
    main: () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const token = yield* ClusterSupervisor.token // greater than any earlier owner's
        const fence = yield* ClusterSupervisor.guard // true only while that token is the newest
        yield* Effect.log(`started on ${name} with fencing token ${token}`)
        while (true) {
          const rows = yield* sql<{ readonly n: string }>`
            UPDATE cluster_counter SET n = n + 1, token = ${token.toString()}::bigint, member = ${name}, at = now()
            WHERE id = 1 AND ${fence} RETURNING n::text AS n`
          yield* rows.length === 0
            ? Effect.logWarning(`fenced out: token ${token} is no longer the newest`)
            : Effect.log(`count is now ${rows[0]!.n} (fencing token ${token})`)
          yield* ProcLatch.wait({ timeout: "1 second", onPostmasterDeath: "exit", waitEvent: "ClusterCounterMain" })
          yield* ProcLatch.reset
        }
      })
  })

  // No orphans: when the program that started this member is gone, its end of our stdin closes.
  let stopping = false
  const parentGone = () => {
    if (stopping) return
    stopping = true
    process.kill(process.pid, "SIGTERM")
  }
  process.stdin.on("end", parentGone)
  process.stdin.on("close", parentGone)
  process.stdin.on("error", parentGone)
  process.stdin.resume()

  const App = ClusterSupervisor.singleton(counter).pipe(
    Layer.provideMerge(ControlPlane.layer({ heartbeatInterval: "500 millis", deadAfter: "2 seconds" })),
    Layer.provide(ClusterSupervisor.layer({
      runnerAddress: { host: "127.0.0.1", port: Number(process.env["RUNNER_PORT"]) },
      // The program's secret: the runners talk TLS 1.3 with a key derived from it (a deployment gives every
      // process the same, e.g. from `openssl rand -base64 32`).
      secret: Redacted.make(process.env["CLUSTER_SECRET"] ?? "")
    })),
    Layer.provideMerge(Supervisor.layer({ maxWorkerProcesses: 4, shutdownTimeout: "2 seconds" })),
    Layer.provide(WorkerConnection.layer()),
    Layer.provideMerge(EmbeddedPostgres.clientLayer({ applicationName: `bgworker ${name}` })),
    Layer.provide(EmbeddedPostgres.layer()) // DATABASE_URL, given by the program that started this member
  )
  NodeSupervisor.runMain(App)
}

// --- The program: the server, three members, the kill ---

interface Member {
  readonly n: number
  readonly name: string
  readonly pid: number
  readonly port: number
  readonly exited: Promise<void>
  readonly kill: (signal: NodeJS.Signals) => void
  readonly hasExited: () => boolean
}

/** A free TCP port on loopback, for a member's runner. */
const freePort = Effect.callback<number>((resume) => {
  const server = net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

/**
 * Starts `member <n>` (this file, on this Node, with this Node's flags) in a process group of its own, its
 * lines printed with its name; stopped (SIGTERM, then SIGKILL after 10 s) when the scope closes.
 */
const startMember = (n: number, databaseUrl: string) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const port = yield* freePort
      const name = `member ${n}`
      const child = childProcess.spawn(
        process.execPath,
        [...process.execArgv, fileURLToPath(import.meta.url), "member", String(n)],
        {
          env: { ...process.env, DATABASE_URL: databaseUrl, RUNNER_PORT: String(port), CLUSTER_SECRET: clusterSecret },
          stdio: ["pipe", "pipe", "pipe"],
          detached: true // its own process group: a Ctrl-C reaches this program, which stops it
        }
      )
      let done = false
      const exited = new Promise<void>((resolve) =>
        child.once("exit", () => {
          done = true
          resolve()
        })
      )
      for (const stream of [child.stdout, child.stderr]) {
        readline.createInterface({ input: stream }).on("line", (line) => console.log(`[${name}] ${line}`))
      }
      child.stdin.on("error", () => {}) // EPIPE once the member is gone
      return {
        n,
        name,
        pid: child.pid ?? -1,
        port,
        exited,
        hasExited: () => done,
        kill: (signal: NodeJS.Signals) => {
          if (!done) child.kill(signal)
        }
      } satisfies Member
    }),
    (m) =>
      Effect.promise(async () => {
        m.kill("SIGTERM")
        const timer = setTimeout(() => m.kill("SIGKILL"), 10_000)
        await m.exited
        clearTimeout(timer)
      })
  )

/** The members' shared secret, made afresh for each run of the program. */
const clusterSecret = crypto.randomBytes(32).toString("base64")

/**
 * `text` with its control characters written as `\xNN` (`\u2028`) escapes: the views show names that any role
 * allowed to launch workers chose, and a `\n` or `\x1b[2J` in one must not add a row or rewrite the terminal.
 */
const printable = (text: string) =>
  text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => {
    const code = c.charCodeAt(0)
    return code > 0xff ? `\\u${code.toString(16)}` : `\\x${code.toString(16).padStart(2, "0")}`
  })

/** Rows as psql prints them (aligned, with a header and the row count). */
const table = (query: string, columns: ReadonlyArray<string>, rows: ReadonlyArray<Record<string, unknown>>) => {
  const text = (value: unknown) =>
    value === null || value === undefined
      ? ""
      : typeof value === "boolean"
      ? (value ? "t" : "f")
      : value instanceof Date
      ? value.toISOString()
      : printable(String(value))
  const cells = rows.map((row) => columns.map((column) => text(row[column])))
  const widths = columns.map((column, i) => Math.max(column.length, ...cells.map((row) => row[i]!.length)))
  // psql aligns numbers right, everything else left.
  const numeric = columns.map((column) => rows.some((row) => typeof row[column] === "number"))
  const line = (values: ReadonlyArray<string>, header = false) =>
    " " + values.map((v, i) => !header && numeric[i] ? v.padStart(widths[i]!) : v.padEnd(widths[i]!)).join(" | ")
  return [
    `=> ${query};`,
    line(columns.map((column, i) => column.padStart(Math.floor((widths[i]! + column.length) / 2))), true).trimEnd(),
    widths.map((w) => "-".repeat(w + 2)).join("+"),
    ...cells.map((row) => line(row).trimEnd()),
    `(${rows.length} ${rows.length === 1 ? "row" : "rows"})`,
    ""
  ].join("\n")
}

const activityQuery = "SELECT process, name, pid, state FROM bgworker.activity"

const scenario = Effect.gen(function*() {
  const sql = yield* SqlClient
  const server = yield* EmbeddedPostgres.PgServer
  yield* sql`CREATE TABLE IF NOT EXISTS cluster_counter (
    id int PRIMARY KEY, n bigint NOT NULL, token bigint NOT NULL, member text NOT NULL, at timestamptz NOT NULL)`
  yield* sql`INSERT INTO cluster_counter VALUES (1, 0, 0, '', now()) ON CONFLICT (id) DO NOTHING`
  yield* say(
    `connect: ${server.embedded ? `psql "${Redacted.value(server.url)}"` : `psql "$DATABASE_URL"`}\n` +
      `  then: ${activityQuery} \\watch 1`
  )

  const databaseUrl = Redacted.value(server.url)
  const members: Array<Member> = []
  const processRows = sql<{ readonly process: string; readonly os_pid: number; readonly live: boolean }>`
    SELECT process, os_pid, live FROM bgworker.processes`.pipe(Effect.catch(() => Effect.succeed([])))
  /** Polls `check` every 100 ms until it holds; dies with `what` after `ms`. */
  const until = <E>(what: string, check: Effect.Effect<boolean, E>, ms: number) =>
    Effect.gen(function*() {
      const deadline = (yield* Clock.currentTimeMillis) + ms
      while (!(yield* check)) {
        if ((yield* Clock.currentTimeMillis) > deadline) {
          return yield* Effect.die(new Error(`${what}: not within ${ms} ms`))
        }
        yield* Effect.sleep("100 millis")
      }
    })
  const registered = (m: Member) =>
    Effect.map(processRows, (rows) => rows.some((row) => row.os_pid === m.pid && row.live))

  // The first member creates the cluster's tables and the control plane; the other two join it.
  members.push(yield* startMember(1, databaseUrl))
  yield* until("member 1 registered", registered(members[0]!), 60_000)
  members.push(yield* startMember(2, databaseUrl), yield* startMember(3, databaseUrl))
  yield* until(
    "members 2 and 3 registered",
    Effect.map(Effect.all(members.map(registered)), (ok) => ok.every(Boolean)),
    60_000
  )
  const runners = sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM cluster_runners WHERE healthy`.pipe(
    Effect.map((rows) => rows[0]!.n >= 3),
    Effect.catch(() => Effect.succeed(false))
  )
  yield* until("three cluster runners", runners, 30_000)

  yield* say(`members: ${members.map((m) => `${m.name} is os pid ${m.pid} (runner 127.0.0.1:${m.port})`).join(", ")}`)
  const memberOf = (id: string, rows: ReadonlyArray<{ readonly process: string; readonly os_pid: number }>) =>
    members.find((m) => m.pid === rows.find((row) => row.process === id)?.os_pid)
  const pids = members.map((m) => m.pid).join(", ")
  const processesQuery = `SELECT process, os_pid, live, coordinator FROM bgworker.processes WHERE os_pid IN (${pids})`
  const show = Effect.gen(function*() {
    const processes = yield* sql.unsafe<Record<string, unknown>>(processesQuery)
    const activity = yield* sql.unsafe<Record<string, unknown>>(activityQuery)
    yield* say(
      table(processesQuery, ["process", "os_pid", "live", "coordinator"], processes) + "\n" +
        table(activityQuery, ["process", "name", "pid", "state"], activity)
    )
  })
  /** Who runs `counter`, as the activity view shows it: its process, and the member that is. */
  const owner = Effect.gen(function*() {
    const rows = yield* sql<{ readonly process: string }>`
      SELECT process FROM bgworker.activity WHERE name = 'counter' AND pid IS NOT NULL`
    const processes = yield* processRows
    return rows.length === 1 ? { process: rows[0]!.process, member: memberOf(rows[0]!.process, processes) } : undefined
  })
  const counterRow = Effect.map(
    sql<{ readonly member: string; readonly token: string; readonly n: string }>`
      SELECT member, token::text AS token, n::text AS n FROM cluster_counter WHERE id = 1 AND at > now() - interval '2 seconds'`,
    (rows) => rows[0]
  )

  // Let the shards settle (a joining member can take the singleton over), then read the owner.
  yield* Effect.sleep("3 seconds")
  let before: { process: string; member: Member | undefined } | undefined
  yield* until("counter running on one member", Effect.map(owner, (o) => (before = o)?.member !== undefined), 30_000)
  const victim = before!.member!
  let tokenBefore = ""
  yield* until(
    `counter's write by ${victim.name}`,
    Effect.map(counterRow, (row) => row?.member === victim.name && (tokenBefore = row.token) !== ""),
    10_000
  )
  yield* say(
    `\n--- before: counter runs on ${victim.name} (process ${
      before!.process
    }, os pid ${victim.pid}), fencing token ${tokenBefore}\n`
  )
  yield* show

  yield* say(`--- SIGKILL ${victim.name} (os pid ${victim.pid})\n`)
  const killedAt = yield* Clock.currentTimeMillis
  victim.kill("SIGKILL")
  let after: { member: string; token: string; n: string } | undefined
  yield* until(
    "counter running on another member",
    Effect.map(counterRow, (row) => (after = row)?.member !== undefined && row!.member !== victim.name),
    30_000
  )
  const failoverMs = (yield* Clock.currentTimeMillis) - killedAt
  yield* until(
    `${victim.name} marked dead`,
    Effect.map(processRows, (rows) => rows.some((row) => row.os_pid === victim.pid && !row.live)),
    30_000
  )
  // The view follows within a publish: wait until it shows the worker running on its new process.
  let now: { process: string; member: Member | undefined } | undefined
  yield* until(
    "the activity view showing counter's new process",
    Effect.map(owner, (o) => (now = o)?.member !== undefined && o!.member !== victim),
    10_000
  )
  yield* say(
    `--- after: counter runs on ${now!.member!.name} (process ${now!.process}, os pid ${now!.member!.pid}) ${
      (failoverMs / 1000).toFixed(1)
    } s after the kill, fencing token ${after!.token} (was ${tokenBefore}); ${victim.name} is marked dead\n`
  )
  yield* show
  yield* say("--- stopping the members")
})

/** The server (`DATABASE_URL`, else an embedded one, stopped and deleted at the end) and a client for it. */
const Database = EmbeddedPostgres.clientLayer({ applicationName: "bgworker cluster example" }).pipe(
  Layer.provideMerge(EmbeddedPostgres.layer())
)

// The program itself runs no worker: plain `NodeRuntime.runMain` (a failure exits with code 1 and its cause,
// Ctrl-C interrupts it: the members are stopped, then the server, and it exits with code 130).
const program = Effect.scoped(scenario.pipe(Effect.onInterrupt(() => say("--- interrupted: stopping the members"))))
  .pipe(Effect.andThen(say("--- done")), Effect.provide(Database))

if (process.argv[2] === "member") member(Number(process.argv[3]))
else NodeRuntime.runMain(program)
