import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { storagePerFile } from "../../test/support/in-memory.js";
import { tempDir } from "../../test/support/daemon.js";
import { Archive } from "../archive/archive.js";
import { archiveFileName } from "../archive/files.js";
import { createLogger } from "../shared/log.js";
import type { AuditEvent } from "./event.js";
import { databaseSink, listEvents } from "./repository.js";
import { auditRetention } from "./trail.js";

const day = 86_400_000;
const event = (ts: Date, action: string): AuditEvent => ({
  ts: ts.toISOString(),
  action,
  outcome: "ok",
  metrics: ["m"],
  ip_address: "127.0.0.1",
  actor: { token_id: null, name: null, role: "anonymous" },
});

describe("retention", () => {
  const storage = storagePerFile();

  it("deletes the audit events older than the audit retention, and only those", async () => {
    const { db } = storage();
    const now = Date.now();
    await databaseSink(db).write(
      [event(new Date(now - 10 * day), "old"), event(new Date(now - 2 * day), "recent"), event(new Date(now), "new")],
      new AbortController().signal,
    );
    await auditRetention(db, 7 * day).ensure(new AbortController().signal);
    expect((await listEvents(db, { limit: 10 })).map((r) => r.action)).toEqual(["new", "recent"]);
  });

  it("removes the archive files older than the archive retention, and leaves other files alone", async () => {
    const dir = tempDir("specta-archive-retention-");
    try {
      const archiveDir = join(dir.path, "archive");
      mkdirSync(archiveDir);
      const now = Date.now();
      const old = archiveFileName(new Date(now - 10 * day), 0);
      const recent = archiveFileName(new Date(now - day), 0);
      for (const name of [old, recent, "notes.txt"]) writeFileSync(join(archiveDir, name), "");
      const archive = new Archive(
        { dir: archiveDir, retentionMs: 7 * day, flushBytes: 1024, flushIntervalMs: 60_000 },
        new Registry(),
        createLogger("silent"),
      );
      await archive.retention().ensure(new AbortController().signal);
      await archive.stop();
      expect(readdirSync(archiveDir).sort()).toEqual([recent, "notes.txt"].sort());
    } finally {
      dir.remove();
    }
  });
});
