/**
 * Escaping of outside text before it reaches a log line (src/internal/logText.ts): whatever a string from
 * SQL or another process holds, it prints as one line, and printable text is left as it is.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Schema from "effect/Schema"
import { escape, escapeBounded } from "../src/internal/logText.ts"

const control = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/

describe("logText.escape", () => {
  it("writes newlines, carriage returns, tabs, escape sequences and separators as escapes", () => {
    assert.strictEqual(
      escape("nolib\n04:06:59.000 INFO  [Supervisor] FORGED\r\t\u001b[31m\u2028"),
      "nolib\\n04:06:59.000 INFO  [Supervisor] FORGED\\r\\t\\x1b[31m\\u2028"
    )
  })

  it("leaves printable text, quotes and backslashes alone", () => {
    assert.strictEqual(escape(`worker "a\\b" é 日本`), `worker "a\\b" é 日本`)
  })

  it("bounds text of any size, and says it cut it", () => {
    assert.strictEqual(escapeBounded("x".repeat(10), 4), "xxxx...")
  })

  it.prop(
    "no escaped string holds a control character, and printable strings are unchanged",
    [Schema.String],
    ([text]) => {
      const escaped = escape(text)
      assert.isFalse(control.test(escaped))
      if (!control.test(text)) assert.strictEqual(escaped, text)
    }
  )
})
