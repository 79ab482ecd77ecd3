import { timestampMs } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Severity, State } from "../../gen/commands/commands_pb.js";
import { startTestDaemon, type TestDaemon } from "../../test/support/daemon.js";
import { FakeAgent } from "../../test/support/fake-agent.js";
import { buildSubmit, parseDiagnostic, submitAndWatch } from "./run.js";

describe("specta run: arguments", () => {
  it("parses each diagnostic's arguments", () => {
    expect(parseDiagnostic("ping", ["127.0.0.1", "--count", "3"]).kind).toMatchObject({ case: "ping", value: { host: "127.0.0.1", count: 3 } });
    expect(parseDiagnostic("connect", ["db.internal:5432"]).kind).toMatchObject({ case: "tcpConnect", value: { host: "db.internal", port: 5432 } });
    expect(parseDiagnostic("connect", ["[::1]:22"]).kind).toMatchObject({ case: "tcpConnect", value: { host: "::1", port: 22 } });
    expect(parseDiagnostic("disk-usage", ["/var", "--top", "10"]).kind).toMatchObject({ case: "diskUsage", value: { path: "/var", top: 10 } });
    const logs = parseDiagnostic("logs", ["--severity", "warning", "--since", "1h", "--limit", "100", "--unit", "nginx.service"], 10_000_000);
    expect(logs.kind).toMatchObject({ case: "logs", value: { minSeverity: Severity.WARNING, limit: 100, unit: "nginx.service" } });
    expect(logs.kind.case === "logs" && timestampMs(logs.kind.value.since!)).toBe(10_000_000 - 3_600_000);
    expect(parseDiagnostic("connections", ["--listening"]).kind).toMatchObject({
      case: "connections",
      value: { listening: true, established: false },
    });
    expect(parseDiagnostic("connections", []).kind).toMatchObject({ case: "connections", value: { listening: true, established: true } });
    expect(parseDiagnostic("mounts", []).kind.case).toBe("mounts");
    expect(parseDiagnostic("traceroute", ["example.org", "--max-hops", "12"]).kind).toMatchObject({ case: "traceroute", value: { maxHops: 12 } });
  });

  it("builds targets, timeouts and ttls, and refuses what it cannot parse", () => {
    const byLabel = buildSubmit("label:role=db,zone=a", "mounts", [], { timeout: "1m", ttl: "10m" });
    expect(byLabel.target).toMatchObject({ case: "selector", value: { labels: { role: "db", zone: "a" } } });
    expect(Number(byLabel.timeout?.seconds)).toBe(60);
    expect(Number(byLabel.ttl?.seconds)).toBe(600);
    expect(buildSubmit("web-1", "mounts", []).target).toEqual({ case: "agent", value: "web-1" });
    expect(() => parseDiagnostic("ping", [])).toThrow(/HOST/);
    expect(() => parseDiagnostic("ping", ["a", "--bogus", "1"])).toThrow(/unknown option/);
    expect(() => parseDiagnostic("connect", ["db.internal"])).toThrow(/HOST:PORT/);
    expect(() => parseDiagnostic("rm", ["-rf", "/"])).toThrow(/unknown diagnostic/);
    expect(() => parseDiagnostic("logs", ["--severity", "loud"])).toThrow(/--severity/);
    expect(() => buildSubmit("x", "mounts", [], { timeout: "soon" })).toThrow(/--timeout/);
  });
});

describe("specta run: against a daemon and an agent", () => {
  let daemon: TestDaemon;
  let agent: FakeAgent;
  beforeAll(async () => {
    daemon = await startTestDaemon();
    agent = await FakeAgent.enrol(daemon.url, daemon.dataDir, "run-host");
    await agent.open();
  });
  afterAll(async () => {
    agent?.close();
    await daemon?.stop();
  });

  async function runWith(
    reply: (id: string) => Promise<void>,
    json: boolean,
    diagnostic: [string, string[]] = ["ping", ["127.0.0.1", "--count", "1"]],
  ) {
    const out: string[] = [];
    const errors: string[] = [];
    const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
      out.push(String(chunk));
      return true;
    });
    const err = vi.spyOn(process.stderr, "write").mockImplementation((chunk) => {
      errors.push(String(chunk));
      return true;
    });
    const seen = agent.received().length;
    const answering = (async () => {
      await agent.until(() => agent.received().length > seen, 5_000, "the command");
      await reply(agent.received()[seen]!.id);
    })();
    try {
      const ok = await submitAndWatch(
        { server: daemon.url, token: daemon.adminToken(), tokenSource: "test" },
        buildSubmit("run-host", ...diagnostic),
        json,
      );
      await answering;
      return { ok, out: out.join(""), err: errors.join("") };
    } finally {
      spy.mockRestore();
      err.mockRestore();
    }
  }

  it("submits, waits and prints the output text; succeeded is success", async () => {
    const { ok, out } = await runWith(async (id) => {
      await agent.report(id, State.RUNNING);
      await agent.report(id, State.SUCCEEDED, { text: "1 packets transmitted, 1 received" });
    }, false);
    expect(ok).toBe(true);
    expect(out).toBe("1 packets transmitted, 1 received\n");
  });

  it("prints JSON with --json; a failed command is a failure", async () => {
    const { ok, out } = await runWith((id) => agent.report(id, State.FAILED, { error: "no route" }).then(() => undefined), true);
    expect(ok).toBe(false);
    expect(JSON.parse(out)).toMatchObject({ state: "STATE_FAILED", output: { error: "no route" } });
  });

  it("says so when a command succeeds with nothing to show", async () => {
    const logs = await runWith(
      (id) => agent.report(id, State.SUCCEEDED, { text: "", data: { source: "journal", entries: [] } }).then(() => undefined),
      false,
      ["logs", ["--severity", "warning", "--since", "2026-12-01T10:00:00Z", "--unit", "nginx.service"]],
    );
    expect(logs).toEqual({
      ok: true,
      out: "",
      err: "specta: no log entries at warning or above, since 2026-12-01T10:00:00.000Z, of unit nginx.service in journal\n",
    });
    const mounts = await runWith((id) => agent.report(id, State.SUCCEEDED, { text: "" }).then(() => undefined), false, ["mounts", []]);
    expect(mounts).toEqual({ ok: true, out: "", err: "specta: mounts succeeded with no output\n" });
  });
});
