/**
 * Issue 10, item 2: the credential and the size limit of each RPC are checked before its body is
 * read, and refused in the caller's protocol (Connect, gRPC, gRPC-Web, Twirp, curl); no more than
 * the limit is read or decoded, compressed or not. The flood of 16 MiB bodies is in
 * test/front-door-flood.e2e.test.ts.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { compressionGzip, createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { connect as http2Connect } from "node:http2";
import { connect as netConnect } from "node:net";
import { request } from "node:http";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { API as CommandsAPI } from "../gen/commands/commands_pb.js";
import { API as MetricsAPI, PushRequestSchema } from "../gen/metrics/metrics_pb.js";
import { API as TokensAPI, Role } from "../gen/tokens/tokens_pb.js";
import { useDaemon } from "./support/daemon.js";
import { bearer, codeOf } from "./support/rpc.js";

const daemon = useDaemon({ env: { SPECTA_ENVIRONMENT: "testing" } });

const KiB = 1024;
/** An instrument call of about `bytes` bytes of JSON: far more than 100 actions, but refused for its size first. */
function histogramJson(bytes: number): string {
  const action = '{"metric":"page_ready_duration_seconds","number":1},';
  return `{"action":[${action.repeat(Math.ceil(bytes / action.length)).slice(0, -1)}]}`;
}
/** `count` actions: about 40 bytes each in protobuf binary. */
const manyActions = (count: number) => ({ action: Array.from({ length: count }, () => ({ metric: "page_ready_duration_seconds", number: 1 })) });

function post(path: string, body: string | Uint8Array, headers: Record<string, string>): Promise<Response> {
  return fetch(`${daemon().url}${path}`, { method: "POST", headers, body });
}

const grpc = (token?: string, options: Parameters<typeof createGrpcTransport>[0] = { baseUrl: "" }) =>
  createGrpcTransport({ ...options, baseUrl: daemon().url, interceptors: token ? [bearer(token)] : [] });

describe("an anonymous Push is refused before its body is read", () => {
  const batch = toBinary(PushRequestSchema, create(PushRequestSchema, { series: [] }));

  it("curl-style JSON and Twirp get 401 with Twirp's {code, msg}", async () => {
    for (const [contentType, body] of [
      ["application/json", '{"series":[]}'],
      ["application/protobuf", batch],
    ] as const) {
      const res = await post("/metrics.API/Push", body, { "Content-Type": contentType });
      expect(res.status).toBe(401);
      expect(await res.json()).toEqual({
        code: "unauthenticated",
        msg: expect.stringContaining("needs a credential"),
        message: expect.stringContaining("needs a credential"),
      });
    }
  });

  it("Connect JSON gets 401 with Connect's error body", async () => {
    const res = await post("/metrics.API/Push", '{"series":[]}', { "Content-Type": "application/json", "Connect-Protocol-Version": "1" });
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ code: "unauthenticated", message: expect.stringContaining("metrics.API/Push needs a credential") });
  });

  it("gRPC, gRPC-Web and Connect clients get Unauthenticated; a malformed header too, without a lookup", async () => {
    const url = daemon().url;
    expect(await codeOf(createClient(MetricsAPI, grpc()).push({}))).toBe(Code.Unauthenticated);
    expect(await codeOf(createClient(MetricsAPI, createGrpcWebTransport({ baseUrl: url, httpVersion: "1.1" })).push({}))).toBe(Code.Unauthenticated);
    expect(await codeOf(createClient(MetricsAPI, createConnectTransport({ baseUrl: url, httpVersion: "1.1" })).push({}))).toBe(Code.Unauthenticated);
    const malformed = await createClient(MetricsAPI, grpc())
      .push({}, { headers: { authorization: "Basic c3BlY3Rh" } })
      .catch((err: unknown) => ConnectError.from(err));
    expect(malformed).toMatchObject({ code: Code.Unauthenticated, rawMessage: "the authorization header must be 'Bearer <token>'" });
  });

  it("a Connect server stream (commands.API/Stream) gets its error in the end-of-stream message", async () => {
    const commands = createClient(CommandsAPI, createConnectTransport({ baseUrl: daemon().url, httpVersion: "1.1" }));
    expect(await codeOf(commands.stream({})[Symbol.asyncIterator]().next())).toBe(Code.Unauthenticated);
  });

  it("a credential of the wrong role is PermissionDenied; the right one still reaches the handler with its principal", async () => {
    const admin = createClient(TokensAPI, grpc(daemon().adminToken()));
    const { token: viewer } = await admin.create({ role: Role.VIEWER, name: "front-door-viewer" });
    expect(await codeOf(createClient(MetricsAPI, grpc(viewer)).push({}))).toBe(Code.PermissionDenied);
    expect((await createClient(TokensAPI, grpc(viewer)).whoami({})).token?.role).toBe(Role.VIEWER);
  });
});

describe("Expect: 100-continue (curl's way with bodies over 1 MiB)", () => {
  /** Sends the request head; resolves with the first status line the daemon answers, sending `body` if told to continue. */
  function expectContinue(path: string, body: string): Promise<string[]> {
    return new Promise((resolve, reject) => {
      const socket = netConnect(daemon().port, "127.0.0.1");
      const lines: string[] = [];
      let text = "";
      let sent = false;
      socket.setEncoding("utf8").on("data", (chunk: string) => {
        text += chunk;
        for (const [status] of text.matchAll(/^HTTP\/1\.1 \d+[^\r]*/gm)) if (!lines.includes(status)) lines.push(status);
        if (lines.includes("HTTP/1.1 100 Continue") && !sent) {
          sent = true;
          socket.write(body);
        }
        if (lines.some((line) => !line.startsWith("HTTP/1.1 100"))) {
          socket.destroy();
          resolve(lines);
        }
      });
      socket.on("error", reject);
      socket.write(
        `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nExpect: 100-continue\r\n\r\n`,
      );
    });
  }

  it("a refused call is answered without 100 Continue, so its body is never sent", async () => {
    expect(await expectContinue("/metrics.API/Push", '{"series":[]}')).toEqual(["HTTP/1.1 401 Unauthorized"]);
  });

  it("an admitted call is told to continue", async () => {
    const body = '{"action":[{"metric":"page_ready_duration_seconds","number":1}]}';
    expect(await expectContinue("/metrics.API/Histogram", body)).toEqual(["HTTP/1.1 100 Continue", "HTTP/1.1 200 OK"]);
  });
});

describe("size limits per RPC", () => {
  it("refuses a declared Content-Length over the instrument calls' 256 KiB in each protocol", async () => {
    const body = histogramJson(300 * KiB);
    const twirp = await post("/metrics.API/Histogram", body, { "Content-Type": "application/json" });
    expect(twirp.status).toBe(429);
    expect(await twirp.json()).toMatchObject({ code: "resource_exhausted", msg: expect.stringMatching(/takes at most 262144/) });
    const connect = await post("/metrics.API/Histogram", body, { "Content-Type": "application/json", "Connect-Protocol-Version": "1" });
    expect(connect.status).toBe(429);
    expect(await connect.json()).toMatchObject({ code: "resource_exhausted" });
  });

  it("stops reading a chunked body (no Content-Length) at the limit", async () => {
    const { status, body, sent } = await new Promise<{ status: number; body: string; sent: number }>((resolve, reject) => {
      let sent = 0;
      const req = request(
        { host: "127.0.0.1", port: daemon().port, path: "/metrics.API/Histogram", method: "POST", headers: { "content-type": "application/json" } },
        (res) => {
          let text = "";
          res.setEncoding("utf8").on("data", (c: string) => (text += c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text, sent }));
        },
      );
      req.on("error", reject);
      // 16 MiB in 64 KiB chunks, stopping once the answer has come.
      const chunk = Buffer.from(histogramJson(64 * KiB).slice(0, 64 * KiB));
      const more = () => {
        while (sent < 16 * 1024 * KiB && !req.destroyed) {
          sent += chunk.length;
          if (!req.write(chunk)) return void req.once("drain", more);
        }
        req.end();
      };
      req.on("socket", more);
    });
    expect(status).toBe(429);
    expect(JSON.parse(body)).toMatchObject({ code: "resource_exhausted" });
    console.log(`chunked 16 MiB Histogram refused after the client had sent ${(sent / KiB).toFixed(0)} KiB`);
  });

  it("refuses a gRPC message over the limit on its frame header, and gzip that inflates past it (a gzip bomb)", async () => {
    const metrics = createClient(MetricsAPI, grpc(undefined, { baseUrl: "", nodeOptions: { maxSessionMemory: 64 } }));
    // 10,000 actions: about 400 KiB on the wire.
    expect(await codeOf(metrics.histogram(manyActions(10_000)))).toBe(Code.ResourceExhausted);
    // 50,000 actions, 2 MiB, gzip to a few KiB: refused for what they inflate to.
    const gzipped = createClient(MetricsAPI, grpc(undefined, { baseUrl: "", sendCompression: compressionGzip }));
    expect(await codeOf(gzipped.histogram(manyActions(50_000)))).toBe(Code.ResourceExhausted);
    // Connect unary with Content-Encoding: 8 KiB of gzip holding 4 MiB of JSON.
    const bomb = gzipSync(histogramJson(4 * 1024 * KiB));
    const res = await post("/metrics.API/Histogram", bomb, {
      "Content-Type": "application/json",
      "Connect-Protocol-Version": "1",
      "Content-Encoding": "gzip",
    });
    console.log(`gzip bomb: ${(bomb.length / KiB).toFixed(1)} KiB of gzip for 4 MiB of JSON → HTTP ${res.status}`);
    expect(res.status).toBe(429);
    expect(await res.json()).toMatchObject({ code: "resource_exhausted", message: expect.stringMatching(/after decompression/) });
  });

  it("still takes an instrument call under the limit, compressed or not", async () => {
    const metrics = createClient(MetricsAPI, grpc(undefined, { baseUrl: "", sendCompression: compressionGzip }));
    const res = await metrics.histogram({ action: [{ metric: "page_ready_duration_seconds", number: 0.5 }] });
    expect(res.result.map((r) => r.status)).toEqual(["success"]);
  });
});

describe("Twirp errors over h2c", () => {
  it("are written whole (HTTP/2's end() goes through write())", async () => {
    const session = http2Connect(daemon().url);
    try {
      const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const stream = session.request({ ":method": "POST", ":path": "/metrics.API/Histogram", "content-type": "application/json" });
        let status = 0;
        let body = "";
        stream.on("response", (headers) => (status = Number(headers[":status"])));
        stream.setEncoding("utf8").on("data", (c: string) => (body += c));
        stream.on("end", () => resolve({ status, body }));
        stream.on("error", reject);
        stream.end('{"action":[]}');
      });
      expect(status).toBe(400);
      expect(JSON.parse(body)).toMatchObject({ code: "invalid_argument", msg: expect.stringContaining("1 to 100 actions") });
    } finally {
      session.close();
    }
  });
});
