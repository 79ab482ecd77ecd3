/**
 * Two daemons on one PostgreSQL are one store: either takes writes and answers reads for what
 * the other wrote, and a batch re-sent to the other daemon is stored once.
 */
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Aggregation, API as MetricsAPI, Kind, SeriesSchema } from "../gen/metrics/metrics_pb.js";
import { resolveDaemonConfig } from "../src/config/config.js";
import { createLogger } from "../src/shared/log.js";
import { startDaemon, type RunningDaemon } from "../src/server/daemon.js";
import { adminTokenOf, tempDir } from "./support/daemon.js";
import { createTestDatabase, type TestDatabase } from "./support/postgres.js";
import { bearer } from "./support/rpc.js";

describe("two daemons on one database", () => {
  const dir = tempDir("specta-shared-");
  let database: TestDatabase;
  const daemons: RunningDaemon[] = [];
  const clients: ReturnType<typeof createClient<typeof MetricsAPI>>[] = [];
  beforeAll(async () => {
    database = await createTestDatabase();
    for (const name of ["a", "b"]) {
      const dataDir = join(dir.path, name);
      const daemon = await startDaemon(resolveDaemonConfig({ addr: "127.0.0.1:0", dataDir, databaseUrl: database.url }, {}), createLogger("silent"));
      daemons.push(daemon);
      clients.push(createClient(MetricsAPI, createGrpcTransport({ baseUrl: daemon.url, interceptors: [bearer(adminTokenOf(dataDir))] })));
    }
  });
  afterAll(async () => {
    await Promise.all(daemons.map((d) => d.stop()));
    await database?.drop();
    dir.remove();
  });

  it("reads on one what the other wrote, and stores a batch re-sent to the other once", async () => {
    const now = Math.floor(Date.now() / 1000) * 1000;
    const batch = (via: string) =>
      [0, 1, 2].map((k) =>
        create(SeriesSchema, {
          metric: "shared_load",
          labels: { via, k: String(k) },
          kind: Kind.GAUGE,
          times: [now - 2000, now - 1000],
          values: [k, k + 0.5],
        }),
      );
    await clients[0]!.push({ series: batch("a") });
    await clients[1]!.push({ series: batch("b") });
    await clients[1]!.push({ series: batch("a") });
    for (const client of clients) {
      const res = await client.query({
        metric: "shared_load",
        aggregation: Aggregation.COUNT,
        groupBy: ["via"],
        start: timestampFromMs(now - 60_000),
        end: timestampFromMs(now),
        step: durationFromMs(120_000),
      });
      expect(res.series.map((s) => [s.labels.via, s.points.reduce((n, p) => n + p.value, 0)])).toEqual([
        ["a", 6],
        ["b", 6],
      ]);
      const { metrics } = await client.list({ prefix: "shared_load" });
      expect(metrics.map((m) => [m.name, m.series])).toEqual([["shared_load", 6n]]);
    }
  });
});
