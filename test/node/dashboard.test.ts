import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Exit, Layer, Redacted, Scope } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as BackgroundWorker from "../../src/BackgroundWorker.ts"
import * as Guc from "../../src/Guc.ts"
import * as Dashboard from "../../src/node/Dashboard.ts"
import * as NodeSupervisor from "../../src/node/NodeSupervisor.ts"
import * as ProcLatch from "../../src/ProcLatch.ts"
import * as Supervisor from "../../src/Supervisor.ts"
import * as WorkerHandle from "../../src/WorkerHandle.ts"
import { captureLogs, eventually, layerLeakChecked, napForever, untilQuiet } from "../fixtures.ts"
import { openEvents, request, requestJson } from "./dashboardClient.ts"

const token = "s3cret-token"
const bearer = { authorization: `Bearer ${token}` }

/** The dashboard (with `options`) over a leak-checked supervisor, around `body`. */
const withDashboard = (
  options: Dashboard.Options = { token: Redacted.make(token) },
  supervisor: Supervisor.Options = { maxWorkerProcesses: 4 }
) => Effect.provide(Layer.provideMerge(Dashboard.layer(options), layerLeakChecked(supervisor)))

const urlOf = Dashboard.Dashboard.useSync((d) => d.url)
const originOf = (url: string) => url.replace(/\/$/, "")

const sleeper = (name: string) => BackgroundWorker.make({ name, main: () => napForever() })

/** Registers a {@link sleeper}, then waits until every worker waits on its latch. */
const registered = (name: string) => Effect.tap(Supervisor.register(sleeper(name)), () => untilQuiet)

/** Posts an action as the page does: JSON, the token, the dashboard's own origin, unless overridden. */
const post = (url: string, body: unknown, headers: Readonly<Record<string, string>> = {}) =>
  request(url, "/api/actions", {
    method: "POST",
    headers: {
      ...bearer,
      origin: originOf(url),
      "sec-fetch-site": "same-origin",
      "content-type": "application/json",
      ...headers
    },
    body: typeof body === "string" ? body : JSON.stringify(body)
  })

const expectedHeaders = {
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY"
}

describe("Dashboard", () => {
  it.live("listens on 127.0.0.1 by default, on the port it reports, and logs its address", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const dashboard = yield* Dashboard.Dashboard
      assert.match(dashboard.url, /^http:\/\/127\.0\.0\.1:\d+\/$/)
      assert.strictEqual(dashboard.host, "127.0.0.1")
      assert.isAbove(dashboard.port, 0)
      assert.strictEqual(dashboard.url, `http://127.0.0.1:${dashboard.port}/`)
      assert.isTrue(logs.lines.some((line) => line.startsWith(`INFO dashboard listening on ${dashboard.url}`)))
      assert.isFalse(logs.lines.some((line) => line.includes(token)), "the token is never logged")
    }).pipe(withDashboard(), Effect.provide(logs.layer))
  })

  it.live("serves the page and its assets with the security headers, and no inline script", () =>
    Effect.gen(function*() {
      const url = yield* urlOf
      const page = yield* request(url, "/")
      assert.strictEqual(page.status, 200)
      assert.match(String(page.headers["content-type"]), /^text\/html/)
      assert.include(page.body, `<script src="/app.js" defer></script>`)
      assert.notMatch(page.body, /<script(?![^>]*\bsrc=)[^>]*>/, "every script is an external file")
      assert.notMatch(page.body, /\son[a-z]+=/i, "no inline event handler")
      assert.notMatch(page.body, /https?:\/\//, "no asset from another origin")
      for (
        const [path, type] of [["/", "text/html"], ["/app.js", "text/javascript"], ["/app.css", "text/css"], [
          "/api/activity",
          "application/json"
        ]] as const
      ) {
        const answer = yield* request(url, path, { headers: bearer })
        assert.strictEqual(answer.status, 200, path)
        assert.include(String(answer.headers["content-type"]), type, path)
        for (const [name, value] of Object.entries(expectedHeaders)) {
          assert.strictEqual(answer.headers[name], value, `${path}: ${name}`)
        }
        const csp = String(answer.headers["content-security-policy"])
        assert.include(csp, "default-src 'self'", path)
        assert.include(csp, "frame-ancestors 'none'", path)
        assert.notInclude(csp, "unsafe-inline", path)
      }
      const js = yield* request(url, "/app.js")
      assert.notInclude(js.body, "innerHTML", "the script renders data as text only")
      const missing = yield* request(url, "/nothing-here", { headers: bearer })
      assert.strictEqual(missing.status, 404)
      assert.strictEqual(missing.headers["x-content-type-options"], "nosniff")
    }).pipe(withDashboard()))

  it.live("/api/activity lists every worker with its state, and the slots used and free", () =>
    Effect.gen(function*() {
      const url = yield* urlOf
      yield* Supervisor.register(sleeper("alpha"))
      yield* Supervisor.register(sleeper("beta"))
      yield* untilQuiet
      const answer = yield* requestJson(url, "/api/activity", { headers: bearer })
      assert.strictEqual(answer.status, 200)
      assert.deepStrictEqual(answer.json.rows.map((r: any) => [r.name, r.registration, r.waitEvent]), [
        ["alpha", "running", "TestNap"],
        ["beta", "running", "TestNap"]
      ])
      assert.deepStrictEqual([answer.json.used, answer.json.free, answer.json.max], [2, 2, 4])
    }).pipe(withDashboard()))

  it.live("reads need the token when one is configured; the page itself does not", () =>
    Effect.gen(function*() {
      const url = yield* urlOf
      for (const path of ["/api/activity", "/api/settings", "/api/timeline", "/api/state", "/events"]) {
        const anonymous = yield* request(url, path)
        assert.strictEqual(anonymous.status, 401, path)
        assert.strictEqual(anonymous.headers["www-authenticate"], "Bearer", path)
        const wrong = yield* request(url, path, { headers: { authorization: "Bearer not-the-token" } })
        assert.strictEqual(wrong.status, 401, path)
      }
      assert.strictEqual((yield* request(url, "/")).status, 200)
    }).pipe(withDashboard()))

  it.live("the event stream sends a snapshot, then the change when a worker is terminated", () =>
    Effect.gen(function*() {
      const url = yield* urlOf
      const handle = yield* registered("doomed")
      const events = yield* openEvents(url, bearer)
      assert.strictEqual(events.status, 200)
      assert.match(String(events.contentType), /^text\/event-stream/)
      const snapshot = yield* events.until("snapshot", (m) => m.type === "snapshot")
      assert.deepStrictEqual(snapshot.rows.map((r: any) => r.name), ["doomed"])
      assert.isTrue(snapshot.actions)
      const started = Date.now()
      yield* Supervisor.terminate(handle)
      const removed = yield* events.until("removed", (m) => m.type === "removed")
      assert.strictEqual(removed.worker, WorkerHandle.format(handle))
      assert.strictEqual(removed.seq, events.messages[events.messages.indexOf(removed) - 1].seq + 1)
      assert.isBelow(Date.now() - started, 1000)
      assert.deepStrictEqual(removed.slots, { used: 0, free: 4, max: 4 })
      const exit = yield* events.until(
        "timeline exit",
        (m) => m.type === "timeline" && m.entries.some((e: any) => e.event === "exited")
      )
      const entry = exit.entries.find((e: any) => e.event === "exited")
      assert.deepInclude(entry, { name: "doomed", outcome: "failed", worker: WorkerHandle.format(handle) })
      assert.include(entry.detail, "administrator command")
    }).pipe(withDashboard()))

  it.live("an action with the token from the dashboard's own page terminates the worker, and is logged by name", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const url = yield* urlOf
      const handle = yield* registered("victim\nINFO forged line")
      const answer = yield* post(url, { action: "terminate", worker: WorkerHandle.format(handle) })
      assert.strictEqual(answer.status, 200, answer.body)
      assert.deepStrictEqual(JSON.parse(answer.body), { ok: true, action: "terminate", worker: "0:1" })
      yield* eventually("the worker is gone", Effect.map(Supervisor.info(handle), (row) => row._tag === "None"))
      const line = logs.lines.find((l) => l.includes("dashboard: terminate"))
      assert.isDefined(line)
      assert.include(line!, `"victim\\nINFO forged line" (0:1) requested by the token holder from 127.0.0.1`)
      assert.isFalse(logs.lines.some((l) => l.includes(token)), "the token is never logged")
    }).pipe(withDashboard(), Effect.provide(logs.layer))
  })

  it.live("set-latch wakes the worker, signal-terminate restarts it, and reload reaches the supervisor", () =>
    Effect.gen(function*() {
      const url = yield* urlOf
      let wakes = 0
      const handle = yield* Supervisor.register(BackgroundWorker.make({
        name: "napper",
        restart: BackgroundWorker.restartAfter(0),
        main: () =>
          Effect.gen(function*() {
            while (true) {
              yield* ProcLatchWait
              wakes++
            }
          })
      }))
      yield* untilQuiet
      assert.strictEqual((yield* post(url, { action: "set-latch", worker: "0:1" })).status, 200)
      yield* eventually("the latch woke it", Effect.sync(() => wakes > 0))
      const pid = (yield* Supervisor.status(handle)) as { pid: number }
      assert.strictEqual((yield* post(url, { action: "signal-terminate", worker: "0:1" })).status, 200)
      yield* eventually(
        "it restarted",
        Effect.map(Supervisor.info(handle), (row) => row._tag === "Some" && row.value.restartCount === 1)
      )
      const row = yield* Supervisor.info(handle)
      assert.notStrictEqual(row._tag === "Some" ? row.value.pid : undefined, pid.pid)
      assert.strictEqual((yield* post(url, { action: "reload" })).status, 200)
    }).pipe(withDashboard()))

  it.live("actions are refused without the token (401) and from another origin or site (403)", () =>
    Effect.gen(function*() {
      const url = yield* urlOf
      const handle = yield* registered("kept")
      const body = { action: "terminate", worker: WorkerHandle.format(handle) }
      const noToken = yield* post(url, body, { authorization: "" })
      assert.strictEqual(noToken.status, 401)
      const wrongToken = yield* post(url, body, { authorization: "Bearer guess" })
      assert.strictEqual(wrongToken.status, 401)
      const otherOrigin = yield* post(url, body, { origin: "http://evil.example" })
      assert.strictEqual(otherOrigin.status, 403)
      const noOrigin = yield* request(url, "/api/actions", {
        method: "POST",
        headers: { ...bearer, "content-type": "application/json" },
        body: JSON.stringify(body)
      })
      assert.strictEqual(noOrigin.status, 403)
      const crossSite = yield* post(url, body, { "sec-fetch-site": "cross-site" })
      assert.strictEqual(crossSite.status, 403)
      const nullOrigin = yield* post(url, body, { origin: "null" })
      assert.strictEqual(nullOrigin.status, 403)
      const sameSite = yield* post(url, body, { "sec-fetch-site": "same-site" })
      assert.strictEqual(sameSite.status, 403)
      const notJson = yield* post(url, "action=terminate", { "content-type": "application/x-www-form-urlencoded" })
      assert.strictEqual(notJson.status, 415)
      const status = yield* Supervisor.status(handle)
      assert.strictEqual(status._tag, "Started", "every refused action left the worker running")
    }).pipe(withDashboard()))

  it.live("a browser's same-origin request without Origin (Chromium under no-referrer) is accepted by Sec-Fetch-Site", () =>
    Effect.gen(function*() {
      const url = yield* urlOf
      const handle = yield* registered("going")
      const answer = yield* request(url, "/api/actions", {
        method: "POST",
        headers: { ...bearer, "sec-fetch-site": "same-origin", "content-type": "application/json" },
        body: JSON.stringify({ action: "terminate", worker: WorkerHandle.format(handle) })
      })
      assert.strictEqual(answer.status, 200, answer.body)
      yield* eventually("the worker is gone", Effect.map(Supervisor.info(handle), (row) => row._tag === "None"))
    }).pipe(withDashboard()))

  it.live("bodies over 1024 bytes are refused (413); invalid actions and handles are 400, unknown workers 404", () =>
    Effect.gen(function*() {
      const url = yield* urlOf
      const handle = yield* registered("kept")
      const big = JSON.stringify({ action: "terminate", worker: "0:1", padding: "x".repeat(2000) })
      assert.strictEqual((yield* post(url, big)).status, 413)
      // Without a Content-Length (chunked), the limit holds while reading.
      const chunked = yield* post(url, big, { "transfer-encoding": "chunked" })
      assert.strictEqual(chunked.status, 413)
      assert.strictEqual((yield* post(url, "{not json")).status, 400)
      assert.strictEqual((yield* post(url, { action: "kill -9", worker: "0:1" })).status, 400)
      assert.strictEqual((yield* post(url, { action: "terminate", worker: "../../etc" })).status, 400)
      assert.strictEqual((yield* post(url, { action: "terminate" })).status, 400)
      assert.strictEqual((yield* post(url, { action: "terminate", worker: "3:9" })).status, 404)
      assert.strictEqual((yield* Supervisor.status(handle))._tag, "Started")
    }).pipe(withDashboard()))

  it.live("without a token the dashboard is read-only: reads are open, actions answer 403", () =>
    Effect.gen(function*() {
      const dashboard = yield* Dashboard.Dashboard
      assert.isFalse(dashboard.actions)
      const handle = yield* registered("kept")
      assert.strictEqual((yield* request(dashboard.url, "/api/activity")).status, 200)
      const answer = yield* post(dashboard.url, { action: "terminate", worker: WorkerHandle.format(handle) }, {
        authorization: ""
      })
      assert.strictEqual(answer.status, 403)
      assert.include(answer.body, "actions are disabled")
      assert.strictEqual((yield* Supervisor.status(handle))._tag, "Started")
    }).pipe(withDashboard({})))

  it.live("a request naming another host is refused, so a rebound DNS name cannot read the dashboard", () =>
    Effect.gen(function*() {
      const dashboard = yield* Dashboard.Dashboard
      const rebound = yield* request(dashboard.url, "/api/activity", {
        headers: { host: `evil.example:${dashboard.port}` }
      })
      assert.strictEqual(rebound.status, 403)
      const local = yield* request(dashboard.url, "/api/activity", { headers: { host: `localhost:${dashboard.port}` } })
      assert.strictEqual(local.status, 200)
    }).pipe(withDashboard({})))

  it.live("layerFromEnv reads its port, host and token from BGWORKER_DASHBOARD_*; without a token it is read-only", () =>
    Effect.gen(function*() {
      const fromEnv = (env: Record<string, string>) =>
        Layer.provideMerge(Dashboard.layerFromEnv(), layerLeakChecked()).pipe(
          Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnvRecord(env)))
        )
      const withToken = yield* Effect.gen(function*() {
        const dashboard = yield* Dashboard.Dashboard
        const anonymous = yield* request(dashboard.url, "/api/activity")
        const holder = yield* request(dashboard.url, "/api/activity", { headers: { authorization: "Bearer from-env" } })
        return { dashboard, statuses: [anonymous.status, holder.status] }
      }).pipe(Effect.provide(fromEnv({ BGWORKER_DASHBOARD_TOKEN: "from-env", BGWORKER_DASHBOARD_HOST: "127.0.0.1" })))
      assert.isTrue(withToken.dashboard.actions)
      assert.deepStrictEqual(withToken.statuses, [401, 200])
      const readOnly = yield* Effect.provide(Dashboard.Dashboard.useSync((d) => d), fromEnv({}))
      assert.isFalse(readOnly.actions)
      assert.strictEqual(readOnly.host, "127.0.0.1")
      const invalid = yield* Effect.flip(Effect.provide(urlOf, fromEnv({ BGWORKER_DASHBOARD_PORT: "eighty" })))
      assert.strictEqual(invalid._tag, "ConfigError")
    }))

  it.live("a host that is not loopback without a token fails to build, with a hint", () =>
    Effect.gen(function*() {
      const failure = yield* Effect.flip(Effect.provide(urlOf, withoutToken))
      assert.isTrue(Dashboard.isDashboardError(failure))
      const error = failure as Dashboard.DashboardError
      assert.strictEqual(error.reason, "InsecureHost")
      assert.strictEqual(error.message, `refusing to serve the dashboard on "0.0.0.0" without a token`)
      assert.include(error.hint ?? "", "token")
    }))

  it.live("the timeline shows the start, exit and restart of a crashing worker, and a later page sees them", () =>
    Effect.gen(function*() {
      const url = yield* urlOf
      const handle = yield* Supervisor.register(BackgroundWorker.make({
        name: "crasher",
        restart: BackgroundWorker.restartAfter("20 millis"),
        intensity: { maxRestarts: 2, within: "1 minute" },
        main: () => Effect.fail(new Error("disk full"))
      }))
      yield* eventually(
        "it is given up",
        Effect.map(Supervisor.info(handle), (row) => row._tag === "Some" && row.value.registration === "given up"),
        1_000_000
      )
      const answer = yield* requestJson(url, "/api/timeline", { headers: bearer })
      const mine = answer.json.filter((e: any) => e.name === "crasher")
      assert.deepStrictEqual(mine.map((e: any) => e.event), [
        "registered",
        "started",
        "exited",
        "restarted",
        "exited",
        "restarted",
        "exited",
        "given up"
      ])
      const exits = mine.filter((e: any) => e.event === "exited")
      assert.isTrue(exits.every((e: any) => e.outcome === "failed" && e.detail.includes("disk full")))
      // Starts and exits carry the supervisor's own times (a registration's, when it was seen).
      const times = mine.filter((e: any) => e.event !== "registered").map((e: any) => e.at)
      assert.deepStrictEqual(times, [...times].sort((a: number, b: number) => a - b), "in the order it happened")
      assert.include(mine[mine.length - 1].detail, "more than 2 restarts")
      // A page opened now gets the same history in its snapshot.
      const events = yield* openEvents(url, bearer)
      const snapshot = yield* events.until("snapshot", (m) => m.type === "snapshot")
      assert.deepStrictEqual(
        snapshot.timeline.filter((e: any) => e.name === "crasher").map((e: any) => e.event),
        mine.map((e: any) => e.event)
      )
      assert.strictEqual(snapshot.rows[0].registration, "given up")
      assert.include(snapshot.rows[0].lastExit.message, "disk full")
    }).pipe(withDashboard()))

  it.live("/api/settings lists the registry's settings with their source and pending_restart", () =>
    Effect.gen(function*() {
      const url = yield* urlOf
      const answer = yield* requestJson(url, "/api/settings", { headers: bearer })
      assert.strictEqual(answer.status, 200)
      const naptime = answer.json.find((s: any) => s.name === "demo.naptime")
      assert.deepInclude(naptime, { setting: "250", unit: "ms", source: "override", pending_restart: false })
      const max = answer.json.find((s: any) => s.name === "max_worker_processes")
      assert.strictEqual(max.setting, "4")
    }).pipe(
      Effect.provide(
        Layer.provideMerge(
          Dashboard.layer({ token: Redacted.make(token) }),
          Layer.provideMerge(
            layerLeakChecked(),
            NodeSupervisor.layerGucs({
              environment: {},
              parameters: [naptime],
              overrides: { "demo.naptime": 250, max_worker_processes: 4 }
            })
          )
        )
      )
    ))

  it.live("a reload from the page's action pushes the changed settings, with pending_restart, to open pages", () => {
    const directory = Fs.mkdtempSync(Path.join(Os.tmpdir(), "dashboard-gucs-"))
    const configFile = Path.join(directory, "postgresql.conf")
    Fs.writeFileSync(configFile, "demo.naptime = 100ms\n")
    const slots = Guc.int("demo.slots", { context: "postmaster", description: "Slots.", default: 2, min: 1, max: 64 })
    return Effect.gen(function*() {
      const url = yield* urlOf
      const events = yield* openEvents(url, bearer)
      const snapshot = yield* events.until("snapshot", (m) => m.type === "snapshot")
      assert.deepInclude(snapshot.settings.find((s: any) => s.name === "demo.naptime"), {
        setting: "100",
        source: "configuration file"
      })
      yield* Guc.alterSystem("demo.naptime", 500)
      yield* Guc.alterSystem("demo.slots", 8)
      const answer = yield* post(url, { action: "reload" })
      assert.strictEqual(answer.status, 200, answer.body)
      const changed = yield* events.until(
        "settings with the new naptime",
        (m) => m.type === "settings" && m.settings.some((s: any) => s.name === "demo.naptime" && s.setting === "500")
      )
      assert.deepInclude(changed.settings.find((s: any) => s.name === "demo.slots"), {
        setting: "2",
        pending_restart: true
      })
    }).pipe(
      Effect.provide(
        Layer.provideMerge(
          Dashboard.layer({ token: Redacted.make(token) }),
          Layer.provideMerge(
            layerLeakChecked(),
            NodeSupervisor.layerGucs({ environment: {}, configFile, parameters: [naptime, slots] })
          )
        )
      ),
      Effect.ensuring(Effect.sync(() => Fs.rmSync(directory, { recursive: true, force: true })))
    )
  })

  it.live("at most 64 event streams are open at once; a closed one frees its place", () =>
    Effect.gen(function*() {
      const url = yield* urlOf
      const streams = yield* Effect.forEach(
        Array.from({ length: 64 }, (_, i) => i),
        () =>
          Effect.flatMap(Scope.make(), (scope) =>
            Effect.map(Scope.provide(openEvents(url, bearer), scope), (r) => ({ r, scope }))),
        { concurrency: 8 }
      )
      assert.isTrue(streams.every(({ r }) =>
        r.status === 200
      ))
      const refused = yield* request(url, "/events", { headers: bearer })
      assert.strictEqual(refused.status, 503)
      yield* Scope.close(streams[0]!.scope, Exit.void)
      yield* eventually(
        "a place is free again",
        Effect.andThen(Effect.sleep("10 millis"), Effect.map(openEvents(url, bearer), (r) => r.status === 200)),
        200
      )
    }).pipe(withDashboard()))

  it.live("closing the layer ends open event streams at once, instead of waiting for the pages to leave", () =>
    Effect.gen(function*() {
      const started = Date.now()
      yield* Effect.scoped(
        Effect.gen(function*() {
          const url = yield* urlOf
          const events = yield* openEvents(url)
          yield* events.until("snapshot", (m) => m.type === "snapshot")
          return events
        }).pipe(
          Effect.provide(Layer.provideMerge(Dashboard.layer({}), layerLeakChecked())),
          Effect.flatMap((events) => eventually("the stream ended", Effect.sync(events.ended), 100_000))
        )
      )
      // The server waits up to 1 s for open connections before it drops them: the streams must end before that.
      assert.isBelow(Date.now() - started, 900)
    }))
})

const naptime = Guc.int("demo.naptime", {
  context: "sighup",
  description: "Time between ticks.",
  default: 1000,
  min: 10,
  max: 3_600_000,
  unit: "ms"
})

const withoutToken = Layer.provideMerge(Dashboard.layer({ host: "0.0.0.0" }), layerLeakChecked())

const ProcLatchWait = Effect.andThen(
  ProcLatch.wait({ onPostmasterDeath: "exit", waitEvent: "TestNap" }),
  ProcLatch.reset
)
