/**
 * A client for the dashboard tests: plain HTTP requests (through `node:http`, so that a test can send any
 * `Host` header) and an event-stream reader that keeps every message it has parsed.
 */
import { Effect } from "effect"
import * as Http from "node:http"

export interface Answer {
  readonly status: number
  readonly headers: Http.IncomingHttpHeaders
  readonly body: string
}

/** One request to `url` + `path`; `headers` as given (a `host` entry replaces the real one). */
export const request = (
  url: string,
  path: string,
  options: {
    readonly method?: string
    readonly headers?: Readonly<Record<string, string>>
    readonly body?: string
  } = {}
): Effect.Effect<Answer> =>
  Effect.callback<Answer>((resume) => {
    const target = new URL(path, url)
    const req = Http.request(target, { method: options.method ?? "GET", headers: options.headers ?? {} }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (chunk: Buffer) => chunks.push(chunk))
      res.on("end", () =>
        resume(Effect.succeed({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString("utf8")
        })))
      res.on("error", (error) => resume(Effect.die(error)))
    })
    req.on("error", (error) => resume(Effect.die(error)))
    if (options.body !== undefined) req.write(options.body)
    req.end()
    return Effect.sync(() => req.destroy())
  })

/** `request`, with the body parsed as JSON. */
export const requestJson = (url: string, path: string, options: Parameters<typeof request>[2] = {}) =>
  Effect.map(request(url, path, options), (answer) => ({ ...answer, json: JSON.parse(answer.body) as any }))

export interface EventReader {
  readonly status: number
  readonly contentType: string | null
  /** Every message so far, parsed, in order. */
  readonly messages: Array<any>
  /** Whether the server ended the stream. */
  readonly ended: () => boolean
  /** Waits until a message satisfies `predicate` (or fails after `timeout` ms), and returns it. */
  readonly until: (what: string, predicate: (message: any) => boolean, timeout?: number) => Effect.Effect<any>
}

/** Opens `GET /events` for the current scope. */
export const openEvents = (url: string, headers: Readonly<Record<string, string>> = {}) =>
  Effect.acquireRelease(
    Effect.promise(async (): Promise<EventReader & { readonly abort: () => void }> => {
      const controller = new AbortController()
      const response = await fetch(new URL("/events", url), { headers, signal: controller.signal })
      const messages: Array<any> = []
      let ended = false
      if (response.body !== null && response.ok) {
        const reader = response.body.getReader()
        const decoder = new TextDecoder()
        let buffer = ""
        void (async () => {
          try {
            while (true) {
              const chunk = await reader.read()
              if (chunk.done) break
              buffer += decoder.decode(chunk.value, { stream: true })
              let end: number
              while ((end = buffer.indexOf("\n\n")) >= 0) {
                const block = buffer.slice(0, end)
                buffer = buffer.slice(end + 2)
                const data = block.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6))
                  .join("")
                if (data !== "") messages.push(JSON.parse(data))
              }
            }
          } catch {
            // aborted
          }
          ended = true
        })()
      }
      const until = (what: string, predicate: (message: any) => boolean, timeout = 5000) =>
        Effect.gen(function*() {
          const deadline = Date.now() + timeout
          while (Date.now() < deadline) {
            const found = messages.find(predicate)
            if (found !== undefined) return found
            yield* Effect.sleep("5 millis")
          }
          return yield* Effect.die(new Error(`no event stream message ${what} within ${timeout} ms`))
        })
      return {
        status: response.status,
        contentType: response.headers.get("content-type"),
        messages,
        ended: () => ended,
        until,
        abort: () => controller.abort()
      }
    }),
    (reader) => Effect.sync(() => reader.abort())
  )
