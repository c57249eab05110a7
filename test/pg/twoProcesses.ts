/**
 * Two supervisor processes on one database, in one test process: A (attached first, the coordinator) and
 * B, each with its own `ControlPlane.layer`, two slots each, one of them taken by a static worker, and the
 * launchable `demo.napper` entry point. Shared by the control plane's and the CLI's several-process tests.
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as BackgroundWorker from "../../src/BackgroundWorker.ts"
import * as ControlPlane from "../../src/pg/ControlPlane.ts"
import * as Preload from "../../src/Preload.ts"
import * as ProcLatch from "../../src/ProcLatch.ts"
import * as Supervisor from "../../src/Supervisor.ts"

/** `demo.napper`: naps `naptimeMs` at a time until terminated. */
export const napper = BackgroundWorker.make({
  name: "napper",
  entryPoint: { library: "demo", function: "napper" },
  argument: Schema.Struct({ naptimeMs: Schema.Number }),
  main: ({ naptimeMs }) =>
    Effect.forever(ProcLatch.wait({ timeout: Duration.millis(naptimeMs), onPostmasterDeath: "exit" }))
})

/** A static worker that runs until the end. */
export const keeper = (name: string) => BackgroundWorker.make({ name, main: () => Effect.never })

/** Two slots, one of them taken by the static worker `staticName`. */
export const supervisor = (staticName: string) =>
  Supervisor.layer({ maxWorkerProcesses: 2, preload: [Preload.register(keeper(staticName))], entryPoints: [napper] })

/** Process B's supervisor (A's is the context's `Supervisor`). */
export class ProcessB extends Context.Service<ProcessB, Supervisor.SupervisorApi>()("test/pg/twoProcesses/ProcessB") {}

const fast: ControlPlane.Options = { pollInterval: "200 millis", heartbeatInterval: "200 millis" }

/** A then B, with their control planes (`fast` options unless given); needs the database's `SqlClient`. */
export const layer = (options: { readonly a?: ControlPlane.Options; readonly b?: ControlPlane.Options } = {}) => {
  const layerA = ControlPlane.layer(options.a ?? fast).pipe(Layer.provideMerge(supervisor("static a")))
  const layerB = Layer.effect(
    ProcessB,
    Effect.map(
      Layer.build(ControlPlane.layer(options.b ?? fast).pipe(Layer.provideMerge(supervisor("static b")))),
      (context) => Context.get(context, Supervisor.Supervisor)
    )
  )
  return layerB.pipe(Layer.provideMerge(layerA))
}
