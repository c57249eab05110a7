/**
 * Operating-system errors (`ECONNREFUSED`, ...) as libpq prints them: in `strerror`'s words. Shared by
 * NodeSupervisor's failure report and the CLI's.
 */

/** `strerror`'s words for the errors a connection fails with. */
const systemErrors: Readonly<Record<string, string>> = {
  ECONNREFUSED: "Connection refused",
  ECONNRESET: "Connection reset by peer",
  ETIMEDOUT: "Connection timed out",
  EHOSTUNREACH: "No route to host",
  ENETUNREACH: "Network is unreachable",
  EADDRNOTAVAIL: "Cannot assign requested address",
  ENOENT: "No such file or directory",
  EACCES: "Permission denied",
  ENOTFOUND: "Name or service not known",
  EAI_AGAIN: "Temporary failure in name resolution"
}

/** The fields of Node's system error that a connection failure carries. */
export interface SystemError {
  readonly code: string
  readonly syscall?: string
  readonly address?: string
  readonly port?: number
  readonly hostname?: string
  readonly message: string
}

/** `value` as a system error; of several addresses tried (happy eyeballs), the first speaks for them. */
export const asSystemError = (value: unknown): SystemError | undefined => {
  if (typeof value !== "object" || value === null) return undefined
  const e = value as Partial<SystemError> & { readonly errors?: unknown }
  if (Array.isArray(e.errors) && e.errors.length > 0) return asSystemError(e.errors[0]) ?? undefined
  return typeof e.code === "string" && typeof e.syscall === "string" ? e as SystemError : undefined
}

/** The error in `strerror`'s words (`Connection refused`), else Node's message. */
export const strerror = (e: SystemError): string => systemErrors[e.code] ?? e.message
