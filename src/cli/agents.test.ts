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
import { API as AgentAPI } from "../../gen/agent/agent_pb.js";
import { repoRoot, runSpecta, startTestDaemon, type TestDaemon } from "../../test/support/daemon.js";
import { createTestDatabase, testServers, type TestDatabase } from "../../test/support/postgres.js";
import { formatAgo, formatBytes, parseLabels } from "./agents.js";

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

  beforeAll(async () => {
    database = await createTestDatabase(server);
    daemon = await startTestDaemon({ flags: { databaseUrl: database.url } });
    at = ["--server", daemon.url, "--data-dir", daemon.dataDir];
    const enrollToken = readFileSync(join(daemon.dataDir, "enroll.token"), "utf8").trim();
    const client = createClient(AgentAPI, createConnectTransport({ baseUrl: daemon.url, httpVersion: "1.1" }));
    const enrol = async (hostname: string, labels: Record<string, string>, memoryBytes: bigint) => {
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
