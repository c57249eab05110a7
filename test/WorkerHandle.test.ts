/**
 * WorkerHandle: the text form a handle takes in logs and in the SQL control plane, and the four statuses.
 */
import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import * as Handle from "../src/WorkerHandle.ts"

const Slot = Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 999_999_999 }))
/** Up to 15 digits: what `parse` reads exactly (a JavaScript number holds 15 decimal digits without loss). */
const Generation = Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 999_999_999_999_999 }))

describe("WorkerHandle", () => {
  it.prop(
    "parse reads back every handle format writes",
    [Slot, Generation],
    ([slot, generation]) => {
      const handle = Handle.make(slot, generation)
      assert.deepStrictEqual(Handle.parse(Handle.format(handle)), handle)
    }
  )

  it.prop("format writes slot and generation as \"slot:generation\"", [Slot, Generation], ([slot, generation]) => {
    assert.strictEqual(Handle.format(Handle.make(slot, generation)), `${slot}:${generation}`)
  })

  it.prop(
    "whatever text parse accepts, formatting its handle and parsing again gives the same handle",
    [Schema.String],
    ([text]) => {
      const parsed = Handle.parse(text)
      if (parsed !== undefined) assert.deepStrictEqual(Handle.parse(Handle.format(parsed)), parsed)
    }
  )

  it("parse refuses negative numbers, signs, spaces, missing parts and numbers too long to be exact", () => {
    for (
      const text of [
        "",
        "1",
        ":1",
        "1:",
        "-1:2",
        "1:-2",
        "+1:2",
        " 1:2",
        "1:2 ",
        "1.5:2",
        "1:2:3",
        "a:b",
        "1234567890:1",
        "1:1234567890123456"
      ]
    ) {
      assert.isUndefined(Handle.parse(text), text)
    }
  })

  it("the statuses are PostgreSQL's four answers, and only Started carries a pid", () => {
    assert.deepStrictEqual(
      [Handle.NotYetStarted, Handle.Started(7), Handle.Stopped, Handle.PostmasterDied],
      [{ _tag: "NotYetStarted" }, { _tag: "Started", pid: 7 }, { _tag: "Stopped" }, { _tag: "PostmasterDied" }]
    )
  })
})
