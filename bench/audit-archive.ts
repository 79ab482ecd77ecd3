/**
 * npm run bench:audit — what the audit trail and the raw archive add to one Push on the call's
 * own path (server/audit-calls.ts): the batch's metric names for the audit event, and the
 * archive's line (the request as protobuf JSON, stringified and buffered). No I/O is awaited
 * there; the files and the database are written off the call's path, in batches. Prints the cost
 * per Push for an agent's batch (126 series, one point each) and for Push's largest (10,000).
 */
import { create, toJson } from "@bufbuild/protobuf";
import { Registry } from "prom-client";
import { Kind, PushRequestSchema } from "../gen/metrics/metrics_pb.js";
import { Archive } from "../src/archive/archive.js";
import { uniqueNames } from "../src/audit/event.js";
import { createLogger } from "../src/shared/log.js";
import { machine } from "./store-load.js";

console.log(machine());
for (const series of [126, 10_000]) {
  const req = create(PushRequestSchema, {
    series: Array.from({ length: series }, (_, i) => ({
      metric: `node_metric_${i % 60}`,
      labels: { host: "web-1", device: `d${i}` },
      kind: Kind.GAUGE,
      times: [Date.now()],
      values: [Math.random() * 1e6],
    })),
  });
  // Never flushed here: this measures the call's path, not the writer.
  const archive = new Archive(
    { dir: "/nonexistent", retentionMs: 1, flushBytes: 2 ** 40, flushIntervalMs: 2 ** 30 },
    new Registry(),
    createLogger("silent"),
  );
  const rounds = series > 1_000 ? 100 : 5_000;
  const actor = { token_id: null, name: null, role: "agent" };
  const per = (f: () => void) => {
    const started = performance.now();
    for (let r = 0; r < rounds; r++) f();
    return (performance.now() - started) / rounds;
  };
  const audit = per(() => uniqueNames(req.series.map((s) => s.metric)));
  const archived = per(() =>
    archive.append({
      ts: new Date().toISOString(),
      action: "metrics.API/Push",
      actor,
      ip_address: "127.0.0.1",
      request: toJson(PushRequestSchema, req),
    }),
  );
  const us = (ms: number) => `${((ms * 1000) / series).toFixed(2)} µs per series`;
  console.log(
    `${series} series: audit event ${audit.toFixed(3)} ms per Push (${us(audit)}); archive line ${archived.toFixed(3)} ms (${us(archived)})`,
  );
}
process.exit(0);
