import { Gauge, type Registry } from "prom-client";
import type { Db } from "../storage/database.js";
import { lastSeenOfActive } from "./inventory.js";
import { statusAt, type AgentLiveness } from "./liveness.js";
import { statusNames } from "../shared/agent-status.js";

/**
 * `specta_agents{status}`: the inventory's agents by status, counted when /metrics is scraped.
 * A scrape while the database is away keeps the previous counts.
 */
export function fleetGauge(registry: Registry, db: Db, liveness: AgentLiveness): Gauge<"status"> {
  return new Gauge({
    name: "specta_agents",
    help: "Agents in the inventory, by status (online: seen within 30 s, stale: within 5 min, offline).",
    labelNames: ["status"],
    registers: [registry],
    async collect() {
      let rows: { id: string; last_seen: Date }[];
      try {
        rows = await lastSeenOfActive(db);
      } catch {
        return;
      }
      const counts: Record<string, number> = { online: 0, stale: 0, offline: 0 };
      const now = Date.now();
      for (const row of rows) {
        const seen = Math.max(row.last_seen.getTime(), liveness.unflushed(row.id) ?? 0);
        const name = statusNames[statusAt(seen, now)];
        counts[name] = (counts[name] ?? 0) + 1;
      }
      for (const [status, n] of Object.entries(counts)) this.set({ status }, n);
    },
  });
}
