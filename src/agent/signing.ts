import { Code, ConnectError } from "@connectrpc/connect";
import { createAsyncIterable, type UniversalClientFn } from "@connectrpc/connect/protocol";
import { readBody, signature, signatureHeader, signatureMatches, signedProcedures } from "../shared/signing.js";

/** The answers of signed calls are a few bytes per action or batch; a longer one is not read whole. */
export const maxAnswerBytes = 1024 * 1024;

/** An answer the agent cannot trust: kept as DataLoss, so the batch is sent again (Push is idempotent). */
export const unsignedAnswerError = () =>
  new ConnectError(`the daemon's answer does not carry its ${signatureHeader} signature with this agent's signing key`, Code.DataLoss);

/** An answer longer than any signed call's. */
export const answerTooLargeError = () => new ConnectError(`the daemon's answer is over ${maxAnswerBytes} bytes`, Code.DataLoss);

/**
 * `client`, signing the calls that the daemon wants signed (src/shared/signing.ts) with `key`: the
 * request body, as it is sent (compressed, framed for gRPC), gets its HashSHA256 header, and the
 * answer is taken only with the daemon's signature of its body. An answer without it, or with
 * another, is DataLoss: the agent keeps the batch and sends it again (Push is idempotent), as for
 * any answer it cannot trust.
 */
export function signingClient(client: UniversalClientFn, key: Buffer): UniversalClientFn {
  return async (req) => {
    if (!signedProcedures.has(new URL(req.url).pathname.slice(1))) return client(req);
    const body = req.body ? await readBody(req.body) : [];
    const header = new Headers(req.header);
    header.set(signatureHeader, signature(key, body));
    const res = await client({ ...req, header, body: createAsyncIterable(body) });
    const answer = await readBody(res.body, {
      bytes: maxAnswerBytes,
      tooLarge: answerTooLargeError,
    });
    if (!signatureMatches(key, answer, res.header.get(signatureHeader))) {
      throw unsignedAnswerError();
    }
    return { ...res, body: createAsyncIterable(answer) };
  };
}
