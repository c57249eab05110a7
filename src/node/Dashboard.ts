/**
 * A live dashboard for a supervisor: an admin HTTP server (`effect/http` on Node) with one page that shows
 * every worker as it changes, a timeline of starts, exits and restarts, the settings and the slots, and,
 * with a token, buttons to terminate a worker, set its latch, or reload.
 *
 * PostgreSQL has no such page; it is what `pg_stat_activity`, `pg_settings`, `pg_terminate_backend` and
 * `pg_reload_conf` give a DBA in `psql`, drawn live. pg-boss ships a comparable dashboard for its queues.
 *
 * **Off by default.** Nothing listens unless the program provides {@link layer}:
 *
 * ```ts
 * import * as Layer from "effect/Layer"
 * import * as Redacted from "effect/Redacted"
 * import * as Supervisor from "effect-bgworker/Supervisor"
 * import { Dashboard, NodeSupervisor } from "effect-bgworker/node"
 *
 * NodeSupervisor.runMain(
 *   Layer.provideMerge(
 *     Dashboard.layer({ port: 8089, token: Redacted.make("a long random string") }),
 *     Supervisor.layer()
 *   )
 * )
 * // logs: dashboard listening on http://127.0.0.1:8089/
 * // open http://127.0.0.1:8089/#token=a%20long%20random%20string
 * ```
 *
 * **Endpoints**
 *
 * | request | answer |
 * |---|---|
 * | `GET /` (`/app.js`, `/app.css`) | the page and its two assets, from this package (no CDN, no build step) |
 * | `GET /events` | server-sent events: a `snapshot`, then every `row`, `removed`, `timeline` and `settings` change |
 * | `GET /api/activity` | `{ used, free, max, rows }`: the slots and `Activity.snapshot`'s rows |
 * | `GET /api/timeline` | the recent starts, exits and restarts (the newest `historySize`, 500 by default) |
 * | `GET /api/settings` | `Guc.settings` (`pg_settings`' columns); `[]` without a `Gucs` registry |
 * | `GET /api/state` | the `snapshot` event's body |
 * | `POST /api/actions` | `{"action": "terminate" \| "signal-terminate" \| "set-latch", "worker": "slot:generation"}` or `{"action": "reload"}` |
 *
 * `terminate` is `Supervisor.terminate` (`TerminateBackgroundWorker`: the worker ends and is unregistered);
 * `signal-terminate` is `Supervisor.signal(handle, "terminate")` (`pg_terminate_backend`: this incarnation
 * ends and the restart policy applies); `set-latch` is `Supervisor.setLatch`; `reload` is
 * `Supervisor.reload` (SIGHUP). Each action is logged with its worker's name and handle and the caller's
 * address (escaped; the token never).
 *
 * **Security**
 *
 * - Bound to `127.0.0.1` unless `host` says otherwise. A host that is not loopback needs a token: without
 *   one, building the layer fails with `DashboardError` (reason `InsecureHost`) rather than show the workers
 *   and their errors to the network.
 * - Without a token the dashboard is read-only: the actions answer 403, and anyone who can reach the port
 *   (every user of this machine, on loopback) can read it. On a shared machine, set a token. With a token, the actions need it
 *   (`Authorization: Bearer <token>`, 401 otherwise), and so do the reads (`/api/*`, `/events`); only the
 *   page and its assets are served without it, so that a browser can load the page and then ask for it.
 *   The page takes the token from the address's fragment (`#token=...`, which browsers never send to a
 *   server), removes it from the address bar, keeps it for the tab (`sessionStorage`), and sends it only
 *   in the header.
 * - Actions also need a same-origin request: `Origin` must be this dashboard's own (`http://127.0.0.1:PORT`,
 *   `localhost`, `[::1]`, the bound host, or a name in `allowedHosts`), and `Sec-Fetch-Site`, when the
 *   browser sends it, `same-origin`; anything else is 403. A body must be JSON of at most 1024 bytes (413
 *   beyond), name a known action (400) and a registered worker by handle (400 for a malformed handle, 404
 *   for an unknown one).
 * - Every request must name this server in `Host` (403 otherwise), which defeats DNS rebinding: a page on
 *   another site cannot make its own name point at 127.0.0.1 and read the dashboard.
 * - Every response carries `Content-Security-Policy: default-src 'self'; ...; frame-ancestors 'none'` (no
 *   inline script or style, no other origin), `X-Content-Type-Options: nosniff`,
 *   `Referrer-Policy: no-referrer`, `X-Frame-Options: DENY` and `Cache-Control: no-store`. The page renders
 *   worker names, error messages and settings as text, never as HTML.
 * - There is no TLS: behind anything but loopback, put it behind a reverse proxy that terminates TLS, and
 *   list the proxy's host name in `allowedHosts`.
 *
 * **Gotchas**
 *
 * - The layer needs `Supervisor` and is released before it: provide the supervisor to it
 *   (`Layer.provideMerge(Dashboard.layer(...), Supervisor.layer(...))`). Settings show only when a `Gucs`
 *   registry is in the same context (`NodeSupervisor.layerGucs`).
 * - The timeline is derived from the activity stream while the dashboard runs; what happened before it
 *   was built shows only as each worker's current row (its start, and its last exit).
 * - Closing the layer ends every open event stream, then the server, within about a second.
 * - At most 64 pages (event streams) at once; one more gets 503.
 *
 * @since 0.2.0
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import type * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Http from "node:http"
import type * as Net from "node:net"
import { escape } from "../internal/logText.ts"
import * as Supervisor from "../Supervisor.ts"
import * as Feed from "./internal/dashboardFeed.ts"
import * as Server from "./internal/dashboardServer.ts"

/**
 * Options of {@link layer}.
 *
 * @category models
 * @since 0.2.0
 */
export interface Options {
  /** TCP port. Default `0`: any free port (read it from {@link Dashboard}'s `url`, or the log line). */
  readonly port?: number | undefined
  /**
   * Interface to bind. Default `"127.0.0.1"`. Anything but a loopback address (`127.x.y.z`, `::1`,
   * `localhost`) needs a `token`.
   */
  readonly host?: string | undefined
  /**
   * Enables the actions, and is then needed for every read as well (see the module doc). Keep it out of
   * source code: `Config.Redacted("BGWORKER_DASHBOARD_TOKEN")`, a file, a secret store.
   */
  readonly token?: Redacted.Redacted<string> | undefined
  /**
   * More `host:port` names the dashboard may be reached by, accepted in `Host` and, as `http://` or
   * `https://` origins, in `Origin`: a reverse proxy's name, or, with `host: "0.0.0.0"`, the machine's
   * names and addresses (`"db1.example.com:8089"`). The loopback names and a specific bound address are
   * always accepted; any other name gets 403.
   */
  readonly allowedHosts?: ReadonlyArray<string> | undefined
  /** How many timeline entries the server keeps for pages opened later. Default 500. */
  readonly historySize?: number | undefined
}

/**
 * The running dashboard: where it listens.
 *
 * @category services
 * @since 0.2.0
 */
export class Dashboard extends Context.Service<Dashboard, {
  /** `http://host:port/`, the address to open. */
  readonly url: string
  readonly host: string
  readonly port: number
  /** Whether the actions are enabled (a token was given). */
  readonly actions: boolean
}>()("effect-bgworker/Dashboard") {}

const TypeId = "~effect-bgworker/DashboardError" as const

/**
 * Why the dashboard could not start: `InsecureHost` (a host that is not loopback, without a token),
 * `InvalidOption` (a port or history size out of range), `ListenFailed` (the port is taken, the address
 * does not exist on this machine).
 *
 * @category errors
 * @since 0.2.0
 */
export class DashboardError extends Schema.TaggedError<DashboardError>()("DashboardError", {
  reason: Schema.Literals(["InsecureHost", "InvalidOption", "ListenFailed"]),
  message: Schema.String,
  hint: Schema.optionalKey(Schema.String),
  cause: Schema.optionalKey(Schema.Defect())
}) {
  /** Marks a `DashboardError`, for {@link isDashboardError}. */
  get [TypeId](): typeof TypeId {
    return TypeId
  }
  /** Never: each reason needs a change by the caller (a token, another port). */
  get isRetryable(): boolean {
    return false
  }
}

/**
 * Whether `u` is a {@link DashboardError}.
 *
 * @category guards
 * @since 0.2.0
 */
export const isDashboardError = (u: unknown): u is DashboardError => Predicate.hasProperty(u, TypeId)

const logAnnotations = { module: "effect-bgworker/Dashboard" }

/**
 * Starts the dashboard in the current scope (the layer's constructor). See the module doc.
 *
 * @category constructors
 * @since 0.2.0
 */
export const make: (
  options?: Options
) => Effect.Effect<Dashboard["Service"], DashboardError, Supervisor.Supervisor | Scope.Scope> = Effect.fnUntraced(
  function*(options: Options = {}) {
    const host = options.host ?? "127.0.0.1"
    const port = options.port ?? 0
    const historySize = options.historySize ?? 500
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      return yield* new DashboardError({
        reason: "InvalidOption",
        message: `invalid dashboard port ${port}`,
        hint: "Use 0 (any free port) or a port from 1 to 65535."
      })
    }
    if (!Number.isInteger(historySize) || historySize < 0 || historySize > 100_000) {
      return yield* new DashboardError({
        reason: "InvalidOption",
        message: `invalid dashboard history size ${historySize}`,
        hint: "Keep from 0 to 100000 timeline entries."
      })
    }
    if (!Server.isLoopback(host) && options.token === undefined) {
      return yield* new DashboardError({
        reason: "InsecureHost",
        message: `refusing to serve the dashboard on "${escape(host)}" without a token`,
        hint: "Bind 127.0.0.1 (the default), or give Dashboard.layer a token so that only its holders can read " +
          "and act."
      })
    }
    const supervisor = yield* Supervisor.Supervisor
    const feed = yield* Feed.make({ historySize })
    const closing = yield* Deferred.make<void>()
    const nodeServer = Http.createServer()
    const server = yield* NodeHttpServer.make(() => nodeServer, { port, host, gracefulShutdownTimeout: "1 second" })
      .pipe(
        Effect.mapError((error) =>
          new DashboardError({
            reason: "ListenFailed",
            message: `could not listen on "${escape(host)}", port ${port}: ${
              escape(String((error.cause as { message?: unknown } | undefined)?.message ?? error.message))
            }`,
            hint: "Choose another port (0 picks a free one) or an address of this machine.",
            cause: error
          })
        )
      )
    const bound = (nodeServer.address() as Net.AddressInfo).port
    const app = yield* Server.make({
      feed,
      supervisor,
      token: options.token,
      authorities: Server.authoritiesOf(host, bound, options.allowedHosts ?? []),
      closing,
      keepAlive: 15_000
    })
    yield* server.serve(app)
    // Registered after `serve`, so it runs before the server's close: the event streams end first, and the
    // close does not wait for them.
    yield* Effect.addFinalizer(() => Deferred.succeed(closing, undefined))
    const shownHost = host === "0.0.0.0" || host === "::" ? host : host.includes(":") ? `[${host}]` : host
    const url = `http://${shownHost}:${bound}/`
    const actions = options.token !== undefined
    yield* Effect.logInfo(
      `dashboard listening on ${url}` +
        (actions ? " (actions enabled: open it with #token=<token> after the address)" : " (read-only: no token)")
    ).pipe(Effect.annotateLogs(logAnnotations))
    return Dashboard.of({ url, host, port: bound, actions })
  }
)

/**
 * The dashboard as a layer: listens while the layer is up (see the module doc for what it serves and who
 * may act).
 *
 * **Example** (A read-only dashboard on any free port)
 *
 * ```ts
 * import * as Effect from "effect/Effect"
 * import * as Layer from "effect/Layer"
 * import * as Supervisor from "effect-bgworker/Supervisor"
 * import { Dashboard } from "effect-bgworker/node"
 *
 * const program = Effect.gen(function*() {
 *   const { url } = yield* Dashboard.Dashboard
 *   yield* Effect.log(`open ${url}`)
 * })
 *
 * program.pipe(Effect.provide(Layer.provideMerge(Dashboard.layer({ port: 0 }), Supervisor.layer())))
 * ```
 *
 * @category layers
 * @since 0.2.0
 */
export const layer = (options: Options = {}): Layer.Layer<Dashboard, DashboardError, Supervisor.Supervisor> =>
  Layer.effect(Dashboard, make(options))

/**
 * {@link layer} with its options from the environment, for a program that runs the dashboard only when
 * asked to (`npm start` does):
 *
 * - `BGWORKER_DASHBOARD_PORT`: the port; default `0` (any free one, logged).
 * - `BGWORKER_DASHBOARD_HOST`: the interface; default `127.0.0.1`.
 * - `BGWORKER_DASHBOARD_TOKEN`: the token; unset, the dashboard is read-only.
 *
 * **Gotchas** Building it fails with a `ConfigError` when a variable is set to something invalid (a port
 * that is not a number), and with `DashboardError` as {@link layer} does.
 *
 * @category layers
 * @since 0.2.0
 */
export const layerFromEnv = (): Layer.Layer<Dashboard, DashboardError | Config.ConfigError, Supervisor.Supervisor> =>
  Layer.unwrap(Effect.gen(function*() {
    const port = yield* Config.Int("BGWORKER_DASHBOARD_PORT").pipe(Config.withDefault(0))
    const host = yield* Config.String("BGWORKER_DASHBOARD_HOST").pipe(Config.withDefault("127.0.0.1"))
    const token = yield* Config.option(Config.Redacted("BGWORKER_DASHBOARD_TOKEN"))
    return layer({ port, host, token: Option.getOrUndefined(token) })
  }))
