/**
 * `specta alerts` as a user runs it: the built CLI (`npm run build` first; `npm test` does it) in a
 * child process, against a real daemon whose rule fires on pushed samples.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { beforeAll, describe, expect, it } from "vitest";
import { AlertState, API as AlertsAPI } from "../../gen/alerts/alerts_pb.js";
import { Kind, API as MetricsAPI, SeriesSchema } from "../../gen/metrics/metrics_pb.js";
import { repoRoot, runSpecta, useDaemon } from "../../test/support/daemon.js";
import { bearer } from "../../test/support/rpc.js";

beforeAll(() => {
  if (!existsSync(join(repoRoot, "dist", "src", "cli", "alerts.js"))) {
    throw new Error("dist/ lacks the alerts command: run `npm run build` before these tests (`npm test` does it)");
  }
});

describe("specta alerts", () => {
  const daemon = useDaemon({
    config: {
      alerts: {
        evaluationInterval: "200ms",
        rules: [
          {
            name: "DiskFull",
            condition: {
              metric: "test_disk_pct",
              aggregation: "AGGREGATION_MAX",
              groupBy: ["host"],
              window: "60s",
              comparison: "COMPARISON_GREATER",
              threshold: 90,
            },
            annotations: { summary: "{{ $labels.host }} is {{ $value }} % full" },
          },
        ],
      },
    },
  });
  const at = () => ["--server", daemon().url, "--data-dir", daemon().dataDir];

  beforeAll(async () => {
    const transport = createConnectTransport({ baseUrl: daemon().url, httpVersion: "1.1", interceptors: [bearer(daemon().adminToken())] });
    const now = Date.now();
    await createClient(MetricsAPI, transport).push({
      series: [
        create(SeriesSchema, {
          metric: "test_disk_pct",
          labels: { host: "files-1" },
          kind: Kind.GAUGE,
          times: [now - 5_000, now],
          values: [96.5, 97.25],
        }),
      ],
    });
    const alerts = createClient(AlertsAPI, transport);
    for (let i = 0; i < 200; i++) {
      if ((await alerts.listAlerts({})).alerts.some((a) => a.state === AlertState.FIRING)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error("DiskFull did not fire");
  });

  it("prints the firing alerts with their hosts and values, as a table and as JSON", async () => {
    const run = await runSpecta(["alerts", ...at()]);
    expect([run.code, run.stderr]).toEqual([0, ""]);
    const lines = run.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^STATE +ALERT +HOST +VALUE +SINCE +SUMMARY$/);
    expect(lines.slice(1)).toEqual([expect.stringMatching(/^firing +DiskFull +files-1 +97\.25 +\d+s ago +files-1 is 97\.25 % full$/)]);
    const json = JSON.parse((await runSpecta(["alerts", "--json", ...at()])).stdout) as { alerts: Record<string, unknown>[] };
    expect(json.alerts).toEqual([
      expect.objectContaining({ rule: "DiskFull", state: "ALERT_STATE_FIRING", value: 97.25, labels: { alertname: "DiskFull", host: "files-1" } }),
    ]);
  });

  it("prints the rules with their health and the history of changes", async () => {
    const rules = await runSpecta(["alerts", "rules", ...at()]);
    expect([rules.code, rules.stderr]).toEqual([0, ""]);
    const lines = rules.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^NAME +SOURCE +ENABLED +HEALTH +ACTIVE +FOR +CONDITION +ERROR$/);
    expect(lines.map((l) => l.split(/ +/)[0])).toEqual([
      "NAME",
      "AgentOffline",
      "FilesystemAlmostFull",
      "MemoryLow",
      "CpuBusy",
      "SystemdUnitFailed",
      "DatabaseUnreachable",
      "DiskFull",
    ]);
    expect(lines.at(-1)).toMatch(/^DiskFull +config +yes +ok +1 +0s +max\(test_disk_pct by host over 60s\) > 90$/);
    const json = JSON.parse((await runSpecta(["alerts", "rules", "--json", ...at()])).stdout) as { rules: { rule: { name: string } }[] };
    expect(json.rules).toHaveLength(7);

    const history = await runSpecta(["alerts", "history", "--rule", "DiskFull", ...at()]);
    expect([history.code, history.stderr]).toEqual([0, ""]);
    expect(history.stdout.trimEnd().split("\n").slice(1)).toEqual([
      expect.stringMatching(/^\S+Z \(\d+s ago\) +DiskFull +files-1 +inactive -> firing +97\.25$/),
    ]);
    expect(await runSpecta(["alerts", "history", "--limit", "0", ...at()])).toEqual({
      code: 1,
      stdout: "",
      stderr: 'specta: --limit must be a whole number from 1 to 1000, got "0"\n',
    });
  });
});
