import { Counter, Gauge, type Registry } from "prom-client";
import type { Replicas } from "../storage/replicas.js";
import { openTsdbReads, type TsdbOptions, type TsdbReads } from "../tsdb/index.js";

/**
 * The store's read path as Query, List and the Prometheus API use it: each read goes to a usable
 * replica in turn, else to the primary (`primary`). Writes, and reads that must see the caller's
 * own writes (a command's state after Submit), never come here. /metrics shows each replica's
 * state and where reads went.
 */
export function replicaReads(
  primary: TsdbReads,
  replicas: Replicas,
  options: Pick<TsdbOptions, "limits" | "retention">,
  registry: Registry,
): TsdbReads {
  const stores = new Map(replicas.replicas.map((r) => [r, openTsdbReads(r.pool, options)]));
  const reads = new Counter({
    name: "specta_database_reads_total",
    help: "Reads of the store by where they went: a replica (host:port/database) or the primary.",
    labelNames: ["target"],
    registers: [registry],
  });
  const gauge = (name: string, help: string, value: (r: Replicas["replicas"][number]) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ["replica"],
      registers: [registry],
      collect() {
        for (const r of replicas.replicas) this.set({ replica: r.name }, value(r));
      },
    });
  gauge("specta_database_replica_up", "Whether the replica answered its last check.", (r) => (r.up ? 1 : 0));
  gauge("specta_database_replica_usable", "Whether reads go to the replica: up and at most replicaMaxLag behind.", (r) => (r.usable ? 1 : 0));
  gauge("specta_database_replica_lag_seconds", "How far the replica was behind the primary at its last check (-1: down).", (r) =>
    r.lagMs === undefined ? -1 : r.lagMs / 1000,
  );
  const pick = (): TsdbReads => {
    const replica = replicas.pick();
    reads.inc({ target: replica?.name ?? "primary" });
    return replica ? stores.get(replica)! : primary;
  };
  return {
    get series() {
      return pick().series;
    },
    readPoints: (q, nowMs) => pick().readPoints(q, nowMs),
    readSamples: (ids, fromMs, toMs) => pick().readSamples(ids, fromMs, toMs),
  };
}
