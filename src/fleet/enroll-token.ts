import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Where a daemon keeps the enrolment token it generated: `<dataDir>/enroll.token` (mode 0600). */
export function enrollTokenFile(dataDir: string): string {
  return join(dataDir, "enroll.token");
}

/** The enrolment token a daemon generated in `dataDir`, if there is one. */
export function readEnrollToken(dataDir: string): string | undefined {
  try {
    return readFileSync(enrollTokenFile(dataDir), "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * The daemon's enrolment token: the configured one (SPECTA_ENROLL_TOKEN / enrollToken), else the
 * one kept in `<dataDir>/enroll.token`, else a new random one written there (mode 0600). The
 * token is a secret: never log it.
 */
export function ensureEnrollToken(dataDir: string, configured?: string): string {
  if (configured) return configured;
  const existing = readEnrollToken(dataDir);
  if (existing) return existing;
  const token = "specta_enroll_" + randomBytes(32).toString("base64url");
  writeFileSync(enrollTokenFile(dataDir), token + "\n", { mode: 0o600 });
  return token;
}

const digest = (text: string): Buffer => createHash("sha256").update(text).digest();

/**
 * A constant-time check of a presented enrolment token: both sides are hashed first, so the
 * comparison takes the same time whatever the lengths and contents.
 */
export function enrollTokenChecker(token: string): (candidate: string) => boolean {
  const expected = digest(token);
  return (candidate) => candidate !== "" && timingSafeEqual(digest(candidate), expected);
}
