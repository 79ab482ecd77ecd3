/** A storage problem at start-up, reported as one line that says what to check. */
export class StorageError extends Error {
  override name = "StorageError";
}

// SQLSTATE classes and codes that mean "the database is away or overloaded, try again".
const retryableStates = new Set(["57P01", "57P02", "57P03", "53300", "53400", "40001", "40P01", "55P03", "57014"]);
const retryableErrnos = new Set(["ECONNREFUSED", "ECONNRESET", "ENOENT", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENOTFOUND", "EAI_AGAIN"]);

/** Whether a pg error means the database is unreachable or overloaded, rather than a bug. */
export function isUnavailable(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | undefined;
  if (!e) return false;
  if (e.code && (retryableStates.has(e.code) || e.code.startsWith("08") || retryableErrnos.has(e.code))) return true;
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|connection is closed|the database system is/i.test(
    e.message ?? "",
  );
}
