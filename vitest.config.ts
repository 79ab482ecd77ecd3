import { availableParallelism } from "node:os";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    // Tests start real servers and real PostgreSQL; give them room, but never hang CI.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: "forks",
    // The suites wait on their servers, PostgreSQL and timers about half the time: vitest's
    // default (a worker fewer than the cores) ran one file at a time on 2 cores and left a core
    // idle (~290 s); two at a time take ~160 to 190 s.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    globalSetup: ["test/support/global-setup.ts"],
    reporters: ["default"],
  },
});
