/**
 * The audit trail end to end: a scripted session of writes against a real daemon, whose events
 * reach the audit file (rotated), a URL sink (a local HTTP receiver) and the database (audit.API),
 * then the URL sink goes away for a while: the calls go on, what overflows its queue is counted in
 * /metrics, and what it kept arrives once the receiver is back.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, createClient, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { existsSync, readFileSync, statSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API as AuditAPI } from "../gen/audit/audit_pb.js";
import { API as CommandsAPI, DiagnosticSchema } from "../gen/commands/commands_pb.js";
import { API as AgentAPI } from "../gen/agent/agent_pb.js";
import { API as MetricsAPI, Kind } from "../gen/metrics/metrics_pb.js";
import { API as TokensAPI, Role } from "../gen/tokens/tokens_pb.js";
import type { AuditEvent } from "../src/audit/event.js";
import { readEnrollToken } from "../src/fleet/enroll-token.js";
import { freePort, runSpecta, startTestDaemon, tempDir, testInstruments, type TestDaemon } from "./support/daemon.js";
import { enrolAgent } from "./support/fake-agent.js";
import { remoteWriteBody, remoteWriteHeaders } from "./support/remote-write.js";
import { bearer, codeOf } from "./support/rpc.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A URL sink's receiver: keeps every event POSTed to it; stop() and start() take it away and bring it back on its port. */
class Receiver {
  readonly events: AuditEvent[] = [];
  private server: Server | undefined;
  constructor(readonly port: number) {}
  get url(): string {
    return `http://127.0.0.1:${this.port}/audit`;
  }
  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        expect(req.method).toBe("POST");
        expect(req.headers["content-type"]).toBe("application/json");
        this.events.push(...(JSON.parse(Buffer.concat(chunks).toString("utf8")) as AuditEvent[]));
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, "127.0.0.1", resolve));
  }
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

async function until<T>(what: string, check: () => T | undefined | false, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** The audit file and its rotated predecessors, oldest first, as events. */
function fileEvents(path: string): AuditEvent[] {
  const files = [];
  for (let n = 1; existsSync(`${path}.${n}`); n++) files.unshift(`${path}.${n}`);
  if (existsSync(path)) files.push(path);
  return files.flatMap((f) =>
    readFileSync(f, "utf8")
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as AuditEvent),
  );
}

async function metric(daemon: TestDaemon, name: string, sink: string): Promise<number> {
  const text = await (await fetch(`${daemon.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{sink="${sink}"}`));
  return Number(line?.split(" ")[1] ?? Number.NaN);
}

const queueCapacity = 40;

describe("the audit trail of a real daemon", () => {
  const dir = tempDir("specta-audit-");
  const auditFile = join(dir.path, "audit.ndjson");
  let receiver: Receiver;
  let daemon: TestDaemon;
  let grpc: (token?: string) => Transport;

  beforeAll(async () => {
    receiver = new Receiver(await freePort());
    await receiver.start();
    daemon = await startTestDaemon({
      config: {
        instruments: testInstruments,
        audit: { file: auditFile, fileMaxBytes: 8192, fileKeep: 50, url: receiver.url, queue: queueCapacity },
      },
    });
    grpc = (token) => createGrpcTransport({ baseUrl: daemon.url, ...(token ? { interceptors: [bearer(token)] } : {}) });
  });
  afterAll(async () => {
    await daemon?.stop();
    await receiver?.stop();
    dir.remove();
  });

  it("records every write of a session, with its actor, address, metrics and outcome, in the file, at the URL and in the database", async () => {
    const admin = daemon.adminToken();
    const adminId = (await createClient(TokensAPI, grpc(admin)).whoami({})).token!.id;
    const started = new Date(Date.now() - 1000);
    const now = Date.now();

    await createClient(MetricsAPI, grpc()).histogram({ action: [{ metric: "page_ready_duration_seconds", number: 0.4 }] });
    const { info, token: viewer } = await createClient(TokensAPI, grpc(admin)).create({ role: Role.VIEWER, name: "alice" });
    expect(await codeOf(createClient(MetricsAPI, grpc(viewer)).push({}))).toBe(Code.PermissionDenied);
    await createClient(MetricsAPI, grpc(admin)).push({
      series: [
        { metric: "audit_a_total", kind: Kind.COUNTER, times: [now], values: [1] },
        { metric: "audit_b", kind: Kind.GAUGE, times: [now], values: [2] },
        { metric: "audit_a_total", labels: { x: "1" }, kind: Kind.COUNTER, times: [now], values: [3] },
      ],
    });
    const agent = await enrolAgent(daemon.url, readEnrollToken(daemon.dataDir)!, "audited-host");
    await createClient(MetricsAPI, grpc(agent.credential)).push({ series: [{ metric: "audit_c", kind: Kind.GAUGE, times: [now], values: [4] }] });
    const commands = createClient(CommandsAPI, grpc(admin));
    const diagnostic = create(DiagnosticSchema, { kind: { case: "ping", value: { host: "127.0.0.1", count: 1 } } });
    const submitted = await commands.submit({ target: { case: "agent", value: agent.agentId }, diagnostic });
    await commands.cancel({ commandId: submitted.commands[0]!.commandId });
    const written = await fetch(`${daemon.url}/api/v1/write`, {
      method: "POST",
      headers: remoteWriteHeaders(admin),
      body: remoteWriteBody([{ labels: { __name__: "audit_rw", job: "j" }, samples: [{ timestamp: now, value: 5 }] }]),
    });
    expect(written.status).toBe(204);
    const otlp = await fetch(`${daemon.url}/v1/metrics`, {
      method: "POST",
      headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
      body: JSON.stringify({
        resourceMetrics: [
          { scopeMetrics: [{ metrics: [{ name: "audit.otlp", gauge: { dataPoints: [{ timeUnixNano: `${now}000000`, asDouble: 6 }] } }] }] },
        ],
      }),
    });
    expect(otlp.status).toBe(200);
    await createClient(TokensAPI, grpc(admin)).revoke({ id: info!.id });
    await createClient(AgentAPI, grpc(admin)).deregister({ agentId: agent.agentId });
    // A read is not a write: not audited.
    await createClient(TokensAPI, grpc(admin)).list({});

    const adminActor = { token_id: adminId, name: expect.any(String), role: "admin" };
    const anonymous = { token_id: null, name: null, role: "anonymous" };
    const expected = [
      { action: "metrics.API/Histogram", outcome: "ok", metrics: ["page_ready_duration_seconds"], actor: anonymous },
      { action: "tokens.API/Create", outcome: "ok", metrics: [], actor: adminActor },
      { action: "metrics.API/Push", outcome: "permission_denied", metrics: [], actor: anonymous },
      { action: "metrics.API/Push", outcome: "ok", metrics: ["audit_a_total", "audit_b"], actor: adminActor },
      { action: "agent.API/Register", outcome: "ok", metrics: [], actor: anonymous },
      {
        action: "metrics.API/Push",
        outcome: "ok",
        metrics: ["audit_c"],
        actor: { token_id: expect.any(String), name: expect.any(String), role: "agent" },
      },
      { action: "commands.API/Submit", outcome: "ok", metrics: [], actor: adminActor },
      { action: "commands.API/Cancel", outcome: "ok", metrics: [], actor: adminActor },
      { action: "prometheus/api/v1/write", outcome: "ok", metrics: ["audit_rw"], actor: adminActor },
      { action: "opentelemetry/v1/metrics", outcome: "ok", metrics: ["audit.otlp"], actor: adminActor },
      { action: "tokens.API/Revoke", outcome: "ok", metrics: [], actor: adminActor },
      { action: "agent.API/Deregister", outcome: "ok", metrics: [], actor: adminActor },
    ].map((e) => ({ ...e, ts: expect.any(String), ip_address: "127.0.0.1" }));

    const inFile = await until(
      "the session's events in the audit file",
      () => fileEvents(auditFile).length >= expected.length && fileEvents(auditFile),
    );
    expect(inFile).toEqual(expected);
    for (const e of inFile) expect(Math.abs(Date.parse(e.ts) - now)).toBeLessThan(60_000);
    const atUrl = await until("the session's events at the URL", () => receiver.events.length >= expected.length && receiver.events);
    expect(atUrl).toEqual(inFile);

    const audit = createClient(AuditAPI, grpc(admin));
    const all = await untilAsync(async () => {
      const page = await audit.list({ start: timestampFromDate(started), pageSize: 1000 });
      return page.events.length >= expected.length ? page : undefined;
    });
    expect(all.events.map((e) => [e.action, e.outcome, e.metrics, e.ipAddress, e.actor?.role]).reverse()).toEqual(
      expected.map((e) => [e.action, e.outcome, e.metrics, e.ip_address, e.actor.role]),
    );
    // Filters: by actor (id or name), by action, by time; pages of a bounded size.
    const byAdmin = await audit.list({ actor: adminId, pageSize: 1000 });
    expect(byAdmin.events.every((e) => e.actor?.tokenId === adminId)).toBe(true);
    expect(byAdmin.events).toHaveLength(expected.filter((e) => e.actor === adminActor).length);
    const pushes = await audit.list({ action: "metrics.API/Push" });
    expect(pushes.events.map((e) => e.outcome)).toEqual(["ok", "ok", "permission_denied"]);
    const first = await audit.list({ pageSize: 5 });
    expect(first.events).toHaveLength(5);
    const second = await audit.list({ pageSize: 5, pageToken: first.nextPageToken });
    expect(second.events[0]!.ts!.seconds <= first.events[4]!.ts!.seconds).toBe(true);
    expect(second.events.map((e) => e.action)).toEqual(all.events.slice(5, 10).map((e) => e.action));
    expect((await audit.list({ end: timestampFromDate(started) })).events).toEqual([]);
    // specta audit: the same through the CLI, filtered.
    const cli = await runSpecta(["audit", "--server", daemon.url, "--token", admin, "--action", "tokens.API/Create", "--since", "1h"]);
    expect(cli.code).toBe(0);
    expect(cli.stdout.split("\n")[0]).toMatch(/^TIME\s+ACTION\s+OUTCOME\s+ACTOR\s+ADDRESS\s+METRICS$/);
    expect(cli.stdout).toMatch(/tokens\.API\/Create\s+ok\s+.+\(admin\)\s+127\.0\.0\.1/);
    const json = await runSpecta(["audit", "--server", daemon.url, "--token", admin, "--actor", adminId, "--limit", "2", "--json"]);
    expect(JSON.parse(json.stdout)).toMatchObject({
      events: [{ actor: { tokenId: adminId } }, { actor: { tokenId: adminId } }],
      nextPageToken: expect.any(String),
    });
    expect((await runSpecta(["audit", "--server", daemon.url, "--token", admin, "--limit", "0"])).stderr).toBe(
      'specta: --limit must be 1 to 1000, not "0"\n',
    );
    expect(await codeOf(audit.list({ pageSize: 1001 }))).toBe(Code.InvalidArgument);
    expect(await codeOf(createClient(AuditAPI, grpc()).list({}))).toBe(Code.Unauthenticated);
    expect(await codeOf(createClient(AuditAPI, grpc(agent.credential)).list({}))).toBe(Code.Unauthenticated);
  });

  it("keeps calls going while the URL sink is away: its overflow is dropped and counted, what it kept arrives when it is back", async () => {
    const before = { file: fileEvents(auditFile).length, url: receiver.events.length };
    await receiver.stop();
    const instruments = createClient(MetricsAPI, grpc());
    const calls = 3 * queueCapacity;
    for (let i = 0; i < calls; i++) {
      const { result } = await instruments.counter({
        action: [{ metric: "jobs_done_total", number: 1, labels: { queue: "mail", priority: "high" } }],
      });
      expect(result[0]!.status).toBe("success");
      // Half a queue at a time, so that only the URL sink's queue (its sink away) can fill up, however slowly the machine writes files.
      if ((i + 1) % (queueCapacity / 2) === 0) await until("the file to catch up", () => fileEvents(auditFile).length === before.file + i + 1);
    }
    // Every other sink got all of them.
    await until("the calls in the audit file", () => fileEvents(auditFile).length === before.file + calls);
    // Read across its rotations: the file was rotated by size, each part under the limit.
    expect(existsSync(`${auditFile}.2`)).toBe(true);
    for (const part of [auditFile, `${auditFile}.1`, `${auditFile}.2`]) expect(statSync(part).size).toBeLessThanOrEqual(8192);
    // Its queue kept the first of them and refused the rest.
    const urlDropped = await metric(daemon, "specta_audit_events_dropped_total", "url");
    expect(urlDropped).toBe(calls - queueCapacity);
    expect(await metric(daemon, "specta_audit_events_dropped_total", "file")).toBe(0);
    expect(await metric(daemon, "specta_audit_events_dropped_total", "database")).toBe(0);
    expect(await metric(daemon, "specta_audit_sink_failures_total", "url")).toBeGreaterThan(0);

    await receiver.start();
    await until("the kept events at the URL", () => receiver.events.length === before.url + calls - urlDropped, 30_000);
    const delivered = receiver.events.slice(before.url);
    expect(delivered.every((e) => e.action === "metrics.API/Counter" && e.metrics[0] === "jobs_done_total")).toBe(true);
    // The oldest were kept (the queue refuses new events when full): they are the first calls, in order.
    const fromFile = fileEvents(auditFile).slice(before.file, before.file + delivered.length);
    expect(delivered.map((e) => e.ts)).toEqual(fromFile.map((e) => e.ts));
  });
});

async function untilAsync<T>(check: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error("timed out");
    await sleep(200);
  }
}
