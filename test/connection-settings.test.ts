/** The settings of the daemon's front door (connections.*, rateLimits.*): defaults, the example file, the environment, and mistakes. */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, defaultMaxConnections, resolveDaemonConfig } from "../src/config/config.js";
import { repoRoot, tempDir, writeConfigFile } from "./support/daemon.js";

const resolve = (env: Record<string, string>, config?: string) =>
  resolveDaemonConfig({ dataDir: "/nonexistent", ...(config ? { config } : {}) }, env);

describe("connection and rate-limit settings", () => {
  it("have defaults, which specta.example.json spells out", () => {
    const defaults = resolve({});
    expect(defaults.connections).toEqual({
      max: defaultMaxConnections(),
      headersTimeoutMs: 10_000,
      requestTimeoutMs: 300_000,
      idleTimeoutMs: 65_000,
      pingIntervalMs: 60_000,
    });
    expect(defaults.rateLimits).toEqual({ instrumentCalls: { perSecond: 1_000, burst: 2_000 }, failedAuth: { perSecond: 10, burst: 50 } });
    const example = resolve({}, join(repoRoot, "specta.example.json"));
    expect(example.connections).toEqual({ ...defaults.connections, max: 10_000 });
    expect(example.rateLimits).toEqual(defaults.rateLimits);
  });

  it("are read from the environment over the file", () => {
    const dir = tempDir();
    try {
      const file = writeConfigFile(dir.path, { connections: { max: 50, idleTimeout: "2m" }, rateLimits: { failedAuth: { perSecond: 1, burst: 5 } } });
      const config = resolve({ SPECTA_MAX_CONNECTIONS: "200", SPECTA_PING_INTERVAL: "500ms", SPECTA_RATE_INSTRUMENT_CALLS: "0" }, file);
      expect(config.connections).toMatchObject({ max: 200, idleTimeoutMs: 120_000, pingIntervalMs: 500 });
      expect(config.rateLimits).toEqual({ instrumentCalls: { perSecond: 0, burst: 2_000 }, failedAuth: { perSecond: 1, burst: 5 } });
    } finally {
      dir.remove();
    }
  });

  it("caps connections below the open-file limit", () => {
    const dir = tempDir();
    try {
      // As /proc/self/limits has it.
      const limits = join(dir.path, "limits");
      writeFileSync(
        limits,
        "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 1048576              files\n",
      );
      expect(defaultMaxConnections(limits)).toBe(896);
      expect(defaultMaxConnections(join(dir.path, "missing"))).toBe(10_000);
    } finally {
      dir.remove();
    }
  });

  it.each([
    [{ SPECTA_MAX_CONNECTIONS: "0" }, /connections.max/],
    [{ SPECTA_HEADERS_TIMEOUT: "soon" }, /connections.headersTimeout/],
    [{ SPECTA_IDLE_TIMEOUT: "0s" }, /longer than 0/],
    [{ SPECTA_HEADERS_TIMEOUT: "10m" }, /must not be longer than connections.requestTimeout/],
    [{ SPECTA_RATE_FAILED_AUTH: "fast" }, /rateLimits.failedAuth/],
    [{ SPECTA_RATE_INSTRUMENT_CALLS: "10,0" }, /burst of at least 1/],
  ])("refuses %j with one clear line", (env, message) => {
    expect(() => resolve(env)).toThrow(ConfigError);
    expect(() => resolve(env)).toThrow(message);
  });
});
