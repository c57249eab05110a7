/**
 * The server's own words for a failure: the innermost message along the error's chain of causes (see
 * `src/internal/causeChain.ts`). `SqlError` keeps the driver's error, with PostgreSQL's message, under a
 * generic message of its own (`PgConnection: Query failed`).
 *
 * @internal
 */
export { innermostMessage as serverText } from "../../internal/causeChain.ts"
