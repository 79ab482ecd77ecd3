import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { TokenStore } from "./tokens.js";

/** The admin token of the daemon's host, kept in its data directory so that local CLI commands just work. */
export function localAdminTokenFile(dataDir: string): string {
  return join(dataDir, "admin.token");
}

/**
 * Keeps `<dataDir>/admin.token` valid: reuses it if the database knows it, else creates a new
 * admin token (mode 0600). Returns the file and whether it was written now (a first start).
 */
export async function ensureLocalAdminToken(tokens: TokenStore, dataDir: string): Promise<{ file: string; created: boolean }> {
  const file = localAdminTokenFile(dataDir);
  if (existsSync(file)) {
    const token = readFileSync(file, "utf8").trim();
    if ((await tokens.verify(token))?.role === "admin") return { file, created: false };
  }
  const { token } = await tokens.create("admin", "local admin");
  writeFileSync(file, token + "\n", { mode: 0o600 });
  return { file, created: true };
}

/** The local admin token, if this host runs a daemon with `dataDir`. */
export function readLocalAdminToken(dataDir: string): string | undefined {
  try {
    return readFileSync(localAdminTokenFile(dataDir), "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}
