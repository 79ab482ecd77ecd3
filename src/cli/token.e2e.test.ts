/**
 * `specta token` as a user runs it: the built CLI (`npm run build` first; `npm test` does it) in a
 * child process, against a daemon started as `specta daemon` on a real PostgreSQL.
 */
import { create } from "@bufbuild/protobuf";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TokenSchema } from "../../gen/tokens/tokens_pb.js";
import { runSpecta, spawnDaemon, tempDir, type SpawnedDaemon } from "../../test/support/daemon.js";
import { findToken, readLocalSecret } from "./token.js";

describe("specta token against a daemon", () => {
  let daemon: SpawnedDaemon;
  let adminToken: string;
  let at: string[];
  beforeAll(async () => {
    daemon = await spawnDaemon();
    adminToken = readFileSync(join(daemon.dataDir, "admin.token"), "utf8").trim();
    at = ["--server", daemon.url, "--data-dir", daemon.dataDir];
  }, 60_000);
  afterAll(async () => {
    await daemon?.cleanup();
  });

  it("says at the first start where the dashboard is and which file holds the admin token, never the token", async () => {
    const file = join(daemon.dataDir, "admin.token");
    const listening = await daemon.waitForLog((l) => l.message === "daemon listening");
    expect(listening).toMatchObject({ dashboard: `${daemon.url}/`, adminTokenFile: file });
    const first = await daemon.waitForLog((l) => l.message?.startsWith("first start") === true);
    expect(first).toMatchObject({
      level: "info",
      dashboard: `${daemon.url}/`,
      adminTokenFile: file,
      message: `first start: open the dashboard at ${daemon.url}/ and sign in with the admin token in ${file} (\`specta token show-admin\` prints it)`,
    });
    expect(daemon.stdout() + daemon.stderr()).not.toContain(adminToken);
  });

  it("show-admin and show-enroll print the local daemon's tokens, which work", async () => {
    expect(await runSpecta(["token", "show-admin", "--data-dir", daemon.dataDir])).toEqual({ code: 0, stdout: `${adminToken}\n`, stderr: "" });
    const fromEnv = await runSpecta(["token", "show-admin"], { SPECTA_DATA_DIR: daemon.dataDir });
    expect(fromEnv.stdout).toBe(`${adminToken}\n`);
    const list = await runSpecta(["token", "list", "--server", daemon.url, "--data-dir", "/nonexistent", "--token", fromEnv.stdout.trim()]);
    expect(list).toMatchObject({ code: 0, stderr: "" });
    const enroll = await runSpecta(["token", "show-enroll", "--data-dir", daemon.dataDir]);
    expect(enroll).toEqual({ code: 0, stdout: readFileSync(join(daemon.dataDir, "enroll.token"), "utf8"), stderr: "" });
    expect(enroll.stdout).toMatch(/^specta_enroll_/);
  });

  it("show-admin says where it looked when there is no token", async () => {
    const dir = tempDir();
    try {
      const run = await runSpecta(["token", "show-admin", "--data-dir", dir.path]);
      expect(run).toEqual({
        code: 1,
        stdout: "",
        stderr: `specta: no admin token in ${join(dir.path, "admin.token")}: the daemon writes it at its first start in its data directory (/var/lib/specta as root, else ~/.local/share/specta); give --data-dir if it uses another\n`,
      });
    } finally {
      dir.remove();
    }
  });

  it("revokes a token by a unique id prefix", async () => {
    const created = await runSpecta(["token", "create", "--role", "viewer", "--name", "by-prefix", "--json", ...at]);
    const { info } = JSON.parse(created.stdout) as { info: { id: string } };
    const prefix = info.id.slice(0, 8).toUpperCase();
    expect(await runSpecta(["token", "revoke", prefix, ...at])).toEqual({ code: 0, stdout: `revoked by-prefix (${info.id})\n`, stderr: "" });
    // Revoked, it is no longer a valid token that a prefix could name; its whole id gets the daemon's reason.
    expect(await runSpecta(["token", "revoke", prefix, ...at])).toEqual({
      code: 1,
      stdout: "",
      stderr: `specta: no valid token has an id starting with "${prefix}" (4 characters at least; see specta token list)\n`,
    });
    expect(await runSpecta(["token", "revoke", info.id, ...at])).toEqual({
      code: 1,
      stdout: "",
      stderr: `specta: failed_precondition: the token ${info.id} is already revoked\n`,
    });
    expect((await runSpecta(["token", "revoke", info.id.slice(0, 3), ...at])).stderr).toMatch(/no valid token has an id starting with/);
  });
});

describe("specta token: which token a prefix names", () => {
  const token = (id: string, name: string) => create(TokenSchema, { id, name });
  const tokens = [
    token("5f0c1a2b-0000-4000-8000-000000000001", "grafana"),
    token("5f0c9999-0000-4000-8000-000000000002", "alice"),
    token("abcd0000-0000-4000-8000-000000000003", "bob"),
  ];

  it("takes a unique prefix of 4 characters or more, in any case", () => {
    expect(findToken(tokens, "ABCD").name).toBe("bob");
    expect(findToken(tokens, "5f0c1").name).toBe("grafana");
    expect(() => findToken(tokens, "abc")).toThrow(/no valid token has an id starting with "abc"/);
  });

  it("refuses an ambiguous prefix, naming the tokens it matches", () => {
    expect(() => findToken(tokens, "5f0c")).toThrow(
      '"5f0c" is the start of 2 token ids: 5f0c1a2b-0000-4000-8000-000000000001 (grafana), 5f0c9999-0000-4000-8000-000000000002 (alice); give more of the id',
    );
  });

  it("reads a local secret, or says why it cannot", () => {
    const dir = tempDir();
    try {
      const fileOf = (d: string) => join(d, "secret");
      expect(() => readLocalSecret(fileOf, dir.path, "secret", true)).toThrow(`no secret in ${join(dir.path, "secret")}`);
    } finally {
      dir.remove();
    }
  });
});
