/**
 * gRPC server reflection (v1 and v1alpha) through a real reflection client: `buf curl`
 * (node_modules/.bin/buf; Debian has no grpcurl).
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { repoRoot, useDaemon } from "./support/daemon.js";
import { findSamples, scrape } from "./support/prometheus.js";

const run = promisify(execFile);
const buf = join(repoRoot, "node_modules", ".bin", "buf");
const daemon = useDaemon();

/** Runs `buf curl --protocol grpc --http2-prior-knowledge ...args` (asynchronously: the daemon runs in this process). */
async function bufCurl(...args: string[]): Promise<string> {
  const { stdout } = await run(buf, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", ...args], {
    cwd: repoRoot,
    timeout: 30_000,
  });
  return stdout;
}

const expectedMethods = [
  "metrics.API/Counter",
  "metrics.API/Gauge",
  "metrics.API/Histogram",
  "metrics.API/Push",
  "metrics.API/Query",
  "metrics.API/List",
  "agent.API/Register",
  "agent.API/List",
  "agent.API/Deregister",
  "commands.API/Stream",
  "commands.API/Report",
  "commands.API/Submit",
  "commands.API/Get",
  "commands.API/Watch",
  "grpc.health.v1.Health/Check",
  "grpc.health.v1.Health/Watch",
];

describe("server reflection with buf curl", () => {
  it.each(["grpc-v1", "grpc-v1alpha"])("--list-methods over %s lists metrics.API, agent.API and commands.API", async (protocol) => {
    const procedure = `grpc.reflection.${protocol.slice("grpc-".length)}.ServerReflection/ServerReflectionInfo`;
    const calls = async () => findSamples(await scrape(daemon().url), "specta_rpc_requests_total", { procedure }).reduce((n, s) => n + s.value, 0);
    const before = await calls();
    const methods = (await bufCurl("--reflect-protocol", protocol, "--list-methods", daemon().url)).trim().split("\n");
    expect(methods).toEqual(expect.arrayContaining(expectedMethods));
    // The answer came from that very reflection service.
    expect(await calls()).toBeGreaterThan(before);
  });

  it("--list-services lists the services, health and reflection included", async () => {
    const services = (await bufCurl("--list-services", daemon().url)).trim().split("\n");
    expect(services).toEqual(
      expect.arrayContaining([
        "metrics.API",
        "agent.API",
        "commands.API",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
      ]),
    );
  });

  it("calls Histogram with a schema learned only through reflection", async () => {
    const out = await bufCurl(
      "--data",
      '{"action":[{"metric":"page_ready_duration_seconds","number":47},{"metric":"nope","number":1}]}',
      `${daemon().url}/metrics.API/Histogram`,
    );
    expect(JSON.parse(out)).toEqual({
      result: [{ status: "success" }, { status: "failure", reason: { kind: "undeclared_metric", info: expect.stringContaining("nope") } }],
    });
  });
});
