#!/usr/bin/env node
/**
 * The `bgworker` executable (package.json `bin`): the command tree of `Cli.ts`, run by
 * `NodeRuntime.runMain` with Node's services. Failures are printed by the commands themselves, in psql's
 * style; the exit code is theirs (1 a failed command, 2 no connection, 130 interrupted).
 *
 * @since 0.2.0
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Effect from "effect/Effect"
import * as Runtime from "effect/Runtime"
import * as Cli from "./Cli.ts"

NodeRuntime.runMain(Cli.main(process.argv.slice(2)).pipe(Effect.provide(NodeServices.layer)), {
  disableErrorReporting: true,
  // Exit as soon as the command ends: `run` and `demo` may leave handles (an embedded server's pipes) behind.
  teardown: (exit, onExit) =>
    Runtime.defaultTeardown(exit, (code) => {
      onExit(code)
      process.exit(code)
    })
})
