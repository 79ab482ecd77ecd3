/**
 * `specta migrate` as a process (the built CLI: `npm run build` first; `npm test` does it).
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { requireBuild, spawnSpecta, tempDir, type SpectaProcess } from "../../test/support/daemon.js";
import { createTestDatabase, testServers, type TestDatabase, type TestServer } from "../../test/support/postgres.js";
import { migrations } from "../storage/migrations/index.js";

beforeAll(() => requireBuild());

const started: SpectaProcess[] = [];
const databases: TestDatabase[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((p) => p.cleanup()));
  await Promise.all(databases.splice(0).map((d) => d.drop()));
});

/** Runs `specta migrate ...args` to completion. */
async function migrate(args: string[], env: Record<string, string> = {}, onCleanup?: () => void) {
  const proc = spawnSpecta(["migrate", ...args], env, onCleanup);
  started.push(proc);
  const { code } = await proc.exited;
  return { code, stdout: proc.stdout(), stderr: proc.stderr() };
}

const appliedAll = Object.keys(migrations)
  .map((name) => `applied ${name}\n`)
  .join("");

describe.each(testServers())("specta migrate on $name PostgreSQL", (server: TestServer) => {
  it("applies every migration once, then reports the database up to date", async () => {
    const database = await createTestDatabase(server);
    databases.push(database);
    expect(await migrate(["--database-url", database.url])).toEqual({ code: 0, stdout: appliedAll, stderr: "" });
    expect(await migrate([], { SPECTA_DATABASE_URL: database.url })).toEqual({ code: 0, stdout: "up to date\n", stderr: "" });
  });
});

describe("specta migrate", () => {
  it("migrates the embedded PostgreSQL of a data directory, and stops it again", async () => {
    const dir = tempDir();
    const dataDir = join(dir.path, "data");
    const first = await migrate(["--data-dir", dataDir], {}, dir.remove);
    expect(first).toMatchObject({ code: 0, stdout: appliedAll });
    expect(existsSync(join(dataDir, "postgres", "postmaster.pid"))).toBe(false);
    expect(existsSync(join(dataDir, "daemon.pid"))).toBe(false);
    expect(await migrate([], { SPECTA_DATA_DIR: dataDir })).toMatchObject({ code: 0, stdout: "up to date\n" });
  });

  it("leaves the embedded PostgreSQL of a running daemon alone", async () => {
    const dir = tempDir();
    const dataDir = join(dir.path, "data");
    mkdirSync(dataDir);
    // This test process stands in for the daemon holding the data directory.
    writeFileSync(join(dataDir, "daemon.pid"), `${process.pid}\n`);
    const result = await migrate(["--data-dir", dataDir], {}, dir.remove);
    expect(result).toMatchObject({ code: 2, stdout: "" });
    expect(result.stderr).toMatch(
      new RegExp(`^specta: a specta daemon \\(pid ${process.pid}\\) is using the data directory .*stop it first[^\n]*\n$`),
    );
    expect(existsSync(join(dataDir, "postgres"))).toBe(false);
  });

  it("fails with one clear line when the server cannot be reached", async () => {
    const result = await migrate(["--database-url", "postgres://nobody:secret@127.0.0.1:1/specta"]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toMatch(/^specta: cannot connect to PostgreSQL at 127\.0\.0\.1:1\/specta as nobody: .*check --database-url[^\n]*\n$/);
    expect(result.stderr).not.toContain("secret");
  });

  it("refuses a URL that is not postgres:// with exit code 2", async () => {
    const result = await migrate(["--database-url", "mysql://localhost/specta"]);
    expect(result).toMatchObject({ code: 2, stdout: "" });
    expect(result.stderr).toMatch(/^specta: the database URL must start with postgres:\/\/[^\n]*\n$/);
  });
});
