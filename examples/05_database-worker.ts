/**
 * @title One database worker: an outbox relay that runs one SQL transaction every two seconds
 *
 * The smallest program with a database worker, and exactly the layers it needs: `npm run example:database`.
 * The worker opens its own PostgreSQL session, creates the table `outbox` if it is missing, adds three rows
 * so that there is something to show, then every two seconds marks the unsent rows as sent in one
 * transaction and logs `relayed 3 outbox rows (ids 1, 2, 3)`. Ctrl-C (SIGINT) or SIGTERM stops it cleanly.
 *
 * The layers, top to bottom:
 * - `Supervisor.layer({ preload })`: the supervisor, with the worker registered at start (`_PG_init`).
 * - `WorkerConnection.layer()`: opens each database worker's own session (`BackgroundWorkerInitializeConnection`);
 *   a worker with `database` does not compile without it.
 * - `EmbeddedPostgres.layer()`: the server: `DATABASE_URL` when set, else a throwaway PostgreSQL started
 *   from the bundled binaries (about two seconds; deleted on exit).
 *
 * With `EXAMPLE_EXIT_AFTER_MS=6000` it shuts itself down after six seconds and exits with code 0 (CI).
 */
import { Effect, Layer } from "effect"
import { BackgroundWorker, Preload, ProcLatch, Spi, Supervisor } from "effect-bgworker"
import { NodeSupervisor } from "effect-bgworker/node"
import { EmbeddedPostgres, WorkerConnection } from "effect-bgworker/pg"
import { SqlClient } from "effect/sql/SqlClient"
import { exitAfter } from "./support.ts"

const relay = BackgroundWorker.make({
  name: "outbox relay",
  database: {}, // BGWORKER_BACKEND_DATABASE_CONNECTION: main gets SqlClient, a session of its own
  restart: BackgroundWorker.restartAfter("5 seconds"), // an SQL error ends the worker; start it again
  main: () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* Spi.transaction(Effect.andThen(
        Spi.execute(sql`CREATE TABLE IF NOT EXISTS outbox (id serial PRIMARY KEY, payload text, sent_at timestamptz)`),
        Spi.execute(sql`INSERT INTO outbox (payload) VALUES ('hello'), ('from'), ('the outbox')`)
      ))
      while (true) {
        yield* ProcLatch.wait({ timeout: "2 seconds", onPostmasterDeath: "exit", waitEvent: "OutboxRelayMain" })
        yield* ProcLatch.reset
        const sent = yield* Spi.transaction(Spi.execute(sql<{ id: number }>`
          UPDATE outbox SET sent_at = now() WHERE sent_at IS NULL RETURNING id`))
        if (sent.length > 0) {
          yield* Effect.log(`relayed ${sent.length} outbox rows (ids ${sent.map((row) => row.id).join(", ")})`)
        }
      }
    })
})

const App = Supervisor.layer({ preload: [Preload.register(relay)] }).pipe(
  Layer.provide(WorkerConnection.layer()), // the worker's own session, as the server's login
  Layer.provide(EmbeddedPostgres.layer()) // DATABASE_URL, else an embedded PostgreSQL
)

// exitAfter: EXAMPLE_EXIT_AFTER_MS (CI) only; without it the program runs until Ctrl-C.
NodeSupervisor.runMain(Layer.effectDiscard(Effect.forkScoped(exitAfter)).pipe(Layer.provideMerge(App)))
