/**
 * `node --import tsx test/support/compact-once.ts <database-url> <clock-ms>`: one compaction run of
 * the store on that database, a transaction per head row, with the store's clock at clock-ms;
 * a separate process so that a test can kill it with SIGKILL mid-run.
 */
import pg from "pg";
import { createLogger } from "../../src/shared/log.js";
import { openTsdb } from "../../src/tsdb/index.js";

const [url, clockMs] = process.argv.slice(2);
const pool = new pg.Pool({ connectionString: url, max: 2 });
const tsdb = await openTsdb(pool, {
  limits: { perMetric: 1, perAgent: 1 },
  retention: { rawMs: 30 * 86_400_000, rollups5mMs: 90 * 86_400_000, rollups1hMs: 730 * 86_400_000 },
  compaction: { maxRowsPerTransaction: 1 },
  now: () => Number(clockMs),
  log: createLogger("silent"),
});
const run = await tsdb.compact();
console.log(JSON.stringify(run));
await pool.end();
