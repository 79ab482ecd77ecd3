import { Gauge, Histogram, type Registry } from "prom-client";
import type { Db } from "../../storage/database.js";
import type { AlertTables } from "../alerts.table.js";

/**
 * The evaluation in the daemon's /metrics: `specta_alert_evaluation_duration_seconds` (cycles
 * this daemon ran), and, read from the database when scraped so that every daemon reports the
 * same, `specta_alert_rules_erroring` and `specta_alerts{state}`. Returns the cycle observer.
 */
export function alertMetrics(registry: Registry, db: Db): (seconds: number) => void {
  const tables = db.withTables<AlertTables>();
  const duration = new Histogram({
    name: "specta_alert_evaluation_duration_seconds",
    help: "Wall time of one evaluation cycle of every alert rule (on the daemon that evaluates).",
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  new Gauge({
    name: "specta_alert_rules_erroring",
    help: "Alert rules whose last evaluation failed or timed out.",
    registers: [registry],
    async collect() {
      try {
        const row = await tables
          .selectFrom("alert_rule_status")
          .select((eb) => eb.fn.countAll<string>().as("n"))
          .where("health", "=", "error")
          .executeTakeFirst();
        this.set(Number(row?.n ?? 0));
      } catch {
        // The database is away: keep the previous value.
      }
    },
  });
  new Gauge({
    name: "specta_alerts",
    help: "Alerts by state (resolved and inactive ones are kept 15 minutes).",
    labelNames: ["state"],
    registers: [registry],
    async collect() {
      try {
        const rows = await tables
          .selectFrom("alerts")
          .select(["state", (eb) => eb.fn.countAll<string>().as("n")])
          .groupBy("state")
          .execute();
        const counts: Record<string, number> = { pending: 0, firing: 0, resolved: 0, inactive: 0 };
        for (const r of rows) counts[r.state] = Number(r.n);
        for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
      } catch {
        // The database is away: keep the previous counts.
      }
    },
  });
  return (seconds) => duration.observe(seconds);
}
