import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, expect, it, vi } from "vitest";
import { resolveDaemonConfig } from "../config/config.js";
import { createLogger } from "../shared/log.js";
import { MissingAccessRule } from "../tokens/access.js";
import { tempDir } from "../../test/support/daemon.js";
import { startDaemon } from "./daemon.js";

// The daemon as built, but with metrics.API's rules missing Push (as a rules object made with a cast could be).
vi.mock("../metrics/service.js", async (original) => {
  const actual = await original<typeof import("../metrics/service.js")>();
  const { push: _, ...methods } = actual.metricsAccess.methods;
  return { ...actual, metricsAccess: { ...actual.metricsAccess, methods } };
});

const dir = tempDir();
afterAll(() => dir.remove());

it("the daemon refuses to start when a served method has no access rule, before it opens anything", async () => {
  const dataDir = join(dir.path, "data");
  // A database that is never reached: the rules are checked first.
  const config = resolveDaemonConfig({ addr: "127.0.0.1:0", dataDir, databaseUrl: "postgres://nobody@127.0.0.1:1/none" }, {});
  const started = startDaemon(config, createLogger("silent"));
  await expect(started).rejects.toThrow(MissingAccessRule);
  await expect(started).rejects.toThrow("no access rule says who may call metrics.API/Push");
  expect(existsSync(dataDir) ? readdirSync(dataDir) : []).toEqual([]);
});
