/**
 * The server's own words for a failure. `SqlError` keeps the driver's error (with PostgreSQL's message) as
 * its cause or its reason's cause, under a generic message of its own (`PgConnection: Query failed`).
 *
 * @internal
 */

/** The innermost non-empty message along `cause` / `reason`, else the error's own message or text. */
export const serverText = (error: unknown): string => {
  const own = typeof error === "object" && error !== null ? (error as { readonly message?: unknown }).message : undefined
  let text = typeof own === "string" && own !== "" ? own : String(error)
  let current: unknown = error
  for (let i = 0; i < 8 && typeof current === "object" && current !== null; i++) {
    const next = (current as { readonly cause?: unknown }).cause ?? (current as { readonly reason?: unknown }).reason
    if (typeof next !== "object" || next === null) break
    const message = (next as { readonly message?: unknown }).message
    if (typeof message === "string" && message !== "") text = message
    current = next
  }
  return text
}
