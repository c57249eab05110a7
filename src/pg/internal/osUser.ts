/**
 * The OS user an embedded server runs as. PostgreSQL refuses to run as root ("root" execution of the
 * PostgreSQL server is not permitted, src/backend/main/main.c): when this process is root, `initdb` and
 * `postgres` run as another user, `postgres` by default, created as a system user when missing.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as childProcess from "node:child_process"
import * as fsCallback from "node:fs"
import * as os from "node:os"
import { EmbeddedPostgresError } from "./embeddedError.ts"
import { type Owner, runToCompletion } from "./processes.ts"

/** Finds `name` in a passwd(5) text. */
const findInPasswd = (name: string, passwd: string): Option.Option<Owner> => {
  for (const line of passwd.split("\n")) {
    const fields = line.trim().split(":")
    const uid = Number(fields[2])
    const gid = Number(fields[3])
    if (fields[0] === name && fields[2] !== "" && Number.isInteger(uid) && Number.isInteger(gid)) {
      return Option.some({ name, uid, gid })
    }
  }
  return Option.none()
}

/** `getent passwd <name>` (which sees every user database), or /etc/passwd where getent is missing. */
const lookupUser = (name: string): Effect.Effect<Option.Option<Owner>> =>
  Effect.callback<Option.Option<Owner>>((resume) => {
    childProcess.execFile("getent", ["passwd", name], (error, stdout) => {
      if (error === null || error.code !== "ENOENT") return resume(Effect.succeed(findInPasswd(name, stdout)))
      fsCallback.readFile(
        "/etc/passwd",
        "utf8",
        (readError, passwd) => resume(Effect.succeed(readError === null ? findInPasswd(name, passwd) : Option.none()))
      )
    })
  })

/**
 * The OS user to run PostgreSQL as: `undefined` (this process's user) unless this process is root, in which
 * case `name`, created as a system user when missing. Two processes may race to create it; the loser finds it.
 */
export const resolveOwner: (name: string) => Effect.Effect<Owner | undefined, EmbeddedPostgresError> = Effect
  .fnUntraced(function*(name: string) {
    if (process.getuid?.() !== 0) return undefined
    const existing = yield* lookupUser(name)
    if (Option.isSome(existing)) return existing.value
    const created = yield* runToCompletion(
      "user",
      "useradd",
      [
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        name
      ],
      { cwd: os.tmpdir(), owner: undefined, timeout: Duration.seconds(30) }
    ).pipe(Effect.result)
    const found = yield* lookupUser(name)
    if (Option.isSome(found)) return found.value
    return yield* new EmbeddedPostgresError({
      step: "user",
      detail: `PostgreSQL cannot run as root, and the OS user "${name}" could not be created`,
      log: created._tag === "Failure" ? created.failure.log : "",
      hint: `Create it yourself (useradd --system ${name}), or run as another user.`
    })
  })
