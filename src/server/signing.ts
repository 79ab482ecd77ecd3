import { Code, ConnectError, type ContextValues } from "@connectrpc/connect";
import { assertByteStreamRequest, createAsyncIterable, type UniversalHandler } from "@connectrpc/connect/protocol";
import { readBody, signature, signatureHeader, signatureMatches } from "../shared/signing.js";
import { wrapHandler } from "./wrap-handler.js";

/**
 * Checks the signatures of signed calls (src/shared/signing.ts) and signs their answers. The front
 * door has refused calls without a signature before reading them; here, the body is read whole (at
 * most the procedure's size limit, the most Connect itself would read) and checked before a byte
 * of it reaches Connect, so a body with a wrong signature is never decoded. A refusal is thrown
 * from the body, so that Connect answers it in the caller's protocol; every answer, refusals
 * included, is then signed over its body as sent.
 *
 * gRPC and gRPC-Web are signed like the rest: the body is their frames, as they travel. The
 * signed calls are unary, so both bodies are small and whole before anything is sent, and the
 * answer's signature can go in its headers.
 */
export class RequestSigning {
  constructor(
    private readonly key: Buffer,
    /** Told of each wrong signature, with the call's context (the front door charges the client's failed authentications). */
    private readonly onWrongSignature: (values: ContextValues | undefined) => void,
  ) {}

  /** The hex signature of a body, for answers written outside Connect (the front door's refusals, Twirp's errors). */
  sign(body: Uint8Array): string {
    return signature(this.key, [body]);
  }

  /** `handler`, for a signed procedure taking at most `limit` bytes of body. */
  handler(handler: UniversalHandler, limit: number): UniversalHandler {
    const procedure = `${handler.service.typeName}/${handler.method.name}`;
    return wrapHandler(handler, async (req) => {
      assertByteStreamRequest(req);
      const checked = this.checked(
        req.body,
        req.header.get(signatureHeader),
        {
          bytes: limit,
          tooLarge: () => new ConnectError(`the request body is over ${limit} bytes, the most ${procedure} takes`, Code.ResourceExhausted),
        },
        () => this.onWrongSignature(req.contextValues),
      );
      const res = await handler({ ...req, body: checked });
      const body = res.body ? await readBody(res.body) : [];
      const header = new Headers(res.header);
      header.set(signatureHeader, signature(this.key, body));
      return { ...res, header, body: createAsyncIterable(body) };
    });
  }

  /** The request body once all of it is read and its signature found right; nothing of it before. */
  private async *checked(
    body: AsyncIterable<Uint8Array>,
    header: string | null,
    limit: Parameters<typeof readBody>[1],
    wrong: () => void,
  ): AsyncIterable<Uint8Array> {
    const chunks = await readBody(body, limit);
    if (!signatureMatches(this.key, chunks, header)) {
      wrong();
      throw new ConnectError(
        `the ${signatureHeader} header is not the signature of the request body with the daemon's signing key`,
        Code.Unauthenticated,
      );
    }
    yield* chunks;
  }
}
