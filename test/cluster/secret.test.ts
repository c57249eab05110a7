/**
 * A cluster with a secret (`ClusterSupervisor.Options.secret`): its runners talk TLS 1.3 with a key derived
 * from it. The runner's server is tested in this process against real TLS and TCP clients; the cluster, with
 * fixture processes (`test/cluster/fixtures/node.ts`) whose runners ping each other every second.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import * as RunnerAddress from "effect/cluster/RunnerAddress"
import * as ShardingConfig from "effect/cluster/ShardingConfig"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as References from "effect/References"
import * as SocketServer from "effect/socket/SocketServer"
import { SqlClient } from "effect/sql/SqlClient"
import * as fs from "node:fs"
import * as Net from "node:net"
import * as path from "node:path"
import * as Tls from "node:tls"
import { ClusterSupervisor } from "../../src/cluster/index.ts"
import * as runnerTransport from "../../src/cluster/internal/runnerTransport.ts"
import * as PgTest from "../pg/support.ts"
import { startNode } from "./support.ts"

const Env = Layer.merge(PgTest.layer({ prefix: "cluster_secret" }), NodeServices.layer)

const secret = Redacted.make("k9V2cQ1m3JtR8wX0bN5pL7hF4sD6gA2zE1yU8iO3qW5=")
const otherSecret = Redacted.make("Zq0P9o8I7u6Y5t4R3e2W1q0A9s8D7f6G5h4J3k2L1z0=")
const thirdSecret = Redacted.make("mN4bV6cX8zL1kJ3hG5fD7sA9pO2iU4yT6rE8wQ0aS2=")

/**
 * A runner's server accepting the keys `accept`, on a free loopback port, in this scope: every connection that
 * reaches its handler is counted and sent `hello`.
 */
const runnerServer = (...accept: ReadonlyArray<runnerTransport.PreSharedKey>) =>
  Effect.gen(function*() {
    const port = yield* PgTest.freePort
    const config = {
      ...ShardingConfig.defaults,
      runnerAddress: Option.some(RunnerAddress.make("127.0.0.1", port))
    }
    const context = yield* Layer.build(
      runnerTransport.layerSocketServer(accept).pipe(
        Layer.provide(Layer.succeed(ShardingConfig.ShardingConfig, config))
      )
    )
    const server = Context.get(context, SocketServer.SocketServer)
    const reached = { count: 0 }
    yield* Effect.forkScoped(server.run((socket) =>
      Effect.scoped(Effect.gen(function*() {
        reached.count++
        const reader = yield* socket.reader
        const writer = yield* socket.writer
        yield* writer.write("hello")
        yield* Effect.ignore(reader.pull) // the client's first bytes, or its end
      }))
    ))
    return { port, reached }
  })

type Outcome = { readonly _tag: "Received"; readonly text: string } | { readonly _tag: "Refused"; readonly why: string }

/** Connects with `connect`, sends `send`, and reports what came back before the end. */
const talk = (connect: () => Net.Socket, send: string) =>
  Effect.callback<Outcome>((resume) => {
    let settled = false
    let text = ""
    const done = (outcome: Outcome) => {
      if (settled) return
      settled = true
      socket.destroy()
      resume(Effect.succeed(outcome))
    }
    const socket = connect()
    socket.on("data", (chunk: Buffer) => {
      text += chunk.toString("utf8")
      if (text.length >= 5) done({ _tag: "Received", text })
    })
    socket.on("error", (error: NodeJS.ErrnoException) => done({ _tag: "Refused", why: error.code ?? error.message }))
    socket.on("close", () => done(text === "" ? { _tag: "Refused", why: "closed" } : { _tag: "Received", text }))
    socket.write(send)
  })

const tlsClient = (port: number, psk: runnerTransport.PreSharedKey) =>
  talk(() => Tls.connect({ host: "127.0.0.1", port, ...runnerTransport.clientOptions(psk) }), "ping")

/** The cluster's runners by health, read from its runner table. */
const runnerHealth = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const rows = yield* sql<{ readonly healthy: number; readonly total: number }>`
      SELECT count(*) FILTER (WHERE healthy)::int AS healthy, count(*)::int AS total FROM ${sql(`${prefix}_runners`)}`
    return rows[0]!
  }).pipe(Effect.catch(() => Effect.succeed({ healthy: 0, total: 0 }))) // the table appears with the first runner

/**
 * Waits for the cluster's two runners to register, then asserts for 6 s that both stay healthy. They ping
 * each other every 500 ms (`CLUSTER_HEALTH_CHECK_MS`), each ping given up after 5 failures 500 ms apart: a
 * runner the other could not reach would be marked unhealthy within about 3 seconds.
 */
const bothStayHealthy = (prefix: string) =>
  Effect.gen(function*() {
    yield* PgTest.eventually(
      "two runners registered",
      Effect.map(runnerHealth(prefix), (runners) => runners.total === 2),
      30_000
    )
    const deadline = Date.now() + 6000
    while (Date.now() < deadline) {
      assert.deepStrictEqual(yield* runnerHealth(prefix), { healthy: 2, total: 2 })
      yield* Effect.sleep("250 millis")
    }
  })

layer(Env, { timeout: "60 seconds", excludeTestServices: true })("ClusterSupervisor with a secret", (it) => {
  it.effect("a secret shorter than 32 characters fails the layer with InvalidClusterOptions and a hint", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Layer.build(ClusterSupervisor.layer({
        runnerAddress: { host: "127.0.0.1", port: 1 },
        secret: Redacted.make("hunter2")
      })))
      assert.strictEqual(error._tag, "InvalidClusterOptions")
      if (error._tag !== "InvalidClusterOptions") return
      assert.strictEqual(error.field, "secret")
      assert.include(error.detail, "at least 32 characters, not 7")
      assert.include(error.hint ?? "", "openssl rand")
      assert.notInclude(error.message, "hunter2")
    }))

  it.effect("a runner with a secret answers a client that derives the same key, and only that client", () =>
    Effect.gen(function*() {
      const psk = runnerTransport.derive(secret, "cluster")
      const { port, reached } = yield* runnerServer(psk)
      assert.deepStrictEqual(yield* tlsClient(port, psk), { _tag: "Received", text: "hello" })
      assert.strictEqual(reached.count, 1)

      // Another secret, or the same secret for a cluster with other tables: the handshake fails.
      const wrong = yield* tlsClient(port, runnerTransport.derive(otherSecret, "cluster"))
      assert.strictEqual(wrong._tag, "Refused")
      const otherCluster = yield* tlsClient(port, runnerTransport.derive(secret, "other_cluster"))
      assert.strictEqual(otherCluster._tag, "Refused")
      assert.strictEqual(reached.count, 1, "a client without the key reached the runner's handler")
    }).pipe(Effect.scoped))

  it.effect("during a rotation a runner accepts its secret and the accepted ones, and no other", () =>
    Effect.gen(function*() {
      const keys = runnerTransport.keys(secret, [otherSecret], "cluster")
      const { port, reached } = yield* runnerServer(...keys.accept)
      assert.deepStrictEqual(yield* tlsClient(port, runnerTransport.derive(secret, "cluster")), {
        _tag: "Received",
        text: "hello"
      })
      assert.deepStrictEqual(yield* tlsClient(port, runnerTransport.derive(otherSecret, "cluster")), {
        _tag: "Received",
        text: "hello"
      })
      const third = yield* tlsClient(port, runnerTransport.derive(thirdSecret, "cluster"))
      assert.strictEqual(third._tag, "Refused")
      // A client that claims an accepted key's identity but proves another key: refused too.
      const forged = { identity: keys.accept[1]!.identity, key: runnerTransport.derive(thirdSecret, "cluster").key }
      assert.strictEqual((yield* tlsClient(port, forged))._tag, "Refused")
      assert.strictEqual(reached.count, 2)
    }).pipe(Effect.scoped))

  it.effect("acceptedSecrets without a secret, or one too short, fails the layer with InvalidClusterOptions", () =>
    Effect.gen(function*() {
      const alone = yield* Effect.flip(Layer.build(ClusterSupervisor.layer({
        runnerAddress: { host: "127.0.0.1", port: 1 },
        acceptedSecrets: [otherSecret]
      })))
      assert.strictEqual(alone._tag, "InvalidClusterOptions")
      if (alone._tag === "InvalidClusterOptions") assert.strictEqual(alone.field, "acceptedSecrets")
      const short = yield* Effect.flip(Layer.build(ClusterSupervisor.layer({
        runnerAddress: { host: "127.0.0.1", port: 1 },
        secret,
        acceptedSecrets: [otherSecret, Redacted.make("short")]
      })))
      assert.strictEqual(short._tag, "InvalidClusterOptions")
      if (short._tag === "InvalidClusterOptions") assert.strictEqual(short.field, "acceptedSecrets[1]")
    }))

  it.effect("a runner's client refuses a server that shows a trusted certificate instead of proving the key", () =>
    Effect.gen(function*() {
      // An impostor at a runner's address with a certificate the client trusts (here by `ca`; elsewhere any
      // public CA's): the server chooses a certificate handshake over the pre-shared key.
      const fixtures = path.join(import.meta.dirname, "fixtures")
      const cert = fs.readFileSync(path.join(fixtures, "impostor.cert.pem"))
      const server = Tls.createServer(
        { minVersion: "TLSv1.3", cert, key: fs.readFileSync(path.join(fixtures, "impostor.key.pem")) },
        (socket) => socket.end("hello")
      )
      yield* Effect.acquireRelease(
        Effect.callback<void>((resume) => {
          server.listen(0, "127.0.0.1", () => resume(Effect.void))
        }),
        () => Effect.sync(() => server.close())
      )
      const port = (server.address() as Net.AddressInfo).port
      const psk = runnerTransport.derive(secret, "cluster")
      const outcome = yield* talk(
        () => Tls.connect({ host: "127.0.0.1", port, ...runnerTransport.clientOptions(psk), ca: [cert] }),
        "ping"
      )
      assert.strictEqual(outcome._tag, "Refused")
    }).pipe(Effect.scoped))

  it.effect("a plain TCP client's bytes never reach a runner with a secret: the connection is closed", () =>
    Effect.gen(function*() {
      const { port, reached } = yield* runnerServer(runnerTransport.derive(secret, "cluster"))
      // What a client of the unauthenticated protocol would send first: a length-prefixed frame.
      const outcome = yield* talk(() => Net.connect({ host: "127.0.0.1", port }), "\u0000\u0000\u0000\u0004ping")
      assert.strictEqual(outcome._tag, "Refused")
      assert.strictEqual(reached.count, 0)
    }).pipe(Effect.scoped))

  it.effect(
    "processes that share a secret reach each other's runners over TLS: their pings succeed and both stay healthy",
    () =>
      Effect.gen(function*() {
        const env = {
          CLUSTER_SECRET: Redacted.value(secret),
          CLUSTER_HEALTH_CHECK_MS: "500",
          CLUSTER_TABLE_PREFIX: "shared_secret"
        }
        yield* startNode("a", "none", env)
        yield* startNode("b", "none", env)
        yield* bothStayHealthy("shared_secret")
      }),
    60_000
  )

  it.effect(
    "mid-rotation, a process still connecting with the old secret and one already on the new stay healthy",
    () =>
      Effect.gen(function*() {
        const env = { CLUSTER_HEALTH_CHECK_MS: "500", CLUSTER_TABLE_PREFIX: "rotation" }
        // The second step of a rotation, half rolled out: e still connects with the old secret (and accepts
        // the new one), f already connects with the new one (and accepts the old one).
        yield* startNode("e", "none", {
          ...env,
          CLUSTER_SECRET: Redacted.value(secret),
          CLUSTER_ACCEPTED_SECRETS: Redacted.value(otherSecret)
        })
        yield* startNode("f", "none", {
          ...env,
          CLUSTER_SECRET: Redacted.value(otherSecret),
          CLUSTER_ACCEPTED_SECRETS: Redacted.value(secret)
        })
        yield* bothStayHealthy("rotation")
      }),
    60_000
  )

  it.effect(
    "a process given another secret cannot reach the other's runner: the cluster marks a runner unhealthy",
    () =>
      Effect.gen(function*() {
        const env = { CLUSTER_HEALTH_CHECK_MS: "500", CLUSTER_TABLE_PREFIX: "mismatched_secret" }
        yield* startNode("c", "none", { ...env, CLUSTER_SECRET: Redacted.value(secret) })
        yield* startNode("d", "none", { ...env, CLUSTER_SECRET: Redacted.value(otherSecret) })
        yield* PgTest.eventually(
          "two runners registered",
          Effect.map(runnerHealth("mismatched_secret"), (runners) => runners.total === 2),
          30_000
        )
        yield* PgTest.eventually(
          "one runner marked unhealthy",
          Effect.map(runnerHealth("mismatched_secret"), (runners) => runners.healthy === 1),
          30_000
        )
      }),
    60_000
  )

  it.effect("a runner listening beyond loopback without a secret logs a warning that names the option", () =>
    Effect.gen(function*() {
      const port = yield* PgTest.freePort
      const logged: Array<string> = []
      const fiber = yield* Layer.build(ClusterSupervisor.layer({
        runnerAddress: { host: "127.0.0.1", port },
        listenAddress: { host: "0.0.0.0", port },
        tablePrefix: "no_secret"
      })).pipe(
        Effect.provide(Layer.succeed(
          References.CurrentLoggers,
          new Set([Logger.make(({ message }) => logged.push(String(message)))])
        )),
        Effect.scoped,
        Effect.forkChild
      )
      yield* Fiber.join(fiber)
      const warning = logged.find((line) => line.includes("without a secret"))
      assert.isDefined(warning)
      assert.include(warning!, "0.0.0.0:")
      assert.include(warning!, "ClusterSupervisor.layer({ secret })")
    }))
})
