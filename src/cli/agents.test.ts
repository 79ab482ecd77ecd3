/**
 * `specta agents` as a user runs it: the built CLI (`npm run build` first; `npm test` does it)
 * in a child process, against a real daemon on a real PostgreSQL.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { AgentSchema, API as AgentAPI } from "../../gen/agent/agent_pb.js";
import { repoRoot, runSpecta, startTestDaemon, type TestDaemon } from "../../test/support/daemon.js";
import { createTestDatabase, testServers, type TestDatabase } from "../../test/support/postgres.js";
import { findAgent, formatAgo, formatBytes, parseLabels } from "./agents.js";

beforeAll(() => {
  if (!existsSync(join(repoRoot, "dist", "src", "cli", "agents.js"))) {
    throw new Error("dist/ lacks the agents command: run `npm run build` before these tests (`npm test` does it)");
  }
});

describe.each(testServers())("specta agents on $name PostgreSQL", (server) => {
  let database: TestDatabase;
  let daemon: TestDaemon;
  let at: string[];
  const ids: Record<string, string> = {};
  let enrol: (hostname: string, labels: Record<string, string>, memoryBytes: bigint) => Promise<void>;

  beforeAll(async () => {
    database = await createTestDatabase(server);
    daemon = await startTestDaemon({ flags: { databaseUrl: database.url } });
    at = ["--server", daemon.url, "--data-dir", daemon.dataDir];
    const enrollToken = readFileSync(join(daemon.dataDir, "enroll.token"), "utf8").trim();
    const client = createClient(AgentAPI, createConnectTransport({ baseUrl: daemon.url, httpVersion: "1.1" }));
    enrol = async (hostname, labels, memoryBytes) => {
      const { agentId } = await client.register({
        enrollToken,
        host: {
          hostname,
          os: "linux",
          osVersion: "Debian GNU/Linux 12 (bookworm)",
          kernel: "6.1.0-18-amd64",
          arch: "x64",
          cpuModel: "Test CPU",
          cpuCount: 4,
          memoryBytes,
          bootTime: timestampFromMs(Date.parse("2026-11-01T08:00:00Z")),
        },
        labels,
        agentVersion: "0.1.0",
      });
      ids[hostname] = agentId;
    };
    await enrol("cli-db", { role: "db" }, 8n * 1024n ** 3n);
    await enrol("cli-web", { role: "web", zone: "a" }, 512n * 1024n ** 2n);
    const sql = new pg.Client({ connectionString: database.url });
    await sql.connect();
    try {
      await sql.query("UPDATE agents SET last_seen = now() - interval '10 minutes' WHERE id = $1", [ids["cli-web"]]);
    } finally {
      await sql.end();
    }
  });

  afterAll(async () => {
    await daemon?.stop();
    await database?.drop();
  });

  it("prints the inventory as a table", async () => {
    const run = await runSpecta(["agents", ...at]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const lines = run.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^ID +HOSTNAME +STATUS +OS +KERNEL +ARCH +CPUS +MEMORY +VERSION +LAST SEEN$/);
    expect(lines.slice(1)).toEqual([
      expect.stringMatching(new RegExp(`^${ids["cli-db"]}  cli-db  +online  +linux  6\\.1\\.0-18-amd64  x64 +4 +8\\.0 GiB +0\\.1\\.0 +\\d+s ago$`)),
      expect.stringMatching(new RegExp(`^${ids["cli-web"]}  cli-web +offline +linux  6\\.1\\.0-18-amd64  x64 +4 +512\\.0 MiB +0\\.1\\.0 +10m ago$`)),
    ]);
    // Columns line up: each row's status starts where the header's does.
    const statusAt = lines[0]!.indexOf("STATUS");
    for (const line of lines.slice(1)) expect(line.slice(statusAt)).toMatch(/^(online|offline) /);
  });

  it("prints the ListResponse as JSON with --json, filtered by --label", async () => {
    const run = await runSpecta(["agents", "--json", ...at]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const body = JSON.parse(run.stdout) as { agents: Record<string, unknown>[] };
    expect(body.agents.map((a) => [a.id, a.status])).toEqual([
      [ids["cli-db"], "STATUS_ONLINE"],
      [ids["cli-web"], "STATUS_OFFLINE"],
    ]);
    expect(body.agents[0]).toMatchObject({
      host: {
        hostname: "cli-db",
        os: "linux",
        osVersion: "Debian GNU/Linux 12 (bookworm)",
        kernel: "6.1.0-18-amd64",
        arch: "x64",
        cpuModel: "Test CPU",
        cpuCount: 4,
        memoryBytes: String(8 * 1024 ** 3),
        bootTime: "2026-11-01T08:00:00Z",
      },
      labels: { role: "db" },
      agentVersion: "0.1.0",
    });
    expect(body.agents[0]).toHaveProperty("firstSeen");
    expect(body.agents[0]).toHaveProperty("lastSeen");

    const filtered = await runSpecta(["agents", "--json", "--label", "role=web", "--label", "zone=a", ...at]);
    expect((JSON.parse(filtered.stdout) as { agents: { id: string }[] }).agents.map((a) => a.id)).toEqual([ids["cli-web"]]);
    const none = await runSpecta(["agents", "--label", "role=none", ...at]);
    expect(none).toEqual({ code: 0, stdout: "(no agents)\n", stderr: "" });
    const noneJson = await runSpecta(["agents", "--json", "--label", "role=none", ...at]);
    expect(JSON.parse(noneJson.stdout)).toEqual({});
  });

  it("reports errors as one line and exits 1", async () => {
    const badLabel = await runSpecta(["agents", "--label", "role", ...at]);
    expect(badLabel).toEqual({ code: 1, stdout: "", stderr: 'specta: --label "role" is not key=value\n' });
    const noToken = await runSpecta(["agents", "--server", daemon.url, "--data-dir", "/nonexistent"]);
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toMatch(/^specta: unauthenticated: agent\.API\/List needs a credential/);
  });

  it("removes an agent by id, by id prefix and by hostname", async () => {
    for (const hostname of ["rm-by-id", "rm-by-prefix", "rm-by-name"]) await enrol(hostname, {}, 1n);
    const listed = async () =>
      (JSON.parse((await runSpecta(["agents", "--json", ...at])).stdout) as { agents?: { id: string }[] }).agents?.map((a) => a.id) ?? [];

    const byId = await runSpecta(["agents", "remove", ids["rm-by-id"]!.toUpperCase(), ...at]);
    expect(byId).toEqual({ code: 0, stdout: `removed rm-by-id (${ids["rm-by-id"]})\n`, stderr: "" });
    const prefix = ids["rm-by-prefix"]!.slice(0, 8);
    expect(await runSpecta(["agents", "remove", prefix, ...at])).toEqual({
      code: 0,
      stdout: `removed rm-by-prefix (${ids["rm-by-prefix"]})\n`,
      stderr: "",
    });
    expect(await runSpecta(["agents", "remove", "rm-by-name", ...at])).toEqual({
      code: 0,
      stdout: `removed rm-by-name (${ids["rm-by-name"]})\n`,
      stderr: "",
    });
    expect(await listed()).toEqual([ids["cli-db"], ids["cli-web"]]);

    // Gone: neither its id nor its name finds it again.
    const again = await runSpecta(["agents", "remove", "rm-by-name", ...at]);
    expect(again).toEqual({ code: 1, stdout: "", stderr: 'specta: no agent has the id, id prefix or hostname "rm-by-name" (see specta agents)\n' });
    expect((await runSpecta(["agents", "remove", prefix, ...at])).code).toBe(1);
    expect(await listed()).toEqual([ids["cli-db"], ids["cli-web"]]);
  });
});

describe("specta agents remove: which agent a name names", () => {
  const agent = (id: string, hostname: string) => create(AgentSchema, { id, host: { hostname } });
  const agents = [
    agent("c0ffee00-0000-4000-8000-000000000001", "db-1"),
    agent("c0ffee00-0000-4000-8000-000000000002", "db-2"),
    agent("abcd1234-0000-4000-8000-000000000003", "c0ffee00"),
    agent("d00d0000-0000-4000-8000-000000000004", "abcd"),
  ];

  it("takes a full id, a hostname or a unique id prefix of 4 characters or more", () => {
    expect(findAgent(agents, "C0FFEE00-0000-4000-8000-000000000002").host?.hostname).toBe("db-2");
    expect(findAgent(agents, "db-1").id).toBe("c0ffee00-0000-4000-8000-000000000001");
    expect(findAgent(agents, "d00d").host?.hostname).toBe("abcd");
    expect(() => findAgent(agents, "d00")).toThrow('no agent has the id, id prefix or hostname "d00"');
    expect(() => findAgent(agents, "DB-1")).toThrow(/no agent/);
  });

  it("refuses a name that matches several agents instead of guessing", () => {
    expect(() => findAgent(agents, "c0ffee00-0000")).toThrow(
      /"c0ffee00-0000" names 2 agents: c0ffee00-0000-4000-8000-000000000001 \(db-1\), c0ffee00-0000-4000-8000-000000000002 \(db-2\); give more of the id/,
    );
    // A hostname that is also another agent's id prefix.
    expect(() => findAgent(agents, "c0ffee00")).toThrow(/names 3 agents/);
    expect(() => findAgent(agents, "abcd")).toThrow(/names 2 agents/);
  });
});

describe("specta agents formatting", () => {
  it("parses labels, sizes and ages", () => {
    expect(parseLabels(["a=1", "b=x=y", "c="])).toEqual({ a: "1", b: "x=y", c: "" });
    expect(() => parseLabels(["=v"])).toThrow(/not key=value/);
    expect(formatBytes(0n)).toBe("0 B");
    expect(formatBytes(1536n)).toBe("1.5 KiB");
    expect(formatBytes(16n * 1024n ** 3n)).toBe("16.0 GiB");
    const now = Date.parse("2026-11-22T12:00:00Z");
    expect([5_000, 90_000, 2 * 3_600_000, 3 * 86_400_000].map((ago) => formatAgo(now - ago, now))).toEqual(["5s ago", "1m ago", "2h ago", "3d ago"]);
  });
});
