import { availableParallelism } from "node:os";
import { defineConfig } from "vitest/config";

/**
 * Two tiers, one run each or both (`vitest run` with no --project):
 * - `fast` (`npm test`): unit tests, in-memory service tests (createRouterTransport) and suites
 *   that run the daemon in the test's own process against real PostgreSQL;
 * - `e2e` (`npm run test:e2e`), the `*.e2e.test.ts` files: suites that start long-running programs
 *   of their own (daemons, agents, Chromium, Prometheus, Alertmanager, HAProxy, a second
 *   PostgreSQL), kill them, or flood the daemon. A one-shot `specta` CLI command is not one: the
 *   CLI's tests run it as users do and stay fast.
 * CI runs both.
 */
const e2e = ["src/**/*.e2e.test.ts", "test/**/*.e2e.test.ts"];

export default defineConfig({
  test: {
    // Tests start real servers and real PostgreSQL; give them room, but never hang CI.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // expect.poll's own default (1 s) is less than a click in Chromium, an RPC to a daemon and a
    // PostgreSQL write can take on a loaded 2-core CI machine; a poll still ends at its first pass.
    expect: { poll: { timeout: 15_000 } },
    pool: "forks",
    // The suites wait on their servers, PostgreSQL and timers about half the time: vitest's
    // default (a worker fewer than the cores) ran one file at a time on 2 cores and left a core
    // idle (~290 s); two at a time take ~160 to 190 s.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    globalSetup: ["test/support/global-setup.ts"],
    reporters: ["default"],
    projects: [
      { extends: true, test: { name: "fast", include: ["src/**/*.test.ts", "test/**/*.test.ts"], exclude: e2e } },
      { extends: true, test: { name: "e2e", include: e2e } },
    ],
  },
});
