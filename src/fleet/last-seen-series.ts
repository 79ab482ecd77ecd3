import type { Db } from "../storage/database.js";
import { seriesKey } from "../shared/series-key.js";
import { SeriesKind, type SeriesRef, type Tsdb } from "../tsdb/index.js";
import type { Handler } from "../worker/engine.js";
import { lastSeenOfActive } from "./inventory.js";
import type { AgentLiveness } from "./liveness.js";

/** The advisory lock of the last-seen series: one daemon writes them (other keys: src/worker/leader.ts). */
export const lastSeenSeriesLock = 0x5e_c7_a0_12;

/** The series of each active agent's last call, in Unix seconds, labelled with its host. */
export const lastSeenMetric = "specta_agent_last_seen_timestamp_seconds";

export interface LastSeenSeriesOptions {
  db: Db;
  tsdb: Pick<Tsdb, "series" | "append">;
  liveness: AgentLiveness;
  /** How often the series get a point; default 15 s. */
  intervalMs?: number;
}

/**
 * Writes every active agent's last call (agents.last_seen, or this daemon's unflushed record of
 * it) as a point of `specta_agent_last_seen_timestamp_seconds{host}` every few seconds, so that an
 * agent that stopped calling still has a fresh series whose value ages: the "agent offline" alert
 * rule reads it (`time() - … > 120`), and dashboards can graph it.
 */
export function lastSeenSeries({ db, tsdb, liveness, intervalMs = 15_000 }: LastSeenSeriesOptions): Handler {
  return {
    name: "agent-last-seen-series",
    coolerMs: intervalMs,
    leaderLock: lastSeenSeriesLock,
    async ensure() {
      const rows = await lastSeenOfActive(db);
      if (rows.length === 0) return;
      const wanted = new Map<string, SeriesRef>();
      const seen = new Map<string, number>();
      for (const row of rows) {
        const labels = { host: row.hostname };
        const key = seriesKey(lastSeenMetric, labels);
        wanted.set(key, { metric: lastSeenMetric, labels, kind: SeriesKind.gauge });
        seen.set(key, Math.max(seen.get(key) ?? 0, row.last_seen.getTime(), liveness.unflushed(row.id) ?? 0));
      }
      const resolved = await tsdb.series.resolve(wanted, { unlimited: true });
      const now = Date.now();
      const batch = [];
      for (const [key, at] of seen) {
        const r = resolved.get(key);
        if (r && "id" in r) batch.push({ id: r.id, times: [now], values: [at / 1000] });
      }
      await tsdb.append(batch);
    },
  };
}
