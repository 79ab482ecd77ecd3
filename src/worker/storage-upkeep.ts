import type { Storage } from "../storage/database.js";
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
