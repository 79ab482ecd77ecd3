import { create, toJson } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { sql, type Kysely } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API as CommandsAPI, DiagnosticSchema, State, type Command, type Diagnostic, type SubmitRequest } from "../../gen/commands/commands_pb.js";
import { API as AgentAPI, HostSchema } from "../../gen/agent/agent_pb.js";
import { startTestDaemon, type TestDaemon } from "../../test/support/daemon.js";
import { FakeAgent } from "../../test/support/fake-agent.js";
import { createTestDatabase, openDb, testServers, type TestDatabase } from "../../test/support/postgres.js";
import { readEnrollToken } from "../fleet/enroll-token.js";
import type { DaemonOptions } from "../server/daemon.js";
import type { Db } from "../storage/database.js";
import type { TokensTables } from "../tokens/tokens.table.js";
import { TokenStore } from "../tokens/tokens.js";
import type { CommandsTables } from "./commands.table.js";
import { bearer, codeOf } from "../../test/support/rpc.js";

const ping = (host = "127.0.0.1", count = 1): Diagnostic => create(DiagnosticSchema, { kind: { case: "ping", value: { host, count } } });
const diskUsage = (path: string): Diagnostic => create(DiagnosticSchema, { kind: { case: "diskUsage", value: { path, top: 5 } } });

// Re-checks of the tables are slow on purpose (30 s): a delivery within notifyBoundMs came from
// a NOTIFY wake-up, not from polling. The latency itself (the 1 s target) is measured by
// `npm run bench:commands`, not here, where a loaded CI machine would make it flaky.
const tuning: DaemonOptions = {
  commands: { keepaliveMs: 300, recheckMs: 30_000, presenceRefreshMs: 1_000, expiryIntervalMs: 200, timeoutGraceMs: 500 },
};
const notifyBoundMs = 5_000;

describe.each(testServers())("commands.API on $name PostgreSQL", (server) => {
  let database: TestDatabase;
  let daemonA: TestDaemon;
  let daemonB: TestDaemon;
  let handle: Db;
  let db: Kysely<CommandsTables & TokensTables>;
  let viewerToken: string;
  let hostCount = 0;

  const commandsClient = (url: string, token: string): Client<typeof CommandsAPI> =>
    createClient(CommandsAPI, createGrpcTransport({ baseUrl: url, interceptors: [bearer(token)] }));
  const admin = () => commandsClient(daemonA.url, daemonA.adminToken());
  const enrol = (labels: Record<string, string> = {}) => FakeAgent.enrol(daemonA.url, daemonA.dataDir, `host-${++hostCount}`, labels);
  const submit = (agent: string, diagnostic: Diagnostic = ping(), extra: Partial<Omit<SubmitRequest, "$typeName">> = {}) =>
    admin().submit({ target: { case: "agent", value: agent }, diagnostic, ...extra });
  const stateOf = async (id: string) => (await admin().get({ commandId: id })).command!.state;
  const waitForState = async (id: string, state: State, timeoutMs = 5_000) => {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const current = await stateOf(id);
      if (current === state) return;
      if (Date.now() > end) throw new Error(`command ${id} is ${State[current]}, not ${State[state]}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  beforeAll(async () => {
    database = await createTestDatabase(server);
    // Two daemons on one database.
    daemonA = await startTestDaemon({ flags: { databaseUrl: database.url }, daemon: tuning });
    daemonB = await startTestDaemon({ flags: { databaseUrl: database.url }, daemon: tuning });
    handle = openDb(database.url, 2);
    db = handle.withTables<CommandsTables & TokensTables>();
    viewerToken = (await new TokenStore(handle).create("viewer", "v")).token;
  });
  afterAll(async () => {
    await handle?.destroy();
    await daemonA?.stop();
    await daemonB?.stop();
    await database?.drop();
  });

  it("delivers what was queued while the agent was away, oldest first, and records its lifecycle to succeeded", async () => {
    const agent = await enrol();
    const first = await submit(agent.agentId, ping("127.0.0.1", 3));
    expect(first.commands).toEqual([expect.objectContaining({ agentId: agent.agentId, agentOnline: false })]);
    const second = await submit(`host-${hostCount}`, diskUsage("/var"));
    const [id1, id2] = [first.commands[0]!.commandId, second.commands[0]!.commandId];
    expect(await stateOf(id1)).toBe(State.QUEUED);

    await agent.open();
    await agent.nextCommand(id2);
    expect(agent.received().map((c) => c.id)).toEqual([id1, id2]);
    const delivered = agent.received()[0]!;
    expect(delivered).toMatchObject({ agentId: agent.agentId, state: State.DELIVERED });
    expect(delivered.diagnostic?.kind).toMatchObject({ case: "ping", value: { host: "127.0.0.1", count: 3 } });
    expect(Number(delivered.timeout?.seconds)).toBe(30);
    expect(await stateOf(id1)).toBe(State.DELIVERED);

    // Watch from the start: every change until the end.
    const seen: Command[] = [];
    const watching = (async () => {
      for await (const r of admin().watch({ commandId: id1 })) seen.push(r.command!);
    })();
    await agent.until(() => seen.length === 1, 5_000, "the watch's first message");
    await agent.report(id1, State.RUNNING);
    await agent.until(() => seen.length === 2, notifyBoundMs, "RUNNING on the watch");
    await agent.report(id1, State.SUCCEEDED, { text: "3 packets transmitted, 3 received", data: { fields: {} } });
    await watching;
    expect(seen.map((c) => c.state)).toEqual([State.DELIVERED, State.RUNNING, State.SUCCEEDED]);
    expect(seen[2]!.output).toMatchObject({ text: "3 packets transmitted, 3 received", truncated: false, error: "" });

    // A report for an ended command is refused.
    expect(await codeOf(agent.report(id1, State.FAILED, { error: "late" }))).toBe(Code.FailedPrecondition);
    agent.close();
  });

  it("says at once that an agent is online, wakes its stream at once, and sends keepalives while idle", async () => {
    const agent = await enrol();
    await agent.open();
    // Keepalives every 300 ms here: at least two arrive while the stream is idle.
    const before = agent.keepalives();
    await expect.poll(() => agent.keepalives() - before, { timeout: 5_000, interval: 100 }).toBeGreaterThanOrEqual(2);

    const sent = Date.now();
    const { commands } = await submit(agent.agentId);
    expect(commands[0]!.agentOnline).toBe(true);
    const { at } = await agent.nextCommand(commands[0]!.commandId, notifyBoundMs);
    expect(at - sent).toBeLessThan(notifyBoundMs);
    agent.close();
    await agent.until(() => agent.ended !== undefined, notifyBoundMs, "the stream's end");
    // Its presence is gone with the stream (once the daemon has seen the reset and deleted its row).
    await expect.poll(() => db.selectFrom("agent_streams").select("agent_id").where("agent_id", "=", agent.agentId).execute()).toEqual([]);
    expect((await submit(agent.agentId)).commands[0]!.agentOnline).toBe(false);
  });

  it("ends commands as failed and timed_out (reported), timed_out (no report), cancelled and expired", async () => {
    const agent = await enrol();
    await agent.open();
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await submit(agent.agentId)).commands[0]!.commandId);
    const [failed, reportedTimeout, cancelled] = ids as [string, string, string];
    await agent.nextCommand(cancelled);

    await agent.report(failed, State.FAILED, { error: "ping: unknown host" });
    expect((await admin().get({ commandId: failed })).command).toMatchObject({ state: State.FAILED, output: { error: "ping: unknown host" } });
    await agent.report(reportedTimeout, State.RUNNING);
    await agent.report(reportedTimeout, State.TIMED_OUT, { text: "partial", truncated: true });
    expect(await stateOf(reportedTimeout)).toBe(State.TIMED_OUT);

    await agent.report(cancelled, State.RUNNING);
    const after = await admin().cancel({ commandId: cancelled });
    expect(after.command?.state).toBe(State.CANCELLED);
    expect(await codeOf(agent.report(cancelled, State.SUCCEEDED, { text: "too late" }))).toBe(Code.FailedPrecondition);
    // Cancelling an ended command changes nothing.
    expect((await admin().cancel({ commandId: failed })).command?.state).toBe(State.FAILED);

    // Delivered, never reported: timed_out after timeout + grace.
    const silent = (await submit(agent.agentId, ping(), { timeout: durationFromMs(500) })).commands[0]!.commandId;
    await agent.nextCommand(silent);
    await waitForState(silent, State.TIMED_OUT, 4_000);
    agent.close();

    // Offline agent: agent_online=false at once, expired after its ttl.
    const away = await enrol();
    const queued = (await submit(away.agentId, ping(), { ttl: durationFromMs(500) })).commands[0]!;
    expect(queued.agentOnline).toBe(false);
    await waitForState(queued.commandId, State.EXPIRED, 4_000);
    // Expired commands are never delivered.
    await away.open();
    await new Promise((r) => setTimeout(r, 300));
    expect(away.received()).toEqual([]);
    away.close();
  });

  it("fails at once the commands an agent does not allow", async () => {
    const agent = await enrol();
    await agent.open(["ping", "tcp_connect"]);
    const refused = (await submit(agent.agentId, diskUsage("/var"))).commands[0]!.commandId;
    const allowed = (await submit(agent.agentId, ping())).commands[0]!.commandId;
    await agent.nextCommand(allowed);
    const got = (await admin().get({ commandId: refused })).command!;
    expect(got.state).toBe(State.FAILED);
    expect(got.output?.error).toMatch(/does not allow/);
    expect(agent.received().map((c) => c.id)).toEqual([allowed]);
    expect(
      await codeOf(
        agent.commands
          .stream({ allow: ["rm"] })
          [Symbol.asyncIterator]()
          .next(),
      ),
    ).toBe(Code.InvalidArgument);
    agent.close();
  });

  it("caps the output at 1 MiB and says it was cut", async () => {
    const agent = await enrol();
    await agent.open();
    const id = (await submit(agent.agentId)).commands[0]!.commandId;
    await agent.nextCommand(id);
    await agent.report(id, State.SUCCEEDED, { text: "é".repeat(1024 * 1024) });
    const output = (await admin().get({ commandId: id })).command!.output!;
    expect(output.truncated).toBe(true);
    expect(Buffer.byteLength(output.text)).toBeLessThanOrEqual(1024 * 1024);
    expect(Buffer.byteLength(output.text)).toBeGreaterThan(1024 * 1024 - 4);
    agent.close();
  });

  it("targets every agent matching a label selector; unknown agents and empty matches are NotFound", async () => {
    const a = await enrol({ role: "cache", zone: "z1" });
    const b = await enrol({ role: "cache", zone: "z2" });
    await enrol({ role: "web" });
    const res = await admin().submit({ target: { case: "selector", value: { labels: { role: "cache" } } }, diagnostic: ping() });
    expect(res.commands.map((c) => c.agentId).sort()).toEqual([a.agentId, b.agentId].sort());
    expect(await codeOf(admin().submit({ target: { case: "selector", value: { labels: { role: "nope" } } }, diagnostic: ping() }))).toBe(
      Code.NotFound,
    );
    expect(await codeOf(submit("00000000-0000-4000-8000-000000000000"))).toBe(Code.NotFound);
    expect(await codeOf(submit("no-such-host"))).toBe(Code.NotFound);
  });

  it("keeps agents apart: an agent neither sees nor reports another agent's commands", async () => {
    const a = await enrol();
    const b = await enrol();
    await b.open();
    const forA = (await submit(a.agentId)).commands[0]!.commandId;
    await new Promise((r) => setTimeout(r, 300));
    expect(b.received()).toEqual([]);
    expect(await codeOf(b.report(forA, State.RUNNING))).toBe(Code.NotFound);
    expect(await codeOf(b.report(forA, State.SUCCEEDED, { text: "forged" }))).toBe(Code.NotFound);
    expect(await codeOf(b.report("00000000-0000-4000-8000-000000000000", State.RUNNING))).toBe(Code.NotFound);
    expect(await stateOf(forA)).toBe(State.QUEUED);
    b.close();
  });

  it("lets only admins submit and cancel, viewers get and watch, agents stream and report", async () => {
    const agent = await enrol();
    const viewer = commandsClient(daemonA.url, viewerToken);
    expect(await codeOf(viewer.submit({ target: { case: "agent", value: agent.agentId }, diagnostic: ping() }))).toBe(Code.PermissionDenied);
    expect(await codeOf(agent.commands.submit({ target: { case: "agent", value: agent.agentId }, diagnostic: ping() }))).toBe(Code.PermissionDenied);
    const id = (await submit(agent.agentId)).commands[0]!.commandId;
    expect((await viewer.get({ commandId: id })).command?.id).toBe(id);
    expect(await codeOf(viewer.cancel({ commandId: id }))).toBe(Code.PermissionDenied);
    expect(await codeOf(agent.commands.get({ commandId: id }))).toBe(Code.PermissionDenied);
    expect(await codeOf(admin().report({ commandId: id, state: State.RUNNING }))).toBe(Code.PermissionDenied);
    expect(await codeOf(admin().stream({})[Symbol.asyncIterator]().next())).toBe(Code.PermissionDenied);
    expect(await codeOf(admin().get({ commandId: "00000000-0000-4000-8000-000000000000" }))).toBe(Code.NotFound);
  });

  it("refuses invalid and hostile diagnostics with InvalidArgument and queues nothing", async () => {
    const agent = await enrol();
    const bad: [Diagnostic, Partial<Omit<SubmitRequest, "$typeName">>?][] = [
      [create(DiagnosticSchema, {})],
      [ping("; rm -rf /")],
      [ping("$(id)")],
      [ping("`id`")],
      [ping("-oProxyCommand=x")],
      [ping("host name")],
      [ping("")],
      [ping("127.0.0.1", 21)],
      [create(DiagnosticSchema, { kind: { case: "traceroute", value: { host: "-I", maxHops: 10 } } })],
      [create(DiagnosticSchema, { kind: { case: "traceroute", value: { host: "example.org", maxHops: 65 } } })],
      [create(DiagnosticSchema, { kind: { case: "tcpConnect", value: { host: "db.internal", port: 0 } } })],
      [create(DiagnosticSchema, { kind: { case: "tcpConnect", value: { host: "db.internal", port: 65536 } } })],
      [create(DiagnosticSchema, { kind: { case: "tcpConnect", value: { host: "db.internal", port: 5432, timeout: durationFromMs(61_000) } } })],
      [diskUsage("../../etc/shadow")],
      [diskUsage("/var/../../etc/shadow")],
      [diskUsage("var/log")],
      [diskUsage("/var/\u0000")],
      [create(DiagnosticSchema, { kind: { case: "diskUsage", value: { path: "/var", top: 1001 } } })],
      [create(DiagnosticSchema, { kind: { case: "logs", value: { limit: 10_001 } } })],
      [create(DiagnosticSchema, { kind: { case: "logs", value: { unit: "--output=json" } } })],
      [create(DiagnosticSchema, { kind: { case: "logs", value: { unit: "nginx; rm -rf /" } } })],
      [ping(), { timeout: durationFromMs(10 * 60_000 + 1) }],
      [ping(), { ttl: durationFromMs(24 * 3_600_000 + 1) }],
      [ping(), { timeout: durationFromMs(0) }],
    ];
    const before = await db.selectFrom("commands").select(db.fn.countAll<number>().as("n")).executeTakeFirstOrThrow();
    for (const [diagnostic, extra] of bad) {
      const err = await submit(agent.agentId, diagnostic, extra).then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
      expect(err?.code, JSON.stringify(toJson(DiagnosticSchema, diagnostic))).toBe(Code.InvalidArgument);
      expect(err?.rawMessage.length).toBeGreaterThan(10);
    }
    const after = await db.selectFrom("commands").select(db.fn.countAll<number>().as("n")).executeTakeFirstOrThrow();
    expect(after.n).toBe(before.n);
    // Good ones pass.
    for (const good of [
      ping("db.internal"),
      ping("::1"),
      ping("10.0.0.1"),
      diskUsage("/var/log"),
      create(DiagnosticSchema, { kind: { case: "mounts", value: {} } }),
    ]) {
      expect(await codeOf(submit(agent.agentId, good))).toBe("ok");
    }
    expect(await codeOf(admin().submit({ diagnostic: ping() }))).toBe(Code.InvalidArgument);
  });

  it("wakes an agent's stream on daemon B when a command is submitted on daemon A (NOTIFY, not polling)", async () => {
    const agent = await enrol();
    const onB = agent.on(daemonB.url);
    await onB.open();
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const sent = Date.now();
      const { commands } = await submit(agent.agentId);
      expect(commands[0]!.agentOnline).toBe(true);
      const { at } = await onB.nextCommand(commands[0]!.commandId, notifyBoundMs);
      times.push(at - sent);
      // And the report made on B reaches a watcher on A.
      await onB.report(commands[0]!.commandId, State.SUCCEEDED, { text: "ok" });
    }
    expect(Math.max(...times)).toBeLessThan(notifyBoundMs);
    onB.close();
  });

  it("ends an older stream when the agent opens a newer one, on the same or another daemon", async () => {
    const agent = await enrol();
    await agent.open();
    const second = agent.on(daemonA.url);
    await second.open();
    await agent.until(() => agent.ended !== undefined, notifyBoundMs, "the first stream's end");
    expect(ConnectError.from(agent.ended!.error).code).toBe(Code.Aborted);

    const third = agent.on(daemonB.url);
    await third.open();
    await second.until(() => second.ended !== undefined, notifyBoundMs, "the second stream's end");
    expect(ConnectError.from(second.ended!.error).code).toBe(Code.Aborted);
    const { commands } = await submit(agent.agentId);
    await third.nextCommand(commands[0]!.commandId, notifyBoundMs);
    third.close();
  });

  it("never lets a command meant for one host reach another: a second machine cannot take its name", async () => {
    const register = (hostname: string, machineId: string) =>
      createClient(AgentAPI, createGrpcTransport({ baseUrl: daemonA.url })).register({
        enrollToken: readEnrollToken(daemonA.dataDir)!,
        host: create(HostSchema, { hostname, os: "linux" }),
        labels: { role: "db" },
        machineId,
      });
    const db1 = await register("db-1", "machine-1");
    expect(await codeOf(register("db-1", "machine-2"))).toBe(Code.AlreadyExists);
    const intruder = await register("intruder", "machine-2");
    const target = new FakeAgent(daemonA.url, db1.agentId, db1.credential);
    const other = new FakeAgent(daemonB.url, intruder.agentId, intruder.credential);
    await target.open();
    await other.open();
    const { commands } = await submit("db-1");
    expect(commands.map((c) => c.agentId)).toEqual([db1.agentId]);
    await target.nextCommand(commands[0]!.commandId, notifyBoundMs);
    // The other agent's stream got nothing but keepalives, and may not report the command.
    await other.until(() => other.keepalives() >= 3, notifyBoundMs, "keepalives");
    expect(other.received()).toEqual([]);
    expect(await codeOf(other.report(commands[0]!.commandId, State.SUCCEEDED, { text: "not mine" }))).toBe(Code.NotFound);
    target.close();
    other.close();
  });

  it("ends the stream of a deregistered agent on every daemon within a second, with Unauthenticated", async () => {
    for (const [streamOn, deregisterOn] of [
      [daemonB, daemonA],
      [daemonA, daemonA],
    ] as const) {
      const agent = await enrol();
      const stream = agent.on(streamOn.url);
      await stream.open();
      const agents = createClient(AgentAPI, createGrpcTransport({ baseUrl: deregisterOn.url, interceptors: [bearer(deregisterOn.adminToken())] }));
      const sent = Date.now();
      await agents.deregister({ agentId: agent.agentId });
      await stream.until(() => stream.ended !== undefined, 1_000, "the stream's end within 1 s of Deregister");
      expect(Date.now() - sent).toBeLessThan(1_000);
      const ended = ConnectError.from(stream.ended!.error);
      expect(ended.code).toBe(Code.Unauthenticated);
      expect(ended.rawMessage).toMatch(/credential was revoked/);
      // Reconnecting is refused too, on either daemon.
      await expect(stream.open()).rejects.toSatisfy((err) => ConnectError.from(err).code === Code.Unauthenticated);
      await expect(agent.on(daemonA.url).open()).rejects.toSatisfy((err) => ConnectError.from(err).code === Code.Unauthenticated);
    }
  });

  it("ends streams whose credential was revoked while the notifications were missed, once the LISTEN sessions are back", async () => {
    const agent = await enrol();
    const stream = agent.on(daemonB.url);
    await stream.open();
    // A revocation without its note, and the LISTEN sessions cut: only the re-check on reconnect finds it.
    await db.updateTable("tokens").set({ revoked: new Date() }).where("agent_id", "=", agent.agentId).execute();
    await sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'`.execute(db);
    await stream.until(() => stream.ended !== undefined, notifyBoundMs, "the stream's end after the reconnect");
    expect(ConnectError.from(stream.ended!.error).code).toBe(Code.Unauthenticated);
  });

  it("refuses to open a stream with a credential revoked since it was verified", async () => {
    const agent = await enrol();
    const stream = agent.on(daemonB.url);
    await stream.open();
    stream.close();
    // Daemon B trusts its cached verification, but the stream is only registered for a valid credential.
    await db.updateTable("tokens").set({ revoked: new Date() }).where("agent_id", "=", agent.agentId).execute();
    const error = await stream.open().then(
      () => undefined,
      (err: unknown) => ConnectError.from(err),
    );
    expect(error?.code).toBe(Code.Unauthenticated);
    expect(error?.rawMessage).toMatch(/credential was revoked/);
  });

  it("ends streams with Unavailable when the daemon stops", async () => {
    const agent = await enrol();
    const onB = agent.on(daemonB.url);
    await onB.open();
    await daemonB.stop();
    await onB.until(() => onB.ended !== undefined, 5_000, "the stream's end");
    expect(ConnectError.from(onB.ended!.error).code).toBe(Code.Unavailable);
  });
});
