/**
 * Admin and viewer tokens: `specta token create|list|revoke` as a user runs it (the built CLI in
 * a child process) against a real daemon, and the roles enforced by the API itself.
 */
import { create } from "@bufbuild/protobuf";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API as AgentAPI } from "../../gen/agent/agent_pb.js";
import { API as CommandsAPI, DiagnosticSchema } from "../../gen/commands/commands_pb.js";
import { API as MetricsAPI } from "../../gen/metrics/metrics_pb.js";
import { API as TokensAPI, Role } from "../../gen/tokens/tokens_pb.js";
import { requireBuild, runSpecta, startTestDaemon, type TestDaemon } from "../../test/support/daemon.js";
import { FakeAgent } from "../../test/support/fake-agent.js";
import { createTestDatabase, openDb, testServers, type TestDatabase } from "../../test/support/postgres.js";
import { hashToken, tokenCacheMs, TokenStore } from "./tokens.js";
import { bearer, codeOf } from "../../test/support/rpc.js";

beforeAll(() => requireBuild());

describe.each(testServers())("tokens on $name PostgreSQL", (server) => {
  let database: TestDatabase;
  let daemon: TestDaemon;
  let at: string[];
  const clientFor = <T extends typeof TokensAPI | typeof CommandsAPI | typeof MetricsAPI | typeof AgentAPI>(service: T, token: string) =>
    createClient(service, createConnectTransport({ baseUrl: daemon.url, httpVersion: "1.1", interceptors: [bearer(token)] }));

  beforeAll(async () => {
    database = await createTestDatabase(server);
    daemon = await startTestDaemon({ flags: { databaseUrl: database.url } });
    at = ["--server", daemon.url, "--data-dir", daemon.dataDir];
  });
  afterAll(async () => {
    await daemon?.stop();
    await database?.drop();
  });

  it("creates a viewer token that reads but cannot run commands, manage tokens or push", async () => {
    const created = await runSpecta(["token", "create", "--role", "viewer", "--name", "grafana", ...at]);
    expect(created.code).toBe(0);
    expect(created.stderr).toMatch(/^created viewer token "grafana" \(id [0-9a-f-]{36}\); it is shown only now\n$/);
    const viewer = created.stdout.trim();
    expect(viewer).toMatch(/^specta_[A-Za-z0-9_-]{43}$/);

    // Stored hashed: the secret is nowhere in the database, its SHA-256 is.
    const sql = new pg.Client({ connectionString: database.url });
    await sql.connect();
    try {
      const { rows } = await sql.query<{ n: string }>("SELECT count(*) AS n FROM tokens WHERE hash = $1 AND name = 'grafana' AND role = 'viewer'", [
        hashToken(viewer),
      ]);
      expect(rows[0]!.n).toBe("1");
      const { rows: leaks } = await sql.query<{ n: string }>("SELECT count(*) AS n FROM tokens t WHERE strpos(t::text, $1) > 0", [viewer]);
      expect(leaks[0]!.n).toBe("0");
    } finally {
      await sql.end();
    }

    const whoami = await clientFor(TokensAPI, viewer).whoami({});
    expect(whoami.token).toMatchObject({ name: "grafana", role: Role.VIEWER });
    expect(await codeOf(clientFor(AgentAPI, viewer).list({}))).toBe("ok");
    expect(await codeOf(clientFor(MetricsAPI, viewer).list({}))).toBe("ok");
    const ping = create(DiagnosticSchema, { kind: { case: "ping", value: { host: "127.0.0.1", count: 1 } } });
    const agent = await FakeAgent.enrol(daemon.url, daemon.dataDir, "tokens-host");
    expect(await codeOf(clientFor(CommandsAPI, viewer).submit({ target: { case: "agent", value: agent.agentId }, diagnostic: ping }))).toBe(
      Code.PermissionDenied,
    );
    expect(await codeOf(clientFor(TokensAPI, viewer).create({ role: Role.ADMIN, name: "escalate" }))).toBe(Code.PermissionDenied);
    expect(await codeOf(clientFor(TokensAPI, viewer).list({}))).toBe(Code.PermissionDenied);
    expect(await codeOf(clientFor(MetricsAPI, viewer).push({ series: [] }))).toBe(Code.PermissionDenied);
    // The agent's own credential says who it is, and may not manage tokens either.
    expect((await clientFor(TokensAPI, agent.credential).whoami({})).token).toMatchObject({ role: Role.AGENT, agentId: agent.agentId });
    expect(await codeOf(clientFor(TokensAPI, agent.credential).list({}))).toBe(Code.PermissionDenied);
    expect(await codeOf(clientFor(TokensAPI, "specta_nope").whoami({}))).toBe(Code.Unauthenticated);
  });

  it("lists tokens as a table and as JSON, and revokes them at once", async () => {
    const admin = await runSpecta(["token", "create", "--role", "admin", "--name", "alice", "--json", ...at]);
    expect(admin.code).toBe(0);
    const { info, token } = JSON.parse(admin.stdout) as { info: { id: string; role: string; name: string }; token: string };
    expect(info).toMatchObject({ role: "ROLE_ADMIN", name: "alice" });

    const table = await runSpecta(["token", "list", ...at]);
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^ID +NAME +ROLE +CREATED +REVOKED$/);
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^${info.id}  alice +admin +\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ$`)));
    expect(lines.some((l) => / local admin +admin /.test(l))).toBe(true);
    expect(table.stdout).not.toContain(token);

    expect(await codeOf(clientFor(TokensAPI, token).whoami({}))).toBe("ok");
    const revoked = await runSpecta(["token", "revoke", info.id, ...at]);
    expect(revoked).toEqual({ code: 0, stdout: `revoked alice (${info.id})\n`, stderr: "" });
    expect(await codeOf(clientFor(TokensAPI, token).whoami({}))).toBe(Code.Unauthenticated);

    const valid = JSON.parse((await runSpecta(["token", "list", "--json", ...at])).stdout) as { tokens: { id: string }[] };
    expect(valid.tokens.map((t) => t.id)).not.toContain(info.id);
    const all = JSON.parse((await runSpecta(["token", "list", "--all", "--json", ...at])).stdout) as {
      tokens: { id: string; revoked?: string; role: string }[];
    };
    expect(all.tokens.find((t) => t.id === info.id)?.revoked).toEqual(expect.any(String));
    expect(all.tokens.some((t) => t.role === "ROLE_AGENT")).toBe(true);
  });

  it("refuses a revoked admin token on another daemon within a second, and every token it minted with it", async () => {
    const daemonB = await startTestDaemon({ flags: { databaseUrl: database.url } });
    const on =
      (d: TestDaemon) =>
      <T extends Parameters<typeof clientFor>[0]>(service: T, token: string) =>
        createClient(service, createConnectTransport({ baseUrl: d.url, httpVersion: "1.1", interceptors: [bearer(token)] }));
    const [onA, onB] = [on(daemon), on(daemonB)];
    try {
      // alice (minted by A's local admin) mints bob and carol on B; bob mints dave on A.
      const mint = async (via: typeof onA, minter: string, role: Role, name: string) => (await via(TokensAPI, minter).create({ role, name })).token;
      const alice = await mint(onA, daemon.adminToken(), Role.ADMIN, "alice");
      const bob = await mint(onB, alice, Role.ADMIN, "bob");
      const carol = await mint(onB, alice, Role.VIEWER, "carol");
      const dave = await mint(onA, bob, Role.VIEWER, "dave");
      const other = await mint(onA, daemonB.adminToken(), Role.VIEWER, "not alice's");
      // Verified, so cached, on both daemons (List trusts the cache; Whoami always reads the table).
      const family = [alice, bob, carol, dave];
      for (const via of [onA, onB]) for (const token of [...family, other]) expect(await codeOf(via(AgentAPI, token).list({}))).toBe("ok");

      const aliceId = (await onA(TokensAPI, alice).whoami({})).token!.id;
      const revoked = Date.now();
      await onA(TokensAPI, daemon.adminToken()).revoke({ id: aliceId });
      for (const token of family) {
        await expect
          .poll(() => codeOf(onB(AgentAPI, token).list({})), { timeout: Math.max(10, 1_000 - (Date.now() - revoked)), interval: 10 })
          .toBe(Code.Unauthenticated);
      }
      expect(Date.now() - revoked).toBeLessThan(1_000);
      for (const token of family) expect(await codeOf(onA(AgentAPI, token).list({}))).toBe(Code.Unauthenticated);
      expect(await codeOf(onB(TokensAPI, bob).create({ role: Role.ADMIN, name: "one more" }))).toBe(Code.Unauthenticated);
      // What alice did not mint stays valid.
      expect(await codeOf(onB(AgentAPI, other).list({}))).toBe("ok");
      expect(await codeOf(onB(AgentAPI, daemonB.adminToken()).list({}))).toBe("ok");
    } finally {
      await daemonB.stop();
    }
  });

  it("forgets cached verifications when notifications may have been missed (the LISTEN session reconnects)", async () => {
    const { info, token } = await clientFor(TokensAPI, daemon.adminToken()).create({ role: Role.VIEWER, name: "missed" });
    expect(await codeOf(clientFor(AgentAPI, token).list({}))).toBe("ok");
    const sql = new pg.Client({ connectionString: database.url });
    await sql.connect();
    try {
      // Revoked without its note, then the LISTEN session cut: the cache is emptied when it is back.
      await sql.query("UPDATE tokens SET revoked = now() WHERE id = $1", [info!.id]);
      await sql.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'");
    } finally {
      await sql.end();
    }
    // Well within the cache's own lifetime (tokenCacheMs).
    await expect.poll(() => codeOf(clientFor(AgentAPI, token).list({})), { timeout: tokenCacheMs / 2, interval: 50 }).toBe(Code.Unauthenticated);
  });

  it("refuses bad input with one clear line, and never revokes the last admin token", async () => {
    const badRole = await runSpecta(["token", "create", "--role", "root", ...at]);
    expect(badRole).toEqual({ code: 1, stdout: "", stderr: 'specta: --role must be admin or viewer, not "root"\n' });
    const admin = clientFor(TokensAPI, daemon.adminToken());
    expect(await codeOf(admin.create({ role: Role.AGENT, name: "x" }))).toBe(Code.InvalidArgument);
    expect(await codeOf(admin.create({ role: Role.VIEWER, name: "" }))).toBe(Code.InvalidArgument);
    expect(await codeOf(admin.create({ role: Role.VIEWER, name: "x".repeat(101) }))).toBe(Code.InvalidArgument);
    expect(await codeOf(admin.create({ role: Role.VIEWER, name: "a\nb" }))).toBe(Code.InvalidArgument);
    const notId = await runSpecta(["token", "revoke", "nope", ...at]);
    expect(notId.code).toBe(1);
    expect(notId.stderr).toMatch(/^specta: no valid token has an id starting with "nope" \(4 characters at least; see specta token list\)\n$/);
    expect(await codeOf(admin.revoke({ id: "00000000-0000-4000-8000-000000000000" }))).toBe(Code.NotFound);

    const all = await admin.list({ includeAgents: true });
    const agentCredential = all.tokens.find((t) => t.role === Role.AGENT)!;
    expect(await codeOf(admin.revoke({ id: agentCredential.id }))).toBe(Code.FailedPrecondition);

    // Revoke every admin but the local one, then the local one is the last: refused.
    const admins = (await admin.list({})).tokens.filter((t) => t.role === Role.ADMIN);
    const self = (await admin.whoami({})).token!;
    for (const t of admins) if (t.id !== self.id) await admin.revoke({ id: t.id });
    const last = await runSpecta(["token", "revoke", self.id, ...at]);
    expect(last.code).toBe(1);
    expect(last.stderr).toMatch(/^specta: failed_precondition: revoking this token would leave no valid admin token/);
    expect(await codeOf(admin.whoami({}))).toBe("ok");
  });

  it("leaves one admin token when two daemons revoke every admin token at once", async () => {
    const stores = [0, 1].map(() => openDb(database.url, 4));
    try {
      const [a, b] = stores.map((db) => new TokenStore(db)) as [TokenStore, TokenStore];
      for (const name of ["ops-1", "ops-2", "ops-3"]) await a.create("admin", name);
      const admins = (await a.list()).filter((t) => t.role === "admin");
      expect(admins.length).toBeGreaterThanOrEqual(4);
      const outcomes = await Promise.all(admins.map((t, i) => (i % 2 === 0 ? a : b).revokeOne(t.id)));
      expect(outcomes.filter((o) => "revoked" in o)).toHaveLength(admins.length - 1);
      expect(outcomes.filter((o) => "refused" in o)).toEqual([{ refused: "last-admin" }]);
      expect((await a.list()).filter((t) => t.role === "admin")).toHaveLength(1);
    } finally {
      await Promise.all(stores.map((db) => db.destroy()));
    }
  });

  it("refuses to revoke the token that minted every other admin token: they would go with it", async () => {
    const kysely = openDb(database.url, 2);
    try {
      const store = new TokenStore(kysely);
      const root = await store.create("admin", "root");
      const child = (await store.mint("admin", "child", root.id))!;
      const others = (await store.list()).filter((t) => t.role === "admin" && t.id !== root.id && t.id !== child.id);
      for (const t of others) expect(await store.revokeOne(t.id)).toMatchObject({ revoked: { id: t.id } });
      expect(await store.revokeOne(root.id)).toEqual({ refused: "last-admin" });
      // Another admin not of root's making: now root can go, and its child with it.
      const spare = await store.create("admin", "spare");
      expect(await store.revokeOne(root.id)).toMatchObject({ revoked: { id: root.id } });
      expect((await store.get(child.id))?.revoked).toBeInstanceOf(Date);
      expect(await store.mint("viewer", "too late", child.id)).toBeUndefined();
      expect((await store.list()).filter((t) => t.role === "admin").map((t) => t.id)).toEqual([spare.id]);
    } finally {
      await kysely.destroy();
    }
  });
});
