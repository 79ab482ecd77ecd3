import { randomUUID } from "node:crypto";
import { sql } from "kysely";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { createTestDatabase, openDb, testServers } from "../../test/support/postgres.js";
import { createLogger } from "../shared/log.js";
import { Notifier, notifyCommands, type Note } from "./notifier.js";

describe.each(testServers())("the command queue's notes on $name PostgreSQL", (server) => {
  it("reach the Notifier as they were sent, whether their ids are values or columns of the sending statement", async () => {
    const database = await createTestDatabase(server);
    const db = openDb(database.url, 1);
    const notifier = new Notifier({ newClient: () => new pg.Client({ connectionString: database.url }), log: createLogger("silent") });
    const heard: Note[] = [];
    notifier.on((note) => heard.push(note));
    try {
      await notifier.start();
      const [agentId, commandId, streamId] = [randomUUID(), randomUUID(), randomUUID()];
      await sql`SELECT ${notifyCommands({ kind: "agent", agentId })}`.execute(db);
      await sql`SELECT ${notifyCommands({ kind: "command", commandId: sql.ref("v.id") })} FROM (VALUES (${commandId}::uuid)) AS v(id)`.execute(db);
      await sql`SELECT ${notifyCommands({ kind: "stream", agentId: sql.ref("v.id"), streamId })} FROM (VALUES (${agentId}::uuid)) AS v(id)`.execute(
        db,
      );
      await expect.poll(() => heard.length, { timeout: 5_000 }).toBe(4);
      expect(heard).toEqual([{ kind: "resync" }, { kind: "agent", agentId }, { kind: "command", commandId }, { kind: "stream", agentId, streamId }]);
    } finally {
      await notifier.stop();
      await db.destroy();
      await database.drop();
    }
  });
});
