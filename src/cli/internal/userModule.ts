/**
 * `bgworker run <module>`: loads a user's module and finds the supervisor layer it exports, as
 * `shared_preload_libraries` names a library and the postmaster loads it.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as fs from "node:fs"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { escapeBounded } from "../../internal/logText.ts"
import type * as Supervisor from "../../Supervisor.ts"
import { type CliFailure, usage } from "./report.ts"

/** Whether this Node strips TypeScript types (`process.features.typescript`, Node 22.18+ and 23.6+). */
const stripsTypes = (): boolean => {
  const features = process.features as { readonly typescript?: unknown }
  return features.typescript === "strip" || features.typescript === "transform"
}

/**
 * The layer `file` (resolved against `cwd`) exports: its `default` export, else its export named `layer`.
 * Fails, with a hint, when the file is missing, cannot be imported, or exports no `Layer` there.
 */
export const load = (
  file: string,
  cwd: string = process.cwd()
): Effect.Effect<Layer.Layer<Supervisor.Supervisor, unknown>, CliFailure> =>
  Effect.gen(function*() {
    const full = path.resolve(cwd, file)
    const shown = escapeBounded(file, 200)
    if (!fs.existsSync(full)) {
      return yield* usage(`could not open module "${shown}": No such file or directory`)
    }
    if (/\.[cm]?ts$/.test(full) && !stripsTypes()) {
      return yield* usage(
        `cannot load TypeScript module "${shown}" on Node ${process.versions.node}`,
        "Compile it to JavaScript, or use a Node that strips types (22.18 and later)."
      )
    }
    const exports = yield* Effect.tryPromise({
      try: () => import(pathToFileURL(full).href) as Promise<Record<string, unknown>>,
      catch: (e) =>
        usage(
          `could not load module "${shown}": ${escapeBounded(e instanceof Error ? e.message : String(e), 500)}`
        )
    })
    const candidate = Layer.isLayer(exports["default"]) ? exports["default"] : exports["layer"]
    if (Layer.isLayer(candidate)) return candidate as Layer.Layer<Supervisor.Supervisor, unknown>
    const names = Object.keys(exports).slice(0, 10).map((name) => `"${escapeBounded(name, 40)}"`).join(", ")
    return yield* usage(
      `module "${shown}" exports no supervisor layer` +
        (names === "" ? "" : ` (its exports: ${names})`),
      `Export it as the default export, or as "layer": export default Supervisor.layer({ ... }).`
    )
  })
