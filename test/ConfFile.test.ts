/**
 * The configuration-file reader and the postgresql.auto.conf writer (src/internal/confFile.ts), checked against
 * guc-file.l's rules. File tests run on the real file system in a temporary directory per test.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as FileSystem from "effect/FileSystem"
import * as Path from "effect/Path"
import type * as Scope from "effect/Scope"
import * as ConfFile from "../src/internal/confFile.ts"

const file = "/etc/postgresql/postgresql.conf"

/** The entries of `text`, as `[name, value, line]`; fails the test on a syntax error. */
const entries = (text: string): ReadonlyArray<readonly [string, string, number]> => {
  const result = ConfFile.parseConfText(text, file)
  if (!result.ok) assert.fail(result.error.message)
  return result.items.map((item) => item._tag === "entry" ? [item.name, item.value, item.line] : assert.fail("include"))
}

/** The syntax error of `text`; fails the test if it parses. */
const syntaxError = (text: string): ConfFile.ConfSyntaxError => {
  const result = ConfFile.parseConfText(text, file)
  return result.ok ? assert.fail(`parsed: ${JSON.stringify(result.items)}`) : result.error
}

const withNode = <A, E>(
  effect: Effect.Effect<A, E, FileSystem.FileSystem | Path.Path | Scope.Scope>
): Effect.Effect<A, E, Scope.Scope> => Effect.provide(effect, NodeServices.layer)

/** Writes `files` (relative path to content) under a fresh temporary directory and returns the directory. */
const tree = (files: Record<string, string>) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const dir = yield* fs.makeTempDirectoryScoped({ prefix: "conffile-" })
    for (const [name, content] of Object.entries(files)) {
      const target = path.join(dir, name)
      yield* fs.makeDirectory(path.dirname(target), { recursive: true })
      yield* fs.writeFileString(target, content)
    }
    return dir
  })

const pairs = (list: ReadonlyArray<ConfFile.ConfEntry>) => list.map((e) => [e.name, e.value] as const)

describe("ConfFile", () => {
  describe("syntax", () => {
    it("comments and blank lines are ignored", () => {
      const text = "# a comment\n\n   \t\nport = 5432 # trailing comment\n" +
        "\t# indented comment\nwork_mem = 4MB#no space\n"
      assert.deepStrictEqual(entries(text), [["port", "5432", 4], ["work_mem", "4MB", 6]])
    })

    it("the equals sign is optional", () => {
      assert.deepStrictEqual(entries("port 5432\nlisten_addresses '*'\nfsync=off\n"), [
        ["port", "5432", 1],
        ["listen_addresses", "*", 2],
        ["fsync", "off", 3]
      ])
    })

    it("quoted values keep spaces and handle '' and backslash escapes", () => {
      const text = [
        "a = '  two  spaces  '",
        "b = 'it''s'",
        "c = 'it\\'s'",
        "d = 'tab\\tnl\\ncr\\rbs\\bff\\f'",
        "e = 'back\\\\slash \\q \\#'",
        "f = '\\101\\0102 \\7a'", // octal: at most 3 digits
        "g = '\\303\\251t\\303\\251'", // octal bytes are UTF-8
        "h = ''",
        "i = 'caf\u00e9 # not a comment'"
      ].join("\n")
      assert.deepStrictEqual(entries(text).map(([n, v]) => [n, v]), [
        ["a", "  two  spaces  "],
        ["b", "it's"],
        ["c", "it's"],
        ["d", "tab\tnl\ncr\rbs\bff\f"],
        ["e", "back\\slash q #"],
        ["f", "A\b2 \u0007a"],
        ["g", "\u00e9t\u00e9"],
        ["h", ""],
        ["i", "caf\u00e9 # not a comment"]
      ])
    })

    it("unit-suffixed and negative numbers are read as raw values", () => {
      const text = "a = 10s\nb = 128MB\nc = -1\nd = +7\ne = 0x1F\nf = 1.5\ng = .5\nh = -2.5e-3\ni = 1min\n"
      assert.deepStrictEqual(entries(text).map(([n, v]) => [n, v]), [
        ["a", "10s"],
        ["b", "128MB"],
        ["c", "-1"],
        ["d", "+7"],
        ["e", "0x1F"],
        ["f", "1.5"],
        ["g", ".5"],
        ["h", "-2.5e-3"],
        ["i", "1min"]
      ])
    })

    it("unquoted words, paths without a leading slash and locale names are read as raw values", () => {
      const text = "a = on\nb = en_US.UTF-8\nc = pg_log/x:y\nd = caf\u00e9\n"
      assert.deepStrictEqual(entries(text).map(([n, v]) => [n, v]), [
        ["a", "on"],
        ["b", "en_US.UTF-8"],
        ["c", "pg_log/x:y"],
        ["d", "caf\u00e9"]
      ])
    })

    it("a fractional number with a unit must be quoted, as in PostgreSQL (REAL takes no unit letters)", () => {
      assert.strictEqual(
        syntaxError("work_mem = 1.5GB\n").message,
        `syntax error in file "${file}" line 1, near token "GB"`
      )
      assert.deepStrictEqual(entries("work_mem = '1.5GB'\n"), [["work_mem", "1.5GB", 1]])
    })

    it("qualified custom names", () => {
      assert.deepStrictEqual(entries("worker_spi.naptime = 10s\nmy_ext.Some_Flag_2 on\n"), [
        ["worker_spi.naptime", "10s", 1],
        ["my_ext.Some_Flag_2", "on", 2]
      ])
      // two dots make an unquoted string, which is not a name
      assert.strictEqual(syntaxError("a.b.c = 1").token, "a.b.c")
      // guc-file.l's names have no "$" (unlike SQL identifiers)
      assert.strictEqual(syntaxError("my_ext.a$b = 1").token, "$")
      // names that are also properties of every JavaScript object are ordinary names
      assert.deepStrictEqual(entries("constructor = 1\ntoString = 2\n__proto__ = 3\n").map(([n]) => n), [
        "constructor",
        "toString",
        "__proto__"
      ])
    })

    it("a missing value is a syntax error naming file and line", () => {
      const withEquals = syntaxError("port = 5432\n\nwork_mem =\nfsync = off\n")
      assert.strictEqual(withEquals._tag, "ConfSyntaxError")
      assert.strictEqual(withEquals.file, file)
      assert.strictEqual(withEquals.line, 3)
      assert.strictEqual(withEquals.token, undefined)
      assert.strictEqual(withEquals.message, `syntax error in file "${file}" line 3, near end of line`)
      assert.strictEqual(syntaxError("port = 1\nwork_mem # comment\n").line, 2)
      // at the end of a file without a final newline (PostgreSQL would say line 1 here)
      assert.strictEqual(
        syntaxError("port = 1\nwork_mem =").message,
        `syntax error in file "${file}" line 2, near end of line`
      )
    })

    it("a stray token is a syntax error near that token", () => {
      const extra = syntaxError("port = 1\nport = 5432 5433\n")
      assert.strictEqual(extra.message, `syntax error in file "${file}" line 2, near token "5433"`)
      assert.strictEqual(extra.line, 2)
      assert.strictEqual(extra.token, "5433")
      assert.strictEqual(syntaxError("data_directory = /var/lib/pg\n").token, "/")
      assert.strictEqual(syntaxError("'port' = 1\n").token, "'port'")
      assert.strictEqual(syntaxError("a = 'unterminated\n").token, "'")
      assert.strictEqual(syntaxError("a = = 1\n").token, "=")
      assert.strictEqual(syntaxError("my-param = 1\n").token, "my-param")
      assert.strictEqual(syntaxError("a = 1e5\n").token, "5") // INTEGER "1e" (e is a unit letter), then "5"
      assert.strictEqual(syntaxError("a = 1;\n").token, ";")
    })

    it("an unquoted ident.ident value is a syntax error, as in PostgreSQL (QUALIFIED_ID is not a value)", () => {
      assert.strictEqual(
        syntaxError("log_filename = server.log\n").message,
        `syntax error in file "${file}" line 1, near token "server.log"`
      )
      assert.deepStrictEqual(entries("a = 'server.log'\nb = server.log.1\n"), [
        ["a", "server.log", 1],
        ["b", "server.log.1", 2]
      ])
    })

    it("CRLF line ends and a last line without newline are read with the right line numbers", () => {
      assert.deepStrictEqual(entries("a = 1\r\n\r\nb = 'x'\r\nc = 3"), [["a", "1", 1], ["b", "x", 3], ["c", "3", 4]])
    })

    it("include directives are recognised in any letter case and returned unexpanded", () => {
      const text = "include 'a.conf'\nINCLUDE_IF_EXISTS = 'b.conf'\nInclude_Dir 'conf.d'\n"
      const result = ConfFile.parseConfText(text, file)
      assert.isTrue(result.ok)
      if (result.ok) {
        assert.deepStrictEqual(result.items, [
          { _tag: "include", kind: "include", target: "a.conf", file, line: 1 },
          { _tag: "include", kind: "include_if_exists", target: "b.conf", file, line: 2 },
          { _tag: "include", kind: "include_dir", target: "conf.d", file, line: 3 }
        ])
      }
    })
  })

  describe("includes", () => {
    it.effect("include is relative to the including file", () =>
      withNode(Effect.gen(function*() {
        const dir = yield* tree({
          "main.conf": "a = 1\ninclude 'sub/one.conf'\n",
          "sub/one.conf": "b = 2\ninclude 'two.conf'\n",
          "sub/two.conf": "c = 3\n",
          "two.conf": "wrong = 1\n"
        })
        const path = yield* Path.Path
        const result = yield* ConfFile.readConfFile(path.join(dir, "main.conf"))
        assert.deepStrictEqual(result, [
          { name: "a", value: "1", file: path.join(dir, "main.conf"), line: 1 },
          { name: "b", value: "2", file: path.join(dir, "sub/one.conf"), line: 1 },
          { name: "c", value: "3", file: path.join(dir, "sub/two.conf"), line: 1 }
        ])
      })))

    it.effect("include_if_exists skips a missing file", () =>
      withNode(Effect.gen(function*() {
        const dir = yield* tree({ "main.conf": "a = 1\ninclude_if_exists 'nope.conf'\nb = 2\n" })
        const path = yield* Path.Path
        const result = yield* ConfFile.readConfFile(path.join(dir, "main.conf"))
        assert.deepStrictEqual(pairs(result), [["a", "1"], ["b", "2"]])
      })))

    it.effect("include of a missing file is an error naming it", () =>
      withNode(Effect.gen(function*() {
        const dir = yield* tree({ "main.conf": "a = 1\n\ninclude 'nope.conf'\n" })
        const path = yield* Path.Path
        const error = yield* Effect.flip(ConfFile.readConfFile(path.join(dir, "main.conf")))
        assert.strictEqual(error._tag, "ConfFileError")
        if (error._tag !== "ConfFileError") return
        const missing = path.join(dir, "nope.conf")
        assert.strictEqual(error.message, `could not open configuration file "${missing}": No such file or directory`)
        assert.strictEqual(error.file, missing)
        assert.strictEqual(error.reason, "NotFound")
        assert.strictEqual(error.includedFrom, path.join(dir, "main.conf"))
        assert.strictEqual(error.line, 3)
      })))

    it.effect("include_dir reads *.conf in name order and skips dotfiles", () =>
      withNode(Effect.gen(function*() {
        const dir = yield* tree({
          "main.conf": "include_dir 'conf.d'\nlast = 1\n",
          "conf.d/20-b.conf": "b = 20\n",
          "conf.d/10-a.conf": "a = 10\n",
          "conf.d/B.conf": "upper = 1\n",
          "conf.d/.hidden.conf": "hidden = 1\n",
          "conf.d/.conf": "dot = 1\n",
          "conf.d/notes.txt": "txt = 1\n",
          "conf.d/old.conf.bak": "bak = 1\n",
          "conf.d/sub.conf/x.conf": "nested = 1\n" // a directory named *.conf is not read
        })
        const path = yield* Path.Path
        assert.deepStrictEqual(pairs(yield* ConfFile.readConfFile(path.join(dir, "main.conf"))), [
          ["a", "10"],
          ["b", "20"],
          ["upper", "1"],
          ["last", "1"]
        ])
      })))

    it.effect("include_dir of a missing directory is an error naming it", () =>
      withNode(Effect.gen(function*() {
        const dir = yield* tree({ "main.conf": "include_dir 'conf.d'\n" })
        const path = yield* Path.Path
        const error = yield* Effect.flip(ConfFile.readConfFile(path.join(dir, "main.conf")))
        assert.strictEqual(
          error.message,
          `could not open configuration directory "${path.join(dir, "conf.d")}": No such file or directory`
        )
      })))

    it.effect("nesting deeper than 10 is an error", () =>
      withNode(Effect.gen(function*() {
        const path = yield* Path.Path
        // f0 includes f1 ... includes f<last>: f0 is depth 0, so f10 is the deepest file PostgreSQL accepts
        const chain = (last: number) => {
          const files: Record<string, string> = {}
          for (let i = 0; i <= last; i++) {
            files[`f${i}.conf`] = `v${i} = ${i}\n` + (i < last ? `include 'f${i + 1}.conf'\n` : "")
          }
          return tree(files)
        }
        const ok = yield* chain(10)
        assert.strictEqual((yield* ConfFile.readConfFile(path.join(ok, "f0.conf"))).length, 11)
        const deep = yield* chain(11)
        const error = yield* Effect.flip(ConfFile.readConfFile(path.join(deep, "f0.conf")))
        assert.strictEqual(
          error.message,
          `could not open configuration file "${path.join(deep, "f11.conf")}": maximum nesting depth exceeded`
        )
        assert.strictEqual(error._tag === "ConfFileError" ? error.reason : "", "NestingDepthExceeded")
        // a loop through two files ends the same way
        const loop = yield* tree({ "a.conf": "include 'b.conf'\n", "b.conf": "include 'a.conf'\n" })
        const loopError = yield* Effect.flip(ConfFile.readConfFile(path.join(loop, "a.conf")))
        assert.match(loopError.message, /maximum nesting depth exceeded$/)
      })))

    it.effect("a file that includes itself is a recursion error", () =>
      withNode(Effect.gen(function*() {
        const dir = yield* tree({ "main.conf": "include './main.conf'\n" })
        const path = yield* Path.Path
        const error = yield* Effect.flip(ConfFile.readConfFile(path.join(dir, "main.conf")))
        assert.strictEqual(error.message, `configuration file recursion in "${path.join(dir, "main.conf")}"`)
      })))

    it.effect("entries come back in file order across includes (so the last wins for the caller)", () =>
      withNode(Effect.gen(function*() {
        const dir = yield* tree({
          "main.conf":
            "x = main1\ninclude 'a.conf'\ny = main2\ninclude_dir 'd'\nx = main3\ninclude_if_exists 'b.conf'\n",
          "a.conf": "x = a\ny = a\n",
          "d/1.conf": "y = d1\n",
          "d/2.conf": "x = d2\n",
          "b.conf": "x = b\n"
        })
        const path = yield* Path.Path
        const result = yield* ConfFile.readConfFile(path.join(dir, "main.conf"))
        assert.deepStrictEqual(pairs(result), [
          ["x", "main1"],
          ["x", "a"],
          ["y", "a"],
          ["y", "main2"],
          ["y", "d1"],
          ["x", "d2"],
          ["x", "main3"],
          ["x", "b"]
        ])
        const lastWins = new Map(result.map((e) => [e.name, e.value]))
        assert.deepStrictEqual([...lastWins], [["x", "b"], ["y", "d1"]])
      })))

    it.effect("a syntax error in an included file names that file and line", () =>
      withNode(Effect.gen(function*() {
        const dir = yield* tree({ "main.conf": "a = 1\ninclude 'bad.conf'\n", "bad.conf": "b = 2\nc = 3 4\n" })
        const path = yield* Path.Path
        const error = yield* Effect.flip(ConfFile.readConfFile(path.join(dir, "main.conf")))
        assert.strictEqual(error._tag, "ConfSyntaxError")
        assert.strictEqual(error.message, `syntax error in file "${path.join(dir, "bad.conf")}" line 2, near token "4"`)
      })))

    it.effect("errors come in reading order: an include before a syntax error is reported first", () =>
      withNode(Effect.gen(function*() {
        const dir = yield* tree({ "main.conf": "include 'nope.conf'\nbad line here\n" })
        const path = yield* Path.Path
        const error = yield* Effect.flip(ConfFile.readConfFile(path.join(dir, "main.conf")))
        assert.strictEqual(error._tag, "ConfFileError")
      })))

    it.effect("missingOk makes a missing top-level file read as empty; without it the file is an error", () =>
      withNode(Effect.gen(function*() {
        const dir = yield* tree({})
        const path = yield* Path.Path
        const auto = path.join(dir, "postgresql.auto.conf")
        assert.deepStrictEqual(yield* ConfFile.readConfFile(auto, { missingOk: true }), [])
        const error = yield* Effect.flip(ConfFile.readConfFile(auto))
        assert.strictEqual(error.message, `could not open configuration file "${auto}": No such file or directory`)
      })))
  })

  describe("postgresql.auto.conf", () => {
    it("formatAutoConf writes PostgreSQL's header and one quoted setting per line", () => {
      assert.strictEqual(
        ConfFile.formatAutoConf([
          { name: "work_mem", value: "64MB" },
          { name: "search_path", value: "'$user', public" }
        ]),
        "# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\n" +
          "work_mem = '64MB'\nsearch_path = '''$user'', public'\n"
      )
      assert.strictEqual(ConfFile.quoteValue("a\\b'c\nd"), "'a\\\\b''c\\nd'")
    })

    it.effect("writeAutoConf then readConfFile round-trips values containing quotes, backslashes and newlines", () =>
      withNode(Effect.gen(function*() {
        const fs = yield* FileSystem.FileSystem
        const path = yield* Path.Path
        const auto = path.join(yield* tree({}), "postgresql.auto.conf")
        const values = [
          { name: "a", value: "it's" },
          { name: "b", value: "C:\\path\\to\\file" },
          { name: "c", value: "line one\nline two\r\n" },
          { name: "d", value: "\\n is not a newline, ''" },
          { name: "ext.e", value: "# not a comment \t caf\u00e9 \u{1F600}" },
          { name: "f", value: "" }
        ]
        yield* ConfFile.writeAutoConf(auto, values)
        const back = yield* ConfFile.readConfFile(auto)
        assert.deepStrictEqual(back.map(({ name, value }) => ({ name, value })), values)
        assert.deepStrictEqual(back.map((e) => e.line), [3, 4, 5, 6, 7, 8])
        assert.isFalse(yield* fs.exists(`${auto}.tmp`))
      })))

    it.effect("writeAutoConf replaces atomically (the previous content stays if the write fails)", () =>
      withNode(Effect.gen(function*() {
        const fs = yield* FileSystem.FileSystem
        const path = yield* Path.Path
        const dir = yield* tree({})
        const auto = path.join(dir, "postgresql.auto.conf")
        yield* ConfFile.writeAutoConf(auto, [{ name: "a", value: "old" }])
        const before = yield* fs.readFileString(auto)
        // the temporary file cannot be created: a directory stands in its way
        yield* fs.makeDirectory(`${auto}.tmp`)
        const blocked = yield* Effect.flip(ConfFile.writeAutoConf(auto, [{ name: "a", value: "new" }]))
        assert.strictEqual(blocked._tag, "ConfFileError")
        assert.match(blocked.message, /^could not open file ".*postgresql\.auto\.conf\.tmp": /)
        assert.strictEqual(yield* fs.readFileString(auto), before)
        assert.deepStrictEqual(pairs(yield* ConfFile.readConfFile(auto)), [["a", "old"]])
        // the directory is missing altogether
        const missing = path.join(dir, "missing", "postgresql.auto.conf")
        const error = yield* Effect.flip(ConfFile.writeAutoConf(missing, [{ name: "a", value: "x" }]))
        assert.strictEqual(error.message, `could not open file "${missing}.tmp": No such file or directory`)
        assert.strictEqual(error.reason, "NotFound")
        assert.isFalse(yield* fs.exists(path.join(dir, "missing")))
      })))
  })

  describe("properties", () => {
    /** PROPERTY_RUNS=n (default 100) for a longer search. */
    const runs = Number(process.env.PROPERTY_RUNS ?? 100)
    /** Parameter names: identifiers, optionally qualified (custom parameters). */
    const Name = Schema.String.check(Schema.isPattern(/^[A-Za-z_][A-Za-z0-9_]{0,12}(\.[A-Za-z_][A-Za-z0-9_]{0,12})?$/))
    const isDirective = (name: string) => /^include(_if_exists|_dir)?$/i.test(name)
    /** A UTF-8 file cannot hold a lone surrogate: TextEncoder writes U+FFFD for it. */
    const wellFormed = (s: string) =>
      s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, "\uFFFD")

    it.effect.prop(
      "for any map of names to strings, readConfFile(writeAutoConf(m)) gives back the same names and values",
      [Schema.Record(Name, Schema.String)],
      ([m]) =>
        withNode(Effect.gen(function*() {
          const path = yield* Path.Path
          const auto = path.join(yield* tree({}), "postgresql.auto.conf")
          const written = Object.entries(m).filter(([name]) => !isDirective(name)).map(([name, value]) => ({
            name,
            value: wellFormed(value)
          }))
          yield* ConfFile.writeAutoConf(auto, written)
          const back = yield* ConfFile.readConfFile(auto)
          assert.deepStrictEqual(back.map(({ name, value }) => ({ name, value })), written)
        })),
      { arbitrary: { runs } }
    )

    it.prop(
      "for any string, parsing `x = quoteValue(s)` gives back s",
      [Schema.String],
      ([s]) => {
        assert.deepStrictEqual(entries(`x = ${ConfFile.quoteValue(s)}`), [["x", s, 1]])
      },
      { arbitrary: { runs: runs * 5 } }
    )
  })
})
