/**
 * Alert evaluation with real daemons on a real PostgreSQL: samples pushed across a threshold take
 * an alert through pending, firing and resolved at the rule's timings; a daemon restarted while
 * the alert fires, and two daemons sharing the database, keep one alert and one history row per
 * change.
 */
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { AlertState, API as AlertsAPI, type Alert } from "../gen/alerts/alerts_pb.js";
import { Kind, API as MetricsAPI, SeriesSchema } from "../gen/metrics/metrics_pb.js";
import { resolveDaemonConfig } from "../src/config/config.js";
import { createLogger } from "../src/shared/log.js";
import { startDaemon, type RunningDaemon } from "../src/server/daemon.js";
import { adminTokenOf, tempDir, writeConfigFile } from "./support/daemon.js";
import { createTestDatabase, type TestDatabase } from "./support/postgres.js";
import { bearer } from "./support/rpc.js";

const pendingForMs = 2_000;
const intervalMs = 300;
/** A rule with short timings: web's load over 50 for 2 s fires. */
const config = {
  alerts: {
    evaluationInterval: `${intervalMs}ms`,
    rules: [
      {
        name: "TestLoadHigh",
        condition: {
          metric: "test_load",
          aggregation: "AGGREGATION_LAST",
          groupBy: ["host"],
          window: "3s",
          comparison: "COMPARISON_GREATER",
          threshold: 50,
        },
        pendingFor: `${pendingForMs / 1000}s`,
        annotations: { summary: "{{ $labels.host }} at {{ $value }}" },
      },
    ],
  },
};

describe("alert evaluation by real daemons", () => {
  const dir = tempDir("specta-alerts-");
  let database: TestDatabase | undefined;
  const running = new Set<RunningDaemon>();
  let stopPushing = () => {};

  afterEach(async () => {
    stopPushing();
    await Promise.all([...running].map((d) => d.stop()));
    running.clear();
    await database?.drop();
  });
  afterAll(() => dir.remove());

  async function daemon(name: string) {
    const dataDir = join(dir.path, name);
    const file = writeConfigFile(dir.path, config, "alerts.json");
    const d = await startDaemon(
      resolveDaemonConfig({ addr: "127.0.0.1:0", dataDir, databaseUrl: database!.url, config: file }, {}),
      createLogger("silent"),
    );
    running.add(d);
    const transport = createGrpcTransport({ baseUrl: d.url, interceptors: [bearer(adminTokenOf(dataDir))] });
    return { d, alerts: createClient(AlertsAPI, transport), metrics: createClient(MetricsAPI, transport) };
  }

  /** Pushes test_load{host="web-1"} = value() every 100 ms until stopped. */
  function pushLoad(metrics: Client<typeof MetricsAPI>, value: () => number) {
    let on = true;
    const loop = (async () => {
      while (on) {
        await metrics
          .push({
            series: [
              create(SeriesSchema, { metric: "test_load", labels: { host: "web-1" }, kind: Kind.GAUGE, times: [Date.now()], values: [value()] }),
            ],
          })
          .catch(() => undefined);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    stopPushing = () => {
      on = false;
    };
    return async () => {
      on = false;
      await loop;
    };
  }

  async function waitFor(alerts: Client<typeof AlertsAPI>, state: AlertState, timeoutMs = 15_000): Promise<Alert> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const found = (await alerts.listAlerts({ resolvedWithin: { seconds: 600n } })).alerts.find(
        (a) => a.rule === "TestLoadHigh" && a.state === state,
      );
      if (found) return found;
      if (Date.now() > until) throw new Error(`no alert became ${AlertState[state]} within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  const transitions = async (alerts: Client<typeof AlertsAPI>) =>
    (await alerts.history({ rule: "TestLoadHigh" })).changes.map((c) => `${AlertState[c.from]}>${AlertState[c.to]}`).reverse();

  it("goes pending, fires after pending_for and resolves; a restart while firing keeps the alert firing without a second transition", async () => {
    database = await createTestDatabase();
    let load = 90;
    const first = await daemon("one");
    pushLoad(first.metrics, () => load);
    const pending = await waitFor(first.alerts, AlertState.PENDING);
    const firing = await waitFor(first.alerts, AlertState.FIRING);
    expect(firing.fingerprint).toBe(pending.fingerprint);
    const waited = timestampMs(firing.firedAt!) - timestampMs(firing.activeSince!);
    // Fires at the first cycle after pending_for: within one interval (and a cycle's duration) of it.
    expect(waited).toBeGreaterThanOrEqual(pendingForMs);
    expect(waited).toBeLessThan(pendingForMs + intervalMs + 1_500);
    expect(firing.annotations.summary).toBe("web-1 at 90");

    stopPushing();
    await first.d.stop();
    running.delete(first.d);
    const second = await daemon("two");
    pushLoad(second.metrics, () => load);
    // Several cycles of the new daemon: the alert is still the one that fired, at the same time.
    await new Promise((r) => setTimeout(r, 5 * intervalMs));
    const still = await waitFor(second.alerts, AlertState.FIRING);
    expect([still.fingerprint, timestampMs(still.firedAt!)]).toEqual([firing.fingerprint, timestampMs(firing.firedAt!)]);
    expect(await transitions(second.alerts)).toEqual(["INACTIVE>PENDING", "PENDING>FIRING"]);

    load = 10;
    const resolved = await waitFor(second.alerts, AlertState.RESOLVED);
    expect(resolved.fingerprint).toBe(firing.fingerprint);
    expect(await transitions(second.alerts)).toEqual(["INACTIVE>PENDING", "PENDING>FIRING", "FIRING>RESOLVED"]);
  });

  it("two daemons on one database: one evaluation at a time, one history row per change, the same alerts on both", async () => {
    database = await createTestDatabase();
    let load = 90;
    const a = await daemon("a");
    const b = await daemon("b");
    const stop = pushLoad(a.metrics, () => load);
    const firing = await waitFor(b.alerts, AlertState.FIRING);
    await new Promise((r) => setTimeout(r, 5 * intervalMs));
    load = 10;
    await waitFor(a.alerts, AlertState.RESOLVED);
    await new Promise((r) => setTimeout(r, 5 * intervalMs));
    await stop();
    for (const { alerts } of [a, b]) {
      expect(await transitions(alerts)).toEqual(["INACTIVE>PENDING", "PENDING>FIRING", "FIRING>RESOLVED"]);
      const [alert] = (await alerts.listAlerts({ resolvedWithin: { seconds: 600n } })).alerts.filter((x) => x.rule === "TestLoadHigh");
      expect([alert!.fingerprint, AlertState[alert!.state]]).toEqual([firing.fingerprint, "RESOLVED"]);
    }
    // Both daemons ran the job; the cycles they evaluated add up, each under the lock.
    const cycles = await Promise.all(
      [a, b].map(async ({ d }) => {
        const text = await (await fetch(`${d.url}/metrics`)).text();
        expect(text).toMatch(/^specta_alerts\{state="resolved"\} 1$/m);
        return Number(/^specta_alert_evaluation_duration_seconds_count (\d+)$/m.exec(text)?.[1] ?? "0");
      }),
    );
    expect(cycles[0]! + cycles[1]!).toBeGreaterThan(0);
  });
});
