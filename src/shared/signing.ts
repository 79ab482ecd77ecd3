/**
 * Request signing for deployments without TLS, as Golectra does it: with a key shared by the daemon
 * and its clients, a signed call carries `HashSHA256: <hex HMAC-SHA256 of the body>`, the body's
 * bytes as they travel (compressed if compressed; for gRPC and gRPC-Web its length-prefixed
 * frames), and the daemon signs its answer's body the same way. It proves who wrote a body and
 * that it was not changed; it is no encryption, says nothing of freshness (a recorded call can be
 * sent again: Push is idempotent, an instrument call is counted again), and leaves the HTTP status
 * and gRPC's trailers out.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { Readable } from "node:stream";

/** The header of a body's signature (Node and fetch see it lowercased). */
export const signatureHeader = "HashSHA256";

/** The calls that carry a signature when a key is configured: the instrument calls and Push. */
export const signedProcedures: ReadonlySet<string> = new Set([
  "metrics.API/Counter",
  "metrics.API/Gauge",
  "metrics.API/Histogram",
  "metrics.API/Push",
]);

/** A signing key file that cannot be used, said in one line. */
export class SigningKeyError extends Error {
  override name = "SigningKeyError";
}

/** Shorter keys are refused: the key is all that stands between a caller and a forged body. */
const minKeyLength = 16;

/**
 * The key of a key file: its contents without surrounding white space (so that `openssl rand -hex
 * 32 > signing.key` and `$(cat signing.key)` name the same key), at least 16 characters.
 */
export function readSigningKey(file: string): Buffer {
  let text: string;
  try {
    text = readFileSync(file, "utf8").trim();
  } catch (err) {
    throw new SigningKeyError(`cannot read the signing key file ${file}: ${(err as Error).message}`);
  }
  if (text.length < minKeyLength)
    throw new SigningKeyError(`the signing key in ${file} must be at least ${minKeyLength} characters (e.g. openssl rand -hex 32)`);
  return Buffer.from(text, "utf8");
}

/** The hex HMAC-SHA256 of the bytes of `chunks`, in order. */
export function signature(key: Buffer, chunks: readonly Uint8Array[]): string {
  const hmac = createHmac("sha256", key);
  for (const chunk of chunks) hmac.update(chunk);
  return hmac.digest("hex");
}

/** Whether `header` is the signature of `chunks` (hex in either case; compared in constant time). */
export function signatureMatches(key: Buffer, chunks: readonly Uint8Array[], header: string | null | undefined): boolean {
  if (!header || !/^[0-9a-f]{64}$/i.test(header)) return false;
  return timingSafeEqual(Buffer.from(header.toLowerCase(), "hex"), Buffer.from(signature(key, chunks), "hex"));
}

/**
 * Reads all of `body`; with a `limit`, refuses (with its error) once the body holds more bytes. A
 * Node request is left open when the limit stops the reading (for-await would destroy it, and with
 * it the connection, before the refusal is answered).
 */
export async function readBody(body: AsyncIterable<Uint8Array>, limit?: { bytes: number; tooLarge: () => Error }): Promise<Uint8Array[]> {
  const source: AsyncIterable<Uint8Array> = body instanceof Readable ? body.iterator({ destroyOnReturn: false }) : body;
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  for await (const chunk of source) {
    bytes += chunk.byteLength;
    if (limit && bytes > limit.bytes) throw limit.tooLarge();
    chunks.push(chunk);
  }
  return chunks;
}
