/**
 * A server that is not ours goes away and comes back under a running supervisor: the outage is logged
 * once at WARN with the server's address and cause, workers follow their restart policies, and everything
 * (workers, the control plane) reattaches when the server is back.
 *
 * The "external" server is an embedded one presented as a `DATABASE_URL` server would be (not embedded,
 * no `exited` signal): the test stops it with a fast shutdown and starts it again on the same data
 * directory and port, as an operator restarting PostgreSQL would.
 */
import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { SqlClient } from "effect/sql/SqlClient"
import * as childProcess from "node:child_process"
import * as fs from "node:fs"
import * as BackgroundWorker from "../../src/BackgroundWorker.ts"
import * as ControlPlane from "../../src/pg/ControlPlane.ts"
import * as DatabaseProbe from "../../src/pg/DatabaseProbe.ts"
import * as EmbeddedPostgres from "../../src/pg/EmbeddedPostgres.ts"
import * as WorkerConnection from "../../src/pg/WorkerConnection.ts"
import * as ProcLatch from "../../src/ProcLatch.ts"
import * as Supervisor from "../../src/Supervisor.ts"
import { captureLogs } from "../fixtures.ts"
import * as PgTest from "./support.ts"

const logs = captureLogs()

/** Backend pids the worker saw, one per incarnation. */
const backends: Array<number> = []

const worker = PgTest.backendRecorder("outage worker", backends, "200 millis")

const napper = BackgroundWorker.make({
  name: "outage napper",
  entryPoint: { library: "outage", function: "napper" },
  main: () => ProcLatch.wait({ onPostmasterDeath: "exit" }).pipe(Effect.forever, Effect.asVoid)
})

/** The embedded server, as a server given by URL: the supervisor does not own it. */
const external = Layer.effect(
  EmbeddedPostgres.PgServer,
  Effect.map(
    EmbeddedPostgres.PgServer,
    (server) =>
      EmbeddedPostgres.PgServer.of({ ...server, embedded: false, exited: Effect.never, localSocket: undefined })
  )
)

const logged = (text: string) => Effect.sync(() => logs.lines.filter((line) => line.includes(text)).length)

const Suite = Layer.mergeAll(
  ControlPlane.layer({ pollInterval: "200 millis" }),
  Layer.effectDiscard(Supervisor.register(worker))
).pipe(
  Layer.provideMerge(Supervisor.layer({ entryPoints: [napper], shutdownTimeout: "2 seconds" })),
  Layer.provideMerge(DatabaseProbe.layer({ heartbeat: "200 millis" })),
  Layer.provideMerge(WorkerConnection.layer()),
  Layer.provideMerge(EmbeddedPostgres.clientLayer()),
  Layer.provideMerge(external),
  Layer.provideMerge(EmbeddedPostgres.layerEmbedded()),
  Layer.provide(logs.layer)
)

layer(Suite, PgTest.suiteOptions)("an outage of a server the supervisor does not own", (it) => {
  it.effect(
    "is logged once at WARN with host, port and cause; workers come back and the control plane reattaches when it is back",
    () =>
      Effect.gen(function*() {
        const server = yield* EmbeddedPostgres.PgServer
        const sql = yield* SqlClient
        yield* PgTest.eventually("the worker's first session", Effect.sync(() => backends.length >= 1))
        // The server's command line and owner, to start it again as an operator would.
        const postmaster = server.pid ?? Number(
          fs.readFileSync(`${server.directory}/data/postmaster.pid`, "utf8").split("\n")[0]
        )
        const args = fs.readFileSync(`/proc/${postmaster}/cmdline`, "utf8").split("\0").filter((a) => a !== "")
        const owner = fs.statSync(`${server.directory}/data`)
        process.kill(postmaster, "SIGINT")
        yield* PgTest.eventually("the outage warning", Effect.map(logged(`is unreachable`), (n) => n >= 1), 10_000)
        const warning = logs.lines.find((line) => line.includes("is unreachable"))!
        assert.include(warning, `PostgreSQL at ${server.host}:${server.port}`)
        assert.match(warning, /^WARN /)
        // Down for a while: still one warning.
        yield* Effect.sleep("1 second")
        assert.strictEqual(yield* logged("is unreachable"), 1)

        const restarted = childProcess.spawn(args[0]!, args.slice(1), {
          cwd: server.directory!,
          uid: owner.uid,
          gid: owner.gid,
          detached: true,
          stdio: "ignore"
        })
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            try {
              process.kill(restarted.pid!, "SIGKILL")
            } catch {
              // gone already
            }
          })
        )
        yield* PgTest.eventually("the end of the outage", Effect.map(logged("answers again"), (n) => n === 1), 20_000)
        yield* PgTest.eventually("the worker back", Effect.sync(() => backends.length >= 2), 10_000)
        // The control plane serves launches again (the launch commits first, then the wait).
        yield* PgTest.eventually(
          "a launch through the control plane",
          Effect.map(
            Effect.result(Effect.flatMap(
              sql<{ readonly h: string }>`SELECT bgworker.launch('outage', 'napper')::text AS h`,
              (rows) => sql`SELECT bgworker.wait_for_startup(${rows[0]!.h}::bigint, '2 seconds') AS pid`
            )),
            (result) => result._tag === "Success"
          ),
          15_000
        )
        // Stop the restarted server before the layer removes its directory.
        process.kill(restarted.pid!, "SIGINT")
      }),
    { timeout: 90_000 }
  )
})
