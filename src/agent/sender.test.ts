import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createServer as createHttpServer, type ServerResponse } from "node:http";
import { constants as h2, createServer as createHttp2Server, type Http2Session, type ServerHttp2Stream } from "node:http2";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Aggregation, API as MetricsAPI, Kind } from "../../gen/metrics/metrics_pb.js";
import { tempDir, useDaemon } from "../../test/support/daemon.js";
import { enrolAgent } from "../../test/support/fake-agent.js";
import { bearer, codeOf } from "../../test/support/rpc.js";
import { readEnrollToken } from "../fleet/enroll-token.js";
import { createLogger } from "../shared/log.js";
import { decodeBatch, encodeBatch, pushRequestBytes } from "./batch.js";
import { daemonConnection, daemonTransport, Sender } from "./sender.js";
import { Spool } from "./spool.js";

const log = createLogger("silent");

/** A batch of one gauge series with `points` points, one per ms from `t0`, of value `value`. */
const batch = (metric: string, t0: number, points: number, value = 1) =>
  encodeBatch({
    series: [
      {
        metric,
        kind: Kind.GAUGE,
        labels: { host: "sender-test" },
        times: Array.from({ length: points }, (_, i) => t0 + i),
        values: new Array<number>(points).fill(value),
      },
    ],
  });

describe.each(["grpc", "connect"] as const)("the agent's sender over %s, against a real daemon", (protocol) => {
  const daemon = useDaemon();
  const dir = tempDir("specta-sender-");
  afterAll(() => dir.remove());

  /** A spool and a sender with an agent credential (or the given one); `run` resolves when the spool is empty or sending stops. */
  async function sender(name: string, credential?: string) {
    const spool = new Spool(join(dir.path, `${protocol}-${name}`), { memoryPoints: 100_000, diskBytes: 2 ** 30 }, log);
    const token = credential ?? (await enrolAgent(daemon().url, readEnrollToken(daemon().dataDir)!, `sender-${protocol}-${name}`)).credential;
    const s = new Sender(daemonConnection(daemon().url, protocol, () => token).push, spool, log, { initialMs: 10, maxMs: 50 });
    const run = async () => {
      const controller = new AbortController();
      const sending = s.run(controller.signal);
      const drained = (async () => {
        while (spool.stats().batches > 0) await new Promise((r) => setTimeout(r, 20));
      })();
      const outcome = await Promise.race([sending, drained.then(() => "drained" as const)]);
      controller.abort();
      await sending;
      return outcome;
    };
    return { spool, sender: s, run };
  }

  const count = async (metric: string, t0: number, points: number) => {
    const metrics = createClient(MetricsAPI, createGrpcTransport({ baseUrl: daemon().url, interceptors: [bearer(daemon().adminToken())] }));
    const res = await metrics.query({
      metric,
      start: timestampFromMs(t0),
      end: timestampFromMs(t0 + points),
      step: { seconds: 3600n },
      aggregation: Aggregation.COUNT,
    });
    return res.series.flatMap((s) => s.points).reduce((n, p) => n + p.value, 0);
  };

  it("sends a batch larger than the daemon takes (ResourceExhausted) in halves, and loses none of it", async () => {
    const t0 = Date.now() - 60_000;
    const { spool, sender: s, run } = await sender("large");
    spool.add(batch(`sender_large_${protocol}`, t0, 60_001)); // the documented limit is 50,000 points
    expect(await run()).toBe("drained");
    expect(s.rejectedPoints).toBe(0);
    expect(s.failedPushes).toBeGreaterThan(0);
    expect(await count(`sender_large_${protocol}`, t0, 60_001)).toBe(60_001);
  });

  it("drops a malformed batch (InvalidArgument), counted, and sends the next", async () => {
    const t0 = Date.now() - 60_000;
    const { spool, sender: s, run } = await sender("malformed");
    spool.add(batch(`sender_malformed_${protocol}`, t0, 10, Number.NaN));
    spool.add(batch(`sender_malformed_${protocol}`, t0 + 10, 5));
    expect(await run()).toBe("drained");
    expect(s.rejectedPoints).toBe(10);
    expect(await count(`sender_malformed_${protocol}`, t0, 15)).toBe(5);
  });

  it("stops at a refused credential (Unauthenticated) and keeps the batch", async () => {
    const { spool, sender: s, run } = await sender("refused", "specta_not-a-credential");
    spool.add(batch(`sender_refused_${protocol}`, Date.now(), 3));
    const outcome = await run();
    expect(outcome).toMatchObject({ code: Code.Unauthenticated });
    expect(spool.stats()).toMatchObject({ batches: 1, points: 3 });
    expect(s.rejectedPoints).toBe(0);
  });
});

/** What the fake daemon answers a call with: the raw HTTP exchange, as a misbehaving daemon or a proxy might. */
type Answer = { grpc: (stream: ServerHttp2Stream) => void; connect: (res: ServerResponse) => void };

describe.each(["grpc", "connect"] as const)("a push over %s, against a fake daemon", (protocol) => {
  let url = "";
  let answer: Answer = { grpc: () => undefined, connect: () => undefined };
  let close: () => void = () => undefined;
  beforeAll(async () => {
    // HTTP/2 for gRPC, HTTP/1.1 for Connect; each request is read whole, then answered.
    const sessions = new Set<Http2Session>();
    const server =
      protocol === "grpc"
        ? createHttp2Server().on("stream", (stream: ServerHttp2Stream) =>
            stream
              .on("error", () => undefined)
              .resume()
              .on("end", () => answer.grpc(stream)),
          )
        : createHttpServer((req, res) => req.resume().on("end", () => answer.connect(res)));
    server.on("session", (session: Http2Session) => sessions.add(session));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    close = () => {
      for (const session of sessions) session.destroy();
      if ("closeAllConnections" in server) server.closeAllConnections();
      server.close();
    };
  });
  afterAll(() => close());

  const push = (signal = new AbortController().signal, timeoutMs = 10_000) =>
    daemonConnection(url, protocol, () => "token")
      .push(pushRequestBytes(batch("fake_daemon", 0, 3).series), signal, timeoutMs)
      .then(
        () => "ok" as const,
        (err: unknown) => ConnectError.from(err).code,
      );
  /** The same call through connect's own client, for comparison. */
  const connectsOwn = () =>
    codeOf(
      createClient(
        MetricsAPI,
        daemonTransport(url, protocol, () => "token"),
      ).push(decodeBatch(batch("fake_daemon", 0, 3))),
    );

  it("gives up at its deadline, as DeadlineExceeded", async () => {
    answer = { grpc: () => undefined, connect: () => undefined };
    expect(await push(undefined, 200)).toBe(Code.DeadlineExceeded);
  });

  it("stops when the agent stops, as Canceled", async () => {
    answer = { grpc: () => undefined, connect: () => undefined };
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    expect(await push(controller.signal)).toBe(Code.Canceled);
  });

  it.runIf(protocol === "grpc").each<[string, number, Code]>([
    ["ENHANCE_YOUR_CALM as ResourceExhausted (the batch is halved)", h2.NGHTTP2_ENHANCE_YOUR_CALM, Code.ResourceExhausted],
    ["REFUSED_STREAM as Unavailable (retried)", h2.NGHTTP2_REFUSED_STREAM, Code.Unavailable],
    ["INTERNAL_ERROR as Unavailable (retried)", h2.NGHTTP2_INTERNAL_ERROR, Code.Unavailable],
  ])("takes a stream reset with %s; connect's own client says Internal, retried too", async (_, rstCode, code) => {
    answer = { grpc: (s) => s.close(rstCode), connect: () => undefined };
    expect(await push()).toBe(code);
    expect(await connectsOwn()).toBe(Code.Internal);
  });

  const json = (code: string) => JSON.stringify({ code, message: "from the fake daemon" });
  it.each<[string, Answer, Code]>([
    [
      "a proxy's 503",
      { grpc: (s) => s.respond({ ":status": 503 }, { endStream: true }), connect: (r) => r.writeHead(503).end("no backend") },
      Code.Unavailable,
    ],
    [
      "an error without a message (gRPC: trailers only), ResourceExhausted",
      {
        grpc: (s) =>
          s.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": "8", "grpc-message": "slow down" }, { endStream: true }),
        connect: (r) => r.writeHead(429, { "content-type": "application/json" }).end(json("resource_exhausted")),
      },
      Code.ResourceExhausted,
    ],
    [
      "an error in a compressed answer (gRPC: in the trailers), InvalidArgument",
      {
        grpc: (s) => {
          s.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
          s.on("wantTrailers", () => s.sendTrailers({ "grpc-status": "3", "grpc-message": "bad batch" }));
          s.end();
        },
        connect: (r) => r.writeHead(400, { "content-type": "application/json", "content-encoding": "gzip" }).end(gzipSync(json("invalid_argument"))),
      },
      Code.InvalidArgument,
    ],
  ])("takes %s as connect's own client does", async (_, given, code) => {
    answer = given;
    expect(await push()).toBe(code);
    expect(await connectsOwn()).toBe(code);
  });
});
