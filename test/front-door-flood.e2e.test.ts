/**
 * Issue 10, item 2, under load: 24 anonymous 16 MB bodies at once (valid Push and Histogram
 * messages; JSON with a Content-Length, chunked, and protobuf in gRPC frames) are refused without being read or decoded, while
 * /health/live keeps answering within a second and the daemon's memory stays where it was. Before
 * the front door the same flood stalled the event loop: /health/live timed out for 15 s at 1.7 GB.
 * The daemon runs as its own process so that its memory is its own.
 */
import { request, Agent } from "node:http";
import { connect as http2Connect } from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HistogramRequestSchema, Kind, PushRequestSchema } from "../gen/metrics/metrics_pb.js";
import { spawnDaemon, type SpawnedDaemon } from "./support/daemon.js";
import { memoryOf } from "./support/load.js";

let daemon: SpawnedDaemon;
beforeAll(async () => {
  daemon = await spawnDaemon([], { SPECTA_ENVIRONMENT: "testing" });
});
afterAll(async () => {
  await daemon?.cleanup();
});

const MiB = 1024 * 1024;
/** About 16,000,000 bytes each (under the old global limit of 16 MiB, so the old daemon read and decoded them all). */
const size = 16_000_000;
const points = size / 16;
const bodies = {
  pushJson: Buffer.from(
    JSON.stringify({ series: [{ metric: "flood", kind: "KIND_GAUGE", times: Array(points).fill(1e12), values: Array(points).fill(1) }] }),
  ),
  histogramJson: Buffer.from(`{"action":[${'{"metric":"page_ready_duration_seconds","number":1},'.repeat(size / 52)}{"metric":"x","number":1}]}`),
  pushProto: grpcFrame(
    toBinary(
      PushRequestSchema,
      create(PushRequestSchema, { series: [{ metric: "flood", kind: Kind.GAUGE, times: Array(points).fill(1e12), values: Array(points).fill(1) }] }),
    ),
  ),
  histogramProto: grpcFrame(
    toBinary(
      HistogramRequestSchema,
      create(HistogramRequestSchema, { action: Array(Math.floor(size / 43)).fill({ metric: "page_ready_duration_seconds", number: 1 }) }),
    ),
  ),
};

/** One gRPC message: flags, its length, itself. */
function grpcFrame(message: Uint8Array): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, message]);
}

/**
 * An HTTP/1.1 POST of 16 MiB, with a Content-Length or chunked; resolves once its connection is
 * closed with the status it got, or the error that ended it.
 */
function http1Flood(path: string, body: Buffer, chunked: boolean): Promise<string> {
  return new Promise((resolve) => {
    const headers: Record<string, string | number> = { "content-type": "application/json" };
    if (!chunked) headers["content-length"] = body.length;
    let outcome = "none";
    const req = request({ host: "127.0.0.1", port: daemon.port, path, method: "POST", headers, agent: false }, (res) => {
      res.resume();
      outcome = String(res.statusCode);
    });
    req.on("error", (err: NodeJS.ErrnoException) => outcome === "none" && (outcome = err.code ?? err.message));
    req.on("close", () => resolve(outcome));
    for (let at = 0; at < body.length; at += MiB) req.write(body.subarray(at, at + MiB));
    req.end();
  });
}

/** A gRPC call of one 16 MB message; resolves with its grpc-status, or the error that ended it. */
function grpcFlood(path: string, frame: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const session = http2Connect(daemon.url, { maxSessionMemory: 64 });
    session.on("error", () => undefined);
    const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" });
    let status = "none";
    stream.on("response", (headers) => (status = String(headers["grpc-status"] ?? status)));
    stream.on("trailers", (trailers) => (status = String(trailers["grpc-status"] ?? status)));
    stream.on("error", (err: NodeJS.ErrnoException) => status === "none" && (status = err.code ?? err.message));
    stream.on("close", () => {
      session.close();
      resolve(status);
    });
    stream.resume();
    stream.end(frame);
  });
}

describe("24 anonymous 16 MB bodies at once", () => {
  it("are refused unread while /health/live answers within a second and memory stays put", async () => {
    const before = memoryOf(daemon.child.pid!);
    const live = new Agent({ keepAlive: true, maxSockets: 1 });
    const latencies: number[] = [];
    let flooding = true;
    const poll = (async () => {
      while (flooding) {
        const started = Date.now();
        await new Promise<void>((resolve, reject) => {
          request({ host: "127.0.0.1", port: daemon.port, path: "/health/live", agent: live }, (res) => res.resume().on("end", resolve))
            .on("error", reject)
            .end();
        });
        latencies.push(Date.now() - started);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();

    const started = Date.now();
    const outcomes = await Promise.all([
      ...Array.from({ length: 4 }, () => http1Flood("/metrics.API/Push", bodies.pushJson, false)),
      ...Array.from({ length: 4 }, () => http1Flood("/metrics.API/Push", bodies.pushJson, true)),
      ...Array.from({ length: 4 }, () => http1Flood("/metrics.API/Histogram", bodies.histogramJson, false)),
      ...Array.from({ length: 4 }, () => http1Flood("/metrics.API/Histogram", bodies.histogramJson, true)),
      ...Array.from({ length: 4 }, () => grpcFlood("/metrics.API/Push", bodies.pushProto)),
      ...Array.from({ length: 4 }, () => grpcFlood("/metrics.API/Histogram", bodies.histogramProto)),
    ]);
    const floodMs = Date.now() - started;
    // And a second more: a stalled event loop would show now.
    await new Promise((r) => setTimeout(r, 1_000));
    flooding = false;
    await poll;
    live.destroy();
    const after = memoryOf(daemon.child.pid!);

    console.log(
      `flood of 24 × 16 MB: every connection closed after ${floodMs} ms; outcomes ${JSON.stringify(outcomes)}; ` +
        `/health/live: ${latencies.length} answers, slowest ${Math.max(...latencies)} ms; ` +
        `daemon RSS ${before.rssMB.toFixed(0)} → ${after.rssMB.toFixed(0)} MB, peak ${before.peakMB.toFixed(0)} → ${after.peakMB.toFixed(0)} MB`,
    );
    // HTTP/1.1: 401 for Push, 429 for Histogram; gRPC: 16 (Unauthenticated) for Push, 8 (ResourceExhausted) for Histogram.
    expect(outcomes.slice(0, 8)).toEqual(Array(8).fill("401"));
    expect(outcomes.slice(8, 16)).toEqual(Array(8).fill("429"));
    expect(outcomes.slice(16, 20)).toEqual(Array(4).fill("16"));
    expect(outcomes.slice(20)).toEqual(Array(4).fill("8"));
    expect(latencies.length).toBeGreaterThan(0);
    expect(Math.max(...latencies)).toBeLessThan(1_000);
    expect(after.peakMB - before.peakMB).toBeLessThan(100);
  });
});
