/**
 * Escaping of text that comes from outside (SQL, another process) before it reaches a log line, a log
 * annotation or a worker's name: one log record must print as one line, whatever the text holds.
 *
 * @internal
 */

const named: Readonly<Record<string, string>> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" }

/** C0 and C1 control characters, DEL, and Unicode's line and paragraph separators. */
const controls = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g
/** The same class without the global flag: `test` on a global pattern keeps state between calls. */
const hasControl = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/

/**
 * `text` with every control character written as an escape: `\n`, `\r`, `\t`, `\xNN` (`\u2028` for the
 * Unicode separators). Printable text, quotes and backslashes are left as they are.
 */
export const escape = (text: string): string =>
  hasControl.test(text)
    ? text.replace(controls, (c) => {
      const known = named[c]
      if (known !== undefined) return known
      const code = c.charCodeAt(0)
      return code > 0xff ? `\\u${code.toString(16).padStart(4, "0")}` : `\\x${code.toString(16).padStart(2, "0")}`
    })
    : text

/** `escape`, and at most `max` characters of it (with `...` when cut): for text of unbounded size. */
export const escapeBounded = (text: string, max = 200): string => {
  const cut = text.length > max ? `${text.slice(0, max)}...` : text
  return escape(cut)
}
