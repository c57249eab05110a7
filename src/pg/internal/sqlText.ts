/**
 * SQL text built on this side: identifiers quoted as PostgreSQL's `quote_identifier` quotes them.
 *
 * PostgreSQL: src/backend/utils/adt/ruleutils.c (`quote_identifier`, and the `quote_all_identifiers`
 * setting), src/include/parser/kwlist.h (the keywords).
 *
 * @internal
 */

/**
 * The words `quote_identifier` must quote: PostgreSQL 18's keywords that are not unreserved
 * (`SELECT word FROM pg_get_keywords() WHERE catcode <> 'U'`).
 */
const keywords: ReadonlySet<string> = new Set([
  "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric", "authorization", "between",
  "bigint", "binary", "bit", "boolean", "both", "case", "cast", "char", "character", "check", "coalesce",
  "collate", "collation", "column", "concurrently", "constraint", "create", "cross", "current_catalog",
  "current_date", "current_role", "current_schema", "current_time", "current_timestamp", "current_user", "dec",
  "decimal", "default", "deferrable", "desc", "distinct", "do", "else", "end", "except", "exists", "extract",
  "false", "fetch", "float", "for", "foreign", "freeze", "from", "full", "grant", "greatest", "group",
  "grouping", "having", "ilike", "in", "initially", "inner", "inout", "int", "integer", "intersect", "interval",
  "into", "is", "isnull", "join", "json", "json_array", "json_arrayagg", "json_exists", "json_object",
  "json_objectagg", "json_query", "json_scalar", "json_serialize", "json_table", "json_value", "lateral",
  "leading", "least", "left", "like", "limit", "localtime", "localtimestamp", "merge_action", "national",
  "natural", "nchar", "none", "normalize", "not", "notnull", "null", "nullif", "numeric", "offset", "on",
  "only", "or", "order", "out", "outer", "overlaps", "overlay", "placing", "position", "precision", "primary",
  "real", "references", "returning", "right", "row", "select", "session_user", "setof", "similar", "smallint",
  "some", "substring", "symmetric", "system_user", "table", "tablesample", "then", "time", "timestamp", "to",
  "trailing", "treat", "trim", "true", "union", "unique", "user", "using", "values", "varchar", "variadic",
  "verbose", "when", "where", "window", "with", "xmlattributes", "xmlconcat", "xmlelement", "xmlexists",
  "xmlforest", "xmlnamespaces", "xmlparse", "xmlpi", "xmlroot", "xmlserialize", "xmltable"
])

/** A lowercase identifier: what the parser folds an unquoted name to, so it reads back unchanged. */
const plainIdentifier = /^[a-z_][a-z0-9_]*$/

/**
 * PostgreSQL's `quote_identifier`: `name` as it is when it is a lowercase identifier that is not a
 * reserved word (`schema4`, `counted`), else in double quotes with inner quotes doubled (`"My Schema7"`,
 * `"select"`). With `all`, always in double quotes, as with the setting `quote_all_identifiers` on: the
 * form for statements this library sends itself, which then mean the same to a later server version
 * whose reserved words are not in this list.
 */
export const quoteIdentifier = (name: string, options?: { readonly all?: boolean | undefined }): string =>
  options?.all !== true && plainIdentifier.test(name) && !keywords.has(name)
    ? name
    : `"${name.replaceAll("\"", "\"\"")}"`
