/**
 * The dashboard's HTTP application: routes, the checks every request passes, the server-sent events, and
 * the actions.
 *
 * **Checks, in order**
 *
 * 1. `Host` must name this server (a loopback name with its port, the bound host, or one listed in
 *    `allowedHosts`): a page on another site that rebinds its DNS name to 127.0.0.1 sends its own name,
 *    and is refused (403) before it can read anything.
 * 2. Reads (`/api/*`, `/events`) need the token when one is configured (401 otherwise); the page itself and
 *    its two assets do not, so a browser can load the page and then ask for the token.
 * 3. Actions (`POST /api/actions`): refused (403) when no token is configured; then `Origin` must be this
 *    server's own origin and `Sec-Fetch-Site`, when sent, `same-origin` (403 otherwise); then the token
 *    (401); then the body: JSON (415), at most {@link maxBodyBytes} (413), a known action and a worker
 *    handle of the form `slot:generation` (400), naming a registration that exists (404).
 *
 * Every response carries the security headers ({@link securityHeaders}).
 *
 * @internal
 */
import * as ByteSize from "effect/ByteSize"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as HttpIncomingMessage from "effect/http/HttpIncomingMessage"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Crypto from "node:crypto"
import { escape, escapeBounded } from "../../internal/logText.ts"
import * as Supervisor from "../../Supervisor.ts"
import * as WorkerHandle from "../../WorkerHandle.ts"
import { appCss, appJs, pageHtml } from "./dashboardAssets.ts"
import type { Feed, Message, Snapshot } from "./dashboardFeed.ts"

/** Event streams open at once; one more is refused with 503 (each holds a subscription and a socket). */
export const maxEventStreams = 64

/** Largest action body accepted, in bytes. */
export const maxBodyBytes = 1024

/** Headers on every response. */
export const securityHeaders: Readonly<Record<string, string>> = {
  "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
  "cache-control": "no-store"
}

const logAnnotations = { module: "effect-bgworker/Dashboard" }

/** What the application needs to know about its server. */
export interface ServerInfo {
  readonly feed: Feed
  readonly supervisor: Supervisor.SupervisorApi
  readonly token: Redacted.Redacted<string> | undefined
  /** `host:port` values `Host` may carry, and (with `http://` or `https://`) `Origin`. */
  readonly authorities: ReadonlySet<string>
  /** Completed when the server is closing: every event stream ends. */
  readonly closing: Deferred.Deferred<void>
  /** Interval between keep-alive comments on an event stream. */
  readonly keepAlive: number
}

/** The `host:port` values a request may name: the loopback names, the bound host, and the extra ones. */
export const authoritiesOf = (host: string, port: number, extra: ReadonlyArray<string>): ReadonlySet<string> => {
  const names = new Set<string>([`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`])
  if (host !== "0.0.0.0" && host !== "::") names.add(host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`)
  for (const authority of extra) names.add(authority.toLowerCase())
  return names
}

/** Whether `host` only accepts connections from this machine. */
export const isLoopback = (host: string): boolean =>
  host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)

const sha256 = (text: string) => Crypto.createHash("sha256").update(text, "utf8").digest()

/** Compares in constant time (over digests, so lengths leak nothing either). */
const tokenMatches = (token: Redacted.Redacted<string>, header: string | undefined): boolean => {
  if (header === undefined) return false
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header)
  if (match === null) return false
  return Crypto.timingSafeEqual(sha256(match[1]!), sha256(Redacted.value(token)))
}

const errorResponse = (status: number, message: string, hint?: string) =>
  HttpServerResponse.jsonUnsafe(hint === undefined ? { error: message } : { error: message, hint }, {
    status,
    ...(status === 401 ? { headers: { "www-authenticate": "Bearer" } } : {})
  })

const json = (body: unknown) => HttpServerResponse.jsonUnsafe(body)

const withHeaders = (response: HttpServerResponse.HttpServerResponse) =>
  HttpServerResponse.setHeaders(response, securityHeaders)

/** An action, as posted by the page or a script. */
const ActionBody = Schema.Struct({
  action: Schema.Literals(["terminate", "signal-terminate", "set-latch", "reload"]),
  worker: Schema.optionalKey(Schema.String.check(Schema.isMaxLength(32)))
})
type ActionBody = typeof ActionBody.Type

const decodeAction = Schema.decodeUnknownResult(Schema.fromJsonString(ActionBody))

const peerOf = (request: HttpServerRequest.HttpServerRequest): string =>
  Option.getOrElse(request.remoteAddress, () => "unknown address")

/** Builds the application: the router's routes behind the checks of the module doc. */
export const make = Effect.fnUntraced(function*(info: ServerInfo) {
  const router = yield* HttpRouter.make
  const { feed, supervisor } = info

  const readable = (request: HttpServerRequest.HttpServerRequest): boolean =>
    info.token === undefined || tokenMatches(info.token, request.headers["authorization"])

  /** A read endpoint: the token when there is one. */
  const read = (body: () => unknown) =>
    HttpServerRequest.HttpServerRequest.useSync((request) =>
      readable(request)
        ? json(body())
        : errorResponse(401, "this dashboard needs its token", "Send the header \"Authorization: Bearer <token>\".")
    )

  const actionsEnabled = info.token !== undefined
  const encodeEvent = (message: Snapshot | Message): string =>
    `event: ${message.type}\nid: ${message.seq}\ndata: ${
      JSON.stringify(message.type === "snapshot" ? { ...message, actions: actionsEnabled } : message)
    }\n\n`

  let openStreams = 0
  // Counted when the stream starts, and checked again there: the check before the response (503) does not
  // hold against a burst of requests that all pass it before any stream starts; a stream over the cap then
  // ends at once, before it subscribes.
  const countStream = Effect.acquireRelease(
    Effect.sync(() => ++openStreams <= maxEventStreams),
    () => Effect.sync(() => openStreams--)
  )
  const events = Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    if (!readable(request)) {
      return errorResponse(401, "this dashboard needs its token", "Send the header \"Authorization: Bearer <token>\".")
    }
    if (openStreams >= maxEventStreams) {
      return errorResponse(503, "too many open dashboard pages", "Close some of them, or reload one later.")
    }
    const body = Stream.unwrap(
      Effect.flatMap(countStream, (admitted) =>
        admitted
          ? Effect.map(feed.subscribe, ({ messages, snapshot }) =>
            Stream.concat(Stream.succeed<Snapshot | Message>(snapshot), messages).pipe(
              Stream.map(encodeEvent),
              Stream.merge(
                Stream.tick(info.keepAlive).pipe(Stream.map(() =>
                  ": keep-alive\n\n"
                ))
              )
            ))
          : Effect.succeed(Stream.empty))
    ).pipe(
      Stream.interruptWhen(Deferred.await(info.closing)),
      Stream.encodeText
    )
    return HttpServerResponse.stream(body, {
      contentType: "text/event-stream; charset=utf-8",
      // `close`: once the stream ends (the dashboard is closing) the connection goes too, instead of idling
      // in keep-alive and holding the server's close up.
      headers: { "x-accel-buffering": "no", connection: "close" }
    })
  })

  const act = (body: ActionBody, request: HttpServerRequest.HttpServerRequest) =>
    Effect.gen(function*() {
      const peer = escape(peerOf(request))
      if (body.action === "reload") {
        yield* Effect.logInfo(`dashboard: reload requested by the token holder from ${peer}`)
        yield* supervisor.reload
        return json({ ok: true, action: body.action })
      }
      const handle = body.worker === undefined ? undefined : WorkerHandle.parse(body.worker)
      if (handle === undefined) {
        return errorResponse(400, `invalid worker handle`, "Name the worker as \"slot:generation\", e.g. \"3:1\".")
      }
      const row = feed.row(WorkerHandle.format(handle))
      if (row === undefined) {
        return errorResponse(404, `no background worker with handle "${WorkerHandle.format(handle)}"`)
      }
      yield* Effect.logInfo(
        `dashboard: ${body.action} of background worker "${escapeBounded(row.name, 100)}" ` +
          `(${WorkerHandle.format(handle)}) requested by the token holder from ${peer}`
      )
      if (body.action === "terminate") yield* supervisor.terminate(handle)
      else if (body.action === "signal-terminate") yield* supervisor.signal(handle, "terminate")
      else yield* supervisor.setLatch(handle)
      return json({ ok: true, action: body.action, worker: WorkerHandle.format(handle) })
    }).pipe(Effect.annotateLogs(logAnnotations))

  const actions = Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    if (info.token === undefined) {
      return errorResponse(
        403,
        "actions are disabled: this dashboard has no token",
        "Give Dashboard.layer a token (a Redacted string) to enable terminate, set latch and reload."
      )
    }
    const origin = request.headers["origin"]
    const site = request.headers["sec-fetch-site"]
    // A browser sends `Sec-Fetch-Site` (which no page can forge) and, on most cross-origin requests,
    // `Origin`; Chromium leaves `Origin` out of a same-origin fetch under this page's `no-referrer` policy.
    // So: an `Origin` must be ours; without one, `Sec-Fetch-Site` must say `same-origin`; with neither (a
    // script), refused: a script sends `Origin` like the page's.
    const originOk = origin === undefined
      ? site === "same-origin"
      : /^https?:\/\//.test(origin) && info.authorities.has(origin.replace(/^https?:\/\//, "").toLowerCase())
    if (!originOk || (site !== undefined && site !== "same-origin")) {
      return errorResponse(
        403,
        "cross-origin action refused",
        "Actions are accepted only from the dashboard's own page."
      )
    }
    if (!tokenMatches(info.token, request.headers["authorization"])) {
      return errorResponse(401, "this action needs the dashboard's token", "Send \"Authorization: Bearer <token>\".")
    }
    const contentType = request.headers["content-type"] ?? ""
    if (!/^application\/json\s*(;|$)/i.test(contentType)) {
      return errorResponse(415, "an action is a JSON body", "Send \"Content-Type: application/json\".")
    }
    const length = request.headers["content-length"]
    if (length !== undefined && !(/^\d{1,9}$/.test(length) && Number(length) <= maxBodyBytes)) {
      return errorResponse(413, `an action body is at most ${maxBodyBytes} bytes`)
    }
    const text = yield* request.text.pipe(
      Effect.provideService(HttpIncomingMessage.MaxBodySize, ByteSize.bytes(maxBodyBytes)),
      Effect.option
    )
    if (Option.isNone(text) || text.value.length > maxBodyBytes) {
      return errorResponse(413, `an action body is at most ${maxBodyBytes} bytes`)
    }
    const decoded = decodeAction(text.value)
    if (decoded._tag === "Failure") {
      return errorResponse(
        400,
        "invalid action",
        "Send {\"action\": \"terminate\" | \"signal-terminate\" | \"set-latch\", \"worker\": \"slot:generation\"} or " +
          "{\"action\": \"reload\"}."
      )
    }
    return yield* act(decoded.success, request)
  })

  yield* router.add("GET", "/", HttpServerResponse.text(pageHtml, { contentType: "text/html; charset=utf-8" }))
  yield* router.add("GET", "/app.js", HttpServerResponse.text(appJs, { contentType: "text/javascript; charset=utf-8" }))
  yield* router.add("GET", "/app.css", HttpServerResponse.text(appCss, { contentType: "text/css; charset=utf-8" }))
  yield* router.add("GET", "/api/activity", read(() => ({ ...feed.slots(), rows: feed.rows() })))
  yield* router.add("GET", "/api/settings", read(() => feed.settings() ?? []))
  yield* router.add("GET", "/api/timeline", read(() => feed.timeline()))
  yield* router.add("GET", "/api/state", read(() => ({ ...feed.snapshot(), actions: actionsEnabled })))
  yield* router.add("GET", "/events", events)
  yield* router.add("POST", "/api/actions", actions)

  const app = router.asHttpEffect()

  return Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const host = (request.headers["host"] ?? "").toLowerCase()
    if (!info.authorities.has(host)) {
      return withHeaders(errorResponse(403, "unknown host name", "Open the dashboard at the address it logged."))
    }
    const response = yield* app.pipe(
      Effect.catchCause((cause) => {
        const error = Cause.findErrorOption(cause)
        if (Option.isSome(error) && (error.value as { reason?: { _tag?: string } }).reason?._tag === "RouteNotFound") {
          return Effect.succeed(errorResponse(404, "not found"))
        }
        return Cause.hasInterruptsOnly(cause)
          ? Effect.failCause(cause)
          : Effect.as(
            Effect.logWarning("dashboard: request failed", cause).pipe(Effect.annotateLogs(logAnnotations)),
            errorResponse(500, "internal error")
          )
      })
    )
    return withHeaders(response)
  })
})
