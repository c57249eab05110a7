/**
 * One reading of an error's chain of causes, for every place that renders an error as text: the supervisor's
 * log lines, the server's words in `src/pg/`, and `runMain`'s FATAL line.
 *
 * An error reaches us wrapped: `SqlError` keeps the driver's error (with PostgreSQL's message) as its
 * `cause` or its `reason`'s `cause`, under a generic message of its own (`PgConnection: Query failed`); a
 * `StartupFailure` wraps a `WorkerConnectionError`; Node's errors wrap the operating system's. The chain is
 * followed through `cause` and `reason`, at most {@link maxDepth} links, and stops at a cycle.
 *
 * @internal
 */

/** How many links are followed: enough for every wrapper we know, and a bound for a hostile chain. */
export const maxDepth = 8

const isObject = (value: unknown): value is object => typeof value === "object" && value !== null

/** The error, then each cause along `cause` (else `reason`), outermost first. */
export const causeChain = (error: unknown): ReadonlyArray<unknown> => {
  const chain: Array<unknown> = [error]
  let current: unknown = error
  while (chain.length <= maxDepth && isObject(current)) {
    const next = (current as { readonly cause?: unknown }).cause ?? (current as { readonly reason?: unknown }).reason
    if (!isObject(next) || chain.includes(next)) break
    chain.push(next)
    current = next
  }
  return chain
}

/** A value's own `message` when it is a non-empty string, else `undefined`. */
export const messageOf = (value: unknown): string | undefined => {
  const message = isObject(value) ? (value as { readonly message?: unknown }).message : undefined
  return typeof message === "string" && message !== "" ? message : undefined
}

/** A value's own `hint` when it is a non-empty string, else `undefined`. */
export const hintOf = (value: unknown): string | undefined => {
  const hint = isObject(value) ? (value as { readonly hint?: unknown }).hint : undefined
  return typeof hint === "string" && hint !== "" ? hint : undefined
}

/** The innermost non-empty message along the chain (the server's own words), else the error as text. */
export const innermostMessage = (error: unknown): string => {
  let text = messageOf(error) ?? String(error)
  for (const link of causeChain(error).slice(1)) text = messageOf(link) ?? text
  return text
}

/** A tagged error's `Tag: message` (the tag alone without a message); another value's message or text. */
export const taggedMessage = (error: unknown): string => {
  if (isObject(error) && "_tag" in error) {
    const tag = String((error as { readonly _tag: unknown })._tag)
    const message = messageOf(error)
    return message === undefined ? tag : `${tag}: ${message}`
  }
  return messageOf(error) ?? String(error)
}

/** An error's message, followed by its root cause's when that says more (an `SqlError` keeps the server's text there). */
export const withRootCause = (error: unknown): string => {
  const own = taggedMessage(error)
  const chain = causeChain(error)
  if (chain.length === 1) return own
  const root = taggedMessage(chain[chain.length - 1])
  return root === "" || own.includes(root) ? own : `${own}: ${root}`
}
