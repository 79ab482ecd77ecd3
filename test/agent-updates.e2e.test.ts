/**
 * Signed agent updates end to end: real `specta agent` processes (the built bin) against a real
 * daemon on a port, releases published with `specta release publish` and rolled out with
 * `specta release rollout`. Every refusal and the rollback shows in the inventory with its reason.
 */
import { createPrivateKey } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API as AgentAPI, type Agent } from "../gen/agent/agent_pb.js";
import { API as ReleasesAPI, UpdateStep } from "../gen/releases/releases_pb.js";
import { signRelease } from "../src/cli/release.js";
import { repoRoot, runSpecta, spawnSpecta, startTestDaemon, tempDir, type SpectaProcess, type TestDaemon } from "./support/daemon.js";
import { createTestDatabase, type TestDatabase } from "./support/postgres.js";

const bundle = join(repoRoot, "dist", "agent.mjs");
const running = (JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as { version: string }).version;

describe("signed agent updates", () => {
  let database: TestDatabase;
  let daemon: TestDaemon;
  let dir: { path: string; remove(): void };
  let agents: Client<typeof AgentAPI>;
  let releases: Client<typeof ReleasesAPI>;
  let at: string[];
  const processes: SpectaProcess[] = [];
  const key = () => join(dir.path, "release.key");
  const otherKey = () => join(dir.path, "other.key");

  /** A real agent labelled case=<name>, trusting release.key.pub, asking for updates twice a second. */
  const startAgent = (name: string, healthTimeout = "30") => {
    const enrollToken = readFileSync(join(daemon.dataDir, "enroll.token"), "utf8").trim();
    const agent = spawnSpecta(
      [
        "agent",
        ...["--server", daemon.url, "--protocol", "connect", "--enroll-token", enrollToken],
        ...["--state-dir", join(dir.path, name), "--hostname", name, "--label", `case=${name}`],
        ...["--release-keys", `${key()}.pub`, "--update-interval", "0.5", "--update-health-timeout", healthTimeout],
      ],
      { SPECTA_LOG_LEVEL: "info" },
    );
    processes.push(agent);
    return agent;
  };

  const publish = async (file: string, version: string, signingKey = key()) => {
    const run = await runSpecta(["release", "publish", file, "--key", signingKey, "--version", version, ...at]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
  };
  const rollout = async (version: string, name: string, percent = 100) => {
    const run = await runSpecta(["release", "rollout", version, "--label", `case=${name}`, "--percent", String(percent), ...at]);
    expect(run.code, run.stderr).toBe(0);
  };

  /** The inventory's entry of `name` once `done` holds for it. */
  const inventoryUntil = async (name: string, done: (agent: Agent) => boolean, timeoutMs = 60_000): Promise<Agent> => {
    const deadline = Date.now() + timeoutMs;
    let last: Agent | undefined;
    while (Date.now() < deadline) {
      last = (await agents.list({ labels: { case: name } })).agents[0];
      if (last && done(last)) return last;
      await sleep(250);
    }
    const update = last?.update ? `${UpdateStep[last.update.step]} of ${last.update.version} (${last.update.reason})` : "none";
    throw new Error(`agent ${name} never got there; last seen: update ${update}, version ${last?.agentVersion}`);
  };
  /** The agent's current.json once its release is off trial: written just after it has reported healthy. */
  const currentOnceHealthy = async (name: string): Promise<unknown> => {
    for (let i = 0; i < 40; i++) {
      const current = JSON.parse(readFileSync(join(dir.path, name, "current.json"), "utf8")) as { trial: boolean };
      if (!current.trial) return current;
      await sleep(250);
    }
    throw new Error(`the release of ${name} stays on trial`);
  };
  const stepOf = (version: string, step: UpdateStep) => (a: Agent) => a.update?.version === version && a.update.step === step;

  beforeAll(async () => {
    if (!existsSync(bundle)) throw new Error("dist/agent.mjs is missing: run `npm run build` before these tests (`npm test` does it)");
    dir = tempDir("specta-updates-");
    database = await createTestDatabase();
    daemon = await startTestDaemon({ flags: { databaseUrl: database.url } });
    at = ["--server", daemon.url, "--token", daemon.adminToken()];
    const transport = createConnectTransport({
      baseUrl: daemon.url,
      httpVersion: "1.1",
      interceptors: [
        (next) => (req) => {
          req.header.set("authorization", `Bearer ${daemon.adminToken()}`);
          return next(req);
        },
      ],
    });
    agents = createClient(AgentAPI, transport);
    releases = createClient(ReleasesAPI, transport);
    for (const file of [key(), otherKey()]) {
      const run = await runSpecta(["release", "keygen", file]);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout.trim()).toBe(readFileSync(`${file}.pub`, "utf8").trim());
    }
  }, 60_000);

  afterAll(async () => {
    for (const p of processes) {
      p.child.kill("SIGTERM");
      await Promise.race([p.exited, sleep(10_000)]);
      await p.cleanup();
    }
    await daemon?.stop();
    await database?.drop();
    dir?.remove();
  });

  it("refuses a downgrade, a bad signature, a tampered bundle and an expired manifest, and keeps running", async () => {
    const agent = startAgent("refuser");
    await inventoryUntil("refuser", (a) => a.agentVersion === running);

    await publish(bundle, "0.0.9");
    await rollout("0.0.9", "refuser");
    const downgrade = await inventoryUntil("refuser", stepOf("0.0.9", UpdateStep.REFUSED));
    expect(downgrade.update?.reason).toBe(`version 0.0.9 is not newer than the running ${running}: no downgrade`);

    await publish(bundle, "9.0.1", otherKey());
    await rollout("9.0.1", "refuser");
    const unsigned = await inventoryUntil("refuser", stepOf("9.0.1", UpdateStep.REFUSED));
    expect(unsigned.update?.reason).toBe("the manifest of 9.0.1 is not signed by a release key this agent trusts");

    // The daemon's copy changed after publishing (its database written by someone else): same size, other bytes.
    await publish(bundle, "9.0.2");
    const sql = new pg.Client({ connectionString: database.url });
    await sql.connect();
    try {
      await sql.query("UPDATE releases SET bundle = overlay(bundle placing '\\x2f2f2f2f'::bytea from 100) WHERE version = '9.0.2'");
    } finally {
      await sql.end();
    }
    await rollout("9.0.2", "refuser");
    const tampered = await inventoryUntil("refuser", stepOf("9.0.2", UpdateStep.REFUSED));
    expect(tampered.update?.reason).toBe("the bundle of 9.0.2 does not match its signed manifest (size or SHA-512 differ)");

    // The CLI refuses to sign an expired manifest: signed here, published through the API.
    const bytes = readFileSync(bundle);
    const expired = signRelease(bytes, createPrivateKey(readFileSync(key())), {
      version: "9.0.3",
      minVersion: "0.0.0",
      expires: "2026-01-01T00:00:00.000Z",
    });
    await releases.publish({ ...expired, bundle: bytes });
    await rollout("9.0.3", "refuser");
    const stale = await inventoryUntil("refuser", stepOf("9.0.3", UpdateStep.REFUSED));
    expect(stale.update?.reason).toBe("the manifest of 9.0.3 expired at 2026-01-01T00:00:00.000Z");

    expect(stale.agentVersion).toBe(running);
    const table = await runSpecta(["agents", ...at]);
    expect(table.stdout.split("\n")[0]).toMatch(/ LAST SEEN +UPDATE$/);
    expect(table.stdout).toMatch(/ refuser .* 9\.0\.3 refused: the manifest of 9\.0\.3 expired at 2026-01-01T00:00:00\.000Z\n/);
    expect(existsSync(join(dir.path, "refuser", "releases"))).toBe(false);
    expect(agent.child.exitCode).toBeNull();
  }, 120_000);

  it("rolls back a release that exits at once, then installs a good one that reports in", async () => {
    const agent = startAgent("updater");
    await inventoryUntil("updater", (a) => a.agentVersion === running);

    const crashing = join(dir.path, "crash.mjs");
    writeFileSync(crashing, "process.exit(3);\n");
    await publish(crashing, "0.3.0");
    await rollout("0.3.0", "updater");
    const rolledBack = await inventoryUntil("updater", stepOf("0.3.0", UpdateStep.ROLLED_BACK));
    expect(rolledBack.update?.reason).toBe("version 0.3.0 exited (code 3) before it reported healthy");
    expect(rolledBack.agentVersion).toBe(running);
    await agent.waitForLog((l) => l.message === "rolling back the update");

    await rollout("0.3.0", "updater", 0);
    await publish(bundle, "0.2.0");
    await rollout("0.2.0", "updater");
    const updated = await inventoryUntil("updater", (a) => stepOf("0.2.0", UpdateStep.HEALTHY)(a) && a.agentVersion === "0.2.0");
    expect(updated.update?.reason).toBe("");
    expect(await currentOnceHealthy("updater")).toEqual({ version: "0.2.0", trial: false });
    expect(existsSync(join(dir.path, "updater", "releases", "0.2.0", "agent.mjs"))).toBe(true);
    expect(agent.child.exitCode).toBeNull();
    // It stays on 0.2.0, which its daemon still offers: nothing more to report.
    await sleep(1_500);
    expect((await inventoryUntil("updater", () => true)).update?.step).toBe(UpdateStep.HEALTHY);

    // Rotation: 0.2.1, signed with the trusted key, names the next one; 0.2.2 is signed with that.
    const rotating = await runSpecta(["release", "publish", bundle, "--key", key(), "--version", "0.2.1", "--next-key", `${otherKey()}.pub`, ...at]);
    expect(rotating.code, rotating.stderr).toBe(0);
    await rollout("0.2.1", "updater");
    await inventoryUntil("updater", (a) => stepOf("0.2.1", UpdateStep.HEALTHY)(a) && a.agentVersion === "0.2.1");
    expect(readFileSync(join(dir.path, "updater", "release-keys"), "utf8").trim()).toBe(readFileSync(`${otherKey()}.pub`, "utf8").trim());
    await publish(bundle, "0.2.2", otherKey());
    await rollout("0.2.2", "updater");
    await inventoryUntil("updater", (a) => stepOf("0.2.2", UpdateStep.HEALTHY)(a) && a.agentVersion === "0.2.2");
    expect(await currentOnceHealthy("updater")).toEqual({
      version: "0.2.2",
      previous: "0.2.1",
      trial: false,
    });

    // Stopping the supervisor stops the release it runs, which drains and exits 0.
    agent.child.kill("SIGTERM");
    expect((await agent.exited).code).toBe(0);
  }, 180_000);

  it("rolls back a release that runs but never reports healthy in time", async () => {
    const agent = startAgent("hanger", "3");
    await inventoryUntil("hanger", (a) => a.agentVersion === running);
    const hanging = join(dir.path, "hang.mjs");
    writeFileSync(hanging, "setInterval(() => {}, 1000);\n");
    await publish(hanging, "0.4.0");
    await rollout("0.4.0", "hanger");
    const rolledBack = await inventoryUntil("hanger", stepOf("0.4.0", UpdateStep.ROLLED_BACK));
    expect(rolledBack.update?.reason).toBe("version 0.4.0 did not report healthy within 3 s");
    expect(rolledBack.agentVersion).toBe(running);
    expect(existsSync(join(dir.path, "hanger", "current.json"))).toBe(false);
    expect(agent.child.exitCode).toBeNull();
  }, 120_000);
});
