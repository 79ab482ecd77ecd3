/**
 * The dashboard in a real browser (Debian's chromium through playwright-core) against a real
 * `specta daemon --with-agent` process, as `npm start` runs it. A screenshot of each page is kept
 * in test-artifacts/dashboard/. Without chromium these tests are skipped, except with CI=true.
 */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { API as AgentAPI, HostSchema, PackagesSchema } from "../../gen/agent/agent_pb.js";
import { AlertState, API as AlertsAPI, Comparison } from "../../gen/alerts/alerts_pb.js";
import { Aggregation, API as MetricsAPI, Kind } from "../../gen/metrics/metrics_pb.js";
import {
  adminTokenOf,
  repoRoot,
  runSpecta,
  spawnDaemon,
  tempDir,
  testInstruments,
  writeConfigFile,
  type SpawnedDaemon,
} from "../../test/support/daemon.js";
import { enrolAgent } from "../../test/support/fake-agent.js";
import { bearer } from "../../test/support/rpc.js";
import { readEnrollToken } from "../fleet/enroll-token.js";

const chromiumPath = process.env.SPECTA_TEST_CHROMIUM ?? "/usr/bin/chromium";
const haveChromium = existsSync(chromiumPath);
if (!haveChromium && process.env.CI === "true") {
  throw new Error(`CI=true but there is no chromium at ${chromiumPath}: install Debian's chromium package (.ci/run does)`);
}
const artifacts = join(repoRoot, "test-artifacts", "dashboard");

describe.skipIf(!haveChromium)("the dashboard in chromium", () => {
  let daemon: SpawnedDaemon;
  let browser: Browser;
  let viewerToken: string;
  const configDir = tempDir();

  beforeAll(async () => {
    mkdirSync(artifacts, { recursive: true });
    // The tests' instruments: a gauge and labelled histograms besides the default histogram; rules
    // evaluated every second, so that an alert fires within the tests' waits.
    const config = { instruments: testInstruments, alerts: { evaluationInterval: "1s" } };
    daemon = await spawnDaemon(["--with-agent", "--config", writeConfigFile(configDir.path, config)]);
    browser = await chromium.launch({
      executablePath: chromiumPath,
      // Root needs --no-sandbox; the rest keeps Chromium off this machine's closed network.
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    const created = await runSpecta([
      "token",
      "create",
      "--role",
      "viewer",
      "--name",
      "browser-viewer",
      "--server",
      daemon.url,
      "--data-dir",
      daemon.dataDir,
    ]);
    expect(created.code, created.stderr).toBe(0);
    viewerToken = created.stdout.trim();
  });
  afterAll(async () => {
    await browser?.close();
    await daemon?.cleanup();
    configDir.remove();
  });

  /** A fresh browser session (its own sessionStorage) on the daemon's page; page errors fail the test. */
  async function open(width = 1400): Promise<{ page: Page; errors: string[] }> {
    const context = await browser.newContext({ viewport: { width, height: 900 } });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on("pageerror", (err) => errors.push(err.message));
    await page.goto(daemon.url + "/");
    return { page, errors };
  }

  async function signIn(page: Page, token: string): Promise<void> {
    await page.fill("#token", token);
    await page.click("form.signin button[type=submit]");
    await page.waitForSelector("header nav");
  }

  const shot = (page: Page, name: string) => page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });

  /** Nothing sticks out sideways: the page scrolls only down (wide tables scroll in their own box). */
  const sideways = (page: Page) => page.evaluate<number>("document.scrollingElement.scrollWidth - innerWidth");

  it("asks for a token and shows nothing else without one; refuses an unknown token", async () => {
    const { page, errors } = await open();
    await page.waitForSelector("form.signin #token");
    expect(await page.locator("header").count()).toBe(0);
    await shot(page, "sign-in");
    await page.fill("#token", "specta_not-a-real-token");
    await page.click("form.signin button[type=submit]");
    await expect.poll(() => page.locator("form.signin .error").textContent()).toBe("This token is unknown or revoked.");
    expect(await page.evaluate("sessionStorage.length")).toBe(0);
    expect(errors).toEqual([]);
    await page.context().close();
  });

  it("signs in as admin, shows the local agent online, and its host page draws CPU points", async () => {
    const { page, errors } = await open();
    await signIn(page, adminTokenOf(daemon.dataDir));
    const row = page.locator("table.inventory tbody tr[data-status=online]");
    await row.first().waitFor({ timeout: 30_000 });
    expect(await row.count()).toBe(1);
    // The at-a-glance figures arrive with the agent's first samples (fleet refresh: 10 s).
    await expect.poll(() => row.locator("td[data-column=memory]").textContent(), { timeout: 30_000, interval: 500 }).toMatch(/%/);
    expect(await page.locator(".summary").textContent()).toMatch(/^1 agent: 1 online/);
    await shot(page, "fleet");

    await row.locator("td[data-column=hostname] a").click();
    await page.waitForSelector("h1 .status-online");
    const cpu = page.locator("section.chart[data-title=CPU]");
    // Two CPU samples (5 s apart) make the first rate point; the page refreshes every 5 s.
    await expect.poll(async () => Number(await cpu.getAttribute("data-points")), { timeout: 45_000, interval: 500 }).toBeGreaterThan(0);
    expect(await cpu.locator("canvas").count()).toBe(1);
    const memory = page.locator("section.chart[data-title=Memory]");
    expect(Number(await memory.getAttribute("data-points"))).toBeGreaterThan(0);
    // The total is the chart's ceiling, named in its title, not a line of its own.
    expect(Number(await memory.getAttribute("data-limit"))).toBeGreaterThan(0);
    expect(await memory.locator("h3").textContent()).toMatch(/^Memory · total [\d.]+ [KMGT]iB$/);
    expect(await memory.locator(".u-legend .u-label").allTextContents()).toEqual(["Time", "used", "cache", "swap used"]);
    // The agent's own top processes (its first run lists the largest by memory).
    const processes = page.locator("[data-panel=processes] tbody tr");
    await expect.poll(() => processes.count(), { timeout: 45_000, interval: 1000 }).toBeGreaterThan(0);
    expect(await page.locator("[data-panel=containers]").count()).toBe(1);
    expect(await page.locator("[data-panel=services]").count()).toBe(1);
    expect(await page.locator("section.chart[data-title=Temperatures]").count()).toBe(1);
    await shot(page, "host");

    // A longer range is kept in the address, and redraws.
    await page.click(".range button:text-is('24h')");
    await expect.poll(() => page.evaluate("location.hash")).toMatch(/range=24h/);
    await expect.poll(async () => Number(await cpu.getAttribute("data-points")), { timeout: 10_000 }).toBeGreaterThan(0);
    expect(errors).toEqual([]);
    await page.context().close();
  }, 120_000);

  it("shows instruments with their histogram quantiles apart, and a gauge set once as a held line", async () => {
    // Two calls: a quantile needs observations that arrive after the series' first sample.
    for (const number of [0.2, 0.4]) {
      const res = await fetch(`${daemon.url}/metrics.API/Histogram`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ action: [{ metric: "page_ready_duration_seconds", number }] }),
      });
      expect(await res.json()).toEqual({ result: [{ status: "success" }] });
    }
    const gauge = await fetch(`${daemon.url}/metrics.API/Gauge`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ action: [{ metric: "queue_depth", labels: { queue: "mail", transport: "json" }, number: 7 }] }),
    });
    expect(await gauge.json()).toEqual({ result: [{ status: "success" }] });
    const { page, errors } = await open();
    await signIn(page, viewerToken);
    await page.click("header nav a:text-is('Instruments')");
    const card = page.locator("article.instrument[data-instrument=page_ready_duration_seconds]");
    await card.waitFor();
    expect(await card.getAttribute("data-kind")).toBe("histogram");
    await expect.poll(async () => Number(await card.locator("section.chart").getAttribute("data-points")), { timeout: 20_000 }).toBeGreaterThan(0);
    // One environment: the legend names the quantiles only, each drawn apart.
    await expect.poll(() => card.locator(".latest").textContent()).toMatch(/^p50: [\d.]+ s · p90: [\d.]+ s · p99: [\d.]+ s$/);
    expect(await card.locator(".u-legend .u-label").allTextContents()).toEqual(["Time", "p50", "p90", "p99"]);
    // Set once, the gauge still holds its value now: a line from the setting to now, not a dot.
    const held = page.locator("article.instrument[data-instrument=queue_depth]");
    await expect.poll(async () => Number(await held.locator("section.chart").getAttribute("data-points")), { timeout: 20_000 }).toBe(2);
    expect(await held.locator(".latest").textContent()).toContain("queue=mail");
    expect(await held.locator(".latest").textContent()).toMatch(/: 7$/);
    await shot(page, "instruments");
    expect(errors).toEqual([]);
    await page.context().close();
  });

  it("runs ping 127.0.0.1 from the console and shows the result", async () => {
    const { page, errors } = await open();
    await signIn(page, adminTokenOf(daemon.dataDir));
    await page.click("header nav a:text-is('Console')");
    await page.waitForSelector("#agent option", { state: "attached" });
    await page.selectOption("#diagnostic", "ping");
    await page.fill("#field-host", "127.0.0.1");
    await page.fill("#field-count", "2");
    await page.click("form.console button[type=submit]");
    const result = page.locator(".result").first();
    await expect.poll(() => result.getAttribute("data-state"), { timeout: 30_000, interval: 200 }).toBe("succeeded");
    expect(await result.locator("pre.text").textContent()).toContain("2 packets transmitted, 2 received");
    expect(await result.locator(".timeline li").allTextContents()).toEqual(
      expect.arrayContaining([expect.stringMatching(/^running /), expect.stringMatching(/^succeeded /)]),
    );
    await shot(page, "console");

    // Bad arguments come back from the daemon as a clear message, and nothing is queued.
    await page.fill("#field-host", "-oProxyCommand=x");
    await page.click("form.console button[type=submit]");
    await expect.poll(() => page.locator("main > .error").textContent()).toMatch(/host/i);
    expect(await page.locator(".result").count()).toBe(1);

    // Earlier runs outlive the page: after a reload the run is listed again, with its output.
    await page.reload();
    await page.click("header nav a:text-is('Console')");
    const earlier = page.locator(".result[data-stored]");
    await earlier.waitFor();
    expect(await earlier.count()).toBe(1);
    expect(await earlier.getAttribute("data-state")).toBe("succeeded");
    expect(await earlier.locator("h2").textContent()).toMatch(/^ping on /);
    expect(await earlier.locator("pre.text").textContent()).toContain("2 packets transmitted, 2 received");
    // Signing out forgets them.
    await page.click("header button:text-is('Sign out')");
    await page.waitForSelector("form.signin");
    expect(await page.evaluate('Object.keys(localStorage).filter((k) => k.startsWith("specta.console."))')).toEqual([]);
    expect(errors).toEqual([]);
    await page.context().close();
  });

  it("does not let a viewer run commands: the page refuses, and so does the API", async () => {
    const { page, errors } = await open();
    await signIn(page, viewerToken);
    await expect.poll(() => page.locator("header .role").textContent()).toBe("browser-viewer · viewer");
    await page.click("header nav a:text-is('Console')");
    await page.waitForSelector("#agent option", { state: "attached" });
    expect(await page.locator("form.console button[type=submit]").isDisabled()).toBe(true);
    expect(await page.locator(".notice").textContent()).toMatch(/Viewer tokens cannot run commands/);
    await shot(page, "console-viewer");

    // The same call the page would make, sent with the viewer's token from the page itself.
    const agent = await page.locator("#agent").inputValue();
    const answer = await page.evaluate(
      async ({ token, agent }) => {
        const res = await fetch("/commands.API/Submit", {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
          body: JSON.stringify({ agent, diagnostic: { ping: { host: "127.0.0.1", count: 1 } } }),
        });
        return { status: res.status, body: (await res.json()) as { code: string } };
      },
      { token: viewerToken, agent },
    );
    expect(answer).toMatchObject({ status: 403, body: { code: "permission_denied" } });
    expect(errors).toEqual([]);
    await page.context().close();
  });

  it("lets an admin remove an agent from the fleet, and shows viewers no remove button", async () => {
    const { agentId } = await enrolAgent(daemon.url, readEnrollToken(daemon.dataDir)!, "to-remove");
    const viewer = await open();
    await signIn(viewer.page, viewerToken);
    await viewer.page.locator(`table.inventory tbody tr[data-agent="${agentId}"]`).waitFor();
    expect(await viewer.page.locator("table.inventory button.remove").count()).toBe(0);
    await viewer.page.context().close();

    const { page, errors } = await open();
    await signIn(page, adminTokenOf(daemon.dataDir));
    const row = page.locator(`table.inventory tbody tr[data-agent="${agentId}"]`);
    await row.waitFor();
    // The confirmation names the host; declined, nothing happens.
    const asked: string[] = [];
    page.once("dialog", (dialog) => void (asked.push(dialog.message()), dialog.dismiss()));
    await row.locator("button.remove").click();
    await expect.poll(() => asked).toEqual([expect.stringMatching(/^Remove to-remove from the fleet\?/)]);
    expect(await row.count()).toBe(1);
    page.once("dialog", (dialog) => void dialog.accept());
    await row.locator("button.remove").click();
    await row.waitFor({ state: "detached" });
    const agents = createClient(
      AgentAPI,
      createConnectTransport({ baseUrl: daemon.url, httpVersion: "1.1", interceptors: [bearer(adminTokenOf(daemon.dataDir))] }),
    );
    expect((await agents.list({})).agents.map((a) => a.id)).not.toContain(agentId);
    // The host's own agent is still there.
    expect(await page.locator("table.inventory tbody tr").count()).toBe(1);
    expect(errors).toEqual([]);
    await page.context().close();
  });

  it("shows a host's top processes, containers, systemd services and temperatures as its agent sends them", async () => {
    // What the agent's processes, containers, services and temperature collectors send, from a host that has them all.
    const { agentId, credential } = await enrolAgent(daemon.url, readEnrollToken(daemon.dataDir)!, "panel-host");
    const metrics = createClient(MetricsAPI, createConnectTransport({ baseUrl: daemon.url, httpVersion: "1.1", interceptors: [bearer(credential)] }));
    const now = Date.now();
    const earlier = now - 30_000;
    const gauge = (metric: string, labels: Record<string, string>, value: number, times = [now]) => ({
      metric,
      labels,
      kind: Kind.GAUGE,
      times,
      values: times.map(() => value),
    });
    const web = { name: "web", image: "nginx:1.27" };
    const units = [
      ["ssh.service", "active"],
      ["backup.service", "failed"],
    ].flatMap(([name, current]) =>
      ["activating", "active", "deactivating", "inactive", "failed"].map((state) =>
        gauge("node_systemd_unit_state", { name: name!, state }, state === current ? 1 : 0),
      ),
    );
    const pushed = await metrics.push({
      series: [
        // A process that left the top list since the earlier run is not shown.
        gauge("node_top_process_cpu_usage_ratio", { pid: "99", name: "gone" }, 0.9, [earlier]),
        gauge("node_top_process_cpu_usage_ratio", { pid: "4242", name: "postgres" }, 0.5),
        gauge("node_top_process_resident_memory_bytes", { pid: "4242", name: "postgres" }, 256 * 1024 * 1024),
        ...["running", "exited"].map((state) => gauge("docker_containers", { state }, state === "running" ? 1 : 2)),
        gauge("container_memory_working_set_bytes", web, 64 * 1024 * 1024),
        gauge("container_spec_memory_limit_bytes", web, 512 * 1024 * 1024),
        { metric: "container_cpu_usage_seconds_total", labels: web, kind: Kind.COUNTER, times: [earlier, now], values: [100, 103] },
        ...units,
        gauge("node_hwmon_temp_celsius", { chip: "hwmon1_coretemp", sensor: "temp1", label: "Package id 0" }, 47, [earlier, now]),
      ],
    });
    expect(pushed.refused).toBe(0);

    for (const width of [1440, 390]) {
      const { page, errors } = await open(width);
      await signIn(page, viewerToken);
      await page.goto(`${daemon.url}/#/hosts/${agentId}`);
      const processes = page.locator("[data-panel=processes] tbody tr");
      await processes.first().waitFor({ timeout: 20_000 });
      expect(await processes.allTextContents()).toEqual(["postgres424250 %256 MiB"]);
      // Each panel loads on its own: wait for each one's line, not only for the processes' rows.
      const containers = page.locator("[data-panel=containers]");
      await expect.poll(() => containers.locator("p").textContent(), { timeout: 20_000 }).toMatch(/^3 containers: 1 running, 2 exited\./);
      expect(await containers.locator("tbody td").allTextContents()).toEqual(["web", "nginx:1.27", "10 %", "64 MiB / 512 MiB", "–", "–"]);
      const services = page.locator("[data-panel=services]");
      await expect.poll(() => services.locator("p").textContent(), { timeout: 20_000 }).toBe("2 services: 1 failed, 1 active.");
      expect(await services.locator("tbody tr").allTextContents()).toEqual(["backup.servicefailed", "ssh.serviceactive"]);
      const temperatures = page.locator("section.chart[data-title=Temperatures]");
      await expect.poll(async () => Number(await temperatures.getAttribute("data-points")), { timeout: 10_000 }).toBe(2);
      expect(await temperatures.locator(".u-legend .u-label").allTextContents()).toEqual(["Time", "Package id 0"]);
      // An agent that sent no package list: the panel says so.
      await expect
        .poll(() => page.locator("[data-panel=packages] p").textContent(), { timeout: 20_000 })
        .toMatch(/^The agent has sent no package list/);
      // A viewer gets no remove button.
      expect(await page.locator("button.remove").count()).toBe(0);
      expect(await sideways(page)).toBeLessThanOrEqual(0);
      await shot(page, `host-panels-${width}`);
      expect(errors).toEqual([]);
      await page.context().close();
    }

    // An admin may remove the host from its page (after confirming), and is taken back to the fleet.
    const { page, errors } = await open();
    await signIn(page, adminTokenOf(daemon.dataDir));
    await page.goto(`${daemon.url}/#/hosts/${agentId}`);
    await page.locator("h1 .status").waitFor();
    page.once("dialog", (dialog) => void (expect(dialog.message()).toMatch(/^Remove panel-host from the fleet\?/), dialog.accept()));
    await page.click("button.remove");
    await expect.poll(() => page.evaluate("location.hash"), { timeout: 10_000 }).toBe("#/");
    await expect.poll(() => page.locator(`table.inventory tbody tr[data-agent="${agentId}"]`).count(), { timeout: 10_000 }).toBe(0);
    expect(errors).toEqual([]);
    await page.context().close();
  }, 120_000);

  it("lists a firing alert with its host and value, marks it on the fleet and host pages, and lets admins silence it and edit its rule", async () => {
    const adminToken = adminTokenOf(daemon.dataDir);
    const admin = createConnectTransport({ baseUrl: daemon.url, httpVersion: "1.1", interceptors: [bearer(adminToken)] });
    const alerts = createClient(AlertsAPI, admin);
    // A host whose agent sent its package list, and a load over the rule's threshold.
    const { agentId, credential } = await createClient(AgentAPI, createConnectTransport({ baseUrl: daemon.url, httpVersion: "1.1" })).register({
      enrollToken: readEnrollToken(daemon.dataDir)!,
      host: create(HostSchema, { hostname: "alert-host", os: "linux" }),
      agentVersion: "test",
      packages: create(PackagesSchema, {
        manager: "dpkg",
        collected: timestampFromMs(Date.now()),
        packages: Array.from({ length: 60 }, (_, i) => ({ name: `lib${String(i).padStart(2, "0")}`, version: `1.${i}`, arch: "amd64" })),
      }),
    });
    await alerts.putRule({
      rule: {
        name: "TestLoadHigh",
        condition: {
          metric: "test_load",
          aggregation: Aggregation.LAST,
          groupBy: ["host"],
          window: { seconds: 3600n },
          comparison: Comparison.GREATER,
          threshold: 50,
        },
        labels: { severity: "critical" },
        annotations: { summary: "{{ $labels.host }} at {{ $value }}" },
      },
    });
    // A rule whose evaluation fails: two series on each side of a one-to-one match on no labels.
    await alerts.putRule({ rule: { name: "TestBroken", condition: { expr: "test_pair + on() test_pair" } } });
    const metrics = createClient(MetricsAPI, createConnectTransport({ baseUrl: daemon.url, httpVersion: "1.1", interceptors: [bearer(credential)] }));
    const now = Date.now();
    const pushed = await metrics.push({
      series: [
        { metric: "test_load", labels: {}, kind: Kind.GAUGE, times: [now], values: [93] },
        ...["a", "b"].map((side) => ({ metric: "test_pair", labels: { side }, kind: Kind.GAUGE, times: [now], values: [1] })),
      ],
    });
    expect(pushed.refused).toBe(0);
    const firing = async () => (await alerts.listAlerts({})).alerts.find((a) => a.rule === "TestLoadHigh" && a.state === AlertState.FIRING);
    await expect.poll(firing, { timeout: 20_000, interval: 500 }).toBeDefined();

    // A viewer reads it all, at both widths, and is given no control to change anything.
    for (const width of [1440, 390]) {
      const { page, errors } = await open(width);
      await signIn(page, viewerToken);
      await page.click("header nav a:text-is('Alerts')");
      const row = page.locator("table.active tbody tr[data-state=firing]").filter({ hasText: "TestLoadHigh" });
      await row.waitFor();
      expect(await row.locator("td[data-column=host]").textContent()).toBe("alert-host");
      expect(await row.locator("td[data-column=value]").textContent()).toBe("93");
      expect(await row.locator("td[data-column=severity]").textContent()).toBe("critical");
      expect(await row.locator("td[data-column=summary]").textContent()).toBe("alert-host at 93");
      const rule = page.locator("table.rules tr[data-rule=TestLoadHigh]");
      expect(await rule.locator("td").nth(1).textContent()).toBe("API");
      expect(await page.locator("table.rules tr[data-rule=AgentOffline] td").nth(1).textContent()).toBe("default");
      const broken = page.locator("table.rules tr[data-rule=TestBroken]");
      await expect.poll(() => broken.getAttribute("data-health"), { timeout: 15_000 }).toBe("error");
      expect(await broken.locator(".error").textContent()).toMatch(/^error: .*many-to-many matching not allowed/);
      await expect.poll(() => page.locator("table.history tbody tr").filter({ hasText: "TestLoadHigh" }).count()).toBeGreaterThan(0);
      expect(await page.locator("main form, main button").count()).toBe(0);
      expect(await sideways(page)).toBeLessThanOrEqual(0);
      await shot(page, `alerts-viewer-${width}`);

      // The fleet marks the host; its page names the alert and lists its packages.
      await page.click("header nav a:text-is('Fleet')");
      const badge = page.locator(`table.inventory tr[data-agent="${agentId}"] .firing-badge`);
      await badge.waitFor();
      expect(await badge.textContent()).toBe("1 alert firing");
      expect(await sideways(page)).toBeLessThanOrEqual(0);
      await shot(page, `fleet-alerts-${width}`);
      await badge.click();
      await expect.poll(() => page.evaluate("location.hash")).toBe("#/alerts?host=alert-host");
      await page.goto(`${daemon.url}/#/hosts/${agentId}`);
      const banner = page.locator(".alert-banner");
      await banner.waitFor();
      expect(await banner.locator("strong").textContent()).toBe("1 alert firing on alert-host");
      expect(await banner.locator("li").allTextContents()).toEqual(["TestLoadHigh · 93 · alert-host at 93"]);
      const packages = page.locator("[data-panel=packages]");
      await expect.poll(() => packages.locator("p").textContent()).toMatch(/^60 packages \(dpkg\), read .* ago\.$/);
      expect(await packages.locator("tbody tr").count()).toBe(50);
      await packages.locator("input[type=search]").fill("lib5");
      expect(await packages.locator("tbody tr").allTextContents()).toEqual(Array.from({ length: 10 }, (_, i) => `lib5${i}1.5${i}amd64`));
      await packages.locator("input[type=search]").fill("");
      await packages.locator("button.show-all").click();
      expect(await packages.locator("tbody tr").count()).toBe(60);
      expect(await sideways(page)).toBeLessThanOrEqual(0);
      await shot(page, `host-alerts-${width}`);
      expect(errors).toEqual([]);
      await page.context().close();
    }

    const { page, errors } = await open();
    await signIn(page, adminToken);
    await page.goto(`${daemon.url}/#/alerts`);
    const row = page.locator("table.active tbody tr[data-state=firing]").filter({ hasText: "TestLoadHigh" });
    await row.waitFor();
    // Silence it from its row: the matchers come from the alert, the admin says why.
    await row.locator("button.silence-alert").click();
    const form = page.locator("form.silence-form");
    const values = form.locator(".matcher input[name=value]");
    expect([await values.nth(0).inputValue(), await values.nth(1).inputValue()]).toEqual(["TestLoadHigh", "alert-host"]);
    expect(await values.count()).toBe(2);
    await form.locator("input[name=for]").fill("2h");
    await form.locator("input[name=comment]").fill("maintenance of alert-host");
    await form.locator("button[type=submit]").click();
    const silence = page.locator("table.silences tbody tr[data-state=active]").filter({ hasText: "maintenance of alert-host" });
    await silence.waitFor();
    expect(await silence.locator("code").textContent()).toBe('alertname="TestLoadHigh", host="alert-host"');
    await expect.poll(() => row.locator(".state-silenced").count()).toBe(1);
    expect((await alerts.listSilences({})).silences.map((s) => s.comment)).toEqual(["maintenance of alert-host"]);
    await silence.locator("button.expire").click();
    await silence.waitFor({ state: "detached" });
    expect((await alerts.listSilences({})).silences).toEqual([]);
    await expect.poll(() => row.locator(".state-silenced").count()).toBe(0);

    // Edit the rule's threshold and pending time, and turn it off while the form is open (saving
    // keeps it off): its alert resolves.
    const rule = page.locator("table.rules tr[data-rule=TestLoadHigh]");
    await rule.locator("button.edit-rule").click();
    const ruleForm = page.locator("form.rule-form");
    await ruleForm.locator("input[name=threshold]").fill("60");
    await ruleForm.locator("input[name=pendingFor]").fill("30s");
    await rule.locator("button.toggle-rule").click();
    await expect.poll(() => rule.getAttribute("data-disabled")).toBe("true");
    await ruleForm.locator("button[type=submit]").click();
    await ruleForm.waitFor({ state: "hidden" });
    const stat = async () => (await alerts.listRules({})).rules.find((r) => r.rule?.name === "TestLoadHigh")?.rule;
    expect((await stat())?.condition?.threshold).toBe(60);
    expect((await stat())?.pendingFor?.seconds).toBe(30n);
    expect((await stat())?.disabled).toBe(true);
    await expect.poll(firing, { timeout: 20_000, interval: 500 }).toBeUndefined();
    await rule.locator("button.toggle-rule").click();
    await expect.poll(() => rule.getAttribute("data-disabled")).toBe("false");
    // An API rule is deleted (once confirmed).
    const broken = page.locator("table.rules tr[data-rule=TestBroken]");
    page.once("dialog", (dialog) => void (expect(dialog.message()).toMatch(/^Delete the rule TestBroken\?/), dialog.accept()));
    await broken.locator("button.delete-rule").click();
    await broken.waitFor({ state: "detached" });
    expect((await alerts.listRules({})).rules.map((r) => r.rule?.name)).not.toContain("TestBroken");
    // A default rule turned off is an override of it; Revert brings the default back.
    const offline = page.locator("table.rules tr[data-rule=AgentOffline]");
    await offline.locator("button.toggle-rule").click();
    await expect.poll(() => offline.locator("td").nth(1).textContent()).toBe("API (overrides)");
    await offline.locator("button.revert-rule").click();
    await expect.poll(() => offline.locator("td").nth(1).textContent()).toBe("default");
    expect(await offline.getAttribute("data-disabled")).toBe("false");
    await shot(page, "alerts-admin");
    expect(errors).toEqual([]);
    await page.context().close();
  }, 120_000);

  it("fits every page in the window at 1440 and 390 px", async () => {
    for (const width of [1440, 390]) {
      const { page, errors } = await open(width);
      await signIn(page, adminTokenOf(daemon.dataDir));
      // The header keeps to at most two lines (brand and who, then the pages' links).
      const lineHeight = await page
        .locator("header nav a")
        .first()
        .evaluate((a) => a.getBoundingClientRect().height);
      expect(await page.locator("header").evaluate((e) => e.getBoundingClientRect().height)).toBeLessThan(lineHeight * 3 + 24);
      const rows = page.locator("table.inventory tbody tr[data-agent]");
      await rows.first().waitFor();
      // The filter's hint is not cut off.
      // Measured in the page: the placeholder's width in the input's font against the room inside it.
      const fits = await page.evaluate<boolean>(`(() => {
        const input = document.querySelector(".toolbar input[type=search]");
        const style = getComputedStyle(input);
        const ctx = document.createElement("canvas").getContext("2d");
        ctx.font = style.font;
        return ctx.measureText(input.placeholder).width <= input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
      })()`);
      expect(fits).toBe(true);
      expect(await sideways(page)).toBeLessThanOrEqual(0);
      await shot(page, `fleet-${width}`);
      // A filter nobody matches says so, and offers to clear it.
      await page.fill(".toolbar input[type=search]", "no-such-host");
      await expect.poll(() => page.locator("table.inventory td.empty").textContent()).toMatch(/^No agent matches “no-such-host”\./);
      expect(await rows.count()).toBe(0);
      await page.click("table.inventory td.empty button");
      await rows.first().waitFor();

      // The local agent's host (the one with figures).
      await rows
        .filter({ has: page.locator("td[data-column=cpu] .meter") })
        .locator("td[data-column=hostname] a")
        .click();
      await page.waitForSelector("h1 .status-online");
      await expect
        .poll(async () => Number(await page.locator("section.chart[data-title=CPU]").getAttribute("data-points")), { timeout: 45_000 })
        .toBeGreaterThan(0);
      expect(await sideways(page)).toBeLessThanOrEqual(0);
      await shot(page, `host-${width}`);
      await page.click("header nav a:text-is('Alerts')");
      await page.locator("table.rules tbody tr[data-rule]").first().waitFor();
      expect(await sideways(page)).toBeLessThanOrEqual(0);
      await shot(page, `alerts-${width}`);
      await page.click("header nav a:text-is('Instruments')");
      await page.locator("article.instrument").first().waitFor();
      expect(await sideways(page)).toBeLessThanOrEqual(0);
      await shot(page, `instruments-${width}`);
      await page.click("header nav a:text-is('Console')");
      await page.waitForSelector("#agent option", { state: "attached" });
      expect(await sideways(page)).toBeLessThanOrEqual(0);
      await shot(page, `console-${width}`);
      expect(errors).toEqual([]);
      await page.context().close();
    }
  }, 120_000);

  it("signs out when the token is revoked, and on request", async () => {
    const created = await runSpecta([
      "token",
      "create",
      "--role",
      "viewer",
      "--name",
      "short-lived",
      "--json",
      "--server",
      daemon.url,
      "--data-dir",
      daemon.dataDir,
    ]);
    const { info, token } = JSON.parse(created.stdout) as { info: { id: string }; token: string };
    const { page } = await open();
    await signIn(page, token);
    await page.locator("table.inventory tbody tr").first().waitFor();
    const revoked = await runSpecta(["token", "revoke", info.id, "--server", daemon.url, "--data-dir", daemon.dataDir]);
    expect(revoked.code).toBe(0);
    // The next refresh (10 s) is refused: back to the sign-in, saying why.
    await page.waitForSelector("form.signin", { timeout: 20_000 });
    expect(await page.locator("form.signin .error").textContent()).toMatch(/^Signed out: the credential is unknown or revoked/);
    expect(await page.evaluate("sessionStorage.length")).toBe(0);

    await signIn(page, viewerToken);
    await page.click("header button:text-is('Sign out')");
    await page.waitForSelector("form.signin");
    expect(await page.evaluate("sessionStorage.length")).toBe(0);
    await page.context().close();
  });
});

describe("the dashboard's files", () => {
  let daemon: SpawnedDaemon;
  beforeAll(async () => {
    daemon = await spawnDaemon();
  });
  afterAll(async () => {
    await daemon?.cleanup();
  });

  it("are served compressed, with a strict content security policy and ETags", async () => {
    const page = await fetch(daemon.url + "/", { headers: { "accept-encoding": "gzip" } });
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(page.headers.get("content-security-policy")).toContain("script-src 'self'");
    expect(page.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
    expect(page.headers.get("x-content-type-options")).toBe("nosniff");
    const html = await page.text();
    expect(html).toContain('<script type="module" src="/dashboard/app.js">');
    // Nothing from elsewhere: every src and href is local (or an inline icon).
    for (const [, url] of html.matchAll(/(?:src|href)="([^"]+)"/g)) expect(url).toMatch(/^(\/|data:)/);

    const script = await fetch(daemon.url + "/dashboard/app.js", { headers: { "accept-encoding": "gzip" } });
    expect(script.status).toBe(200);
    expect(script.headers.get("content-encoding")).toBe("gzip");
    expect(script.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    expect((await script.text()).length).toBeGreaterThan(10_000);
    const etag = script.headers.get("etag")!;
    const again = await fetch(daemon.url + "/dashboard/app.js", { headers: { "accept-encoding": "gzip", "if-none-match": etag } });
    expect(again.status).toBe(304);
    // The uncompressed body is another representation, with its own ETag.
    const plain = await fetch(daemon.url + "/dashboard/app.js", { headers: { "accept-encoding": "identity", "if-none-match": etag } });
    expect(plain.status).toBe(200);
    expect(plain.headers.get("etag")).not.toBe(etag);
    const css = await fetch(daemon.url + "/dashboard/style.css", { method: "HEAD" });
    expect(css.status).toBe(200);
    expect(css.headers.get("content-type")).toBe("text/css; charset=utf-8");
    expect((await fetch(daemon.url + "/dashboard/other.js")).status).toBe(404);
  });
});
