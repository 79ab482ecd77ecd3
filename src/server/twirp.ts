import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import { signatureHeader } from "../shared/signing.js";
import type { NodeHandler } from "./listener.js";

/**
 * Specta's existing clients speak Twirp at the same paths: unary POSTs of JSON or of binary
 * protobuf as `application/protobuf`, reading errors as `{"code", "msg"}`. Connect's unary
 * protocol is the same apart from those two names, so a request without the
 * Connect-Protocol-Version header gets them translated (the `/twirp` path prefix is accepted too).
 * A signed answer's translated error is signed again with `sign` (signing.ts).
 */
export function twirpCompatible(next: NodeHandler, sign?: (body: Uint8Array) => string): NodeHandler {
  return (req, res) => {
    const headers = req.headers as IncomingHttpHeaders;
    const contentType = headers["content-type"] ?? "";
    const binary = /^application\/protobuf\s*(;|$)/i.test(contentType);
    const json = /^application\/json\s*(;|$)/i.test(contentType);
    if (req.method !== "POST" || headers["connect-protocol-version"] !== undefined || (!binary && !json)) {
      next(req, res);
      return;
    }
    if (req.url?.startsWith("/twirp/")) req.url = req.url.slice("/twirp".length);
    if (binary) headers["content-type"] = "application/proto";

    // Connect answers a unary call with writeHead, then write/end of the whole body.
    const response = res as unknown as {
      writeHead(status: number, headers?: OutgoingHttpHeaders): unknown;
      write(chunk: Uint8Array | string): boolean;
      end(chunk?: Uint8Array | string | (() => void)): unknown;
    };
    const writeHead = response.writeHead.bind(response);
    const write = response.write.bind(response);
    const end = response.end.bind(response);
    let status = 200;
    let head: OutgoingHttpHeaders = {};
    const errorBody: Uint8Array[] = [];
    response.writeHead = (s, h = {}) => {
      status = s;
      head = { ...h };
      if (typeof head["content-type"] === "string") {
        head["content-type"] = head["content-type"].replace(/^application\/proto\b/, "application/protobuf");
      }
      if (status === 200) return writeHead(status, head);
      delete head["content-length"];
      return response;
    };
    response.write = (chunk) => {
      if (status === 200) return write(chunk);
      errorBody.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
      return true;
    };
    response.end = (chunk) => {
      if (status === 200) return end(chunk as Uint8Array);
      if (typeof chunk === "string") errorBody.push(Buffer.from(chunk));
      else if (chunk instanceof Uint8Array) errorBody.push(chunk);
      const text = Buffer.concat(errorBody).toString("utf8");
      // connect-es answers a unary-style call of a streaming method 415 with no body at all.
      const streaming = status === 415 && text === "";
      if (streaming) status = 400;
      const body = Buffer.from(streaming ? streamingMethodError(req.url ?? "") : withTwirpMessage(text));
      const signed = signatureHeader.toLowerCase();
      if (sign && head[signed] !== undefined) head[signed] = sign(body);
      // HTTP/2's end(body) writes through this.write: the originals must be back, or the body is swallowed.
      Object.assign(response, { writeHead, write, end });
      writeHead(status, { ...head, "content-type": "application/json", "content-length": body.length });
      return end(body);
    };
    next(req, res);
  };
}

function withTwirpMessage(text: string): string {
  try {
    const error = JSON.parse(text) as { code?: string; message?: string };
    // Twirp names an unknown method bad_route.
    const code = error.code === "not_found" && /^no route for/.test(error.message ?? "") ? "bad_route" : (error.code ?? "internal");
    return JSON.stringify({ code, msg: error.message ?? "", message: error.message ?? "" });
  } catch {
    return JSON.stringify({ code: "internal", msg: text });
  }
}

/**
 * The error for a plain JSON or protobuf POST (Twirp's and Connect's unary form) of a streaming
 * method such as commands.API/Watch: the caller's mistake, so invalid_argument, naming the forms
 * that work.
 */
function streamingMethodError(path: string): string {
  const method = path.replace(/^\/+/, "").split("?")[0];
  const message =
    `${method} is a streaming method, which plain application/json or application/protobuf cannot call: ` +
    "send Content-Type application/connect+json with the request in a Connect envelope (5-byte prefix), " +
    "or call it over gRPC or gRPC-Web, or use the CLI (specta run watches its command to the end)";
  return JSON.stringify({ code: "invalid_argument", msg: message, message });
}
