/** Starts one embedded PostgreSQL for the whole test run (see test/support/postgres.ts). */
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { createLogger } from "../../src/shared/log.js";
import { startEmbeddedPostgres, type EmbeddedPostgres } from "../../src/storage/embedded.js";

let embedded: EmbeddedPostgres | undefined;
let dir: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  dir = mkdtempSync(join(tmpdir(), "specta-pg-"));
  // As root the server runs as the postgres user, which must be able to enter the folder.
  chmodSync(dir, 0o711);
  embedded = await startEmbeddedPostgres(dir, createLogger("warn"));
  project.provide("embeddedPostgresUrl", `postgres://${embedded.user}@localhost/postgres?host=${encodeURIComponent(embedded.socketDir)}`);
}

export async function teardown(): Promise<void> {
  await embedded?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}
