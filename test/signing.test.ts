/**
 * Issue 10, item 10: with a shared signing key, instrument calls and Push carry HashSHA256 (hex
 * HMAC-SHA256 of the body as sent), checked before the body is decoded, and the daemon signs its
 * answers the same way, in Connect (JSON and binary), Twirp and gRPC (over its frames); the agent
 * signs its Push calls and checks the answers.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, createClient } from "@connectrpc/connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { execFile } from "node:child_process";
import { createHmac } from "node:crypto";
import { writeFileSync } from "node:fs";
import { connect as http2Connect, type IncomingHttpHeaders } from "node:http2";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { Aggregation, API as MetricsAPI, HistogramRequestSchema, Kind } from "../gen/metrics/metrics_pb.js";
import { startAgent } from "../src/agent/agent.js";
import { encodeBatch, pushRequestBytes } from "../src/agent/batch.js";
import { daemonConnection, daemonTransport } from "../src/agent/sender.js";
import { readEnrollToken } from "../src/fleet/enroll-token.js";
import { resolveDaemonConfig } from "../src/config/config.js";
import { createLogger } from "../src/shared/log.js";
import { startDaemon } from "../src/server/daemon.js";
import { tempDir, useDaemon } from "./support/daemon.js";
import { codeOf } from "./support/rpc.js";

const keys = tempDir("specta-signing-");
const key = "5f1d0c8e3b2a49d7a6c4e1f0b9d8c7a6";
const keyFile = join(keys.path, "signing.key");
writeFileSync(keyFile, `${key}\n`);
afterAll(() => keys.remove());

const daemon = useDaemon({ flags: { signingKeyFile: keyFile }, env: { SPECTA_ENVIRONMENT: "testing" } });

const hmac = (body: Uint8Array | string, secret = key) => createHmac("sha256", secret).update(body).digest("hex");
const histogramJson = '{"action":[{"metric":"page_ready_duration_seconds","number":47}]}';

async function post(
  path: string,
  body: Uint8Array | string,
  headers: Record<string, string>,
): Promise<{ status: number; body: Buffer; signature: string | null }> {
  const res = await fetch(`${daemon().url}${path}`, { method: "POST", headers, body });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()), signature: res.headers.get("HashSHA256") };
}

describe("a signed call", () => {
  it.each([
    ["Twirp JSON", { "content-type": "application/json" }, histogramJson],
    ["Connect JSON", { "content-type": "application/json", "connect-protocol-version": "1" }, histogramJson],
    [
      "Connect binary",
      { "content-type": "application/proto", "connect-protocol-version": "1" },
      toBinary(HistogramRequestSchema, create(HistogramRequestSchema, { action: [{ metric: "page_ready_duration_seconds", number: 1 }] })),
    ],
    [
      "Twirp binary, gzip-compressed (signed as sent)",
      { "content-type": "application/protobuf", "content-encoding": "gzip" },
      gzipSync(toBinary(HistogramRequestSchema, create(HistogramRequestSchema, { action: [{ metric: "page_ready_duration_seconds", number: 2 }] }))),
    ],
  ] as const)("%s is served, and its answer signed", async (_, headers, body) => {
    const res = await post("/metrics.API/Histogram", body, { ...headers, HashSHA256: hmac(body) });
    expect(res.status).toBe(200);
    expect(res.signature).toBe(hmac(res.body));
  });

  it("Push (with its credential) is served; hex in capitals is the same signature", async () => {
    const body = JSON.stringify({ series: [{ metric: "signed_push_total", kind: "KIND_COUNTER", times: [Date.now()], values: [1] }] });
    const res = await post("/metrics.API/Push", body, {
      "content-type": "application/json",
      authorization: `Bearer ${daemon().adminToken()}`,
      HashSHA256: hmac(body).toUpperCase(),
    });
    expect(JSON.parse(res.body.toString())).toEqual({ accepted: 1 });
    expect(res.signature).toBe(hmac(res.body));
  });

  it("the README's curl example works", async () => {
    const script = `BODY='${histogramJson}'
curl -s -H 'Content-Type: application/json' \\
  -H "HashSHA256: $(printf %s "$BODY" | openssl dgst -sha256 -hmac "$(cat signing.key)" | awk '{print $NF}')" \\
  -d "$BODY" ${daemon().url}/metrics.API/Histogram`;
    const out = await new Promise<string>((resolve, reject) =>
      execFile("bash", ["-c", script], { cwd: keys.path }, (err, stdout) => (err ? reject(err) : resolve(stdout))),
    );
    expect(out).toBe('{"result":[{"status":"success"}]}');
  });

  it("gRPC: the frames are signed, both ways", async () => {
    const frame = encodeEnvelope(
      0,
      toBinary(HistogramRequestSchema, create(HistogramRequestSchema, { action: [{ metric: "page_ready_duration_seconds", number: 3 }] })),
    );
    const ok = await grpcCall(frame, hmac(frame));
    expect(ok.status).toBe("0");
    expect(ok.signature).toBe(hmac(ok.body));
    const wrong = await grpcCall(frame, hmac(frame, "not the key at all"));
    expect(wrong.status).toBe("16");
    expect(wrong.signature).toBe(hmac(wrong.body));
  });
});

describe("an unsigned or wrongly signed call", () => {
  it.each([
    ["no signature", {}, /metrics\.API\/Histogram must be signed: send a HashSHA256 header/],
    ["a signature that is no hex", { HashSHA256: "abc" }, /must be signed/],
    ["another key's signature", { HashSHA256: hmac(histogramJson, "another-key-of-enough-length") }, /is not the signature of the request body/],
    ["the signature of another body", { HashSHA256: hmac('{"action":[]}') }, /is not the signature of the request body/],
  ] as const)("%s: unauthenticated, in a signed answer (Twirp and Connect)", async (_, signature, message) => {
    const twirp = await post("/metrics.API/Histogram", histogramJson, { "content-type": "application/json", ...signature });
    expect(twirp.status).toBe(401);
    expect(JSON.parse(twirp.body.toString())).toMatchObject({ code: "unauthenticated", msg: expect.stringMatching(message) });
    expect(twirp.signature).toBe(hmac(twirp.body));
    const connect = await post("/metrics.API/Histogram", histogramJson, {
      "content-type": "application/json",
      "connect-protocol-version": "1",
      ...signature,
    });
    expect(connect.status).toBe(401);
    expect(JSON.parse(connect.body.toString())).toMatchObject({ code: "unauthenticated", message: expect.stringMatching(message) });
    expect(connect.signature).toBe(hmac(connect.body));
  });

  it("a chunked body is read no further than the call's size limit (256 KiB for an instrument call)", async () => {
    const chunk = new TextEncoder().encode(" ".repeat(64 * 1024));
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        sent += chunk.length;
        if (sent > 16 * 1024 * 1024) controller.close();
        else controller.enqueue(chunk);
      },
    });
    const res = await fetch(`${daemon().url}/metrics.API/Histogram`, {
      method: "POST",
      headers: { "content-type": "application/json", "connect-protocol-version": "1", HashSHA256: hmac("") },
      body,
      duplex: "half",
    } as RequestInit);
    expect(res.status).toBe(429);
    expect(await res.json()).toMatchObject({ code: "resource_exhausted", message: expect.stringContaining("over 262144 bytes") });
  });

  it("other calls need no signature", async () => {
    expect((await fetch(`${daemon().url}/health/live`)).status).toBe(200);
    const list = await post("/metrics.API/List", "{}", { "content-type": "application/json", authorization: `Bearer ${daemon().adminToken()}` });
    expect(list.status).toBe(200);
    expect(list.signature).toBeNull();
  });
});

describe("the agent with --signing-key-file", () => {
  const push = { series: [{ metric: "signed_agent_total", kind: Kind.COUNTER, times: [Date.now()], values: [1] }] };
  // Push on the agent's own paths (sender.ts): over gRPC it signs the stream itself; over Connect through the HTTP client its other calls share.
  const pushWith = (signingKey: string | undefined, protocol: "grpc" | "connect") =>
    daemonConnection(daemon().url, protocol, () => daemon().adminToken(), signingKey ? { signingKey: Buffer.from(signingKey) } : {}).push(
      pushRequestBytes(encodeBatch(push).series),
      AbortSignal.timeout(10_000),
      10_000,
    );

  it.each(["grpc", "connect"] as const)(
    "%s: signs Push and takes the signed answer; without the key or with another it is refused",
    async (protocol) => {
      await expect(pushWith(key, protocol)).resolves.toBeUndefined();
      expect(await codeOf(pushWith(undefined, protocol))).toBe(Code.Unauthenticated);
      // The daemon refuses, and its refusal is signed with a key the client does not have: an answer it cannot trust.
      expect(await codeOf(pushWith("another-key-of-enough-length", protocol))).toBe(Code.DataLoss);
    },
  );

  it("enrols and pushes its collectors' batches", async () => {
    const dir = tempDir("specta-agent-");
    const agent = await startAgent({
      server: daemon().url,
      signingKeyFile: keyFile,
      protocol: "grpc",
      stateDir: dir.path,
      enrollToken: readEnrollToken(daemon().dataDir)!,
      hostname: "signed-agent",
      labels: {},
      log: createLogger("silent"),
      collectors: [{ name: "signed", intervalMs: 100, collect: async () => [{ metric: "signed_agent_up", labels: {}, kind: "gauge", value: 1 }] }],
      flushIntervalMs: 100,
    });
    try {
      const metrics = createClient(
        MetricsAPI,
        daemonTransport(daemon().url, "grpc", () => daemon().adminToken()),
      );
      await expect
        .poll(async () => (await metrics.query({ metric: "signed_agent_up", aggregation: Aggregation.LAST })).series.length, { timeout: 10_000 })
        .toBe(1);
    } finally {
      await agent.stop();
      dir.remove();
    }
  });
});

describe("a daemon given an unusable signing key does not start", () => {
  it.each([
    [join(keys.path, "missing.key"), /^cannot read the signing key file .*missing\.key: ENOENT/],
    ["short", /^the signing key in .*short must be at least 16 characters/],
  ])("%s", async (file, message) => {
    if (file === "short") writeFileSync(join(keys.path, "short"), "tiny\n");
    const config = resolveDaemonConfig(
      { addr: "127.0.0.1:0", dataDir: join(keys.path, "data"), signingKeyFile: file === "short" ? join(keys.path, "short") : file },
      {},
    );
    await expect(startDaemon(config, createLogger("silent"))).rejects.toThrow(message);
  });
});

/** A gRPC call of Histogram with `frame` as its body and `signature` as its HashSHA256. */
function grpcCall(frame: Uint8Array, signature: string): Promise<{ status: string; signature: string; body: Buffer }> {
  const session = http2Connect(daemon().url);
  return new Promise<{ status: string; signature: string; body: Buffer }>((resolve, reject) => {
    const stream = session.request({
      ":method": "POST",
      ":path": "/metrics.API/Histogram",
      "content-type": "application/grpc",
      te: "trailers",
      hashsha256: signature,
    });
    let head: IncomingHttpHeaders = {};
    let status = "";
    const chunks: Buffer[] = [];
    stream.on("response", (h) => {
      head = h;
      status = String(h["grpc-status"] ?? "");
    });
    stream.on("trailers", (t) => (status = String(t["grpc-status"])));
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => resolve({ status, signature: String(head.hashsha256), body: Buffer.concat(chunks) }));
    stream.on("error", reject);
    stream.end(frame);
  }).finally(() => session.close());
}
