import type { Handler } from "../worker/engine.js";
import type { Storage } from "./database.js";

/**
 * Checks the database every few seconds; `onChange` is told when it becomes reachable or not (the
 * daemon's readiness, so that /health/ready and gRPC health follow it).
 */
export function databaseCheck(storage: Pick<Storage, "healthy" | "ping">, onChange: () => void): Handler {
  return {
    name: "database-check",
    coolerMs: 5_000,
    async ensure() {
      const before = storage.healthy();
      if ((await storage.ping()) !== before) onChange();
    },
  };
}
