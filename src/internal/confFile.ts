/**
 * PostgreSQL's configuration-file syntax: the reader behind `postgresql.conf` and the writer of
 * `postgresql.auto.conf`.
 *
 * PostgreSQL: src/backend/utils/misc/guc-file.l (the lexer, `ParseConfigFp`, `ParseConfigFile`,
 * `ParseConfigDirectory`, `DeescapeQuotedString`), src/backend/utils/misc/conffiles.c
 * (`AbsoluteConfigLocation`, `GetConfFilesInDir`, `CONF_FILE_MAX_DEPTH`) and `write_auto_conf_file` /
 * `AlterSystemSetConfigFile` in src/backend/utils/misc/guc.c.
 *
 * The lexer keeps guc-file.l's rules and flex's rule choice (longest match, earlier rule on a tie):
 *
 * ```
 * ID              {LETTER}{LETTER_OR_DIGIT}*          LETTER = [A-Za-z_\200-\377]
 * QUALIFIED_ID    {ID}"."{ID}
 * STRING          '([^'\\\n]|\\.|'')*'
 * UNQUOTED_STRING {LETTER}({LETTER_OR_DIGIT}|[-._:/])*
 * INTEGER         {SIGN}?({DIGIT}+|0x{HEXDIGIT}+){UNIT_LETTER}*
 * REAL            {SIGN}?{DIGIT}*"."{DIGIT}*{EXPONENT}?
 * ```
 *
 * The file is read as UTF-8 text; every non-ASCII character counts as a letter (in UTF-8 all its bytes are
 * in \200-\377). Octal escapes in quoted strings produce bytes, so `'\303\251'` reads as "é".
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as FileSystem from "effect/FileSystem"
import * as Path from "effect/Path"
import type * as PlatformError from "effect/PlatformError"
import * as Schema from "effect/Schema"

// --- Models ---

/** One `name = value` line: the raw value (quotes and escapes removed), the absolute file, the 1-based line. */
export interface ConfEntry {
  readonly name: string
  readonly value: string
  readonly file: string
  readonly line: number
}

/** An `include`, `include_if_exists` or `include_dir` line, as `parseConfText` returns it (not yet expanded). */
export interface ConfInclude {
  readonly _tag: "include"
  readonly kind: "include" | "include_if_exists" | "include_dir"
  readonly target: string
  readonly file: string
  readonly line: number
}

/** A parsed line: a setting (`_tag: "entry"`) or an include directive. */
export type ConfItem = (ConfEntry & { readonly _tag: "entry" }) | ConfInclude

// --- Errors ---

/**
 * A line that does not have the shape `name [=] value`. `token` is the offending token, absent when the line
 * ended too early (`near end of line`). `line` is 1-based.
 */
export class ConfSyntaxError extends Schema.TaggedError<ConfSyntaxError>()("ConfSyntaxError", {
  file: Schema.String,
  line: Schema.Number,
  token: Schema.optionalKey(Schema.String)
}) {
  override get message(): string {
    return this.token === undefined
      ? `syntax error in file "${this.file}" line ${this.line}, near end of line`
      : `syntax error in file "${this.file}" line ${this.line}, near token "${this.token}"`
  }
}

/**
 * A configuration file or directory that could not be read (or, from `writeAutoConf`, written).
 *
 * `file` is the absolute path the message names. When an include directive led here, `includedFrom` and
 * `line` locate that directive. `reason` classifies the failure: the file-system error (`NotFound`,
 * `PermissionDenied`, ...), `NestingDepthExceeded` (more than 10 levels of includes), `Recursion` (a file
 * that includes itself) or `EmptyName` (an include of `''`).
 */
export class ConfFileError extends Schema.TaggedError<ConfFileError>()("ConfFileError", {
  message: Schema.String,
  file: Schema.String,
  reason: Schema.String,
  includedFrom: Schema.optionalKey(Schema.String),
  line: Schema.optionalKey(Schema.Number)
}) {}

/** Anything `readConfFile` can fail with. */
export type ConfError = ConfSyntaxError | ConfFileError

// --- Lexer (guc-file.l) ---

type TokenType =
  | "id"
  | "qualified_id"
  | "string"
  | "unquoted_string"
  | "integer"
  | "real"
  | "equals"
  | "eol"
  | "eof"
  | "error"
  | "skip"

interface Token {
  readonly type: TokenType
  readonly text: string
}

const LETTER = "A-Za-z_\\u0080-\\uffff"
const LETTER_OR_DIGIT = "A-Za-z_0-9\\u0080-\\uffff"
const ID = `[${LETTER}][${LETTER_OR_DIGIT}]*`

/** The rules in guc-file.l's order; flex takes the longest match and, on a tie, the earlier rule. */
const rules: ReadonlyArray<readonly [TokenType, RegExp]> = [
  ["eol", /\n/y],
  ["skip", /[ \t\r]+/y],
  ["skip", /#[^\n]*/y],
  ["id", new RegExp(ID, "y")],
  ["qualified_id", new RegExp(`${ID}\\.${ID}`, "y")],
  ["string", /'(?:[^'\\\n]|\\[^\n]|'')*'/y],
  ["unquoted_string", new RegExp(`[${LETTER}](?:[${LETTER_OR_DIGIT}]|[-._:/])*`, "y")],
  // INTEGER's two alternatives as two patterns, so that the longer of them wins as in flex
  ["integer", /[-+]?[0-9]+[a-zA-Z]*/y],
  ["integer", /[-+]?0x[0-9a-fA-F]+[a-zA-Z]*/y],
  ["real", /[-+]?[0-9]*\.[0-9]*(?:[Ee][-+]?[0-9]+)?/y],
  ["equals", /=/y],
  ["error", /[^\n]/y]
]

const eof: Token = { type: "eof", text: "" }

const makeLexer = (text: string) => {
  let pos = 0
  return {
    /** The line the lexer is on; it moves on as soon as a newline is read (ConfigFileLineno). */
    lineno: 1,
    next(): Token {
      while (pos < text.length) {
        let best: Token | undefined
        for (const [type, re] of rules) {
          re.lastIndex = pos
          const m = re.exec(text)
          if (m !== null && (best === undefined || m[0].length > best.text.length)) best = { type, text: m[0] }
        }
        // the last rule matches any character but a newline, and the first matches a newline
        const token = best!
        pos += token.text.length
        if (token.type === "skip") continue
        if (token.type === "eol") this.lineno++
        return token
      }
      return eof
    }
  }
}

const utf8Decoder = new TextDecoder("utf-8")
const utf8Encoder = new TextEncoder()

/**
 * `DeescapeQuotedString`: strips the quotes, turns `''` into `'`, and reads the backslash escapes `\b \f \n
 * \r \t`, octal `\o`, `\oo`, `\ooo` (a byte; runs of them are decoded as UTF-8) and `\x` = `x` for any other
 * character. `quoted` is a STRING token, so a quote inside it is always doubled and a backslash always has a
 * character after it.
 */
const deescape = (quoted: string): string => {
  const s = quoted.slice(1, -1)
  let out = ""
  let bytes: Array<number> = []
  const flush = () => {
    if (bytes.length > 0) {
      out += utf8Decoder.decode(Uint8Array.from(bytes))
      bytes = []
    }
  }
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!
    if (c === "\\" && i + 1 < s.length) {
      const e = s[++i]!
      if (e >= "0" && e <= "7") {
        let octal = 0
        let k = 0
        for (; k < 3 && i + k < s.length && s[i + k]! >= "0" && s[i + k]! <= "7"; k++) {
          octal = (octal << 3) + (s.charCodeAt(i + k) - 48)
        }
        i += k - 1
        bytes.push(octal & 0xff)
        continue
      }
      flush()
      out += e === "b" ? "\b" : e === "f" ? "\f" : e === "n" ? "\n" : e === "r" ? "\r" : e === "t" ? "\t" : e
    } else {
      flush()
      out += c
      if (c === "'") i++ // the first of a doubled quote
    }
  }
  flush()
  return out
}

const isValue = (type: TokenType): boolean =>
  type === "id" || type === "string" || type === "integer" || type === "real" || type === "unquoted_string"

/** `guc_name_compare` folds ASCII letters only. */
const asciiLower = (s: string): string => s.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32))

const directives: ReadonlyMap<string, ConfInclude["kind"]> = new Map([
  ["include", "include"],
  ["include_if_exists", "include_if_exists"],
  ["include_dir", "include_dir"]
])

/** The lines before the first syntax error, and that error if there is one (ParseConfigFp's loop). */
const parseLines = (
  text: string,
  file: string
): { readonly items: ReadonlyArray<ConfItem>; readonly error: ConfSyntaxError | undefined } => {
  const lexer = makeLexer(text)
  const items: Array<ConfItem> = []
  const syntaxError = (token: Token) =>
    token.type === "eol"
      ? new ConfSyntaxError({ file, line: lexer.lineno - 1 })
      : token.type === "eof"
      // PostgreSQL reports ConfigFileLineno - 1 here, one line too early when the file lacks a final newline
      ? new ConfSyntaxError({ file, line: lexer.lineno })
      : new ConfSyntaxError({ file, line: lexer.lineno, token: token.text })
  while (true) {
    let token = lexer.next()
    if (token.type === "eof") break
    if (token.type === "eol") continue // empty or comment line
    // the first token on a line is the name
    if (token.type !== "id" && token.type !== "qualified_id") return { items, error: syntaxError(token) }
    const name = token.text
    // then an optional equals sign
    token = lexer.next()
    if (token.type === "equals") token = lexer.next()
    // then the value
    if (!isValue(token.type)) return { items, error: syntaxError(token) }
    const value = token.type === "string" ? deescape(token.text) : token.text
    // then the end of the line, or of the file (counted as a newline, cf. PostgreSQL bug 4752)
    token = lexer.next()
    if (token.type !== "eol") {
      if (token.type !== "eof") return { items, error: syntaxError(token) }
      lexer.lineno++
    }
    const line = lexer.lineno - 1
    const kind = directives.get(asciiLower(name))
    items.push(
      kind === undefined
        ? { _tag: "entry", name, value, file, line }
        : { _tag: "include", kind, target: value, file, line }
    )
    if (token.type === "eof") break
  }
  return { items, error: undefined }
}

/**
 * Parses one file's text (`file` is only used for locations). Directives are returned, not followed. Stops at
 * the first syntax error, which names the file and the 1-based line.
 */
export const parseConfText = (
  text: string,
  file: string
):
  | { readonly ok: true; readonly items: ReadonlyArray<ConfItem> }
  | { readonly ok: false; readonly error: ConfSyntaxError } =>
{
  const { error, items } = parseLines(text, file)
  return error === undefined ? { ok: true, items } : { ok: false, error }
}

// --- Reading files (ParseConfigFile, ParseConfigDirectory) ---

/** `CONF_FILE_MAX_DEPTH`: the top-level file is depth 0; a file at depth 11 is refused. */
const maxDepth = 10

const errnoText: Record<string, string> = {
  ENOENT: "No such file or directory",
  EACCES: "Permission denied",
  EPERM: "Operation not permitted",
  EISDIR: "Is a directory",
  ENOTDIR: "Not a directory",
  ELOOP: "Too many levels of symbolic links",
  EEXIST: "File exists",
  EBUSY: "Device or resource busy",
  EMFILE: "Too many open files",
  ENFILE: "Too many open files in system",
  ENAMETOOLONG: "File name too long",
  ENOSPC: "No space left on device",
  EROFS: "Read-only file system",
  EXDEV: "Invalid cross-device link",
  EIO: "Input/output error"
}

const tagText: Record<string, string> = {
  NotFound: "No such file or directory",
  PermissionDenied: "Permission denied",
  AlreadyExists: "File exists",
  Busy: "Device or resource busy"
}

/** The `%m` of PostgreSQL's messages: strerror's text for the platform error. */
const describe = (error: PlatformError.PlatformError): { readonly reason: string; readonly text: string } => {
  const r = error.reason
  if (r._tag === "BadArgument") return { reason: "BadArgument", text: r.description ?? "invalid argument" }
  const cause: unknown = r.cause
  const code = typeof cause === "object" && cause !== null && "code" in cause ? String(cause.code) : undefined
  const text = (code === undefined ? undefined : errnoText[code]) ?? tagText[r._tag] ?? r.description ?? r._tag
  return { reason: r._tag, text }
}

const isBlank = (s: string): boolean => /^[ \t\r\n]*$/.test(s)

/** Unicode code-point order, which is UTF-8 byte order (`pg_qsort_strcmp` on the file names). */
const compareCodePoints = (a: string, b: string): number => {
  const x = Array.from(a)
  const y = Array.from(b)
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i]!.codePointAt(0)! - y[i]!.codePointAt(0)!
    if (d !== 0) return d
  }
  return x.length - y.length
}

interface Origin {
  readonly file: string
  readonly line: number
}

const origin = (from: Origin | undefined): { includedFrom?: string; line?: number } =>
  from === undefined ? {} : { includedFrom: from.file, line: from.line }

interface Reader {
  readonly fs: FileSystem.FileSystem
  readonly path: Path.Path
  readonly out: Array<ConfEntry>
}

/** `ParseConfigFile`: `strict` false is include_if_exists (and `missingOk`): a missing file is skipped. */
const readFile: (
  r: Reader,
  target: string,
  strict: boolean,
  from: Origin | undefined,
  depth: number
) => Effect.Effect<void, ConfError> = Effect.fnUntraced(
  function*(r: Reader, target: string, strict: boolean, from: Origin | undefined, depth: number) {
    if (isBlank(target)) {
      return yield* new ConfFileError({
        message: `empty configuration file name: "${target}"`,
        file: target,
        reason: "EmptyName",
        ...origin(from)
      })
    }
    // AbsoluteConfigLocation: relative to the directory of the including file
    const file = from === undefined ? r.path.resolve(target) : r.path.resolve(r.path.dirname(from.file), target)
    if (depth > maxDepth) {
      return yield* new ConfFileError({
        message: `could not open configuration file "${file}": maximum nesting depth exceeded`,
        file,
        reason: "NestingDepthExceeded",
        ...origin(from)
      })
    }
    if (from !== undefined && file === from.file) {
      return yield* new ConfFileError({
        message: `configuration file recursion in "${from.file}"`,
        file,
        reason: "Recursion",
        ...origin(from)
      })
    }
    const read = yield* Effect.result(r.fs.readFile(file))
    if (read._tag === "Failure") {
      const { reason, text } = describe(read.failure)
      if (!strict && reason === "NotFound") {
        return yield* Effect.logDebug(`skipping missing configuration file "${file}"`)
      }
      return yield* new ConfFileError({
        message: `could not open configuration file "${file}": ${text}`,
        file,
        reason,
        ...origin(from)
      })
    }
    const { error, items } = parseLines(utf8Decoder.decode(read.success), file)
    // directives are followed where they stand, so errors come in reading order, as in ParseConfigFp
    for (const item of items) {
      if (item._tag === "entry") {
        r.out.push({ name: item.name, value: item.value, file: item.file, line: item.line })
      } else if (item.kind === "include_dir") {
        yield* readDirectory(r, item.target, { file, line: item.line }, depth + 1)
      } else {
        yield* readFile(r, item.target, item.kind === "include", { file, line: item.line }, depth + 1)
      }
    }
    if (error !== undefined) return yield* error
  }
)

/** `ParseConfigDirectory` + `GetConfFilesInDir`: `*.conf` not starting with ".", not directories, by name. */
const readDirectory: (
  r: Reader,
  target: string,
  from: Origin,
  depth: number
) => Effect.Effect<void, ConfError> = Effect.fnUntraced(
  function*(r: Reader, target: string, from: Origin, depth: number) {
    if (isBlank(target)) {
      return yield* new ConfFileError({
        message: `empty configuration directory name: "${target}"`,
        file: target,
        reason: "EmptyName",
        ...origin(from)
      })
    }
    const directory = r.path.resolve(r.path.dirname(from.file), target)
    const names = yield* r.fs.readDirectory(directory).pipe(
      Effect.mapError((e) => {
        const { reason, text } = describe(e)
        return new ConfFileError({
          message: `could not open configuration directory "${directory}": ${text}`,
          file: directory,
          reason,
          ...origin(from)
        })
      })
    )
    const candidates = names
      .filter((name) => name.length >= 6 && !name.startsWith(".") && name.endsWith(".conf"))
      .sort(compareCodePoints)
    const files: Array<string> = []
    for (const name of candidates) {
      const file = r.path.join(directory, name)
      const info = yield* r.fs.stat(file).pipe(
        Effect.mapError((e) => {
          const { reason, text } = describe(e)
          return new ConfFileError({ message: `could not stat file "${file}": ${text}`, file, reason, ...origin(from) })
        })
      )
      if (info.type !== "Directory") files.push(file)
    }
    for (const file of files) yield* readFile(r, file, true, from, depth)
  }
)

/**
 * Reads a configuration file and everything it includes, and returns the settings in reading order (a later
 * entry for the same name comes later; the caller applies "last wins").
 *
 * - `include 'f'` reads `f` (relative to the directory of the including file); a missing `f` is an error.
 * - `include_if_exists 'f'` does the same but skips a missing `f`.
 * - `include_dir 'd'` reads the files of `d` whose names end in ".conf" and do not start with ".", in
 *   byte order of name.
 * - Includes nest at most 10 deep. A file that includes itself is an error.
 * - `missingOk` makes a missing top-level file read as empty (`postgresql.auto.conf`).
 *
 * Fails with the first error in reading order. (PostgreSQL reports every error, and then applies nothing.)
 */
export const readConfFile: (
  path: string,
  options?: { readonly missingOk?: boolean | undefined }
) => Effect.Effect<ReadonlyArray<ConfEntry>, ConfError, FileSystem.FileSystem | Path.Path> = Effect.fnUntraced(
  function*(path: string, options?: { readonly missingOk?: boolean | undefined }) {
    const r: Reader = { fs: yield* FileSystem.FileSystem, path: yield* Path.Path, out: [] }
    yield* readFile(r, path, options?.missingOk !== true, undefined, 0)
    return r.out as ReadonlyArray<ConfEntry>
  }
)

// --- Writing postgresql.auto.conf (ALTER SYSTEM) ---

/**
 * A value as ALTER SYSTEM writes it: in single quotes, `'` doubled and `\` doubled. Newlines and carriage
 * returns are written as `\n` and `\r`, which the reader turns back (ALTER SYSTEM refuses such values
 * instead).
 */
export const quoteValue = (value: string): string =>
  `'${value.replace(/[\\'\n\r]/g, (c) => c === "'" ? "''" : c === "\\" ? "\\\\" : c === "\n" ? "\\n" : "\\r")}'`

/** The text of `postgresql.auto.conf`: `write_auto_conf_file`'s header, then one `name = 'value'` per line. */
export const formatAutoConf = (entries: ReadonlyArray<{ readonly name: string; readonly value: string }>): string =>
  "# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\n" +
  entries.map((e) => `${e.name} = ${quoteValue(e.value)}\n`).join("")

/**
 * Replaces the file at `path` with `formatAutoConf(entries)` the way ALTER SYSTEM does: writes and syncs
 * `path.tmp` (mode 0600), then renames it over `path`. If any step fails, the temporary file is removed and
 * `path` keeps its previous content.
 */
export const writeAutoConf: (
  path: string,
  entries: ReadonlyArray<{ readonly name: string; readonly value: string }>
) => Effect.Effect<void, ConfFileError, FileSystem.FileSystem | Path.Path> = Effect.fnUntraced(
  function*(path: string, entries: ReadonlyArray<{ readonly name: string; readonly value: string }>) {
    const fs = yield* FileSystem.FileSystem
    const target = (yield* Path.Path).resolve(path)
    const tmp = `${target}.tmp`
    const fail = (message: string, file: string) => (e: PlatformError.PlatformError) => {
      const { reason, text } = describe(e)
      return new ConfFileError({ message: `${message}: ${text}`, file, reason })
    }
    const removeTmp = fs.remove(tmp, { force: true }).pipe(Effect.ignore)
    yield* Effect.scoped(Effect.gen(function*() {
      const file = yield* fs.open(tmp, { flag: "w", mode: 0o600 }).pipe(
        Effect.mapError(fail(`could not open file "${tmp}"`, tmp))
      )
      yield* file.writeAll(utf8Encoder.encode(formatAutoConf(entries))).pipe(
        Effect.mapError(fail(`could not write to file "${tmp}"`, tmp))
      )
      yield* Effect.mapError(file.sync, fail(`could not fsync file "${tmp}"`, tmp))
    })).pipe(Effect.tapError(() => removeTmp))
    yield* fs.rename(tmp, target).pipe(
      Effect.mapError(fail(`could not rename file "${tmp}" to "${target}"`, target)),
      Effect.tapError(() => removeTmp)
    )
  }
)
