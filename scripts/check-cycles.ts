/**
 * Fails when the runtime imports of src/, examples/, test/ and bench/ form a cycle, and prints each cycle's file
 * chain.
 *
 * Only imports that load a module at run time count: `import type` and `export type ... from` are erased, so
 * they are ignored; `import { type A } from "x"` still loads "x" (verbatimModuleSyntax keeps it), so it counts.
 * Relative specifiers and the package's own name (`effect-bgworker`, `effect-bgworker/node`, ...) are followed;
 * other packages are not. Run by `npm test` before vitest: `node scripts/check-cycles.ts`.
 */
import * as fs from "node:fs"
import * as path from "node:path"

const root = path.resolve(import.meta.dirname, "..")
const roots = ["src", "examples", "test", "bench"]

const files = (dir: string): Array<string> =>
  fs.existsSync(dir)
    ? fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() && e.name !== "node_modules"
        ? files(path.join(dir, e.name))
        : e.name.endsWith(".ts") && !e.name.endsWith(".d.ts")
        ? [path.join(dir, e.name)]
        : []
    )
    : []

/** `import ... from "x"`, `import "x"`, `export ... from "x"` at a line's start; group 1 is `type ` when erased. */
const statement = /^[ \t]*(?:import|export)[ \t]+(type[ \t]+)?(?:[^'"`=;()]*?[ \t\n]from[ \t]*)?["']([^"']+)["']/gm

const resolve = (from: string, specifier: string): string | undefined => {
  let target: string
  if (specifier.startsWith(".")) target = path.resolve(path.dirname(from), specifier)
  else if (specifier === "effect-bgworker") target = path.join(root, "src/index.ts")
  else if (
    specifier === "effect-bgworker/node" || specifier === "effect-bgworker/pg" ||
    specifier === "effect-bgworker/cluster"
  ) {
    target = path.join(root, "src", specifier.slice("effect-bgworker/".length), "index.ts")
  } else if (specifier.startsWith("effect-bgworker/")) {
    target = path.join(root, "src", `${specifier.slice("effect-bgworker/".length)}.ts`)
  } else return undefined
  return fs.existsSync(target) && fs.statSync(target).isFile() ? target : undefined
}

const graph = new Map<string, Array<string>>()
for (const file of roots.flatMap((r) => files(path.join(root, r)))) {
  const edges: Array<string> = []
  for (const m of fs.readFileSync(file, "utf8").matchAll(statement)) {
    if (m[1] !== undefined) continue
    const target = resolve(file, m[2]!)
    if (target !== undefined) edges.push(target)
  }
  graph.set(file, edges)
}

// Depth-first search; a back edge to a file on the stack closes a cycle.
const cycles: Array<Array<string>> = []
const state = new Map<string, "open" | "done">()
const stack: Array<string> = []
const visit = (file: string): void => {
  state.set(file, "open")
  stack.push(file)
  for (const next of graph.get(file) ?? []) {
    const s = state.get(next)
    if (s === "open") cycles.push([...stack.slice(stack.indexOf(next)), next])
    else if (s === undefined) visit(next)
  }
  stack.pop()
  state.set(file, "done")
}
for (const file of [...graph.keys()].sort()) if (!state.has(file)) visit(file)

if (cycles.length > 0) {
  console.error(`check-cycles: ${cycles.length} import cycle(s) at run time:`)
  for (const c of cycles) console.error("  " + c.map((f) => path.relative(root, f)).join(" -> "))
  process.exit(1)
}
console.log(`check-cycles: no import cycles among ${graph.size} files`)
