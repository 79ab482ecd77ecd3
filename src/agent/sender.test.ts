import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Aggregation, API as MetricsAPI, Kind, PushRequestSchema } from "../../gen/metrics/metrics_pb.js";
import { tempDir, useDaemon } from "../../test/support/daemon.js";
import { enrolAgent } from "../../test/support/fake-agent.js";
import { bearer } from "../../test/support/rpc.js";
import { readEnrollToken } from "../fleet/enroll-token.js";
import { createLogger } from "../shared/log.js";
import { daemonTransport, halve, Sender } from "./sender.js";
import { Spool } from "./spool.js";

const log = createLogger("silent");

/** A batch of one gauge series with `points` points, one per ms from `t0`, of value `value`. */
const batch = (metric: string, t0: number, points: number, value = 1) =>
  create(PushRequestSchema, {
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

describe("the agent's sender, against a real daemon", () => {
  const daemon = useDaemon();
  const dir = tempDir("specta-sender-");
  afterAll(() => dir.remove());

  /** A spool and a sender with an agent credential (or the given one); `run` resolves when the spool is empty or sending stops. */
  async function sender(name: string, credential?: string) {
    const spool = new Spool(join(dir.path, name), { memoryPoints: 100_000, diskBytes: 2 ** 30 }, log);
    const token = credential ?? (await enrolAgent(daemon().url, readEnrollToken(daemon().dataDir)!, `sender-${name}`)).credential;
    const s = new Sender(
      daemonTransport(daemon().url, "grpc", () => token),
      spool,
      log,
      { initialMs: 10, maxMs: 50 },
    );
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
    spool.add(batch("sender_large", t0, 60_001), 60_001); // the documented limit is 50,000 points
    expect(await run()).toBe("drained");
    expect(s.rejectedPoints).toBe(0);
    expect(s.failedPushes).toBeGreaterThan(0);
    expect(await count("sender_large", t0, 60_001)).toBe(60_001);
  });

  it("drops a malformed batch (InvalidArgument), counted, and sends the next", async () => {
    const t0 = Date.now() - 60_000;
    const { spool, sender: s, run } = await sender("malformed");
    spool.add(batch("sender_malformed", t0, 10, Number.NaN), 10);
    spool.add(batch("sender_malformed", t0 + 10, 5), 5);
    expect(await run()).toBe("drained");
    expect(s.rejectedPoints).toBe(10);
    expect(await count("sender_malformed", t0, 15)).toBe(5);
  });

  it("stops at a refused credential (Unauthenticated) and keeps the batch", async () => {
    const { spool, sender: s, run } = await sender("refused", "specta_not-a-credential");
    spool.add(batch("sender_refused", Date.now(), 3), 3);
    const outcome = await run();
    expect(outcome).toMatchObject({ code: Code.Unauthenticated });
    expect(spool.stats()).toMatchObject({ batches: 1, points: 3 });
    expect(s.rejectedPoints).toBe(0);
  });
});

describe("halve", () => {
  it("splits series by points, or a lone series' points, and nothing smaller than one point", () => {
    const lone = halve(batch("m", 0, 5))!;
    expect(lone.map((r) => r.series[0]!.times)).toEqual([
      [0, 1, 2],
      [3, 4],
    ]);
    const many = create(PushRequestSchema, { series: [batch("a", 0, 6).series[0]!, batch("b", 0, 1).series[0]!, batch("c", 0, 5).series[0]!] });
    expect(halve(many)!.map((r) => r.series.map((s) => s.metric))).toEqual([["a"], ["b", "c"]]);
    expect(halve(batch("m", 0, 1))).toBeUndefined();
  });
});
