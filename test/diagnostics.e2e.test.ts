/**
 * Every diagnostic end to end: a real daemon, a real agent on this host, commands submitted and
 * watched over gRPC, and `specta run` from the built CLI.
 */
import { execFile, spawnSync } from "node:child_process";
import { promisify } from "node:util";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API as CommandsAPI, type DiagnosticSchema, State, type Command } from "../gen/commands/commands_pb.js";
import { startAgent, type RunningAgent } from "../src/agent/agent.js";
import { readEnrollToken } from "../src/fleet/enroll-token.js";
import { createLogger } from "../src/shared/log.js";
import { cliPath, childEnv, repoRoot, requireBuild, startTestDaemon, tempDir, type TestDaemon } from "./support/daemon.js";
import { bearer } from "./support/rpc.js";

const log = createLogger("silent");
const installed = (program: string) => spawnSync("sh", ["-c", `command -v ${program}`]).status === 0;

describe("diagnostics on a real agent", () => {
  let daemon: TestDaemon;
  let agent: RunningAgent;
  let limited: RunningAgent;
  const dir = tempDir("specta-diag-");
  const commands = () => createClient(CommandsAPI, createGrpcTransport({ baseUrl: daemon.url, interceptors: [bearer(daemon.adminToken())] }));

  beforeAll(async () => {
    daemon = await startTestDaemon();
    const enrollToken = readEnrollToken(daemon.dataDir)!;
    agent = await startAgent({
      server: daemon.url,
      protocol: "grpc",
      stateDir: join(dir.path, "a"),
      enrollToken,
      hostname: "diag-host",
      labels: {},
      log,
      collectors: [],
    });
    limited = await startAgent({
      server: daemon.url,
      protocol: "grpc",
      stateDir: join(dir.path, "b"),
      enrollToken,
      hostname: "ping-only",
      labels: {},
      log,
      collectors: [],
      allow: ["ping"],
    });
  });
  afterAll(async () => {
    await agent?.stop();
    await limited?.stop();
    await daemon?.stop();
    dir.remove();
  });

  /** Submits to `target`, then watches the command until it ends. */
  async function run(target: string, diagnostic: Parameters<typeof create<typeof DiagnosticSchema>>[1], timeoutMs = 20_000): Promise<Command> {
    const {
      commands: [submitted],
    } = await commands().submit({ target: { case: "agent", value: target }, diagnostic, timeout: durationFromMs(timeoutMs) });
    let last: Command | undefined;
    for await (const { command } of commands().watch({ commandId: submitted!.commandId })) last = command;
    return last!;
  }

  it("ping", async () => {
    const done = await run("diag-host", { kind: { case: "ping", value: { host: "127.0.0.1", count: 2 } } });
    if (!installed("ping") && process.env.CI !== "true") return expect(done.output?.error).toMatch(/not installed/);
    expect(done.state).toBe(State.SUCCEEDED);
    expect(done.output?.data).toMatchObject({ transmitted: 2, received: 2 });
  });

  it("tcp_connect, to the daemon's own port and to a closed one", async () => {
    const open = await run("diag-host", { kind: { case: "tcpConnect", value: { host: "127.0.0.1", port: daemon.port } } });
    expect(open.state).toBe(State.SUCCEEDED);
    expect(open.output?.data).toMatchObject({ connected: true });
    const closed = await run("diag-host", { kind: { case: "tcpConnect", value: { host: "127.0.0.1", port: 1 } } });
    expect(closed.state).toBe(State.FAILED);
    expect(closed.output?.data).toMatchObject({ connected: false });
  });

  it("connections: the daemon's listening port", async () => {
    const done = await run("diag-host", { kind: { case: "connections", value: { listening: true } } });
    expect(done.state).toBe(State.SUCCEEDED);
    expect(done.output?.text).toContain(`:${daemon.port}`);
  });

  it("mounts", async () => {
    const done = await run("diag-host", { kind: { case: "mounts", value: {} } });
    expect(done.state).toBe(State.SUCCEEDED);
    expect((done.output?.data as unknown as { mounts: { mountPoint: string }[] } | undefined)?.mounts.map((m) => m.mountPoint)).toContain("/");
  });

  it("disk_usage: the largest files and folders under a path", async () => {
    const root = join(dir.path, "tree");
    mkdirSync(join(root, "big"), { recursive: true });
    writeFileSync(join(root, "big", "blob"), Buffer.alloc(300_000));
    writeFileSync(join(root, "small"), Buffer.alloc(1_000));
    const done = await run("diag-host", { kind: { case: "diskUsage", value: { path: root, top: 2 } } });
    expect(done.state).toBe(State.SUCCEEDED);
    const data = done.output?.data as unknown as { files: { path: string; size: number }[] };
    expect(data.files[0]).toEqual({ path: join(root, "big", "blob"), size: 300_000 });
  });

  it("logs and traceroute end with a result (success, or a clear failure where the host has no such source or tool)", async () => {
    for (const diagnostic of [
      { kind: { case: "logs" as const, value: { limit: 5 } } },
      { kind: { case: "traceroute" as const, value: { host: "127.0.0.1", maxHops: 2 } } },
    ]) {
      const done = await run("diag-host", diagnostic);
      expect([State.SUCCEEDED, State.FAILED]).toContain(done.state);
      if (done.state === State.FAILED) expect(done.output?.error).not.toBe("");
    }
  });

  it("a diagnostic that outlives its timeout ends as timed_out", async () => {
    if (!installed("ping")) return;
    const done = await run("diag-host", { kind: { case: "ping", value: { host: "127.0.0.1", count: 20 } } }, 1_000);
    expect(done.state).toBe(State.TIMED_OUT);
  });

  it("an agent refuses what it does not allow, and nothing hostile is even queued", async () => {
    const refused = await run("ping-only", { kind: { case: "tcpConnect", value: { host: "127.0.0.1", port: daemon.port } } });
    expect(refused.state).toBe(State.FAILED);
    expect(refused.output?.error).toMatch(/does not allow/);
    for (const host of ["; rm -rf /", "$(id)", "-oProxyCommand=x"]) {
      const call = commands().submit({ target: { case: "agent", value: "diag-host" }, diagnostic: { kind: { case: "ping", value: { host } } } });
      await expect(call).rejects.toSatisfy((err) => ConnectError.from(err).code === Code.InvalidArgument);
    }
  });

  it("specta run prints the result and exits 0", async () => {
    requireBuild();
    // Asynchronously: the daemon serves from this very process.
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [cliPath, "run", "diag-host", "connect", `127.0.0.1:${daemon.port}`, "--server", daemon.url, "--token", daemon.adminToken()],
      {
        cwd: repoRoot,
        env: childEnv(),
        encoding: "utf8",
      },
    );
    expect(stdout).toMatch(/connected/i);
  });
});
