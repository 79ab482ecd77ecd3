import { createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Kysely, Migrator, PostgresDialect, sql } from "kysely";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API as AgentAPI, HostSchema, PackagesSchema, Status, type Host, type RegisterRequest } from "../../gen/agent/agent_pb.js";
import { API as MetricsAPI, Kind, SeriesSchema } from "../../gen/metrics/metrics_pb.js";
import { startTestDaemon, tempDir, type TestDaemon } from "../../test/support/daemon.js";
import { createTestDatabase, openDb, testServers, type TestDatabase } from "../../test/support/postgres.js";
import { resolveDaemonConfig } from "../config/config.js";
import type { CommandsTables } from "../commands/commands.table.js";
import type { Db } from "../storage/database.js";
import type { TokensTables } from "../tokens/tokens.table.js";
import type { AgentsTables } from "./agents.table.js";
import { FakeAgent } from "../../test/support/fake-agent.js";
import { startCommands } from "../commands/hub.js";
import { createLogger } from "../shared/log.js";
import { migrations } from "../storage/migrations/index.js";
import { TokenStore } from "../tokens/tokens.js";
import { enrollTokenChecker, enrollTokenFile, ensureEnrollToken } from "./enroll-token.js";
import { bearer, codeOf } from "../../test/support/rpc.js";

const bootTime = Date.parse("2026-11-01T08:00:00Z");

function host(hostname: string, extra: Partial<Omit<Host, "$typeName">> = {}): Host {
  return create(HostSchema, {
    hostname,
    os: "linux",
    osVersion: "Debian GNU/Linux 12 (bookworm)",
    kernel: "6.1.0-18-amd64",
    arch: "x64",
    cpuModel: "Test CPU @ 3.00GHz",
    cpuCount: 8,
    memoryBytes: 16n * 1024n ** 3n,
    bootTime: timestampFromMs(bootTime),
    ...extra,
  });
}

describe.each(testServers())("agent.API on $name PostgreSQL", (server) => {
  let database: TestDatabase;
  let daemon: TestDaemon;
  let handle: Db;
  let db: Kysely<AgentsTables & TokensTables & CommandsTables>;
  let enrollToken: string;
  let viewerToken: string;

  const agents = (token?: string): Client<typeof AgentAPI> =>
    createClient(AgentAPI, createGrpcTransport({ baseUrl: daemon.url, interceptors: token ? [bearer(token)] : [] }));
  const metrics = (token: string): Client<typeof MetricsAPI> =>
    createClient(MetricsAPI, createGrpcTransport({ baseUrl: daemon.url, interceptors: [bearer(token)] }));
  const admin = () => agents(daemon.adminToken());
  const push = (credential: string) =>
    metrics(credential).push({
      series: [create(SeriesSchema, { metric: "test_agent_up", kind: Kind.GAUGE, labels: {}, times: [Date.now()], values: [1] })],
    });
  const errorOf = (call: Promise<unknown>) =>
    call.then(
      () => new ConnectError("the call succeeded", Code.Unknown),
      (err: unknown) => ConnectError.from(err),
    );
  const enrol = (hostname: string, request: Partial<Omit<RegisterRequest, "$typeName">> = {}) =>
    agents().register({ enrollToken, host: host(hostname), labels: { role: "db" }, agentVersion: "0.1.0", ...request });
  const lastSeenOf = async (id: string) =>
    (await db.selectFrom("agents").select("last_seen").where("id", "=", id).executeTakeFirstOrThrow()).last_seen.getTime();

  beforeAll(async () => {
    database = await createTestDatabase(server);
    daemon = await startTestDaemon({ flags: { databaseUrl: database.url } });
    handle = openDb(database.url, 2);
    db = handle.withTables<AgentsTables & TokensTables & CommandsTables>();
    enrollToken = readFileSync(join(daemon.dataDir, "enroll.token"), "utf8").trim();
    viewerToken = (await new TokenStore(handle).create("viewer", "v")).token;
  });
  afterAll(async () => {
    await handle?.destroy();
    await daemon?.stop();
    await database?.drop();
  });

  it("keeps a generated enrolment token in <dataDir>/enroll.token, readable by its owner only", () => {
    expect(enrollToken).toMatch(/^specta_enroll_[A-Za-z0-9_-]{43}$/);
    expect(statSync(join(daemon.dataDir, "enroll.token")).mode & 0o777).toBe(0o600);
  });

  it("enrols with the enrolment token; the credential pushes, is stored as a hash only, and is refused after Deregister", async () => {
    const { agentId, credential } = await enrol("db-1");
    expect(agentId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(credential).toMatch(/^specta_/);

    const tokens = await db.selectFrom("tokens").selectAll().where("agent_id", "=", agentId).execute();
    expect(tokens).toHaveLength(1);
    expect(tokens[0]).toMatchObject({ role: "agent", name: "db-1", revoked: null });
    expect(tokens[0]!.hash.equals(createHash("sha256").update(credential).digest())).toBe(true);
    const everyToken = await db.selectFrom("tokens").selectAll().execute();
    const stored = JSON.stringify(everyToken.map((t) => ({ ...t, hash: t.hash.toString("latin1"), hex: t.hash.toString("hex") })));
    expect(stored).not.toContain(credential);
    expect(stored).not.toContain(credential.slice("specta_".length));

    expect(await push(credential)).toMatchObject({ accepted: 1, refused: 0 });

    expect(await codeOf(admin().deregister({ agentId }))).toBe("ok");
    expect(await codeOf(push(credential))).toBe(Code.Unauthenticated);
    expect(await codeOf(agents(credential).register({ host: host("db-1") }))).toBe(Code.Unauthenticated);
    expect((await admin().list({})).agents.map((a) => a.id)).not.toContain(agentId);
    const revoked = await db.selectFrom("tokens").select("revoked").where("agent_id", "=", agentId).executeTakeFirstOrThrow();
    expect(revoked.revoked).toBeInstanceOf(Date);
    // Deregistered already: it is no longer in the inventory.
    expect(await codeOf(admin().deregister({ agentId }))).toBe(Code.NotFound);
  });

  it("refuses a wrong or missing enrolment token with Unauthenticated and enrols nothing", async () => {
    const before = await db.selectFrom("agents").select(db.fn.countAll<number>().as("n")).executeTakeFirstOrThrow();
    expect(await codeOf(enrol("intruder", { enrollToken: "specta_enroll_wrong" }))).toBe(Code.Unauthenticated);
    expect(await codeOf(enrol("intruder", { enrollToken: enrollToken + "x" }))).toBe(Code.Unauthenticated);
    expect(await codeOf(enrol("intruder", { enrollToken: "" }))).toBe(Code.Unauthenticated);
    // Another credential (here a viewer's) does not stand in for the enrolment token.
    expect(await codeOf(agents(viewerToken).register({ host: host("intruder") }))).toBe(Code.Unauthenticated);
    // An unknown credential is refused before anything else is looked at.
    expect(await codeOf(agents("specta_unknown").register({ enrollToken, host: host("intruder") }))).toBe(Code.Unauthenticated);
    const after = await db.selectFrom("agents").select(db.fn.countAll<number>().as("n")).executeTakeFirstOrThrow();
    expect(Number(after.n)).toBe(Number(before.n));
  });

  it("refuses invalid host fields with InvalidArgument", async () => {
    const long = "x".repeat(256);
    const bad: Partial<Omit<RegisterRequest, "$typeName">>[] = [
      { host: undefined },
      { host: host("") },
      { host: host("   ") },
      { host: host(long) },
      { host: host("h", { kernel: long }) },
      { host: host("h", { osVersion: "a\u0000b" }) },
      { host: host("h", { memoryBytes: 2n ** 63n }) },
      { host: host("h", { bootTime: timestampFromMs(-1000) }) },
      { agentVersion: long },
      { labels: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, "v"])) },
      { labels: { "": "v" } },
      { labels: { k: long } },
      { labels: { [long]: "v" } },
    ];
    for (const request of bad) expect(await codeOf(enrol("h", request)), JSON.stringify(Object.keys(request))).toBe(Code.InvalidArgument);
    // The limits themselves are fine.
    const edge = await enrol("e".repeat(255), { labels: Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`k${i}`, "v".repeat(255)])) });
    expect(edge.credential).not.toBe("");
    await admin().deregister({ agentId: edge.agentId });
  });

  it("re-registers with the agent's own credential: same id, inventory updated, no new credential", async () => {
    const first = await enrol("web-1", { labels: { role: "web" } });
    const again = await agents(first.credential).register({
      host: host("web-1", { kernel: "6.8.0-1-amd64", memoryBytes: 32n * 1024n ** 3n, cpuCount: 16 }),
      labels: { role: "web", zone: "b" },
      agentVersion: "0.2.0",
    });
    expect(again).toMatchObject({ agentId: first.agentId, credential: "" });
    const listed = (await admin().list({})).agents.find((a) => a.id === first.agentId);
    expect(listed?.host).toMatchObject({ hostname: "web-1", kernel: "6.8.0-1-amd64", memoryBytes: 32n * 1024n ** 3n, cpuCount: 16 });
    expect(listed).toMatchObject({ labels: { role: "web", zone: "b" }, agentVersion: "0.2.0" });
    const credentials = await db.selectFrom("tokens").select("id").where("agent_id", "=", first.agentId).execute();
    expect(credentials).toHaveLength(1);
    // Invalid fields are refused on re-registration too.
    expect(await codeOf(agents(first.credential).register({ host: host("") }))).toBe(Code.InvalidArgument);
    await admin().deregister({ agentId: first.agentId });
  });

  it("stores the installed packages an agent reports, keeps them when a registration has none, and lists them only when asked", async () => {
    const packages = create(PackagesSchema, {
      manager: "dpkg",
      collected: timestampFromMs(Date.parse("2026-12-01T03:00:00Z")),
      packages: [
        { name: "libc6", version: "2.36-9+deb12u9", arch: "amd64" },
        { name: "openssl", version: "3.0.15-1~deb12u1", arch: "amd64" },
      ],
    });
    const first = await enrol("pkg-1", { packages });
    const listed = async (withPackages: boolean) => (await admin().list({ withPackages })).agents.find((a) => a.id === first.agentId);
    expect((await listed(false))?.packages).toBeUndefined();
    const stored = (await listed(true))?.packages;
    expect(stored?.manager).toBe("dpkg");
    expect(timestampMs(stored!.collected!)).toBe(Date.parse("2026-12-01T03:00:00Z"));
    expect(stored?.packages.map((p) => [p.name, p.version, p.arch])).toEqual([
      ["libc6", "2.36-9+deb12u9", "amd64"],
      ["openssl", "3.0.15-1~deb12u1", "amd64"],
    ]);
    // A registration without packages (an agent that could not read them) keeps the stored list.
    await agents(first.credential).register({ host: host("pkg-1"), labels: {}, agentVersion: "0.1.0" });
    expect((await listed(true))?.packages?.packages).toHaveLength(2);
    // The nightly update replaces it.
    await agents(first.credential).register({
      host: host("pkg-1"),
      agentVersion: "0.1.0",
      packages: create(PackagesSchema, { manager: "dpkg", packages: [{ name: "openssl", version: "3.0.16-1~deb12u1", arch: "amd64" }] }),
    });
    expect((await listed(true))?.packages?.packages.map((p) => p.version)).toEqual(["3.0.16-1~deb12u1"]);
    // Limits and fields are checked.
    const tooMany = create(PackagesSchema, {
      manager: "dpkg",
      packages: Array.from({ length: 20_001 }, (_, i) => ({ name: `p${i}`, version: "1", arch: "" })),
    });
    expect(await codeOf(agents(first.credential).register({ host: host("pkg-1"), packages: tooMany }))).toBe(Code.InvalidArgument);
    const unnamed = create(PackagesSchema, { manager: "rpm", packages: [{ name: "", version: "1" }] });
    expect(await codeOf(agents(first.credential).register({ host: host("pkg-1"), packages: unnamed }))).toBe(Code.InvalidArgument);
    await admin().deregister({ agentId: first.agentId });
  });

  it("lists the inventory with its fields, sorted by hostname, with online / stale / offline and a label filter", async () => {
    const t0 = Date.now();
    const b = await enrol("list-b", { labels: { role: "cache", zone: "a" }, agentVersion: "1.2.3" });
    const a = await enrol("list-a", { labels: { role: "db", zone: "a" } });
    const c = await enrol("list-c", { labels: { role: "db", zone: "c" } });

    const all = (await admin().list({})).agents.filter((x) => x.host?.hostname.startsWith("list-"));
    expect(all.map((x) => x.host?.hostname)).toEqual(["list-a", "list-b", "list-c"]);
    const entry = all[1]!;
    expect(entry.id).toBe(b.agentId);
    expect(entry.host).toMatchObject({
      hostname: "list-b",
      os: "linux",
      osVersion: "Debian GNU/Linux 12 (bookworm)",
      kernel: "6.1.0-18-amd64",
      arch: "x64",
      cpuModel: "Test CPU @ 3.00GHz",
      cpuCount: 8,
      memoryBytes: 16n * 1024n ** 3n,
    });
    expect(timestampMs(entry.host!.bootTime!)).toBe(bootTime);
    expect(entry.labels).toEqual({ role: "cache", zone: "a" });
    expect(entry.agentVersion).toBe("1.2.3");
    expect(timestampMs(entry.firstSeen!)).toBeGreaterThanOrEqual(t0 - 1000);
    expect(timestampMs(entry.lastSeen!)).toBeGreaterThanOrEqual(t0 - 1000);
    expect(all.map((x) => x.status)).toEqual([Status.ONLINE, Status.ONLINE, Status.ONLINE]);

    const byRole = (await admin().list({ labels: { role: "db" } })).agents.filter((x) => x.host?.hostname.startsWith("list-"));
    expect(byRole.map((x) => x.id)).toEqual([a.agentId, c.agentId]);
    const byTwo = (await admin().list({ labels: { role: "db", zone: "c" } })).agents;
    expect(byTwo.map((x) => x.id)).toEqual([c.agentId]);
    expect((await admin().list({ labels: { role: "none" } })).agents).toEqual([]);

    await db
      .updateTable("agents")
      .set({ last_seen: new Date(Date.now() - 10 * 60_000) })
      .where("id", "=", a.agentId)
      .execute();
    await db
      .updateTable("agents")
      .set({ last_seen: new Date(Date.now() - 2 * 60_000) })
      .where("id", "=", c.agentId)
      .execute();
    const later = (await admin().list({ labels: { role: "db" } })).agents;
    expect(later.map((x) => [x.host?.hostname, x.status])).toEqual([
      ["list-a", Status.OFFLINE],
      ["list-c", Status.STALE],
    ]);

    // Exported for Prometheus too.
    const text = await (await fetch(`${daemon.url}/metrics`)).text();
    expect(text).toMatch(/^specta_agents\{status="offline"\} [1-9]/m);
    expect(text).toMatch(/^specta_agents\{status="stale"\} [1-9]/m);

    for (const x of [a, b, c]) await admin().deregister({ agentId: x.agentId });
  });

  it("refreshes last_seen on every call with the agent's credential, written in a batch within seconds", async () => {
    const { agentId, credential } = await enrol("alive-1");
    await db
      .updateTable("agents")
      .set({ last_seen: new Date(Date.now() - 10 * 60_000) })
      .where("id", "=", agentId)
      .execute();
    const status = async () => (await admin().list({})).agents.find((x) => x.id === agentId)?.status;
    expect(await status()).toBe(Status.OFFLINE);

    const called = Date.now();
    await push(credential);
    // List counts the call at once, before it is written.
    expect(await status()).toBe(Status.ONLINE);
    // The agent-liveness handler writes it within its interval (5 s).
    const deadline = Date.now() + 15_000;
    while ((await lastSeenOf(agentId)) < called - 1000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
    expect(await lastSeenOf(agentId)).toBeGreaterThanOrEqual(called - 1000);
    await admin().deregister({ agentId });
  });

  it("lets a viewer List but not Deregister, and an agent neither", async () => {
    const { agentId, credential } = await enrol("perm-1");
    const viewer = agents(viewerToken);
    expect((await viewer.list({})).agents.map((x) => x.id)).toContain(agentId);
    expect(await codeOf(viewer.deregister({ agentId }))).toBe(Code.PermissionDenied);
    expect(await codeOf(agents(credential).list({}))).toBe(Code.PermissionDenied);
    expect(await codeOf(agents(credential).deregister({ agentId }))).toBe(Code.PermissionDenied);
    expect(await codeOf(agents().list({}))).toBe(Code.Unauthenticated);
    expect(await codeOf(agents().deregister({ agentId }))).toBe(Code.Unauthenticated);
    // The refused Deregister changed nothing.
    expect(await push(credential)).toMatchObject({ accepted: 1 });
    await admin().deregister({ agentId });
  });

  it("answers NotFound for an unknown agent and InvalidArgument for a malformed id", async () => {
    expect(await codeOf(admin().deregister({ agentId: "00000000-0000-4000-8000-000000000000" }))).toBe(Code.NotFound);
    expect(await codeOf(admin().deregister({ agentId: "not-a-uuid" }))).toBe(Code.InvalidArgument);
    expect(await codeOf(admin().deregister({ agentId: "" }))).toBe(Code.InvalidArgument);
  });

  it("refuses another machine's claim of a hostname in use with AlreadyExists, naming the agent that has it", async () => {
    const first = await enrol("db-1", { machineId: "machine-a" });
    for (const other of [{ machineId: "machine-b" }, { machineId: "" }]) {
      const refused = await errorOf(enrol("db-1", { ...other, labels: { role: "db" } }));
      expect(refused.code).toBe(Code.AlreadyExists);
      expect(refused.rawMessage).toBe(
        `the hostname "db-1" is taken by agent ${first.agentId}: start this agent with --hostname <another name>, ` +
          "or, if that agent is gone, remove it first (specta agents remove db-1)",
      );
    }
    // Nor by re-registering under that name with its own credential.
    const b = await enrol("b-1", { machineId: "machine-b" });
    expect(await codeOf(agents(b.credential).register({ host: host("db-1"), machineId: "machine-b" }))).toBe(Code.AlreadyExists);
    const inventory = (await admin().list({})).agents;
    expect(inventory.filter((a) => a.host?.hostname === "db-1").map((a) => a.id)).toEqual([first.agentId]);
    expect(inventory.find((a) => a.id === b.agentId)?.host?.hostname).toBe("b-1");
    // Once db-1 is removed, the name is free.
    await admin().deregister({ agentId: first.agentId });
    expect(await agents(b.credential).register({ host: host("db-1"), machineId: "machine-b" })).toMatchObject({ agentId: b.agentId });
    await admin().deregister({ agentId: b.agentId });
  });

  it("keeps the agent id when the same machine enrols again under its hostname: a new credential, the old one revoked", async () => {
    const first = await enrol("db-2", { machineId: "machine-c" });
    const again = await enrol("db-2", { machineId: "machine-c", labels: { role: "db", zone: "b" } });
    expect(again.agentId).toBe(first.agentId);
    expect(again.credential).toMatch(/^specta_/);
    expect(again.credential).not.toBe(first.credential);
    expect(await codeOf(push(first.credential))).toBe(Code.Unauthenticated);
    expect(await push(again.credential)).toMatchObject({ accepted: 1 });
    const rows = await db.selectFrom("agents").select(["id", "labels"]).where("hostname", "=", "db-2").where("deregistered", "is", null).execute();
    expect(rows).toEqual([{ id: first.agentId, labels: { role: "db", zone: "b" } }]);
    const credentials = await db.selectFrom("tokens").select("revoked").where("agent_id", "=", first.agentId).orderBy("created").execute();
    expect(credentials.map((c) => c.revoked === null)).toEqual([false, true]);

    // Without a machine id, no enrolment is the same machine.
    expect(await codeOf(enrol("db-2"))).toBe(Code.AlreadyExists);
    // While that agent is connected, another agent of its machine under its name is refused.
    const stream = new FakeAgent(daemon.url, again.agentId, again.credential);
    await stream.open();
    const twice = await errorOf(enrol("db-2", { machineId: "machine-c" }));
    expect(twice.code).toBe(Code.AlreadyExists);
    expect(twice.rawMessage).toMatch(/^this machine's agent "db-2" \(.+\) is connected now: run one agent per host name/);
    expect(await push(again.credential)).toMatchObject({ accepted: 1 });
    stream.close();
    await expect.poll(() => db.selectFrom("agent_streams").select("agent_id").where("agent_id", "=", first.agentId).execute()).toEqual([]);
    expect((await enrol("db-2", { machineId: "machine-c" })).agentId).toBe(first.agentId);
    await admin().deregister({ agentId: first.agentId });
    // Deregistered is final: the machine enrols as a new agent.
    expect((await enrol("db-2", { machineId: "machine-c" })).agentId).not.toBe(first.agentId);
  });

  it("refuses a credential presented from another machine, and learns the machine of a credential that had none", async () => {
    const a = await enrol("clone-1", { machineId: "machine-d" });
    expect(await codeOf(agents(a.credential).register({ host: host("clone-1"), machineId: "machine-e" }))).toBe(Code.PermissionDenied);
    expect(await codeOf(agents(a.credential).register({ host: host("clone-1") }))).toBe("ok");

    const old = await enrol("old-1");
    expect(await agents(old.credential).register({ host: host("old-1"), machineId: "machine-f" })).toMatchObject({ agentId: old.agentId });
    expect((await enrol("old-1", { machineId: "machine-f" })).agentId).toBe(old.agentId);
    for (const id of [a.agentId, old.agentId]) await admin().deregister({ agentId: id });
  });

  it("gives an agent credential's principal the agent's id and hostname, renamed on every daemon at re-registration", async () => {
    // Another daemon's credential store: its own cache, fed by its own LISTEN session.
    const pool = new pg.Pool({ connectionString: database.url, max: 2 });
    pool.on("error", () => undefined); // its sockets may still be closing when the database is dropped
    const other = new Kysely<object>({ dialect: new PostgresDialect({ pool }) });
    const store = new TokenStore(other);
    const runtime = await startCommands(other, pool, createLogger("silent"), store);
    try {
      const a = await enrol("named-1", { machineId: "machine-g" });
      expect(await store.verify(a.credential)).toMatchObject({ role: "agent", agentId: a.agentId, agentHostname: "named-1" });
      await agents(a.credential).register({ host: host("named-2"), machineId: "machine-g" });
      await expect.poll(async () => (await store.verify(a.credential))?.agentHostname, { timeout: 1_000, interval: 20 }).toBe("named-2");
      await admin().deregister({ agentId: a.agentId });
      await expect.poll(() => store.verify(a.credential), { timeout: 1_000, interval: 20 }).toBeUndefined();
    } finally {
      await runtime.stop();
      await other.destroy();
    }
  });
});

describe.each(testServers())("the agent_identity migration on $name PostgreSQL", (server) => {
  it("keeps a hostname for the most recently seen of the active agents that share it and renames the others", async () => {
    const database = await createTestDatabase(server);
    const pool = new pg.Pool({ connectionString: database.url, max: 1 });
    // pool.end() resolves before its socket closes: the forced drop below may end that socket first.
    pool.on("error", () => undefined);
    const db = new Kysely<AgentsTables>({ dialect: new PostgresDialect({ pool }) });
    try {
      const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations } });
      expect((await migrator.migrateTo("2026_11_22_0004_commands")).error).toBeUndefined();
      const seen = (minutesAgo: number) => new Date(Date.now() - minutesAgo * 60_000);
      // The columns of that time only.
      const add = async (hostname: string, lastSeen: Date) =>
        (await sql<{ id: string }>`INSERT INTO agents (hostname, last_seen) VALUES (${hostname}, ${lastSeen}) RETURNING id`.execute(db)).rows[0]!.id;
      const older = await add("vm", seen(60));
      const newest = await add("vm", seen(1));
      const oldest = await add("vm", seen(600));
      const gone = await add("vm", seen(0));
      await db.updateTable("agents").set({ deregistered: new Date() }).where("id", "=", gone).execute();
      const long = await add("l".repeat(255), seen(5));
      const longer = await add("l".repeat(255), seen(2));
      const alone = await add("db-1", seen(3));

      expect((await migrator.migrateToLatest()).error).toBeUndefined();
      const names = new Map((await db.selectFrom("agents").select(["id", "hostname"]).execute()).map((r) => [r.id, r.hostname]));
      expect([newest, older, oldest, gone, alone, longer].map((id) => names.get(id))).toEqual([
        "vm",
        `vm-${older.slice(0, 8)}`,
        `vm-${oldest.slice(0, 8)}`,
        "vm",
        "db-1",
        "l".repeat(255),
      ]);
      expect(names.get(long)).toBe(`${"l".repeat(246)}-${long.slice(0, 8)}`);
      await expect(add("db-1", seen(0))).rejects.toMatchObject({ code: "23505", constraint: "agents_active_hostname" });
    } finally {
      await db.destroy();
      await database.drop();
    }
  });
});

describe("the enrolment token", () => {
  it("is generated once, kept with mode 0600, and the configured one wins", () => {
    const dir = tempDir();
    try {
      const first = ensureEnrollToken(dir.path);
      expect(statSync(enrollTokenFile(dir.path)).mode & 0o777).toBe(0o600);
      expect(ensureEnrollToken(dir.path)).toBe(first);
      expect(ensureEnrollToken(dir.path, "configured-token-0123456789")).toBe("configured-token-0123456789");
    } finally {
      dir.remove();
    }
  });

  it("is compared in constant time, and an empty one never matches", () => {
    const check = enrollTokenChecker("s3cret-enrolment-token");
    expect(check("s3cret-enrolment-token")).toBe(true);
    expect(check("s3cret-enrolment-tokem")).toBe(false);
    expect(check("short")).toBe(false);
    expect(check("")).toBe(false);
  });

  it("comes from SPECTA_ENROLL_TOKEN or enrollToken in the config file, and must be long enough", () => {
    const dir = tempDir();
    try {
      const env = { SPECTA_ENROLL_TOKEN: "from-the-environment-0123" };
      expect(resolveDaemonConfig({ dataDir: dir.path }, env).enrollToken).toBe("from-the-environment-0123");
      expect(resolveDaemonConfig({ dataDir: dir.path }, {}).enrollToken).toBeUndefined();
      expect(() => resolveDaemonConfig({ dataDir: dir.path }, { SPECTA_ENROLL_TOKEN: "short" })).toThrow(/16 to 200 characters/);
    } finally {
      dir.remove();
    }
  });
});
