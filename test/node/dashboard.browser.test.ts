/**
 * The dashboard in a real browser: a headless Chromium from npm (`@sparticuz/chromium`, driven by
 * `puppeteer-core`) loads the page, sees the workers, terminates one through the page's button and sees it
 * go, under the page's own Content-Security-Policy. It saves a screenshot to `test-artifacts/dashboard.png`;
 * with `DASHBOARD_DOCS_SCREENSHOT=1` it also writes the README's copy, `docs/dashboard.png`.
 */
import { assert, describe, it } from "@effect/vitest"
import chromium from "@sparticuz/chromium"
import { Effect, Layer, Redacted } from "effect"
import type * as Duration from "effect/Duration"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import puppeteer, { type Browser, type Page } from "puppeteer-core"
import * as Activity from "../../src/Activity.ts"
import * as BackgroundWorker from "../../src/BackgroundWorker.ts"
import * as Guc from "../../src/Guc.ts"
import * as Dashboard from "../../src/node/Dashboard.ts"
import * as NodeSupervisor from "../../src/node/NodeSupervisor.ts"
import * as ProcLatch from "../../src/ProcLatch.ts"
import * as Supervisor from "../../src/Supervisor.ts"
import { eventually, layerLeakChecked } from "../fixtures.ts"

// The functions given to `page.evaluate` and `page.waitForFunction` run in the browser, where these exist;
// typed with just what the tests read (the project's `lib` has no DOM).
interface PageElement {
  readonly textContent: string | null
  readonly cells: ArrayLike<PageElement>
  querySelector(selectors: string): PageElement | null
}
declare const document: {
  querySelector(selectors: string): PageElement | null
  querySelectorAll(selectors: string): ArrayLike<PageElement> & Iterable<PageElement>
}
declare const location: { readonly hash: string }
declare const window: { readonly pwned?: number }

const token = "browser-test-token"
const root = Path.resolve(import.meta.dirname, "../..")

const naptime = Guc.int("worker_spi.naptime", {
  context: "sighup",
  description: "Duration between each check (in milliseconds).",
  default: 10_000,
  min: 100,
  max: 3_600_000,
  unit: "ms"
})
const database = Guc.string("worker_spi.database", {
  context: "postmaster",
  description: "Database to connect to.",
  default: "postgres"
})

/** worker_spi's loop without the database: nap, report a query, nap. */
const spi = (name: string, table: string) =>
  BackgroundWorker.make({
    name,
    type: "worker_spi",
    restart: BackgroundWorker.restartAfter("1 second"),
    main: () =>
      Effect.gen(function*() {
        while (true) {
          yield* Activity.report("idle")
          yield* ProcLatch.wait({ timeout: "400 millis", onPostmasterDeath: "exit", waitEvent: "WorkerSpiMain" })
          yield* ProcLatch.reset
          yield* Activity.report("active", `UPDATE ${table}.counted SET value = value + delta.sum FROM delta ...`)
          yield* ProcLatch.wait({ timeout: "50 millis", onPostmasterDeath: "exit", waitEvent: "WorkerSpiMain" })
        }
      })
  })

const failing = (name: string, type: string, message: string, restart: BackgroundWorker.RestartPolicy, intensity?: {
  readonly maxRestarts: number
  readonly within: Duration.Input
}) =>
  BackgroundWorker.make({
    name,
    type,
    restart,
    ...(intensity === undefined ? {} : { intensity }),
    main: () => Effect.fail(new Error(message))
  })

const ticker = BackgroundWorker.make({
  name: "metrics flusher",
  type: "flusher",
  main: () =>
    Effect.gen(function*() {
      while (true) {
        yield* ProcLatch.wait({ timeout: "1 second", onPostmasterDeath: "exit", waitEvent: "FlushNap" })
        yield* ProcLatch.reset
      }
    })
})

/** A configuration file in a directory of its own (ALTER SYSTEM writes beside it), removed afterwards. */
const configFile = Effect.acquireRelease(
  Effect.sync(() => {
    const directory = Fs.mkdtempSync(Path.join(Os.tmpdir(), "dashboard-browser-"))
    const file = Path.join(directory, "postgresql.conf")
    Fs.writeFileSync(file, "worker_spi.naptime = 400ms\nshutdown_timeout = 2s\n")
    return { directory, file }
  }),
  ({ directory }) => Effect.sync(() => Fs.rmSync(directory, { recursive: true, force: true }))
)

const layer = Layer.unwrap(Effect.map(configFile, ({ file }) =>
  Layer.provideMerge(
    Dashboard.layer({ token: Redacted.make(token) }),
    Layer.provideMerge(
      layerLeakChecked(),
      NodeSupervisor.layerGucs({
        environment: {},
        configFile: file,
        parameters: [naptime, database],
        overrides: { max_worker_processes: 8 }
      })
    )
  )))

const launchBrowser = Effect.acquireRelease(
  Effect.promise(async () =>
    puppeteer.launch({ args: chromium.args, executablePath: await chromium.executablePath(), headless: true })
  ),
  (browser: Browser) => Effect.promise(() => browser.close())
)

/** A page that records its console errors and uncaught exceptions (a CSP violation is a console error). */
const openPage = (browser: Browser) =>
  Effect.promise(async () => {
    const page = await browser.newPage()
    const problems: Array<string> = []
    page.on("console", (message) => {
      if (message.type() === "error") problems.push(`console: ${message.text()}`)
    })
    page.on("pageerror", (error) => problems.push(`page error: ${String(error)}`))
    await page.setViewport({ width: 1280, height: 940, deviceScaleFactor: 1 })
    return { page, problems }
  })

const workerNames = (page: Page) =>
  Effect.promise(() =>
    page.$$eval("#workers tbody tr", (rows) => rows.map((row) => row.getAttribute("data-name") ?? ""))
  )

describe("Dashboard in a browser", () => {
  it.live(
    "shows the running workers, and a terminate from its button within 1 s, under its own CSP",
    () =>
      Effect.gen(function*() {
        const dashboard = yield* Dashboard.Dashboard
        yield* Supervisor.register(spi("worker_spi 1", "schema1"))
        const victim = yield* Supervisor.register(spi("worker_spi 2", "schema2"))
        yield* Supervisor.register(ticker)
        yield* Supervisor.register(
          failing(
            "orders importer",
            "importer",
            `connection to server at "10.0.0.5", port 5432 failed: Connection refused`,
            BackgroundWorker.restartAfter("30 seconds")
          )
        )
        const givenUp = yield* Supervisor.register(
          failing(
            "nightly rollup",
            "rollup",
            `relation "sales.daily" does not exist`,
            BackgroundWorker.restartAfter("250 millis"),
            { maxRestarts: 2, within: "1 minute" }
          )
        )
        yield* eventually(
          "the rollup is given up",
          Effect.map(Supervisor.info(givenUp), (row) => row._tag === "Some" && row.value.registration === "given up"),
          1_000_000
        )

        // ALTER SYSTEM of a postmaster parameter, then a reload: it waits for a restart (pending_restart).
        yield* Guc.alterSystem("worker_spi.database", "sales")
        yield* Supervisor.reload

        const browser = yield* launchBrowser
        const { page, problems } = yield* openPage(browser)
        yield* Effect.promise(() => page.goto(`${dashboard.url}#token=${encodeURIComponent(token)}`))
        yield* Effect.promise(() =>
          page.waitForFunction(
            () =>
              document.querySelectorAll("#workers tbody tr").length === 5 && document.querySelector("#conn.conn-live"),
            { timeout: 5000 }
          )
        )
        assert.deepStrictEqual(yield* workerNames(page), [
          "worker_spi 1",
          "worker_spi 2",
          "metrics flusher",
          "orders importer",
          "nightly rollup"
        ])
        const page_ = yield* Effect.promise(() =>
          page.evaluate(() => ({
            hash: location.hash,
            states: Array.from(document.querySelectorAll("#workers tbody tr")).map((row) =>
              row.querySelector(".badge")?.textContent
            ),
            exit: document.querySelector("tr[data-name='nightly rollup'] .exit")?.textContent,
            next: document.querySelector("tr[data-name='orders importer'] td:nth-child(8)")?.textContent,
            settings: Array.from(document.querySelectorAll("#settings tbody tr td:first-child")).map((td) =>
              td.textContent
            ),
            pending: Array.from(document.querySelectorAll("#settings tbody tr")).filter((tr) =>
              tr.cells[5].textContent === "yes"
            ).map((tr) => tr.cells[0].textContent),
            slots: document.querySelector("#slots-text")?.textContent,
            lanes: document.querySelectorAll("#lanes .lane").length
          }))
        )
        assert.strictEqual(page_.hash, "", "the token left the address bar")
        assert.strictEqual(page_.states[3], "waiting for restart")
        assert.strictEqual(page_.states[4], "given up")
        assert.include(page_.exit ?? "", `relation "sales.daily" does not exist`)
        assert.match(page_.next ?? "", /^in \d/)
        assert.includeMembers(page_.settings, ["worker_spi.naptime", "worker_spi.database", "max_worker_processes"])
        assert.deepStrictEqual(page_.pending, ["worker_spi.database"])
        assert.strictEqual(page_.slots, "slots 5 used, 3 free of 8")
        assert.strictEqual(page_.lanes, 5)

        // Terminate worker_spi 2 with the page's own button, and time how long until the page shows it gone.
        const button = yield* Effect.promise(() =>
          page.$("tr[data-name='worker_spi 2'] button[data-action='terminate']")
        )
        assert.isNotNull(button)
        const started = performance.now()
        yield* Effect.promise(() => button!.click())
        yield* Effect.promise(() =>
          page.waitForFunction(() => document.querySelector("tr[data-name='worker_spi 2']") === null, {
            timeout: 5000,
            polling: "mutation"
          })
        )
        const elapsed = performance.now() - started
        assert.isBelow(elapsed, 1000, `terminate shown after ${elapsed.toFixed(0)} ms`)
        const info = yield* Supervisor.info(victim)
        assert.strictEqual(info._tag, "None", "the worker really was unregistered")
        yield* Effect.promise(() =>
          page.waitForFunction(
            () =>
              document.querySelector("#slots-text")?.textContent === "slots 4 used, 4 free of 8" &&
              Array.from(document.querySelectorAll("#events .who")).some((e) => e.textContent === "worker_spi 2"),
            { timeout: 5000 }
          )
        )
        assert.deepStrictEqual(problems, [], "no console error, no CSP violation")

        // Let the napping workers report a query or two, so the screenshot shows the page as it lives.
        yield* Effect.sleep("600 millis")
        const artifacts = Path.join(root, "test-artifacts")
        Fs.mkdirSync(artifacts, { recursive: true })
        const shot = yield* Effect.promise(() => page.screenshot({ fullPage: true, type: "png" }))
        Fs.writeFileSync(Path.join(artifacts, "dashboard.png"), shot)
        if (process.env["DASHBOARD_DOCS_SCREENSHOT"] === "1") {
          Fs.writeFileSync(Path.join(root, "docs/dashboard.png"), shot)
        }
        assert.isAbove(Fs.statSync(Path.join(artifacts, "dashboard.png")).size, 10_000)
        console.log(`dashboard: terminate shown in the browser after ${elapsed.toFixed(0)} ms`)
      }).pipe(Effect.provide(layer)),
    30_000
  )

  it.live("shows worker names and errors as text: markup in them is never run", () =>
    Effect.gen(function*() {
      const dashboard = yield* Dashboard.Dashboard
      const name = `<img src=x onerror="window.pwned=1">`
      yield* Supervisor.register(
        failing(name, "x", `<script>window.pwned=2</script>`, BackgroundWorker.restartAfter("1 minute"))
      )
      const browser = yield* launchBrowser
      const { page, problems } = yield* openPage(browser)
      yield* Effect.promise(() => page.goto(`${dashboard.url}#token=${token}`))
      yield* Effect.promise(() =>
        page.waitForFunction(() => document.querySelector("#workers tbody tr .exit")?.textContent !== "", {
          timeout: 5000
        })
      )
      const seen = yield* Effect.promise(() =>
        page.evaluate(() => ({
          name: document.querySelector("#workers tbody tr .name")?.textContent,
          exit: document.querySelector("#workers tbody tr .exit")?.textContent,
          images: document.querySelectorAll("img").length,
          scripts: document.querySelectorAll("script").length,
          pwned: window.pwned
        }))
      )
      assert.strictEqual(seen.name, name)
      assert.include(seen.exit ?? "", `<script>window.pwned=2</script>`)
      assert.strictEqual(seen.images, 0)
      assert.strictEqual(seen.scripts, 1)
      assert.isUndefined(seen.pwned)
      assert.deepStrictEqual(problems, [])
    }).pipe(Effect.provide(layer)), 30_000)
})
