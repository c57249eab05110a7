/**
 * The failure of an embedded server's set-up or start, shared by the modules that do the steps
 * (`processes`, `osUser`, `binaries`, `dataDirectory`, `embeddedServer`) and re-exported, with its guard,
 * by `EmbeddedPostgres`.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"

/** What every embedded server's log line names as its module. */
export const logAnnotations = { module: "effect-bgworker/pg/EmbeddedPostgres" }

const TypeId = "~effect-bgworker/pg/EmbeddedPostgresError" as const

/**
 * An embedded server could not be set up or started. `step` says where it failed; `log` holds the last
 * lines `initdb` or the server printed (empty when nothing ran); `hint`, when there is one, what to do.
 *
 * @category errors
 * @since 0.1.0
 */
export class EmbeddedPostgresError extends Schema.TaggedError<EmbeddedPostgresError>()("EmbeddedPostgresError", {
  step: Schema.Literals(["binaries", "user", "directory", "port", "initdb", "start"]),
  detail: Schema.String,
  log: Schema.String,
  hint: Schema.optionalKey(Schema.String)
}) {
  /** @since 0.2.0 */
  get [TypeId](): typeof TypeId {
    return TypeId
  }

  /** The detail and the server's last lines; not the hint, which is a field of its own (printed once). */
  override get message(): string {
    const log = this.log === "" ? "" : `\nlog (last lines):\n${this.log}`
    return `embedded PostgreSQL: ${this.detail}${log}`
  }
}

/**
 * Whether `u` is an {@link EmbeddedPostgresError}.
 *
 * @category guards
 * @since 0.2.0
 */
export const isEmbeddedPostgresError = (u: unknown): u is EmbeddedPostgresError => Predicate.hasProperty(u, TypeId)

/** Where a set-up fails. */
export type Step = EmbeddedPostgresError["step"]

/** The text of a thrown value. */
export const errorText = (error: unknown): string => error instanceof Error ? error.message : String(error)

/** The `code` of a Node.js system error (`ENOENT`, `EACCES`, ...). */
export const errorCode = (error: unknown): string | undefined =>
  typeof error === "object" && error !== null && "code" in error && typeof error.code === "string"
    ? error.code
    : undefined

/** Runs `f`, failing with `<detail>: <what it threw>` at `step` (nothing ran, so no log). */
export const attempt = <A>(step: Step, detail: string, f: () => Promise<A>): Effect.Effect<A, EmbeddedPostgresError> =>
  Effect.tryPromise({
    try: f,
    catch: (error) => new EmbeddedPostgresError({ step, detail: `${detail}: ${errorText(error)}`, log: "" })
  })
