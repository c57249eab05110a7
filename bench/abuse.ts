/**
 * Figure 7: memory and latency of the SQL control plane under abuse.
 *
 * One embedded PostgreSQL, one supervisor with the control plane as deployed (`ControlPlane.layer()`: a
 * random secret channel, the 1 MiB argument limit, a 1 second poll), and two roles that log in over TCP
 * with a password: a launcher (member of `bgworker_launcher`) and an attacker (member of nothing; checked:
 * its `bgworker.launch` fails). RSS is `process.memoryUsage.rss()` of this process, which is the supervisor
 * (pool, LISTEN session, consumer, workers) plus the bench's own few sessions. "After GC" is read after
 * `global.gc()` (`--expose-gc`) once the event loop has settled; "peak" is the highest of samples taken
 * every 10 ms from just before the burst to its end. Both are minus the RSS after GC just before.
 *
 * **Big arguments.** The launcher runs, in ONE transaction, 40 × `SELECT bgworker.launch('abuse', 'mark',
 * jsonb_build_object('i', n, 'pad', repeat('p', …)))`, each argument padded to exactly the limit (1,048,576
 * bytes of JSON text, the largest `launch` accepts; `octet_length(arg::text)` is checked on the stored rows).
 * The server builds the argument, so the launcher's session sends a few bytes: what enters this process is
 * what the consumer reads. The worker records that it started and returns. Rows: RSS growth after GC once
 * all 40 have started (budget < 50 MB), V8's live heap growth after GC (`heapUsed`, info), peak RSS growth
 * (info), COMMIT → all 40 running (info). Baseline of the memory rows: the arguments' JSON text (40 MiB),
 * so ratio 1 = as much as holding every argument once as text; of the time row, the same burst with
 * `{"i": n}`, measured just before.
 *
 * **Notification flood.** The attacker sends 1,000,000 NOTIFYs from 2 sessions in parallel, 10,000 per
 * statement (`SELECT pg_notify($1, g::text) FROM generate_series(1, 10000) g`: distinct payloads, so
 * PostgreSQL does not fold them): first on `bgworker`, the channel anyone would guess (nobody listens on
 * it, but the supervisor's LISTEN backend still reads past every entry of PostgreSQL's shared notification
 * queue), then on the real channel read from `bgworker._config` by the superuser, the worst case of an
 * attacker who learned it, when every notification reaches this process. Meanwhile the launcher launches
 * one worker at a time (autocommit `launch`, wait until `main` runs, next) and records commit → running as
 * figure 5 does. The flood is over when the statements have returned and `pg_notification_queue_usage()`
 * is 0 (the LISTEN backend has read, and sent, the whole queue); the launches stop then. Rows per channel:
 * RSS growth after GC (budget < 50 MB on the guessable channel; information only on the secret one, which
 * an unprivileged role cannot learn: there V8's young generation grows with the allocation rate of the
 * driver's notification objects while the live heap does not), live heap growth and peak RSS growth (info), with the flood's
 * NotificationResponse bytes as baseline (what the supervisor would hold if it kept every notification
 * once as received); launch latency p50 (info) and p99 (budget < 100 ms), with the same loop without a
 * flood (measured just before) as baseline; launches served per second (info).
 *
 * **Why these numbers.** 40 × 1 MiB is 40 MiB of requests committed at once: holding them together would
 * show well above the budget, while the consumer is meant to hold one large argument at a time. 1,000,000
 * notifications are about 50 MB on the wire on the secret channel, enough for the driver's unbounded
 * listen queue to show if the consumer fell behind. 100 ms p99 is a launch that still feels immediate to
 * an operator while the server is being flooded (the quiet p99 is a few ms, figure 5). Two flooding
 * sessions on a 2-core machine leave PostgreSQL's two senders, its LISTEN backend and this process fighting
 * for the CPUs: that contention, more than the notifications themselves, is what the launches feel (one
 * session sends as fast, but gives about a quarter of the p99 and a few MB of growth). The figure takes
 * about 10 s.
 *
 * **Reading the memory rows.** RSS after GC is noisy here (tens of MB from run to run), so the progress
 * lines (stderr) split each growth into V8's live heap, V8's committed heap and its young generation, and
 * array buffers. Growth that is not live heap is memory used during the burst and not given back to the OS,
 * not data kept: after the big arguments, glibc's malloc keeping the freed buffers of the driver's parser
 * (which reallocates, doubling, up to 2 MiB for each 1 MiB message; with `MALLOC_MMAP_THRESHOLD_=131072`
 * that part goes away), the parser buffers still held by the pooled connections (array buffers), and
 * V8's young generation resized either way; after the secret-channel flood, V8's young generation grown by
 * the allocation rate (objects per notification) and not shrunk by `gc()`.
 */
import { PgClient } from "@effect/sql-pg"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Reactivity from "effect/reactivity/Reactivity"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { SqlClient } from "effect/sql/SqlClient"
import { randomBytes } from "node:crypto"
import * as v8 from "node:v8"
import * as BackgroundWorker from "../src/BackgroundWorker.ts"
import * as ControlPlane from "../src/pg/ControlPlane.ts"
import * as EmbeddedPostgres from "../src/pg/EmbeddedPostgres.ts"
import * as Supervisor from "../src/Supervisor.ts"
import { costRatio, heapAfterGc, now, progress, quantile, type Row, throughputRatio } from "./report.ts"

export interface AbuseOptions {
  /** Launches with an argument at the limit, in one transaction (40). */
  readonly bigArguments: number
  /** The argument limit, bytes of JSON text (the control plane's default, 1 MiB). */
  readonly maxArgumentBytes: number
  /** NOTIFYs per channel variant (1,000,000). */
  readonly notifications: number
  /** NOTIFYs per statement (10,000). */
  readonly perStatement: number
  /** Attacker sessions sending in parallel (2). */
  readonly floodSessions: number
  /** Launches of the no-flood baseline loop. */
  readonly quietLaunches: number
  /** RSS growth budget, MB. */
  readonly rssBudgetMb: number
  /** Launch latency p99 budget during the flood, ms. */
  readonly p99BudgetMs: number
}

const count = (n: number) =>
  n >= 1e6 && n % 1e6 === 0 ? `${n / 1e6}M` : n >= 1e3 && n % 1e3 === 0 ? `${n / 1e3}k` : String(n)

const MB = 1024 * 1024
const mb = (bytes: number) => bytes / MB

interface Memory extends NodeJS.MemoryUsage {
  /** Committed size of V8's young generation (it grows under a high allocation rate, up to its maximum). */
  readonly newSpace: number
}

/** Full GC (several passes), then the process's memory (`rss` is the measure; the rest says where it is). */
const afterGc: Effect.Effect<Memory> = Effect.gen(function*() {
  // Let the event loop turn first: replies and wake-ups in flight still hold what they point to.
  yield* Effect.sleep(100)
  heapAfterGc()
  const newSpace = v8.getHeapSpaceStatistics().find((space) => space.space_name === "new_space")?.space_size ?? 0
  return { ...process.memoryUsage(), newSpace }
})

/** Where an RSS growth went, for the progress lines: V8's heap (live, committed, young generation), and outside it. */
const breakdown = (before: Memory, after: Memory) =>
  `V8 heap: live ${signed(after.heapUsed - before.heapUsed)}, committed ${
    signed(after.heapTotal - before.heapTotal)
  } of which young generation ${signed(after.newSpace - before.newSpace)}; ` +
  `array buffers ${signed(after.arrayBuffers - before.arrayBuffers)}`

const signed = (bytes: number) => `${bytes < 0 ? "" : "+"}${mb(bytes).toFixed(1)} MB`

/** Samples RSS every 10 ms while `effect` runs; returns its value and the highest sample. */
const withPeakRss = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      const state = { peak: process.memoryUsage.rss(), timer: undefined as NodeJS.Timeout | undefined }
      state.timer = setInterval(() => {
        const rss = process.memoryUsage.rss()
        if (rss > state.peak) state.peak = rss
      }, 10)
      return state
    }),
    (state) =>
      Effect.map(effect, (value) => {
        const rss = process.memoryUsage.rss()
        if (rss > state.peak) state.peak = rss
        return { value, peak: state.peak }
      }),
    (state) => Effect.sync(() => clearInterval(state.timer))
  )

/** Bytes of one NotificationResponse: type, length, pid, channel and payload (each NUL-terminated). */
const wireBytes = (channel: string, payload: string) =>
  1 + 4 + 4 + Buffer.byteLength(channel) + 1 + Buffer.byteLength(payload) + 1

export const runAbuse = (options: AbuseOptions): Effect.Effect<ReadonlyArray<Row>> => {
  /** A launch `i` waits on `arrivals.get(i)`, completed by the worker's `main` with the time it started. */
  const arrivals = new Map<number, Deferred.Deferred<number>>()
  let nextId = 0
  const expect = () => {
    const i = nextId++
    const arrived = Deferred.makeUnsafe<number>()
    arrivals.set(i, arrived)
    return { i, arrived }
  }
  const mark = BackgroundWorker.make({
    name: "abuse mark",
    entryPoint: { library: "abuse", function: "mark" },
    argument: Schema.Struct({ i: Schema.Number, pad: Schema.optionalKey(Schema.String) }),
    main: ({ i }) =>
      Effect.suspend(() => {
        const at = now()
        const arrived = arrivals.get(i)
        arrivals.delete(i)
        return arrived === undefined ? Effect.void : Deferred.succeed(arrived, at)
      })
  })

  const suffix = randomBytes(4).toString("hex")
  const launcherRole = `abuse_launcher_${suffix}`
  const attackerRole = `abuse_attacker_${suffix}`
  const passwords = { [launcherRole]: randomBytes(12).toString("hex"), [attackerRole]: randomBytes(12).toString("hex") }

  const program = Effect.gen(function*() {
    const sql = yield* SqlClient
    const server = yield* EmbeddedPostgres.PgServer

    // --- roles (dropped last: finalizers run in reverse, after the sessions below are closed) ---
    yield* Effect.acquireRelease(
      Effect.gen(function*() {
        for (const role of [launcherRole, attackerRole]) {
          yield* sql.unsafe(`CREATE ROLE ${role} LOGIN PASSWORD '${passwords[role]}'`)
        }
        yield* sql.unsafe(`GRANT ${ControlPlane.launcherRole()} TO ${launcherRole}`)
      }),
      () => Effect.ignore(sql.unsafe(`DROP ROLE IF EXISTS ${launcherRole}, ${attackerRole}`))
    )
    const connectAs = (role: string) =>
      PgClient.makeClient({
        host: server.host,
        port: server.port,
        username: role,
        password: Redacted.make(passwords[role]!),
        database: server.database,
        applicationName: `abuse bench (${role.startsWith("abuse_launcher") ? "launcher" : "attacker"})`
      }).pipe(Effect.provide(Reactivity.layer))
    const launcher = yield* connectAs(launcherRole)
    const attackers: Array<PgClient.PgClient> = []
    for (let s = 0; s < options.floodSessions; s++) attackers.push(yield* connectAs(attackerRole))
    // The attacker really is unprivileged: it cannot launch.
    const denied = yield* Effect.result(attackers[0]!.unsafe(`SELECT bgworker.launch('abuse', 'mark', '{"i": -1}')`))
    if (denied._tag === "Success") return yield* Effect.die(new Error("the attacker role could launch a worker"))

    // --- one launch at a time, commit → running ---
    const launchOne = Effect.gen(function*() {
      const { arrived, i } = expect()
      yield* launcher.unsafe(`SELECT bgworker.launch('abuse', 'mark', $1::jsonb)`, [JSON.stringify({ i })])
      // The autocommit statement returns once its transaction committed (figure 5).
      const committed = now()
      const at = yield* Deferred.await(arrived).pipe(Effect.timeout("30 seconds"), Effect.orDie)
      return Math.max(0, at - committed)
    })
    const launchLoop = (stop: { done: boolean }, samples: Array<number>) =>
      Effect.gen(function*() {
        while (!stop.done) samples.push(yield* launchOne)
      })

    // Warm-up: JIT, pool connections, the consumer's statements.
    for (let k = 0; k < 50; k++) yield* launchOne

    // --- big arguments ---

    const padFor = (i: number) => options.maxArgumentBytes - `{"i": ${i}, "pad": ""}`.length
    const burst = (big: boolean) =>
      Effect.gen(function*() {
        const launches = Array.from({ length: options.bigArguments }, expect)
        const before = yield* afterGc
        const { peak, value: { first, last: ms } } = yield* withPeakRss(Effect.gen(function*() {
          yield* launcher.withTransaction(Effect.forEach(launches, ({ i }) =>
            big
              ? launcher.unsafe(
                `SELECT bgworker.launch('abuse', 'mark', jsonb_build_object('i', $1::int, 'pad', repeat('p', $2::int)))`,
                [i, padFor(i)]
              )
              : launcher.unsafe(`SELECT bgworker.launch('abuse', 'mark', jsonb_build_object('i', $1::int))`, [i]), {
            discard: true
          }))
          const committed = now()
          let first = Number.POSITIVE_INFINITY
          yield* Effect.forEach(launches, ({ arrived }) =>
            Effect.map(Deferred.await(arrived), (at) => {
              first = Math.min(first, at - committed)
            }), { discard: true }).pipe(
              Effect.timeout("60 seconds"),
              Effect.orDie
            )
          return { first, last: now() - committed }
        }))
        const after = yield* afterGc
        return {
          first,
          ms,
          growth: after.rss - before.rss,
          live: after.heapUsed - before.heapUsed,
          peakGrowth: peak - before.rss,
          where: breakdown(before, after),
          ids: launches.map(({ i }) => i)
        }
      })

    progress(`abuse: ${options.bigArguments} launches with a small argument in one transaction`)
    const small = yield* burst(false)
    progress(
      `abuse: ${options.bigArguments} launches with a ${options.maxArgumentBytes}-byte argument in one transaction`
    )
    const big = yield* burst(true)
    const [sizes] = yield* sql<{ n: number; min: number; max: number }>`
      SELECT count(*)::int AS n, min(octet_length(arg::text))::int AS min, max(octet_length(arg::text))::int AS max
      FROM bgworker._requests WHERE kind = 'launch' AND (arg->>'i')::int IN ${sql.in(big.ids)}`
    if (sizes === undefined || sizes.n !== options.bigArguments || sizes.max > options.maxArgumentBytes) {
      return yield* Effect.die(new Error(`unexpected stored arguments: ${JSON.stringify(sizes)}`))
    }
    progress(
      `abuse: big arguments: ${sizes.n} launched, ${sizes.min}..${sizes.max} bytes of JSON text each; ` +
        `first running ${big.first.toFixed(0)} ms after COMMIT, all ${big.ms.toFixed(0)} ms ` +
        `(small: ${small.first.toFixed(0)}, ${small.ms.toFixed(0)} ms); ` +
        `RSS ${signed(big.growth)} after GC (${big.where}), peak ${signed(big.peakGrowth)} ` +
        `(small: ${signed(small.growth)}, peak ${signed(small.peakGrowth)})`
    )
    const argumentsText = options.bigArguments * options.maxArgumentBytes

    const rows: Array<Row> = []
    const bigLabel = `7. ${options.bigArguments} × ${mb(options.maxArgumentBytes)} MiB args in 1 tx`
    rows.push({
      figure: `${bigLabel}: RSS growth after GC (base: args' text)`,
      unit: "MB",
      ours: mb(big.growth),
      baseline: mb(argumentsText),
      ratio: costRatio(big.growth, argumentsText),
      target: `<${options.rssBudgetMb} MB`,
      ok: mb(big.growth) < options.rssBudgetMb
    }, {
      figure: `${bigLabel}: V8 live heap growth after GC (base: args' text)`,
      unit: "MB",
      ours: mb(big.live),
      baseline: mb(argumentsText),
      ratio: costRatio(big.live, argumentsText),
      target: "(info)",
      ok: undefined
    }, {
      figure: `${bigLabel}: peak RSS growth (base: args' text)`,
      unit: "MB",
      ours: mb(big.peakGrowth),
      baseline: mb(argumentsText),
      ratio: costRatio(big.peakGrowth, argumentsText),
      target: "(info)",
      ok: undefined
    }, {
      figure: `${bigLabel}: COMMIT → all running (base: small args)`,
      unit: "ms",
      ours: big.ms,
      baseline: small.ms,
      ratio: costRatio(big.ms, small.ms),
      target: "(info)",
      ok: undefined
    })

    // --- notification flood ---

    progress(`abuse: ${options.quietLaunches} launches without a flood`)
    const quiet: Array<number> = []
    const quietStart = now()
    for (let k = 0; k < options.quietLaunches; k++) quiet.push(yield* launchOne)
    const quietRate = quiet.length / ((now() - quietStart) / 1000)
    const quietSamples = Float64Array.from(quiet)
    const quietP50 = quantile(quietSamples, 0.5)
    const quietP99 = quantile(quietSamples, 0.99)

    const statements = Math.ceil(options.notifications / options.perStatement)
    const flood = (channel: string) =>
      Effect.forEach(attackers, (attacker, s) =>
        Effect.gen(function*() {
          for (let k = s; k < statements; k += attackers.length) {
            const count = Math.min(options.perStatement, options.notifications - k * options.perStatement)
            // Volatile pg_notify in the subquery is evaluated for every row; one row comes back.
            yield* attacker.unsafe(
              `SELECT count(*) FROM (SELECT pg_notify($1, g::text) FROM generate_series(1, $2::int) g) s`,
              [channel, count]
            )
          }
        }), { concurrency: "unbounded", discard: true })
    /** Until the LISTEN backend has read the whole shared queue (page granularity). */
    const queueDrained = Effect.gen(function*() {
      while (true) {
        const [row] = yield* sql<{ usage: number }>`SELECT pg_notification_queue_usage() AS usage`
        if (row !== undefined && Number(row.usage) === 0) return
        yield* Effect.sleep(20)
      }
    }).pipe(Effect.timeout("60 seconds"), Effect.orDie)

    /**
     * `budgeted`: whether the RSS budget applies. It does on the channel an unprivileged role can name; the
     * secret channel is the worst case of an attacker who learned it (only the supervisor's own role and
     * pg_read_all_stats can see it), printed for information: V8's young generation grows with the
     * allocation rate of the driver's notification objects (the live heap does not grow).
     */
    const floodRun = (label: string, channel: string, budgeted = true) =>
      Effect.gen(function*() {
        progress(`abuse: ${options.notifications} NOTIFYs on the ${label} while launching`)
        const memoryBefore = yield* afterGc
        const before = memoryBefore.rss
        const samples: Array<number> = []
        const stop = { done: false }
        const { peak, value: times } = yield* withPeakRss(Effect.gen(function*() {
          const start = now()
          const loop = yield* Effect.forkChild(launchLoop(stop, samples))
          yield* flood(channel)
          const sent = now()
          yield* queueDrained
          const drained = now()
          stop.done = true
          yield* Fiber.join(loop)
          return { sendMs: sent - start, totalMs: drained - start, drainMs: drained - sent }
        }))
        const memoryAfter = yield* afterGc
        const after = memoryAfter.rss
        let wire = 0
        for (let g = 1; g <= options.perStatement; g++) wire += wireBytes(channel, String(g))
        wire *= options.notifications / options.perStatement
        const latencies = Float64Array.from(samples)
        const p50 = quantile(latencies, 0.5)
        const p99 = quantile(latencies, 0.99)
        const max = quantile(latencies, 1)
        progress(
          `abuse: ${label}: sent in ${(times.sendMs / 1000).toFixed(1)} s ` +
            `(${(options.notifications / times.sendMs).toFixed(0)}k/s), queue read ${
              times.drainMs.toFixed(0)
            } ms later; ` +
            `${samples.length} launches, p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, max ${
              max.toFixed(1)
            } ms; ` +
            `RSS ${signed(after - before)} after GC (${breakdown(memoryBefore, memoryAfter)}), peak ${
              signed(peak - before)
            }`
        )
        const figure = `7. ${count(options.notifications)} NOTIFY × ${attackers.length} sessions, ${label}`
        const rate = samples.length / (times.totalMs / 1000)
        rows.push({
          figure: `${figure}: RSS growth after GC (base: wire bytes)`,
          unit: "MB",
          ours: mb(after - before),
          baseline: mb(wire),
          ratio: costRatio(after - before, wire),
          target: budgeted ? `<${options.rssBudgetMb} MB` : "(info)",
          ok: budgeted ? mb(after - before) < options.rssBudgetMb : undefined
        }, {
          figure: `${figure}: V8 live heap growth after GC (base: wire bytes)`,
          unit: "MB",
          ours: mb(memoryAfter.heapUsed - memoryBefore.heapUsed),
          baseline: mb(wire),
          ratio: costRatio(memoryAfter.heapUsed - memoryBefore.heapUsed, wire),
          target: "(info)",
          ok: undefined
        }, {
          figure: `${figure}: peak RSS growth (base: wire bytes)`,
          unit: "MB",
          ours: mb(peak - before),
          baseline: mb(wire),
          ratio: costRatio(peak - before, wire),
          target: "(info)",
          ok: undefined
        }, {
          figure: `${figure}: launch commit → running, p50 (base: no flood)`,
          unit: "ms",
          ours: p50,
          baseline: quietP50,
          ratio: costRatio(p50, quietP50),
          target: "(info)",
          ok: undefined
        }, {
          figure: `${figure}: launch commit → running, p99 (base: no flood)`,
          unit: "ms",
          ours: p99,
          baseline: quietP99,
          ratio: costRatio(p99, quietP99),
          target: `<${options.p99BudgetMs} ms`,
          ok: p99 < options.p99BudgetMs
        }, {
          figure: `${figure}: launches served, ${samples.length} in ${
            (times.totalMs / 1000).toFixed(1)
          } s (base: no flood)`,
          unit: "cycles/s",
          ours: rate,
          baseline: quietRate,
          ratio: throughputRatio(rate, quietRate),
          target: "(info)",
          ok: undefined
        })
      })

    yield* floodRun(`channel "bgworker"`, "bgworker")
    const [config] = yield* sql<{ channel: string }>`SELECT channel FROM bgworker._config`
    if (config === undefined || config.channel === "bgworker") {
      return yield* Effect.die(new Error(`the control plane's channel is not secret: ${JSON.stringify(config)}`))
    }
    yield* floodRun("secret channel", config.channel, false)
    return rows
  }).pipe(Effect.scoped)

  const layers = ControlPlane.layer({ maxArgumentBytes: options.maxArgumentBytes }).pipe(
    Layer.provideMerge(Supervisor.layer({ maxWorkerProcesses: 64, entryPoints: [mark] })),
    Layer.provideMerge(EmbeddedPostgres.clientLayer({ maxConnections: 8 })),
    Layer.provideMerge(EmbeddedPostgres.layer())
  )

  return Effect.gen(function*() {
    progress("abuse: starting PostgreSQL")
    return yield* Effect.provide(program, layers)
  }).pipe(Effect.orDie) as Effect.Effect<ReadonlyArray<Row>>
}
