import type { Storage } from "../storage/database.js";
import { dayMs, type Partitions } from "../storage/partitions.js";
import type { Readiness } from "../server/readiness.js";
import type { Handler } from "./engine.js";

/** Checks the database every few seconds so that /health/ready and gRPC health follow it. */
export function databaseCheck(storage: Storage, readiness: Readiness): Handler {
  return {
    name: "database-check",
    coolerMs: 5_000,
    async ensure() {
      const before = storage.healthy();
      if ((await storage.ping()) !== before) readiness.notify();
    },
  };
}

/** Creates the samples partitions for today and the next two days ahead of need. */
export function partitionsAhead(partitions: Partitions): Handler {
  return {
    name: "partitions-ahead",
    coolerMs: 3_600_000,
    async ensure() {
      const today = Math.floor(Date.now() / dayMs);
      await partitions.ensureDays([today, today + 1, today + 2]);
    },
  };
}
