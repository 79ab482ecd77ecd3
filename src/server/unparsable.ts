import { Code, ConnectError } from "@connectrpc/connect";
import { createAsyncIterable, encodeEnvelope, type UniversalHandler, type UniversalServerResponse } from "@connectrpc/connect/protocol";
import {
  codeToHttpStatus,
  endStreamFlag,
  endStreamFromJson,
  endStreamToJson,
  errorFromJsonBytes,
  errorToJsonBytes,
} from "@connectrpc/connect/protocol-connect";
import { findTrailerError, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerParse, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";
import { readBody } from "../shared/signing.js";
import { wrapHandler } from "./wrap-handler.js";

/**
 * How connect-es 2.1.2 words a request body that is not valid protobuf binary (the server parses
 * no other binary): createBinarySerialization in protocol/serialization.js throws it with
 * Code.Internal, while reading the request, before any interceptor runs.
 */
const parseBinaryPrefix = "parse binary: ";

/**
 * A body that does not parse is the caller's mistake: InvalidArgument, as a JSON body that does
 * not parse already is. connect-es answers it Internal, which tells clients to retry (the agent
 * would resend such a batch for ever), and offers no option to change that (binaryOptions holds
 * only readUnknownFields and recursionLimit). This wrapper rewrites that one error, and nothing
 * else, in the answer of `handler`, in each protocol's own form: Connect unary's status and JSON
 * body (Twirp's too, which twirp.ts then translates), gRPC's trailers, gRPC-Web's trailer frame and
 * Connect streaming's end-of-stream message.
 */
export function unparsableAsInvalidArgument(handler: UniversalHandler): UniversalHandler {
  const retype = (error: ConnectError): ConnectError | undefined =>
    error.code === Code.Internal && error.rawMessage.startsWith(parseBinaryPrefix)
      ? new ConnectError(
          `the request is not a valid ${handler.method.input.typeName} in protobuf binary: ${error.rawMessage.slice(parseBinaryPrefix.length)}`,
          Code.InvalidArgument,
          error.metadata,
        )
      : undefined;
  return wrapHandler(handler, async (req) => {
    const res = await handler(req);
    const contentType = res.header?.get("content-type") ?? "";
    if (!res.body) return res;
    if (/^application\/grpc-web/.test(contentType))
      return { ...res, body: mapLastFrame(res.body, trailerFlag, (data) => grpcWebTrailer(data, retype)) };
    if (/^application\/grpc/.test(contentType)) return { ...res, body: afterAll(res.body, () => res.trailer && grpcTrailer(res.trailer, retype)) };
    if (/^application\/connect\+/.test(contentType))
      return { ...res, body: mapLastFrame(res.body, endStreamFlag, (data) => connectEndStream(data, retype)) };
    if (res.status === codeToHttpStatus(Code.Internal) && contentType === "application/json" && !res.header?.has("content-encoding")) {
      return connectUnary(res, res.body, retype);
    }
    return res;
  });
}

type Retype = (error: ConnectError) => ConnectError | undefined;

/** Connect unary (and Twirp): the error is the whole body, small and uncompressed. */
async function connectUnary(res: UniversalServerResponse, body: AsyncIterable<Uint8Array>, retype: Retype): Promise<UniversalServerResponse> {
  const bytes = Buffer.concat(await readBody(body));
  const error = retype(errorFromJsonBytes(bytes, undefined, new ConnectError("", Code.Unknown)));
  if (!error) return { ...res, body: createAsyncIterable([bytes]) };
  const json = errorToJsonBytes(error, undefined);
  const header = new Headers(res.header);
  header.set("content-length", String(json.byteLength));
  return { ...res, status: codeToHttpStatus(error.code), header, body: createAsyncIterable([json]) };
}

/** gRPC: the status is in the trailers, which the adapter writes once the body is done. */
function grpcTrailer(trailer: Headers, retype: Retype): void {
  const found = findTrailerError(trailer);
  const error = found && retype(found);
  if (error) setTrailerStatus(trailer, error);
}

/** gRPC-Web: the trailers are the body's last frame. */
function grpcWebTrailer(data: Uint8Array, retype: Retype): Uint8Array | undefined {
  const trailer = trailerParse(data);
  const found = findTrailerError(trailer);
  const error = found && retype(found);
  return error && trailerSerialize(setTrailerStatus(trailer, error));
}

/** Connect streaming: the error is in the end-of-stream message, the body's last frame. */
function connectEndStream(data: Uint8Array, retype: Retype): Uint8Array | undefined {
  const end = endStreamFromJson(data);
  const error = end.error && retype(end.error);
  return error && new TextEncoder().encode(JSON.stringify(endStreamToJson(end.metadata, error, undefined)));
}

/**
 * The body with each frame of exactly `flags` (uncompressed: the protocols' final frames, which
 * connect-es yields as chunks of their own) replaced by `map(data)`, when that gives anything.
 */
async function* mapLastFrame(
  body: AsyncIterable<Uint8Array>,
  flags: number,
  map: (data: Uint8Array) => Uint8Array | undefined,
): AsyncIterable<Uint8Array> {
  for await (const chunk of body) {
    const replaced = chunk[0] === flags ? map(chunk.subarray(5)) : undefined;
    yield replaced ? encodeEnvelope(flags, replaced) : chunk;
  }
}

async function* afterAll(body: AsyncIterable<Uint8Array>, then: () => void): AsyncIterable<Uint8Array> {
  yield* body;
  then();
}
