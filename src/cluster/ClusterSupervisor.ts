/**
 * Supervisors in several processes on one database: singleton workers that run on exactly one of them,
 * move to another when their process dies, and carry a fencing token that only grows across owners.
 *
 * PostgreSQL has no counterpart: a server is one postmaster, and its background workers are its own. What a
 * server is to PostgreSQL, a process is here; what PostgreSQL would need an external tool for (Patroni's
 * leader key, pg_auto_failover's monitor), Effect's cluster module does: `effect/cluster` with its runner
 * and shard storage on the same PostgreSQL (`NodeClusterSocket`'s pieces, `SqlRunnerStorage`,
 * `SqlMessageStorage`), and `Singleton` for the ownership. This module adds what a supervisor needs on top.
 *
 * **Per process, as per server in PostgreSQL:** slots (`maxWorkerProcesses`), latches, shared state, crash
 * restarts, restart schedules and intensity limits, the activity view. A singleton worker is an ordinary
 * registration in the owner's supervisor: it restarts by its own schedule there, counts against that
 * supervisor's slots, and shows in that process's activity only.
 *
 * **Cluster-wide, through `effect/cluster`:** which process owns each singleton (a shard lock in
 * PostgreSQL: an advisory lock plus a row refreshed every `shardLockRefreshInterval`), the runners'
 * registry and heartbeats (`cluster_runners`), and the fencing token (this module's `fence` table).
 *
 * **Guarantees**
 *
 * - No overlap when a process dies (SIGKILL, a crash, a lost machine): its shard locks are released by
 *   PostgreSQL when its sessions end, or expire after `shardLockExpiration`, and only then does another
 *   process start the worker. When ownership moves while both processes live (a process joins and shards
 *   are rebalanced, or one shuts down), the old owner terminates its worker and waits for it to end before
 *   it lets go of the shard.
 * - Under a pause (a stopped process, a long GC, a partition) longer than `shardLockExpiration`, ownership
 *   is a lease: another process takes over while the paused one still believes it owns the singleton, and
 *   when it resumes its worker may run for up to one more step before it is stopped. Fence every side
 *   effect with the token ({@link guard}, {@link check}): the new owner bumps the token *before* its worker
 *   starts, and a write fenced by an older token then never commits.
 * - The token only grows: every start on a new owner takes the row's epoch plus one, under its row lock.
 *   Restarts on the same owner keep the token (they are one process's sequential incarnations).
 *
 * **Failover timing and its cost**
 *
 * The project's defaults are `shardLockRefreshInterval` 1 s, `shardLockExpiration` 3 s and
 * `refreshAssignmentsInterval` 500 ms: a SIGKILLed owner's singleton runs elsewhere within about 3 s (p50
 * 2.7 s, max 3.0 s over 10 kills in `npm run bench -- cluster`); with Effect's defaults (10 s, 35 s, 3 s) it
 * took 22 and 29 s in the same run, up to the 35 s expiration. The price is database load: about 4 statements per second per process (a
 * heartbeat and a lock refresh each second, the runners' query at each assignment refresh), where
 * Effect's defaults cost about 0.6. A process that stalls longer than `shardLockExpiration` loses its singletons (see the
 * pause above): the expiration is the stall tolerance. `shardLockExpiration` is whole seconds (PostgreSQL's
 * `interval` in the storage's queries); the refresh must be well below it.
 *
 * **Example** (One of N processes runs the relay)
 *
 * ```ts
 * import { Effect, Layer, Redacted } from "effect"
 * import { BackgroundWorker, ProcLatch, Supervisor } from "effect-bgworker"
 * import { ClusterSupervisor } from "effect-bgworker/cluster"
 * import { NodeSupervisor } from "effect-bgworker/node"
 * import { EmbeddedPostgres, WorkerConnection } from "effect-bgworker/pg"
 * import { SqlClient } from "effect/sql/SqlClient"
 *
 * const relay = BackgroundWorker.make({
 *   name: "outbox relay",
 *   database: {},
 *   restart: BackgroundWorker.restartAfter("1 second"),
 *   main: () =>
 *     Effect.gen(function*() {
 *       const sql = yield* SqlClient
 *       const fence = yield* ClusterSupervisor.guard
 *       while (true) {
 *         yield* sql`UPDATE outbox SET sent_at = now() WHERE sent_at IS NULL AND ${fence}`
 *         yield* ProcLatch.wait({ timeout: "1 second", onPostmasterDeath: "exit" })
 *         yield* ProcLatch.reset
 *       }
 *     })
 * })
 *
 * const Database = EmbeddedPostgres.clientLayer().pipe(Layer.provideMerge(EmbeddedPostgres.layer()))
 *
 * // Each process: its own address (here from the environment), the same database and the same secret
 * // (`openssl rand -base64 32`; the runners talk TLS with a key derived from it).
 * const App = ClusterSupervisor.singleton(relay).pipe(
 *   Layer.provide(ClusterSupervisor.layer({
 *     runnerAddress: { host: "10.0.0.7", port: Number(process.env.PORT) },
 *     secret: Redacted.make(process.env.CLUSTER_SECRET ?? "")
 *   })),
 *   Layer.provideMerge(Supervisor.layer()),
 *   Layer.provide(WorkerConnection.layer()),
 *   Layer.provide(Database)
 * )
 *
 * NodeSupervisor.runMain(App)
 * ```
 *
 * **Cron-started workers** ({@link cron})
 *
 * PostgreSQL has no cron; its extension pg_cron runs a job at each tick of a schedule, at most one run of a
 * job at a time. `cron(worker, { cron })` does that across the cluster, on Effect's `ClusterCron`: at each
 * tick, exactly one of the processes starts the worker in its own supervisor (with `restart: "never"`; the
 * next tick is its retry), with a fresh fencing token, and the job waits for it to end. A tick that comes
 * while the previous run is still active waits for it; of the ticks that passed meanwhile only the latest
 * runs, at once (pg_cron's rule). When the process running a tick dies, another process takes the job over
 * once the dead one's lock is gone and runs that tick again if it is still the latest due, or else the next
 * one. Ticks start up to the storage poll (`shardingConfig.entityMessagePollInterval`, Effect's default
 * 10 s) late: lower it for schedules in seconds.
 *
 * ```ts
 * import { Effect, Layer, Redacted } from "effect"
 * import { BackgroundWorker, Supervisor } from "effect-bgworker"
 * import { ClusterSupervisor } from "effect-bgworker/cluster"
 * import { NodeSupervisor } from "effect-bgworker/node"
 * import { EmbeddedPostgres, WorkerConnection } from "effect-bgworker/pg"
 * import { SqlClient } from "effect/sql/SqlClient"
 *
 * const purge = BackgroundWorker.make({
 *   name: "purge sessions",
 *   database: {},
 *   main: () =>
 *     Effect.gen(function*() {
 *       const sql = yield* SqlClient
 *       const fence = yield* ClusterSupervisor.guard // this run's token is still the newest
 *       yield* sql`DELETE FROM sessions WHERE expires_at < now() AND ${fence}`
 *     })
 * })
 *
 * const App = ClusterSupervisor.cron(purge, { cron: "*\/5 * * * *" }).pipe( // every five minutes
 *   Layer.provide(ClusterSupervisor.layer({
 *     runnerAddress: { host: "10.0.0.7", port: Number(process.env.PORT) },
 *     secret: Redacted.make(process.env.CLUSTER_SECRET ?? "")
 *   })),
 *   Layer.provideMerge(Supervisor.layer()),
 *   Layer.provide(WorkerConnection.layer()),
 *   Layer.provide(EmbeddedPostgres.clientLayer().pipe(Layer.provideMerge(EmbeddedPostgres.layer())))
 * )
 *
 * NodeSupervisor.runMain(App)
 * ```
 *
 * **Gotchas**
 *
 * - Every process needs its own `runnerAddress`, reachable by the others (the runners talk over TCP); two
 *   processes on one address take each other's shards. Effect's `ShardingConfig.layerFromEnv` would read
 *   `HOST`, `PORT`, `SHARDS_PER_GROUP` and friends from the environment: this layer does not, it takes
 *   everything from its options.
 * - When the worker gives up on its owner (its restart schedule completes, or its intensity limit is
 *   exceeded), it stays given up there, visible in that process's activity with its last error, and the
 *   singleton stays on that process: the cluster moves a singleton only when its owner dies or its shard is
 *   rebalanced, and trying it on another process would meet the same fault. Restarting (or stopping) that
 *   process moves the singleton and starts it again; terminating the given-up registration does not (it only
 *   frees the slot). A worker that returns (done) is not started again either until ownership moves. When
 *   ownership does move (its owner dies, a process joins and the shards are rebalanced), the new owner
 *   starts it afresh, with a fresh restart budget: the intensity limit is per owner, as a restart count is
 *   per server in PostgreSQL.
 * - The runners' own protocol (Effect's socket runners) has no authentication and no TLS of its own: anyone
 *   who can reach a runner's port could send it cluster messages. Give every process the same `secret` (at
 *   least 32 characters, `openssl rand -base64 32`): the runners then talk TLS 1.3 with a key derived from it,
 *   both ends prove they know it in the handshake, and a connection that does not is closed before a byte of
 *   it is read (no certificates to manage). Without a secret, keep `runnerAddress` (and `listenAddress`) on
 *   loopback: the layer logs a warning when it listens anywhere else. The secret is a key: a short or guessed
 *   one can be found offline from a recorded handshake, hence the minimum length. To change it without
 *   stopping the cluster, roll out `acceptedSecrets` first (see the option).
 * - Effect's cluster tables (`<tablePrefix>_runners`, `_locks`, `_messages`, `_replies`, ...) and the fence
 *   schema are created by the supervisor's role on first start; run all processes of a cluster as one role.
 *
 * - A cron tick can run twice: a run whose process died mid-way is run again elsewhere (at-least-once, as
 *   every persisted cluster message). Make cron workers idempotent per tick ({@link scheduledTime}) or fence
 *   their writes; a cron worker must end, or no later tick runs.
 *
 * **Deliberate differences from PostgreSQL:** there is none to differ from; the nearest is a standby's
 * promotion, which PostgreSQL leaves to tools outside the server. Ownership is decided by Effect's cluster,
 * not by an election of our own. Against pg_cron: a run that died with its process is run again (pg_cron
 * marks it failed and waits for the next tick), and a tick that passed while no process was up runs once
 * late when one starts, unless older than `skipIfOlderThan` (pg_cron skips it).
 *
 * @since 0.2.0
 */
import * as NodeClusterSocket from "@effect/platform-node/NodeClusterSocket"
import * as NodeCrypto from "@effect/platform-node/NodeCrypto"
import * as ClusterCron from "effect/cluster/ClusterCron"
import * as RunnerAddress from "effect/cluster/RunnerAddress"
import * as RunnerHealth from "effect/cluster/RunnerHealth"
import * as Runners from "effect/cluster/Runners"
import type { Sharding } from "effect/cluster/Sharding"
import * as ShardingConfig from "effect/cluster/ShardingConfig"
import * as Singleton from "effect/cluster/Singleton"
import * as SocketRunner from "effect/cluster/SocketRunner"
import * as SqlMessageStorage from "effect/cluster/SqlMessageStorage"
import * as SqlRunnerStorage from "effect/cluster/SqlRunnerStorage"
import * as Context from "effect/Context"
import * as Cron from "effect/Cron"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Redacted from "effect/Redacted"
import * as Result from "effect/Result"
import * as RpcSerialization from "effect/rpc/RpcSerialization"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as SocketServer from "effect/socket/SocketServer"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type * as Statement from "effect/sql/Statement"
import type * as BackgroundWorker from "../BackgroundWorker.ts"
import { escape } from "../internal/logText.ts"
import * as Supervisor from "../Supervisor.ts"
import type { SupervisorError } from "../SupervisorError.ts"
import * as fence from "./internal/fence.ts"
import * as runnerTransport from "./internal/runnerTransport.ts"

// --- Errors ---

/**
 * The layer's options are wrong: `field` names the option.
 *
 * @category errors
 * @since 0.2.0
 */
export class InvalidClusterOptions extends Schema.TaggedError<InvalidClusterOptions>()("InvalidClusterOptions", {
  field: Schema.String,
  detail: Schema.String,
  hint: Schema.optionalKey(Schema.String)
}) {
  override get message(): string {
    return `invalid cluster option "${this.field}": ${this.detail}`
  }
  /** The options must change. */
  get isRetryable(): boolean {
    return false
  }
}

/**
 * A fenced operation ran after another process took the singleton over: its token is no longer current.
 *
 * @category errors
 * @since 0.2.0
 */
export class FencedOut extends Schema.TaggedError<FencedOut>()("FencedOut", {
  singleton: Schema.String,
  token: Schema.BigInt
}) {
  override get message(): string {
    return `singleton "${this.singleton}": fencing token ${this.token} is no longer current`
  }
  /** Another process owns the singleton now; this one's worker is about to be stopped. */
  get isRetryable(): boolean {
    return false
  }
}

/**
 * @category guards
 * @since 0.2.0
 */
export const isFencedOut = (u: unknown): u is FencedOut => Predicate.isTagged(u, "FencedOut") && u instanceof FencedOut

// --- Services ---

/**
 * The fencing token of the singleton a worker runs as, in every singleton worker's context.
 *
 * - `token`: the singleton's epoch taken when this process became its owner; greater than every earlier
 *   owner's, and the same for every restart on this owner.
 * - `guard(sql)`: an SQL condition, true only while `token` is current, that share-locks the fence row until
 *   the statement's transaction ends: `UPDATE ... WHERE ... AND ${guard(sql)}`, `INSERT ... SELECT ... WHERE
 *   ${guard(sql)}`. A write so fenced commits before the next owner's bump, or does nothing.
 *
 * @category services
 * @since 0.2.0
 */
export class Fencing extends Context.Service<Fencing, {
  readonly singleton: string
  readonly token: bigint
  /** This process's runner address and OS pid, as recorded in the fence row. */
  readonly owner: string
  readonly guard: (sql: SqlClient) => Statement.Fragment
}>()("effect-bgworker/cluster/Fencing") {}

/**
 * This process's membership of the cluster: where the fence lives and who it is.
 *
 * @category services
 * @since 0.2.0
 */
export class ClusterSupervisor extends Context.Service<ClusterSupervisor, {
  /** `host:port (pid n)`: how this process is recorded as an owner in the fence. */
  readonly owner: string
  readonly schema: string
  /** The shard configuration in force (the project's defaults overlaid with the options). */
  readonly shardingConfig: ShardingConfig.ShardingConfig["Service"]
  /** Takes the next fencing token of `singleton` for this process (see {@link Fencing}). */
  readonly acquire: (singleton: string) => Effect.Effect<bigint, SqlError>
}>()("effect-bgworker/cluster/ClusterSupervisor") {}

// --- The layer ---

/**
 * @category models
 * @since 0.2.0
 */
export interface Options {
  /**
   * How the other processes reach this one (host and TCP port): unique per process. The runner listens on
   * it too unless `listenAddress` says otherwise (behind NAT, in a container).
   */
  readonly runnerAddress: { readonly host: string; readonly port: number }
  readonly listenAddress?: { readonly host: string; readonly port: number } | undefined
  /**
   * A secret every process of the cluster is given (at least 32 characters: `openssl rand -base64 32`). With
   * it, the runners talk TLS 1.3 authenticated by a key derived from it (and from `tablePrefix`): a
   * connection from anything that does not know it fails in the handshake, before a message is read, and
   * what the runners say is encrypted. No certificates. Without it they talk plain TCP with no
   * authentication: keep the addresses on loopback (the layer logs a warning for any other).
   */
  readonly secret?: Redacted.Redacted<string> | undefined
  /**
   * Secrets accepted from the other processes besides `secret`, never used to connect: for changing the
   * secret without stopping the cluster. Roll out `{ secret: old, acceptedSecrets: [new] }` to every
   * process, then `{ secret: new, acceptedSecrets: [old] }`, then `{ secret: new }`: at each step every
   * process accepts what every other one connects with.
   */
  readonly acceptedSecrets?: ReadonlyArray<Redacted.Redacted<string>> | undefined
  /** How often this process refreshes its shard locks and heartbeat. Default 1 second. */
  readonly shardLockRefreshInterval?: Duration.Input | undefined
  /**
   * How long a lock lives without a refresh: the failover time after a death that PostgreSQL does not see
   * at once, and the stall this process survives. Whole seconds. Default 3 seconds.
   */
  readonly shardLockExpiration?: Duration.Input | undefined
  /** How often the shard assignments are re-read. Default 500 ms. */
  readonly refreshAssignmentsInterval?: Duration.Input | undefined
  /** Any other `ShardingConfig` field, overlaid last (the addresses and intervals above win). */
  readonly shardingConfig?: Partial<ShardingConfig.ShardingConfig["Service"]> | undefined
  /** Prefix of Effect's cluster tables. Default `"cluster"`. */
  readonly tablePrefix?: string | undefined
  /** Schema of the fence table and its check function. Default `"bgworker_cluster"`. */
  readonly schema?: string | undefined
  /**
   * Roles that may check a token (`USAGE` on the schema, `EXECUTE` on `fence_holds`): those that database
   * workers log in as, when it is not the supervisor's own. Nobody else may; nobody but the supervisor's
   * role may move an epoch.
   */
  readonly grantTo?: ReadonlyArray<string> | undefined
}

/**
 * The project's defaults: failover in about 3 s for about 4 statements per second per process.
 *
 * @category constants
 * @since 0.2.0
 */
export const defaults = {
  shardLockRefreshInterval: Duration.seconds(1),
  shardLockExpiration: Duration.seconds(3),
  refreshAssignmentsInterval: Duration.millis(500)
} as const

const invalid = (field: string, detail: string, hint?: string) =>
  Effect.fail(
    new InvalidClusterOptions(hint === undefined ? { field, detail } : { field, detail, hint })
  )

const checkAddress = (field: string, address: { readonly host: string; readonly port: number } | undefined) => {
  if (address === undefined || address === null || typeof address !== "object") {
    return invalid(
      field,
      "is missing",
      "Give every process its own address the others can reach, e.g. { host: \"10.0.0.7\", port: 34431 }."
    )
  }
  if (typeof address.host !== "string" || address.host.length === 0 || address.host.length > 255) {
    return invalid(`${field}.host`, "must be a host name or IP address")
  }
  if (!Number.isInteger(address.port) || address.port < 1 || address.port > 65535) {
    return invalid(`${field}.port`, `must be a TCP port from 1 to 65535, not ${String(address.port)}`)
  }
  return Effect.void
}

const resolveConfig = (options: Options) =>
  Effect.gen(function*() {
    yield* checkAddress("runnerAddress", options?.runnerAddress)
    if (options.listenAddress !== undefined) yield* checkAddress("listenAddress", options.listenAddress)
    const duration = (field: string, input: Duration.Input | undefined, fallback: Duration.Duration) => {
      if (input === undefined) return Effect.succeed(fallback)
      const parsed = Duration.fromInput(input)
      return Option.isSome(parsed) && Duration.toMillis(parsed.value) > 0
        ? Effect.succeed(parsed.value)
        : invalid(field, "must be a positive duration")
    }
    const refresh = yield* duration(
      "shardLockRefreshInterval",
      options.shardLockRefreshInterval,
      defaults.shardLockRefreshInterval
    )
    const expiration = yield* duration("shardLockExpiration", options.shardLockExpiration, defaults.shardLockExpiration)
    const assignments = yield* duration(
      "refreshAssignmentsInterval",
      options.refreshAssignmentsInterval,
      defaults.refreshAssignmentsInterval
    )
    const expirationMs = Duration.toMillis(expiration)
    if (expirationMs % 1000 !== 0) {
      yield* invalid(
        "shardLockExpiration",
        `must be whole seconds, not ${Duration.format(expiration)}`,
        "The storage's queries compare with an interval in seconds and would round it up."
      )
    }
    if (Duration.toMillis(refresh) * 2 > expirationMs) {
      yield* invalid(
        "shardLockRefreshInterval",
        `${Duration.format(refresh)} leaves no room for a missed refresh within ${Duration.format(expiration)}`,
        "Keep the refresh at most half the expiration (the defaults: 1 second and 3 seconds)."
      )
    }
    const schema = options.schema ?? "bgworker_cluster"
    if (!fence.identifier.test(schema)) {
      yield* invalid("schema", `"${escape(schema)}" is not a plain lower-case SQL identifier`)
    }
    const prefix = options.tablePrefix ?? "cluster"
    if (!fence.identifier.test(prefix)) {
      yield* invalid("tablePrefix", `"${escape(prefix)}" is not a plain lower-case SQL identifier`)
    }
    const checkSecret = (field: string, secret: Redacted.Redacted<string>) => {
      const value = Redacted.isRedacted(secret) ? Redacted.value(secret) : undefined
      if (typeof value !== "string") {
        return invalid(field, "must be a Redacted string", "Pass Redacted.make(process.env.CLUSTER_SECRET).")
      }
      if (value.length < runnerTransport.minimumSecretLength) {
        return invalid(
          field,
          `must be at least ${runnerTransport.minimumSecretLength} characters, not ${value.length}`,
          "Generate one with `openssl rand -base64 32` and give every process of the cluster the same."
        )
      }
      return Effect.void
    }
    const secret = options.secret
    const acceptedSecrets = options.acceptedSecrets ?? []
    if (secret !== undefined) yield* checkSecret("secret", secret)
    if (!Array.isArray(acceptedSecrets)) yield* invalid("acceptedSecrets", "must be an array of Redacted strings")
    for (let i = 0; i < acceptedSecrets.length; i++) yield* checkSecret(`acceptedSecrets[${i}]`, acceptedSecrets[i]!)
    if (secret === undefined && acceptedSecrets.length > 0) {
      yield* invalid(
        "acceptedSecrets",
        "needs a secret to connect with",
        "Set secret too: acceptedSecrets only adds secrets accepted from other processes during a rotation."
      )
    }
    for (const role of options.grantTo ?? []) {
      if (!fence.identifier.test(role)) {
        yield* invalid("grantTo", `"${escape(role)}" is not a plain lower-case SQL identifier`)
      }
    }
    const address = RunnerAddress.make(options.runnerAddress.host, options.runnerAddress.port)
    const config: ShardingConfig.ShardingConfig["Service"] = {
      ...ShardingConfig.defaults,
      ...options.shardingConfig,
      runnerAddress: Option.some(address),
      runnerListenAddress: options.listenAddress === undefined
        ? Option.none()
        : Option.some(RunnerAddress.make(options.listenAddress.host, options.listenAddress.port)),
      shardLockRefreshInterval: refresh,
      shardLockExpiration: expiration,
      refreshAssignmentsInterval: assignments
    }
    const keys = secret === undefined ? undefined : runnerTransport.keys(secret, acceptedSecrets, prefix)
    return { config, schema, prefix, grantTo: options.grantTo ?? [], keys }
  })

/**
 * `NodeClusterSocket.layer({ storage: "sql" })`'s composition, with the configuration given rather than read
 * from the environment, and the tables' prefix; over TLS with a pre-shared key when the cluster has a secret.
 */
const clusterLayer = (
  config: ShardingConfig.ShardingConfig["Service"],
  prefix: string,
  keys: runnerTransport.Keys | undefined
) => {
  const server = keys === undefined
    ? NodeClusterSocket.layerSocketServer
    : runnerTransport.layerSocketServer(keys.accept)
  const client = keys === undefined
    ? NodeClusterSocket.layerClientProtocol
    : runnerTransport.layerClientProtocol(keys.connect)
  return SocketRunner.layer.pipe(
    Layer.provide([server, client]),
    Layer.provide(RunnerHealth.layerPing.pipe(Layer.provide(Runners.layerRpc), Layer.provide(client))),
    Layer.provideMerge(SqlMessageStorage.layerWith({ prefix }).pipe(Layer.provide(NodeCrypto.layerDigest))),
    Layer.provide(SqlRunnerStorage.layerWith({ prefix })),
    Layer.provide(Layer.succeed(ShardingConfig.ShardingConfig, config)),
    Layer.provide(RpcSerialization.layerSchemaBinary())
  )
}

/** Whether `host` is a loopback address or name, which only this machine's processes reach. */
const isLoopback = (host: string): boolean =>
  host === "localhost" || host === "::1" || host === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)

/**
 * Joins the cluster: starts this process's runner (listening on `runnerAddress`), registers it in the
 * cluster tables on the `SqlClient` in context, and creates the fence. Closing the layer's scope leaves the
 * cluster: singletons owned here are stopped (their workers terminated and awaited) and their shards freed
 * for the others at once.
 *
 * **Details**
 *
 * Fails with {@link InvalidClusterOptions} naming the option (a missing or malformed `runnerAddress`, an
 * expiration that is not whole seconds or not at least twice the refresh, a schema name that is not a plain
 * identifier, a `secret` or an accepted one shorter than 32 characters, `acceptedSecrets` without a `secret`),
 * with `SqlError` when the tables cannot be created, and with `SocketServerError` when the address cannot be
 * listened on.
 *
 * @category layers
 * @since 0.2.0
 */
export const layer = (
  options: Options
): Layer.Layer<
  ClusterSupervisor | Sharding,
  InvalidClusterOptions | SqlError | SocketServer.SocketServerError,
  SqlClient
> =>
  Layer.unwrap(Effect.gen(function*() {
    const { config, grantTo, keys, prefix, schema } = yield* resolveConfig(options)
    const address = `${options.runnerAddress.host}:${options.runnerAddress.port}`
    const listen = options.listenAddress ?? options.runnerAddress
    if (keys === undefined && !isLoopback(listen.host)) {
      yield* Effect.logWarning(
        `cluster runner listening on ${escape(listen.host)}:${listen.port} without a secret: the runners' protocol ` +
          "is unauthenticated and unencrypted, and anyone who reaches the port can send it cluster messages; " +
          "set ClusterSupervisor.layer({ secret }) in every process, or bind to loopback"
      )
    }
    const owner = `${address} (pid ${process.pid})`
    const service = Layer.effect(
      ClusterSupervisor,
      Effect.gen(function*() {
        const sql = yield* SqlClient
        yield* fence.create(sql, schema, grantTo)
        return ClusterSupervisor.of({
          owner,
          schema,
          shardingConfig: config,
          acquire: (singleton) => fence.bump(sql, schema, singleton, owner)
        })
      })
    )
    return Layer.merge(service, clusterLayer(config, prefix, keys))
  }))

// --- Singletons ---

/**
 * @category models
 * @since 0.2.0
 */
export interface SingletonOptions {
  /** The singleton's cluster-wide name. Default: the worker's `name`. */
  readonly name?: string | undefined
  /** Effect's shard group (default `"default"`). */
  readonly shardGroup?: string | undefined
  readonly extra?: Uint8Array | undefined
}

const retryEverySecond = Schedule.spaced("1 second")

/**
 * The {@link Fencing} service for `token` of `singleton`, checked against this cluster's fence. What
 * {@link singleton} gives its worker; useful to fence code that runs outside it (a request handler that
 * was handed a token) or to check an old token in a test.
 *
 * @category constructors
 * @since 0.2.0
 */
export const makeFencing = (
  cluster: ClusterSupervisor["Service"],
  singleton: string,
  token: bigint
): Fencing["Service"] =>
  Fencing.of({
    singleton,
    token,
    owner: cluster.owner,
    guard: (sql) => sql`${sql(cluster.schema)}.fence_holds(${singleton}, ${token.toString()}::bigint)`
  })

/**
 * Runs `worker` on exactly one of the processes that provide this layer: the owner of the singleton.
 *
 * **Details**
 *
 * When this process becomes the owner, it takes the next fencing token (the fence row's epoch plus one,
 * retried each second while the database does not answer), then registers `worker` with its own
 * `Supervisor` as a dynamic registration, with a {@link Fencing} service in its context: the worker keeps
 * its restart schedule and intensity limit, and shows in this process's activity. When ownership moves
 * away (another process takes the shard over, or this process leaves the cluster), the registration is
 * terminated and this process waits for the worker to end before the shard is let go (bounded by the
 * supervisor's `terminateTimeout` and `abandonTimeout`; past them the worker is abandoned and the fence is
 * what protects).
 *
 * **Gotchas**
 *
 * - The registration is retried each second while it fails with a retryable reason (`NoFreeSlot`); with
 *   any other (`InvalidDefinition`, `ShuttingDown`) it is logged and this process keeps the singleton without
 *   running it, until ownership moves.
 * - A worker that gives up or returns stays so on its owner (see the module's Gotchas).
 *
 * @category constructors
 * @since 0.2.0
 */
export const singleton = <A, E, R>(
  worker: BackgroundWorker.BackgroundWorker<A, E, R>,
  ...[argument, options]: void extends A ? [argument?: A, options?: SingletonOptions]
    : [argument: A, options?: SingletonOptions]
): Layer.Layer<never, never, ClusterSupervisor | Sharding | Supervisor.Supervisor | Exclude<R, Fencing>> => {
  const name = options?.name ?? worker.name
  const label = escape(name)
  const registerOptions = options?.extra === undefined ? undefined : { extra: options.extra }
  const run = Effect.gen(function*() {
    const cluster = yield* ClusterSupervisor
    const token = yield* cluster.acquire(name).pipe(
      Effect.tapError((error) =>
        Effect.logWarning(`singleton "${label}": could not take a fencing token, retrying: ${escape(error.message)}`)
      ),
      Effect.retry(retryEverySecond)
    )
    const fencing = makeFencing(cluster, name, token)
    yield* Effect.logInfo(`singleton "${label}" starts on ${cluster.owner} with fencing token ${token}`)
    const register = Supervisor.register(
      worker as BackgroundWorker.BackgroundWorker<unknown, E, R>,
      argument,
      registerOptions
    )
      .pipe(
        Effect.provideService(Fencing, fencing),
        Effect.tapError((error) =>
          Effect.logWarning(`singleton "${label}": registration failed: ${escape(error.message)}`)
        ),
        Effect.retry({ schedule: retryEverySecond, while: (error: SupervisorError) => error.isRetryable })
      )
    const registered = yield* Effect.acquireRelease(
      Effect.option(register),
      (handle) =>
        Option.isNone(handle) ? Effect.void : Supervisor.terminate(handle.value).pipe(
          Effect.andThen(Supervisor.awaitShutdown(handle.value)),
          Effect.andThen(Effect.logInfo(`singleton "${label}" stopped on ${cluster.owner} (token ${token})`))
        )
    )
    if (Option.isNone(registered)) {
      yield* Effect.logError(`singleton "${label}" is not running: its registration failed; it stays here`)
    }
    return yield* Effect.never
  })
  return Singleton.make(
    name,
    run,
    options?.shardGroup === undefined ? undefined : { shardGroup: options.shardGroup }
  )
}

// --- Cron ---

/**
 * A cron schedule given to {@link cron} (or {@link parseCron}) is not a valid cron expression, or another
 * of its options is wrong: `field` names the option.
 *
 * @category errors
 * @since 0.2.0
 */
export class InvalidCronSchedule extends Schema.TaggedError<InvalidCronSchedule>()("InvalidCronSchedule", {
  field: Schema.String,
  detail: Schema.String,
  hint: Schema.optionalKey(Schema.String)
}) {
  override get message(): string {
    return `invalid cron option "${this.field}": ${this.detail}`
  }
  /** The schedule must change. */
  get isRetryable(): boolean {
    return false
  }
}

/**
 * @category guards
 * @since 0.2.0
 */
export const isInvalidCronSchedule = (u: unknown): u is InvalidCronSchedule =>
  Predicate.isTagged(u, "InvalidCronSchedule") && u instanceof InvalidCronSchedule

const cronHint = "Five fields (minute hour day-of-month month day-of-week), or six with the seconds first: " +
  "\"*/5 * * * *\" every five minutes, \"*/10 * * * * *\" every ten seconds."

/**
 * Parses a cron expression (five fields, or six with the seconds first), failing with
 * {@link InvalidCronSchedule} and a hint rather than `Cron.CronParseError`. A `Cron.Cron` is returned as is.
 * Times are UTC unless a `Cron.Cron` made with a time zone is given.
 *
 * @category constructors
 * @since 0.2.0
 */
export const parseCron = (schedule: string | Cron.Cron): Effect.Effect<Cron.Cron, InvalidCronSchedule> => {
  if (Cron.isCron(schedule)) return Effect.succeed(schedule)
  if (typeof schedule !== "string" || schedule.length > 256) {
    return Effect.fail(
      new InvalidCronSchedule({ field: "cron", detail: "must be a cron expression of at most 256 characters" })
    )
  }
  const parsed = Cron.parse(schedule, "UTC")
  return Result.isSuccess(parsed)
    ? Effect.succeed(parsed.success)
    : Effect.fail(
      new InvalidCronSchedule({
        field: "cron",
        detail: `"${escape(schedule)}": ${escape(parsed.failure.message)}`,
        hint: cronHint
      })
    )
}

/**
 * @category models
 * @since 0.2.0
 */
export interface CronOptions {
  /** When: a cron expression (five fields, or six with the seconds first; UTC) or a `Cron.Cron`. */
  readonly cron: string | Cron.Cron
  /** The job's cluster-wide name (its Effect entity and its fence row). Default: the worker's `name`. */
  readonly name?: string | undefined
  /**
   * A due tick delivered later than this (all processes were down, the cluster's storage was unreachable)
   * is skipped. Default 1 day (Effect's `ClusterCron` default).
   */
  readonly skipIfOlderThan?: Duration.Input | undefined
  /** Effect's shard group (default `"default"`). */
  readonly shardGroup?: string | undefined
  readonly extra?: Uint8Array | undefined
}

/**
 * The time the current cron run was scheduled for (a tick of the schedule, UTC), in every cron worker's
 * context: Effect's `ClusterCron.CurrentScheduledTime`.
 *
 * @category accessors
 * @since 0.2.0
 */
export const scheduledTime: Effect.Effect<DateTime.Utc, never, ClusterCron.CurrentScheduledTime> = ClusterCron
  .CurrentScheduledTime.useSync((time) => time)

/** The fence row of cron job `name`: apart from the singletons' names. */
const cronFence = (name: string) => `cron/${name}`

/**
 * Starts `worker` once per tick of `options.cron` across the whole cluster: on one of the processes that
 * provide this layer, registered with that process's `Supervisor` (it shows in that process's activity
 * while it runs), with a fresh {@link Fencing} token and the tick's time ({@link scheduledTime}) in its
 * context. The next tick is not started before this run's worker has ended.
 *
 * **Details**
 *
 * Built on Effect's `ClusterCron` with `calculateNextRunFromPrevious`: the ticks are persisted messages to
 * one entity per job, processed one at a time by the process that owns its shard (until that process dies
 * or the shards are rebalanced; then another process carries on). For each tick it takes the job's next
 * fencing token (the fence row `cron/<name>`), registers the worker with `restart: "never"` and waits for
 * it to end. The layer fails with {@link InvalidCronSchedule} when the expression, `name` or
 * `skipIfOlderThan` is invalid.
 *
 * - **One run at a time, at most one late run (pg_cron's rule):** a tick that comes while the previous run
 *   is still active waits for it; of the ticks that passed meanwhile only the latest runs, at once, and the
 *   older ones are skipped (logged at debug level).
 * - **One attempt per tick:** the worker's own `restart` policy and intensity limit are not used; a run
 *   that fails is logged by the supervisor and the next tick is its retry, as a failed pg_cron job waits
 *   for its next run. A tick whose worker cannot be registered (`NoFreeSlot`, `ShuttingDown`) is skipped
 *   with a warning, as pg_cron fails a run that gets no background worker slot.
 * - **A process that dies mid-run:** the tick's message has no reply yet, so the process that takes the
 *   job's shard over (once the dead one's lock is released or expires, `shardLockExpiration`) delivers it
 *   again. It runs again there, with a greater token, only if it is still the latest due tick; otherwise it
 *   is skipped like any tick that a newer one overtook. A run can therefore be repeated after a crash
 *   (at-least-once, like every persisted cluster message): make the worker idempotent per tick, or fence
 *   its writes with its token.
 *
 * **Gotchas**
 *
 * - A tick is picked up by the storage poll: it starts up to `shardingConfig.entityMessagePollInterval`
 *   late (Effect's default 10 s; one query per process per interval). Schedules in seconds need a shorter
 *   poll, e.g. `shardingConfig: { entityMessagePollInterval: "250 millis" }` in {@link layer}'s options.
 * - The worker must end: a worker that loops forever holds the job, and no later tick runs.
 * - Ownership moving while both processes live (a process joins, one shuts down gracefully) waits for the
 *   running tick: the run is an uninterruptible cluster request, bounded by Effect's
 *   `entityTerminationTimeout`.
 *
 * @category constructors
 * @since 0.2.0
 */
export const cron = <A, E, R>(
  worker: BackgroundWorker.BackgroundWorker<A, E, R>,
  options: CronOptions & (void extends A ? { readonly argument?: A | undefined } : { readonly argument: A })
): Layer.Layer<
  never,
  InvalidCronSchedule,
  ClusterSupervisor | Sharding | Supervisor.Supervisor | Exclude<R, Fencing | ClusterCron.CurrentScheduledTime>
> =>
  Layer.unwrap(Effect.gen(function*() {
    const schedule = yield* parseCron(options.cron)
    const name = options.name ?? worker.name
    if (typeof name !== "string" || name.length === 0 || name.length > 200) {
      return yield* new InvalidCronSchedule({ field: "name", detail: "must be 1 to 200 characters" })
    }
    let skipIfOlderThan = Duration.days(1)
    if (options.skipIfOlderThan !== undefined) {
      const parsed = Duration.fromInput(options.skipIfOlderThan)
      if (Option.isNone(parsed) || Duration.toMillis(parsed.value) <= 0) {
        return yield* new InvalidCronSchedule({ field: "skipIfOlderThan", detail: "must be a positive duration" })
      }
      skipIfOlderThan = parsed.value
    }
    const label = escape(name)
    const once: BackgroundWorker.BackgroundWorker<unknown, E, R> = {
      ...(worker as BackgroundWorker.BackgroundWorker<unknown, E, R>),
      restart: "never",
      intensity: undefined
    }
    const registerOptions = options.extra === undefined ? undefined : { extra: options.extra }
    const execute = Effect.gen(function*() {
      const tick = yield* ClusterCron.CurrentScheduledTime
      const at = DateTime.formatIso(tick)
      const now = yield* DateTime.now
      if (Cron.next(schedule, tick).getTime() <= DateTime.toEpochMillis(now)) {
        return yield* Effect.logDebug(`cron "${label}": tick ${at} skipped, a later tick is already due`)
      }
      const cluster = yield* ClusterSupervisor
      const token = yield* cluster.acquire(cronFence(name)).pipe(
        Effect.retry({ times: 4, schedule: retryEverySecond }),
        Effect.option
      )
      if (Option.isNone(token)) {
        return yield* Effect.logWarning(`cron "${label}": tick ${at} skipped, no fencing token (database down?)`)
      }
      const registered = yield* Supervisor.register(once, options.argument, registerOptions).pipe(
        Effect.provideService(Fencing, makeFencing(cluster, cronFence(name), token.value)),
        Effect.result
      )
      if (Result.isFailure(registered)) {
        return yield* Effect.logWarning(
          `cron "${label}": tick ${at} skipped, the worker could not be registered: ${
            escape(registered.failure.message)
          }`
        )
      }
      const handle = registered.success
      yield* Effect.logDebug(`cron "${label}": tick ${at} runs on ${cluster.owner} with fencing token ${token.value}`)
      yield* Supervisor.awaitStartup(handle).pipe(
        Effect.andThen(Supervisor.awaitShutdown(handle)),
        Effect.onInterrupt(() => Supervisor.terminate(handle).pipe(Effect.andThen(Supervisor.awaitShutdown(handle))))
      )
    })
    // The worker's context is captured by `register`: what it needs beyond the supervisor's own services is
    // what this layer needs.
    return ClusterCron.make({
      name,
      cron: schedule,
      execute,
      calculateNextRunFromPrevious: true,
      skipIfOlderThan,
      ...(options.shardGroup === undefined ? {} : { shardGroup: options.shardGroup })
    }) as Layer.Layer<
      never,
      never,
      ClusterSupervisor | Sharding | Supervisor.Supervisor | Exclude<R, Fencing | ClusterCron.CurrentScheduledTime>
    >
  }))

// --- Accessors for the worker's code ---

/**
 * The worker's fencing token (see {@link Fencing}).
 *
 * @category accessors
 * @since 0.2.0
 */
export const token: Effect.Effect<bigint, never, Fencing> = Fencing.useSync((fencing) => fencing.token)

/**
 * The SQL condition that holds only while the worker's token is current, for the `SqlClient` in context
 * (see {@link Fencing}): `` sql`UPDATE t SET ... WHERE id = ${id} AND ${fence}` ``.
 *
 * @category accessors
 * @since 0.2.0
 */
export const guard: Effect.Effect<Statement.Fragment, never, Fencing | SqlClient> = Effect.flatMap(
  SqlClient,
  (sql) => Fencing.useSync((fencing) => fencing.guard(sql))
)

/**
 * Checks the token inside the caller's transaction and fails with {@link FencedOut} when it is no longer
 * current; otherwise share-locks the fence row until the transaction ends, so everything the transaction
 * writes after the check is fenced.
 *
 * **Gotchas**
 *
 * Outside a transaction the lock ends with the check's own statement and fences nothing after it: call it
 * first inside `Spi.transaction` or `sql.withTransaction`.
 *
 * @category accessors
 * @since 0.2.0
 */
export const check: Effect.Effect<void, FencedOut | SqlError, Fencing | SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient
  const fencing = yield* Fencing
  const rows = yield* sql<{ readonly holds: boolean }>`SELECT ${fencing.guard(sql)} AS holds`
  if (rows[0]?.holds !== true) {
    return yield* new FencedOut({ singleton: fencing.singleton, token: fencing.token })
  }
})
