/** The points a daemon stored, read through the store's own read path (src/tsdb/) on its database. */
import pg from "pg";
import { createLogger } from "../../src/shared/log.js";
import type { Labels } from "../../src/shared/labels.js";
import { openTsdb } from "../../src/tsdb/index.js";

export interface StoredSeries {
  labels: Labels;
  times: number[];
  values: number[];
}

/** Every stored point of `metric`, per series; `connection` names the daemon's database. */
export async function storedPoints(connection: pg.PoolConfig, metric: string): Promise<StoredSeries[]> {
  const pool = new pg.Pool({ ...connection, max: 2 });
  try {
    const tsdb = await openTsdb(pool, {
      limits: { perMetric: 1, perAgent: 1 },
      retention: { rawMs: 1, rollups5mMs: 1, rollups1hMs: 1 },
      log: createLogger("silent"),
    });
    const series = await tsdb.series.select(metric, []);
    const points = await tsdb.readSamples(
      series.map((s) => s.id),
      0,
      8.64e15,
    );
    return series.map((s) => {
      const p = points.get(s.id);
      return { labels: s.labels, times: p ? [...p.times.subarray(0, p.n)] : [], values: p ? [...p.values.subarray(0, p.n)] : [] };
    });
  } finally {
    await pool.end();
  }
}
