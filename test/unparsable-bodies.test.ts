/**
 * Issue 10, item 6: a request body that is not valid protobuf binary is the caller's mistake and
 * is answered InvalidArgument in every protocol (connect-es itself says Internal, see
 * src/server/unparsable.ts), so that an agent drops such a batch instead of retrying it for ever.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { connect as http2Connect, type IncomingHttpHeaders } from "node:http2";
import { describe, expect, it } from "vitest";
import { HistogramRequestSchema, Kind, PushRequestSchema } from "../gen/metrics/metrics_pb.js";
import { useDaemon } from "./support/daemon.js";

const daemon = useDaemon({ env: { SPECTA_ENVIRONMENT: "testing" } });

const push = toBinary(
  PushRequestSchema,
  create(PushRequestSchema, { series: [{ metric: "truncated_total", labels: { a: "b" }, kind: Kind.COUNTER, times: [1, 2], values: [1, 2] }] }),
);
const histogram = toBinary(
  HistogramRequestSchema,
  create(HistogramRequestSchema, { action: [{ metric: "page_ready_duration_seconds", number: 1 }] }),
);

/** Bodies that do not parse: a message cut short, and bytes that are no protobuf at all (field 0, then a wire type that does not exist). */
const bodies = (message: Uint8Array) =>
  [
    ["truncated", message.subarray(0, message.length - 3)],
    ["garbage", Uint8Array.from([0x07, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f])],
  ] as const;

const calls = [
  ["metrics.API/Push", push],
  ["metrics.API/Histogram", histogram],
] as const;

function headersFor(procedure: string): Record<string, string> {
  return procedure === "metrics.API/Push" ? { authorization: `Bearer ${daemon().adminToken()}` } : {};
}

/** One HTTP/2 request with `body`; resolves with the response's headers, body and trailers. */
function h2(
  path: string,
  headers: Record<string, string>,
  body: Uint8Array,
): Promise<{ headers: IncomingHttpHeaders; body: Buffer; trailers: IncomingHttpHeaders }> {
  const session = http2Connect(daemon().url);
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":method": "POST", ":path": path, te: "trailers", ...headers });
    let head: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on("response", (h) => (head = h));
    stream.on("trailers", (t) => (trailers = t));
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => resolve({ headers: head, body: Buffer.concat(chunks), trailers }));
    stream.on("error", reject);
    stream.end(body);
  }).finally(() => session.close()) as Promise<{ headers: IncomingHttpHeaders; body: Buffer; trailers: IncomingHttpHeaders }>;
}

describe.each(calls)("%s with a body that does not parse", (procedure, message) => {
  it.each(bodies(message))("%s: Connect answers 400 invalid_argument", async (_, body) => {
    const res = await fetch(`${daemon().url}/${procedure}`, {
      method: "POST",
      headers: { "content-type": "application/proto", "connect-protocol-version": "1", ...headersFor(procedure) },
      body,
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({
      code: "invalid_argument",
      message: expect.stringMatching(/^the request is not a valid metrics\.\w+Request in protobuf binary: /),
    });
  });

  it.each(bodies(message))("%s: Twirp answers 400 invalid_argument", async (_, body) => {
    const res = await fetch(`${daemon().url}/twirp/${procedure}`, {
      method: "POST",
      headers: { "content-type": "application/protobuf", ...headersFor(procedure) },
      body,
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: "invalid_argument", msg: expect.stringContaining("protobuf binary") });
  });

  it.each(bodies(message))("%s: gRPC answers status 3", async (_, body) => {
    const res = await h2(`/${procedure}`, { "content-type": "application/grpc", ...headersFor(procedure) }, encodeEnvelope(0, body));
    expect(res.headers[":status"]).toBe(200);
    expect(res.trailers["grpc-status"] ?? res.headers["grpc-status"]).toBe("3");
    expect(decodeURIComponent(String(res.trailers["grpc-message"] ?? res.headers["grpc-message"]))).toContain("protobuf binary");
  });

  it.each(bodies(message))("%s: gRPC-Web answers status 3 in its trailer frame", async (_, body) => {
    const res = await fetch(`${daemon().url}/${procedure}`, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto", ...headersFor(procedure) },
      body: encodeEnvelope(0, body),
    });
    const bytes = new Uint8Array(await res.arrayBuffer());
    expect(bytes[0]).toBe(0x80);
    expect(Buffer.from(bytes.subarray(5)).toString("utf8")).toMatch(/grpc-status: 3\r\n/);
  });
});

it("a Connect server stream (grpc.health.v1.Health/Watch) ends with invalid_argument", async () => {
  const res = await fetch(`${daemon().url}/grpc.health.v1.Health/Watch`, {
    method: "POST",
    headers: { "content-type": "application/connect+proto", "connect-protocol-version": "1" },
    body: encodeEnvelope(0, Uint8Array.from([0x0a, 0x05, 0x61])),
  });
  const bytes = new Uint8Array(await res.arrayBuffer());
  expect(bytes[0]).toBe(0b10);
  expect(JSON.parse(Buffer.from(bytes.subarray(5)).toString("utf8"))).toMatchObject({ error: { code: "invalid_argument" } });
});

it("a body that parses is still served, and other errors keep their code", async () => {
  const res = await fetch(`${daemon().url}/metrics.API/Histogram`, {
    method: "POST",
    headers: { "content-type": "application/protobuf" },
    body: histogram,
  });
  expect(res.status).toBe(200);
  const anonymous = await fetch(`${daemon().url}/metrics.API/Push`, {
    method: "POST",
    headers: { "content-type": "application/protobuf" },
    body: push.subarray(0, 3),
  });
  expect(anonymous.status).toBe(401);
});
