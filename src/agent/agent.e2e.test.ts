import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API as AgentAPI } from "../../gen/agent/agent_pb.js";
import { API as CommandsAPI, DiagnosticSchema, State } from "../../gen/commands/commands_pb.js";
import { Aggregation, API as MetricsAPI, Kind, MatchOperator, SeriesSchema } from "../../gen/metrics/metrics_pb.js";
import { create } from "@bufbuild/protobuf";
import { freePort, repoRoot, RestartableDaemon, spawnSpecta, startTestDaemon, tempDir, type TestDaemon } from "../../test/support/daemon.js";
import { bearer } from "../../test/support/rpc.js";
import { storedPoints } from "../../test/support/stored.js";
import { readEnrollToken } from "../fleet/enroll-token.js";
import { createLogger } from "../shared/log.js";
import { startAgent, type RunningAgent } from "./agent.js";
import type { Collector } from "./collectors/collector.js";

const log = createLogger("silent");
describe("the host agent with a real daemon", () => {
  let daemon: TestDaemon;
  const dirs: { remove(): void }[] = [];
  const agents: RunningAgent[] = [];
  const stateDir = () => {
    const d = tempDir("specta-agent-");
    dirs.push(d);
    return d.path;
  };
  beforeAll(async () => {
    daemon = await startTestDaemon();
  });
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await daemon?.stop();
    for (const d of dirs) d.remove();
  });

  it("enrols, and this host's CPU series can be queried within one interval; a corrupted spool file is set aside", async () => {
    const dir = stateDir();
    mkdirSync(join(dir, "spool"), { recursive: true });
    writeFileSync(join(dir, "spool", "0000000000000001.batch"), "not a batch");
    const started = Date.now();
    const agent = await startAgent({
      server: daemon.url,
      protocol: "grpc",
      stateDir: dir,
      enrollToken: readEnrollToken(daemon.dataDir)!,
      labels: { role: "test" },
      log,
    });
    agents.push(agent);
    const metrics = createClient(MetricsAPI, createGrpcTransport({ baseUrl: daemon.url, interceptors: [bearer(daemon.adminToken())] }));
    await expect
      .poll(async () => (await metrics.query({ metric: "node_cpu_all_seconds_total", aggregation: Aggregation.LAST })).series.length, {
        timeout: 5_000,
        interval: 200,
      })
      .toBeGreaterThan(0);
    expect(Date.now() - started).toBeLessThan(5_000); // the CPU collector's interval
    expect(readdirSync(join(dir, "spool"))).toContain("0000000000000001.batch.corrupt");

    const credential = JSON.parse(readFileSync(join(dir, "credential.json"), "utf8")) as { agentId: string };
    const { agents: listed } = await createClient(
      AgentAPI,
      createGrpcTransport({ baseUrl: daemon.url, interceptors: [bearer(daemon.adminToken())] }),
    ).list({ withPackages: true });
    const self = listed.find((a) => a.id === credential.agentId);
    expect(self).toMatchObject({ labels: { role: "test" }, host: { cpuCount: expect.any(Number) } });
    // This Debian host's installed packages, read with dpkg-query at start.
    if (existsSync("/var/lib/dpkg/status")) {
      expect(self?.packages?.manager).toBe("dpkg");
      expect(self?.packages?.packages.find((p) => p.name === "dpkg")?.version).toMatch(/^\d/);
    }
  });

  it("is refused with a wrong enrolment token", async () => {
    await expect(
      startAgent({ server: daemon.url, protocol: "grpc", stateDir: stateDir(), enrollToken: "not-the-token", labels: {}, log }),
    ).rejects.toThrow(/enrolment refused/);
  });

  it("is refused once deregistered", async () => {
    const dir = stateDir();
    // Its own hostname: the first test's agent of this machine holds the machine's.
    const agent = await startAgent({
      server: daemon.url,
      protocol: "connect",
      stateDir: dir,
      enrollToken: readEnrollToken(daemon.dataDir)!,
      hostname: "deregistered",
      labels: {},
      log,
      collectors: [],
    });
    await agent.stop();
    const { agentId, credential } = JSON.parse(readFileSync(join(dir, "credential.json"), "utf8")) as { agentId: string; credential: string };
    await createClient(AgentAPI, createGrpcTransport({ baseUrl: daemon.url, interceptors: [bearer(daemon.adminToken())] })).deregister({ agentId });

    const asAgent = createClient(MetricsAPI, createGrpcTransport({ baseUrl: daemon.url, interceptors: [bearer(credential)] }));
    const push = asAgent.push({ series: [create(SeriesSchema, { metric: "x", kind: Kind.GAUGE, times: [Date.now()], values: [1] })] });
    await expect(push).rejects.toSatisfy((err) => ConnectError.from(err).code === Code.Unauthenticated);
    await expect(startAgent({ server: daemon.url, protocol: "grpc", stateDir: dir, labels: {}, log })).rejects.toThrow(
      /refused this agent's credential/,
    );
  });

  it("stops by itself once deregistered while it runs, keeping its unsent batch on disk", async () => {
    const dir = stateDir();
    const agent = await startAgent({
      server: daemon.url,
      protocol: "grpc",
      stateDir: dir,
      enrollToken: readEnrollToken(daemon.dataDir)!,
      hostname: "deregistered-running",
      labels: {},
      log,
      collectors: [],
      flushIntervalMs: 100,
    });
    await createClient(AgentAPI, createGrpcTransport({ baseUrl: daemon.url, interceptors: [bearer(daemon.adminToken())] })).deregister({
      agentId: agent.agentId()!,
    });
    const refusal = await agent.stopped;
    expect(refusal?.message).toMatch(
      /refused this agent's credential \(the credential is unknown or revoked\); if it was deregistered, delete .*credential\.json/,
    );
    expect(readdirSync(join(dir, "spool")).filter((f) => f.endsWith(".batch")).length).toBeGreaterThan(0);
  });

  it("runs as `specta agent` from its bundle: enrols, pushes, runs a command, stops on SIGTERM, never loads undici; is refused once deregistered (over Connect); refuses bad flags with exit code 2", async () => {
    const dir = stateDir();
    // The bundle replaces the global Headers (src/agent/headers.ts) so that undici, Node's fetch,
    // stays unloaded; the preload lists the built-in modules the process loaded when it exits.
    const builtinsFile = join(dir, "builtins.txt");
    const agent = spawnSpecta(
      [
        "agent",
        "--server",
        daemon.url,
        "--enroll-token",
        readEnrollToken(daemon.dataDir)!,
        "--state-dir",
        dir,
        "--hostname",
        "bundled",
        "--label",
        "via=cli",
      ],
      {
        NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --require "${join(repoRoot, "test", "support", "record-builtins.cjs")}"`,
        RECORD_BUILTINS_TO: builtinsFile,
      },
    );
    const admin = createGrpcTransport({ baseUrl: daemon.url, interceptors: [bearer(daemon.adminToken())] });
    try {
      await agent.waitForLog((l) => l.message === "agent running", 30_000);
      const metrics = createClient(MetricsAPI, admin);
      await expect
        .poll(
          async () =>
            (
              await metrics.query({
                metric: "node_memory_available_bytes",
                matchers: [{ label: "host", value: "bundled", operator: MatchOperator.EQUAL }],
                aggregation: Aggregation.LAST,
              })
            ).series.length,
          { timeout: 15_000, interval: 250 },
        )
        .toBe(1);
      const { agents } = await createClient(AgentAPI, admin).list({ labels: { via: "cli" } });
      expect(agents.map((a) => a.host?.hostname)).toEqual(["bundled"]);
      // A command over the agent's stream and back in its report: headers and trailers both ways.
      const commands = createClient(CommandsAPI, admin);
      const mounts = create(DiagnosticSchema, { kind: { case: "mounts", value: {} } });
      const [submitted] = (await commands.submit({ target: { case: "agent", value: "bundled" }, diagnostic: mounts })).commands;
      await expect
        .poll(async () => (await commands.get({ commandId: submitted!.commandId })).command!.state, { timeout: 15_000, interval: 250 })
        .toBe(State.SUCCEEDED);
      agent.child.kill("SIGTERM");
      expect(await agent.exited).toEqual({ code: 0, signal: null });
      const builtins = readFileSync(builtinsFile, "utf8").split("\n");
      expect(builtins).toContain("NativeModule http2");
      expect(builtins.filter((m) => m.includes("undici"))).toEqual([]);
    } finally {
      await agent.cleanup();
    }
    // Over Connect (HTTP/1.1) too, and through an error: deregistered while it runs, the agent
    // exits with code 2; started again, it is refused at once.
    const { agentId } = JSON.parse(readFileSync(join(dir, "credential.json"), "utf8")) as { agentId: string };
    const running = spawnSpecta(["agent", "--server", daemon.url, "--protocol", "connect", "--state-dir", dir, "--hostname", "bundled"]);
    await running.waitForLog((l) => l.message === "agent running", 30_000);
    await createClient(AgentAPI, admin).deregister({ agentId });
    expect((await running.exited).code).toBe(2);
    expect(running.stderr()).toMatch(/refused this agent's credential/);
    const refused = spawnSpecta(["agent", "--server", daemon.url, "--protocol", "connect", "--state-dir", dir]);
    expect((await refused.exited).code).toBe(2);
    expect(refused.stderr()).toMatch(/refused this agent's credential/);

    const bad = spawnSpecta(["agent", "--server", daemon.url, "--protocol", "carrier-pigeon", "--state-dir", dir]);
    expect((await bad.exited).code).toBe(2);
    expect(bad.stderr()).toContain('--protocol must be grpc or connect, got "carrier-pigeon"');
  });
});

describe("`specta agent` before it has enrolled", () => {
  it("exits 0 on SIGTERM while it waits for a daemon that is not up", async () => {
    const dir = tempDir("specta-agent-");
    const agent = spawnSpecta(["agent", "--server", `http://127.0.0.1:${await freePort()}`, "--enroll-token", "any", "--state-dir", dir.path]);
    try {
      await agent.waitForLog((l) => l.message === "cannot register yet; retrying", 30_000);
      agent.child.kill("SIGTERM");
      expect(await agent.exited).toEqual({ code: 0, signal: null });
    } finally {
      await agent.cleanup();
      dir.remove();
    }
  });
});

/** Emits an increasing number every 100 ms while `on`, and counts what it emitted. */
function sequenceCollector() {
  const state = { on: true, emitted: 0 };
  const collector: Collector = {
    name: "sequence",
    intervalMs: 100,
    async collect() {
      if (!state.on) return [];
      state.emitted++;
      return [{ metric: "agent_test_sequence", labels: {}, kind: "gauge", value: state.emitted }];
    },
  };
  return { state, collector };
}

describe("the host agent while the daemon is away", () => {
  const dir = tempDir("specta-outage-");
  afterAll(() => dir.remove());

  it("loses no sample when the daemon stops for 30 s and starts again", async () => {
    const daemon = new RestartableDaemon(join(dir.path, "data"), await freePort());
    await daemon.start();
    const { state, collector } = sequenceCollector();
    const agent = await startAgent({
      server: daemon.url,
      protocol: "grpc",
      stateDir: join(dir.path, "agent"),
      enrollToken: readEnrollToken(daemon.dataDir)!,
      labels: {},
      log,
      collectors: [collector],
      flushIntervalMs: 500,
    });
    try {
      await new Promise((r) => setTimeout(r, 2_000));
      daemon.proc.child.kill("SIGTERM");
      expect((await daemon.proc.exited).code).toBe(0);
      const emittedBeforeOutage = state.emitted;
      await new Promise((r) => setTimeout(r, 30_000));
      expect(state.emitted - emittedBeforeOutage).toBeGreaterThan(200); // it kept collecting meanwhile

      await daemon.start();
      await new Promise((r) => setTimeout(r, 1_000));
      state.on = false;

      const counts = async () => {
        const values = (
          await storedPoints({ host: join(daemon.dataDir, "postgres"), user: "postgres", database: "specta" }, "agent_test_sequence")
        ).flatMap((s) => s.values);
        return { n: values.length, distinct: new Set(values).size, max: Math.max(0, ...values) };
      };
      await expect.poll(async () => (await counts()).n, { timeout: 30_000, interval: 250 }).toBe(state.emitted);
      expect(await counts()).toEqual({ n: state.emitted, distinct: state.emitted, max: state.emitted });
    } finally {
      await agent.stop();
      await daemon.stop();
    }
  }, 120_000);
});
