/**
 * kill -9 the daemon while agents push; after a restart every acknowledged sample is stored,
 * and none twice. The daemon runs on its own embedded PostgreSQL, as a user's would.
 */
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, describe, expect, it } from "vitest";
import { API as MetricsAPI, Kind, SeriesSchema, type Series } from "../gen/metrics/metrics_pb.js";
import { adminTokenOf, spawnSpecta, tempDir, type SpectaProcess } from "./support/daemon.js";
import { storedPoints } from "./support/stored.js";

const agents = 4;
const seriesPerBatch = 50;
const pointsPerSeries = 10;

describe("a daemon killed with SIGKILL while agents push", () => {
  const dir = tempDir("specta-crash-");
  const dataDir = join(dir.path, "data");
  const processes: SpectaProcess[] = [];
  afterAll(async () => {
    for (const p of processes) {
      p.child.kill("SIGTERM");
      await p.exited;
    }
    dir.remove();
  });

  async function startDaemon(): Promise<{ proc: SpectaProcess; url: string }> {
    const proc = spawnSpecta(["daemon", "--addr", "127.0.0.1:0", "--data-dir", dataDir], { SPECTA_LOG_LEVEL: "info" });
    processes.push(proc);
    const line = await proc.waitForLog((l) => l.message === "daemon listening", 60_000);
    return { proc, url: String(line.url) };
  }

  it("keeps every acknowledged sample exactly once", async () => {
    let daemon = await startDaemon();
    const token = adminTokenOf(dataDir);
    const clientFor = (url: string) =>
      createClient(
        MetricsAPI,
        createGrpcTransport({ baseUrl: url, interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))] }),
      );
    let client: Client<typeof MetricsAPI> = clientFor(daemon.url);

    const acknowledged = new Set<string>(); // "agent/series/time"
    let clock = Date.now() - 120_000;
    let stop = false;
    let failures = 0;
    const agent = async (a: number) => {
      // Like the real agent: a batch that was not acknowledged is sent again until it is.
      let pending: Series[] | undefined;
      while (!stop || pending) {
        const batch =
          pending ??
          Array.from({ length: seriesPerBatch }, (_, s) => {
            const times = Array.from({ length: pointsPerSeries }, () => clock++);
            return create(SeriesSchema, {
              metric: "crash_test_value",
              labels: { agent: String(a), s: String(s) },
              kind: Kind.GAUGE,
              times,
              values: times.map((t) => t % 1000),
            });
          });
        try {
          const res = await client.push({ series: batch }, { timeoutMs: 5_000 });
          expect(res.accepted).toBe(seriesPerBatch * pointsPerSeries);
          for (const s of batch) for (const t of s.times) acknowledged.add(`${a}/${s.labels.s}/${t}`);
          pending = undefined;
        } catch {
          failures++;
          pending = batch;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    };
    const running = Array.from({ length: agents }, (_, a) => agent(a));

    await expect.poll(() => acknowledged.size, { timeout: 20_000, interval: 50 }).toBeGreaterThan(20_000);
    daemon.proc.child.kill("SIGKILL");
    await daemon.proc.exited;
    const acknowledgedBeforeCrash = acknowledged.size;

    daemon = await startDaemon();
    client = clientFor(daemon.url);
    await expect.poll(() => acknowledged.size, { timeout: 30_000, interval: 50 }).toBeGreaterThan(acknowledgedBeforeCrash + 10_000);
    stop = true;
    await Promise.all(running);
    expect(failures).toBeGreaterThan(0); // the crash really interrupted pushes

    const series = await storedPoints({ host: join(dataDir, "postgres"), user: "postgres", database: "specta" }, "crash_test_value");
    const stored = series.flatMap((s) => s.times.map((t) => `${s.labels.agent}/${s.labels.s}/${t}`));
    expect(new Set(stored).size).toBe(stored.length); // none twice
    const storedSet = new Set(stored);
    const missing = [...acknowledged].filter((k) => !storedSet.has(k));
    expect(missing).toEqual([]);
    // Nothing is stored that no agent sent: every stored sample was sent and, once re-sent, acknowledged.
    expect(stored.length).toBe(acknowledged.size);
  }, 120_000);
});
