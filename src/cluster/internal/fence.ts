/**
 * The fence table and its SQL: one row per singleton, whose `epoch` is bumped by every new owner before the
 * singleton's worker starts there (the fencing token), and a `SECURITY DEFINER` check that share-locks the
 * row so that a fenced write and a bump are ordered by PostgreSQL's row lock.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"

/** A lower-case SQL identifier that needs no quoting: what `schema` and `grantTo` accept. */
export const identifier = /^[a-z_][a-z0-9_]{0,62}$/

/** The statements that create (or bring up to date) the fence in `schema`, in order. */
export const ddl = (schema: string, grantTo: ReadonlyArray<string>): ReadonlyArray<string> => [
  `CREATE SCHEMA IF NOT EXISTS ${schema}`,
  `REVOKE ALL ON SCHEMA ${schema} FROM PUBLIC`,
  `CREATE TABLE IF NOT EXISTS ${schema}.fence (
     name text PRIMARY KEY,
     epoch bigint NOT NULL,
     owner text NOT NULL,
     since timestamptz NOT NULL
   )`,
  `REVOKE ALL ON ${schema}.fence FROM PUBLIC`,
  // FOR SHARE needs UPDATE rights on the table: a definer function lets a worker's own role check its token
  // without being able to move anyone's epoch. The lock is the caller's transaction's, held until it ends.
  `CREATE OR REPLACE FUNCTION ${schema}.fence_holds(singleton text, token bigint) RETURNS boolean
     LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fence$
   BEGIN
     PERFORM 1 FROM ${schema}.fence f WHERE f.name = singleton AND f.epoch = token FOR SHARE;
     RETURN FOUND;
   END
   $fence$`,
  `REVOKE ALL ON FUNCTION ${schema}.fence_holds(text, bigint) FROM PUBLIC`,
  ...grantTo.flatMap((role) => [
    `GRANT USAGE ON SCHEMA ${schema} TO ${role}`,
    `GRANT EXECUTE ON FUNCTION ${schema}.fence_holds(text, bigint) TO ${role}`
  ])
]

/**
 * Creates the fence. Several processes start at once: a transaction-scoped advisory lock keyed on the
 * schema's name serialises them (`CREATE ... IF NOT EXISTS` alone races on the catalog's unique indexes).
 */
export const create = (sql: SqlClient, schema: string, grantTo: ReadonlyArray<string>): Effect.Effect<void, SqlError> =>
  sql.withTransaction(Effect.gen(function*() {
    yield* sql`SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext(${`effect-bgworker/cluster:${schema}`}))`
    for (const statement of ddl(schema, grantTo)) yield* sql.unsafe(statement)
  }))

/**
 * Takes the next token for `singleton`: its row's epoch plus one (1 for a new row), recorded with `owner`.
 * The row lock waits for every transaction that still holds the previous token's share lock: once this
 * returns, no write fenced by an older token can commit.
 */
export const bump = (
  sql: SqlClient,
  schema: string,
  singleton: string,
  owner: string
): Effect.Effect<bigint, SqlError> =>
  Effect.map(
    sql<{ readonly epoch: string }>`
      INSERT INTO ${sql(schema)}.fence AS f (name, epoch, owner, since)
      VALUES (${singleton}, 1, ${owner}, pg_catalog.clock_timestamp())
      ON CONFLICT (name) DO UPDATE
        SET epoch = f.epoch + 1, owner = EXCLUDED.owner, since = EXCLUDED.since
      RETURNING f.epoch::text AS epoch`,
    (rows) => BigInt(rows[0]!.epoch)
  )
