/**
 * Process behaviour of the built CLI (`node bin/specta.js`, built by `npm run build`):
 * start-up validation, and shutdown on SIGTERM/SIGINT (drain in-flight calls, end streams,
 * a second signal exits at once).
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { connect as http2Connect } from "node:http2";
import { connect as netConnect, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus, HealthCheckResponseSchema } from "../gen/grpc/health/v1/health_pb.js";
import { HistogramRequestSchema, HistogramResponseSchema } from "../gen/metrics/metrics_pb.js";
import { requireBuild, spawnDaemon, spawnSpecta, tempDir, type SpawnedDaemon, type SpectaProcess } from "./support/daemon.js";

beforeAll(() => requireBuild());

const started: SpectaProcess[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((p) => p.cleanup()));
});

async function daemon(env: Record<string, string> = {}): Promise<SpawnedDaemon> {
  const d = await spawnDaemon([], env);
  started.push(d);
  return d;
}

const exampleBody = '{"action":[{"metric":"page_ready_duration_seconds","number":47}]}';

/** Time for the daemon to read what was just written (headers, half a body) before the test goes on. */
const settle = () => sleep(300);

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * A Histogram call over HTTP/1.1 whose body arrives in two halves: `start()` writes the headers
 * and the first half; `finish()` writes the rest and resolves with the response.
 */
function slowHttp1Call(port: number, body = exampleBody) {
  const split = Math.floor(body.length / 2);
  let socket: Socket | undefined;
  let received = "";
  let closed: Promise<void> | undefined;
  return {
    async start() {
      socket = netConnect(port, "127.0.0.1");
      await new Promise<void>((resolve, reject) => socket!.once("connect", resolve).once("error", reject));
      socket.setEncoding("utf8").on("data", (chunk: string) => (received += chunk));
      socket.on("error", () => {});
      closed = new Promise((resolve) => socket!.once("close", () => resolve()));
      socket.write(
        "POST /metrics.API/Histogram HTTP/1.1\r\n" +
          "Host: 127.0.0.1\r\n" +
          "Content-Type: application/json\r\n" +
          `Content-Length: ${Buffer.byteLength(body)}\r\n` +
          "\r\n" +
          body.slice(0, split),
      );
      await settle();
    },
    /** Writes the rest of the body; resolves with the response once the server has answered and closed. */
    async finish(): Promise<RawResponse> {
      socket!.write(body.slice(split));
      await Promise.race([closed, sleep(10_000)]);
      return parseHttp1(received);
    },
    /** Resolves when the server closes the connection, with what it sent. */
    async closedByServer(): Promise<string> {
      await closed;
      return received;
    },
    destroy: () => socket?.destroy(),
  };
}

function parseHttp1(text: string): RawResponse {
  const end = text.indexOf("\r\n\r\n");
  if (end < 0) throw new Error(`no complete HTTP response: ${JSON.stringify(text)}`);
  const [statusLine, ...lines] = text.slice(0, end).split("\r\n");
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(":");
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const body = text.slice(end + 4);
  const length = Number(headers["content-length"]);
  return { status: Number(statusLine!.split(" ")[1]), headers, body: Number.isFinite(length) ? body.slice(0, length) : body };
}

/** Resolves true when a TCP connection to the port is refused. */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", () => resolve(true));
  });
}

/**
 * Opens grpc.health.v1.Health/Watch("") with a plain node:http2 client that reads every frame
 * as it arrives (what the daemon puts on the wire, no client library in between), sends
 * SIGTERM to the daemon after the first message, and resolves when the stream has closed.
 */
async function rawHealthWatch(d: SpawnedDaemon): Promise<{ seen: string[]; trailers: Record<string, unknown> }> {
  const session = http2Connect(d.url);
  session.on("error", () => {});
  const seen: string[] = [];
  let trailers: Record<string, unknown> = {};
  try {
    const stream = session.request({
      ":method": "POST",
      ":path": "/grpc.health.v1.Health/Watch",
      "content-type": "application/grpc+proto",
      te: "trailers",
    });
    stream.on("error", () => {}); // a reset shows as missing trailers
    let pending = Buffer.alloc(0);
    stream.on("data", (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
        const length = pending.readUInt32BE(1);
        seen.push(ServingStatus[fromBinary(HealthCheckResponseSchema, pending.subarray(5, 5 + length)).status]);
        pending = pending.subarray(5 + length);
        if (seen.length === 1) d.child.kill("SIGTERM");
      }
    });
    stream.on("trailers", (t) => (trailers = t));
    const closed = new Promise<void>((resolve) => stream.once("close", () => resolve()));
    stream.end(Buffer.from([0, 0, 0, 0, 0])); // HealthCheckRequest{service: ""}
    await closed;
  } finally {
    session.destroy();
  }
  return { seen, trailers };
}

describe("start-up validation", () => {
  it("SPECTA_ENVIRONMENT=bogus exits non-zero, naming the allowed values", async () => {
    const dir = tempDir();
    const proc = spawnSpecta(["daemon", "--addr", "127.0.0.1:0", "--data-dir", dir.path], { SPECTA_ENVIRONMENT: "bogus" }, dir.remove);
    started.push(proc);
    const { code } = await proc.exited;
    expect(code).not.toBe(0);
    expect(code).not.toBeNull();
    const stderr = proc.stderr();
    for (const name of ["development", "testing", "staging", "production", "bogus"]) expect(stderr).toContain(name);
    expect(proc.logs().some((l) => l.message === "daemon listening")).toBe(false);
  });

  it("--environment bogus is refused the same way", async () => {
    const dir = tempDir();
    const proc = spawnSpecta(["daemon", "--addr", "127.0.0.1:0", "--data-dir", dir.path, "--environment", "bogus"], {}, dir.remove);
    started.push(proc);
    const { code } = await proc.exited;
    expect(code).not.toBe(0);
    expect(proc.stderr()).toMatch(/development, testing, staging,? (or )?production/);
  });

  it("`specta daemon --help` and `specta version --json` work", async () => {
    const help = spawnSpecta(["daemon", "--help"]);
    started.push(help);
    expect((await help.exited).code).toBe(0);
    expect(help.stdout()).toContain("--addr");
    const version = spawnSpecta(["version", "--json"]);
    started.push(version);
    expect((await version.exited).code).toBe(0);
    expect(Object.keys(JSON.parse(version.stdout()) as object).sort()).toEqual(["arc", "gos", "node", "sha", "src", "tag", "ver"]);
  });
});

describe("shutdown", () => {
  it("SIGTERM during an in-flight HTTP/1.1 call lets it complete, stops accepting, then exits 0", async () => {
    const d = await daemon({ SPECTA_SHUTDOWN_TIMEOUT: "30s" });
    const call = slowHttp1Call(d.port);
    await call.start();

    d.child.kill("SIGTERM");
    // However long a loaded machine takes to deliver the signal and close the listener.
    await expect.poll(() => refused(d.port), { message: "no new connections while draining", timeout: 10_000, interval: 50 }).toBe(true);
    expect(d.child.exitCode, "the daemon must wait for the in-flight call").toBeNull();

    const res = await call.finish();
    expect(res.status).toBe(200);
    expect(res.body).toBe('{"result":[{"status":"success"}]}');

    const exit = await d.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    const messages = d.logs().map((l) => l.message);
    expect(messages).toContain("signal received; draining");
    expect(messages).toContain("daemon stopped");
    expect(d.logs().some((l) => l.level === "warn" || l.level === "error" || l.level === "fatal")).toBe(false);
  });

  it("SIGTERM during an in-flight gRPC (HTTP/2) call lets it complete, then exits 0", async () => {
    const d = await daemon({ SPECTA_SHUTDOWN_TIMEOUT: "30s" });
    const message = toBinary(
      HistogramRequestSchema,
      create(HistogramRequestSchema, { action: [{ metric: "page_ready_duration_seconds", number: 47 }] }),
    );
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, message.length]), message]);
    expect(message.length).toBeLessThan(256);

    const session = http2Connect(d.url);
    session.on("error", () => {});
    try {
      const stream = session.request({
        ":method": "POST",
        ":path": "/metrics.API/Histogram",
        "content-type": "application/grpc+proto",
        te: "trailers",
      });
      const chunks: Buffer[] = [];
      let headers: Record<string, unknown> = {};
      let trailers: Record<string, unknown> = {};
      stream.on("response", (h) => (headers = h));
      stream.on("trailers", (t) => (trailers = t));
      stream.on("data", (c: Buffer) => chunks.push(c));
      const ended = new Promise<void>((resolve, reject) => {
        stream.once("end", resolve);
        stream.once("error", reject);
      });
      stream.write(frame.subarray(0, 8));
      await settle();

      d.child.kill("SIGTERM");
      await settle();
      expect(d.child.exitCode, "the daemon must wait for the in-flight call").toBeNull();

      stream.end(frame.subarray(8));
      await ended;
      expect(headers[":status"]).toBe(200);
      expect(trailers["grpc-status"] ?? headers["grpc-status"]).toBe("0");
      const body = Buffer.concat(chunks);
      const answer = fromBinary(HistogramResponseSchema, body.subarray(5));
      expect(answer.result.map((r) => r.status)).toEqual(["success"]);
    } finally {
      session.destroy();
    }
    expect(await d.exited).toEqual({ code: 0, signal: null });
  });

  it("SIGTERM ends an open server stream (health Watch) at once instead of waiting for the timeout, then exits 0", async () => {
    const d = await daemon({ SPECTA_SHUTDOWN_TIMEOUT: "30s" });
    const watch = await rawHealthWatch(d);
    expect(watch.seen[0]).toBe("SERVING");
    const start = Date.now();
    expect(await d.exited).toEqual({ code: 0, signal: null });
    expect(Date.now() - start).toBeLessThan(10_000);
    expect(d.logs().some((l) => l.level === "warn" && /timeout/.test(String(l.message)))).toBe(false);
  });

  it("SIGTERM ends a server stream with NOT_SERVING, then grpc-status UNAVAILABLE on the wire", async () => {
    const d = await daemon({ SPECTA_SHUTDOWN_TIMEOUT: "30s" });
    const watch = await rawHealthWatch(d);
    expect(watch.seen).toEqual(["SERVING", "NOT_SERVING"]);
    expect(watch.trailers["grpc-status"], "the stream ends with a status, not a reset").toBe(String(Code.Unavailable));
    expect(decodeURIComponent(String(watch.trailers["grpc-message"]))).toContain("shutting down");
    expect(await d.exited).toEqual({ code: 0, signal: null });
  });

  it("SIGTERM ends a connect-node client's server stream (health Watch) with Unavailable", async () => {
    const d = await daemon({ SPECTA_SHUTDOWN_TIMEOUT: "30s" });
    const health = createClient(Health, createGrpcTransport({ baseUrl: d.url }));
    const seen: string[] = [];
    let error: ConnectError | undefined;
    try {
      for await (const res of health.watch({ service: "" })) {
        seen.push(ServingStatus[res.status]);
        if (seen.length === 1) d.child.kill("SIGTERM");
      }
    } catch (err) {
      error = ConnectError.from(err);
    }
    expect(seen).toEqual(["SERVING", "NOT_SERVING"]);
    expect(error, "the stream ends with an error code, not silently").toBeInstanceOf(ConnectError);
    expect(Code[error!.code]).toBe("Unavailable");
    expect(await d.exited).toEqual({ code: 0, signal: null });
  });

  it("the wait for in-flight calls is bounded by SPECTA_SHUTDOWN_TIMEOUT", async () => {
    const d = await daemon({ SPECTA_SHUTDOWN_TIMEOUT: "1s" });
    const call = slowHttp1Call(d.port);
    await call.start();
    const start = Date.now();
    d.child.kill("SIGTERM");
    const exit = await d.exited;
    const elapsed = Date.now() - start;
    expect(exit).toEqual({ code: 0, signal: null });
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(8_000);
    expect(d.logs().some((l) => l.level === "warn" && /timeout/.test(String(l.message)))).toBe(true);
    await call.closedByServer();
    call.destroy();
  });

  it.each([
    ["SIGTERM", "SIGINT"],
    ["SIGINT", "SIGTERM"],
    ["SIGTERM", "SIGTERM"],
  ] as const)("a second signal (%s then %s) exits at once, non-zero", async (first, second) => {
    const d = await daemon({ SPECTA_SHUTDOWN_TIMEOUT: "60s" });
    const call = slowHttp1Call(d.port);
    await call.start(); // keeps the first signal's drain waiting
    d.child.kill(first);
    await settle();
    expect(d.child.exitCode, "still draining after the first signal").toBeNull();
    const start = Date.now();
    d.child.kill(second);
    const exit = await d.exited;
    expect(Date.now() - start).toBeLessThan(10_000); // against a 60 s drain
    expect(exit.code).not.toBe(0);
    expect(exit.code).not.toBeNull();
    expect(d.logs().some((l) => /second signal/.test(String(l.message)))).toBe(true);
    call.destroy();
  });
});
