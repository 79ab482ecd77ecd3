/**
 * A request an ingest endpoint does not store, with the HTTP status that tells its sender what
 * to do: 400, 413 and 415 are the sender's to fix (remote-write and OTLP senders drop such a
 * batch rather than retry it), 503 asks for a retry (after `retry-after` when set).
 */
export class IngestRefusal extends Error {
  constructor(
    readonly status: 400 | 405 | 413 | 415 | 503,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}
