/**
 * Type-checks the ```ts examples of the library's doc comments, as Effect's docgen does for its own: an
 * example that no longer compiles is a doc that no longer matches the code.
 *
 * Each example of `src/` becomes a module of its own under `.doc-examples/` (git-ignored), inside the
 * package so that `effect-bgworker/...` imports resolve to the sources through the package's `exports`. An
 * example without imports of its own gets the usual ones: every public module of the core
 * (`import * as Supervisor from "effect-bgworker/Supervisor"`, ...), `effect-bgworker/node`'s, `/pg`'s and
 * `/cluster`'s namespaces, and Effect's. Unused imports and locals are allowed; everything else is the project's
 * strict configuration. Run by `npm test`; `node scripts/check-doc-examples.ts` on its own.
 *
 * Written here rather than taken from a tool: docgen (Effect's) needs its own configuration and emits
 * documentation too; this is the one check we want from it, in about sixty lines.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

const root = path.resolve(import.meta.dirname, "..")
const out = path.join(root, ".doc-examples")

const sources = (dir: string): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name)
    return entry.isDirectory() ? sources(full) : entry.name.endsWith(".ts") ? [full] : []
  })

/** The ```ts blocks of the doc comments of `text`, with their first line number. */
const examples = (text: string): Array<{ readonly line: number; readonly code: string }> => {
  const found: Array<{ line: number; code: string }> = []
  const lines = text.split("\n")
  let current: { line: number; lines: Array<string> } | undefined
  lines.forEach((raw, index) => {
    const line = raw.replace(/^\s*\* ?/, "")
    if (!/^\s*\*/.test(raw)) return
    if (current === undefined && /^```ts\s*$/.test(line)) current = { line: index + 2, lines: [] }
    else if (current !== undefined && /^```\s*$/.test(line)) {
      found.push({ line: current.line, code: current.lines.join("\n") })
      current = undefined
    } else if (current !== undefined) current.lines.push(line)
  })
  return found
}

const core = fs.readdirSync(path.join(root, "src"))
  .filter((name) => name.endsWith(".ts") && name !== "index.ts")
  .map((name) => name.slice(0, -3))
const header = [
  `import { Cause, Context, Duration, Effect, Layer, pipe, Schedule, Schema, Stream } from "effect"`,
  ...core.map((name) => `import * as ${name} from "effect-bgworker/${name}"`),
  `import { NodeLogger, NodeSupervisor } from "effect-bgworker/node"`,
  `import { ControlPlane, DatabaseProbe, EmbeddedPostgres, PgServer, ServerSettings, WorkerConnection } from "effect-bgworker/pg"`,
  `import { ClusterSupervisor } from "effect-bgworker/cluster"`
].join("\n")

fs.rmSync(out, { recursive: true, force: true })
fs.mkdirSync(out)
const written: Array<string> = []
for (const file of sources(path.join(root, "src"))) {
  const relative = path.relative(root, file)
  examples(fs.readFileSync(file, "utf8")).forEach(({ code, line }) => {
    const name = `${relative.replaceAll(/[/.]/g, "_")}_${line}.ts`
    const body = /^import /m.test(code) ? code : `${header}\n\n${code}`
    fs.writeFileSync(path.join(out, name), `// ${relative}:${line}\n${body}\nexport {}\n`)
    written.push(name)
  })
}
fs.writeFileSync(
  path.join(out, "tsconfig.json"),
  JSON.stringify({
    extends: "../tsconfig.json",
    compilerOptions: { noUnusedLocals: false },
    include: ["*.ts"]
  })
)
try {
  execFileSync(path.join(root, "node_modules", ".bin", "tsc"), ["--noEmit", "-p", path.join(out, "tsconfig.json")], {
    stdio: "inherit"
  })
  console.log(`check-doc-examples: ${written.length} examples compile`)
} catch {
  console.error(
    "check-doc-examples: an example of a doc comment does not compile (its source file and line head the file)"
  )
  process.exit(1)
}
