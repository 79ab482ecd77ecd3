/** The audit trail's and the raw archive's settings: defaults, the example file, flags over the environment over the file, and mistakes. */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, resolveDaemonConfig, type DaemonFlags } from "../src/config/config.js";
import { repoRoot, tempDir, writeConfigFile } from "./support/daemon.js";

const resolve = (flags: DaemonFlags, env: Record<string, string>, config?: string) =>
  resolveDaemonConfig({ dataDir: "/nonexistent", ...flags, ...(config ? { config } : {}) }, env);

describe("audit and archive settings", () => {
  it("have defaults (the database only, no archive), which specta.example.json spells out", () => {
    const defaults = resolve({}, {});
    expect(defaults.audit).toEqual({ queueCapacity: 10_000, retentionMs: 90 * 86_400_000 });
    expect(defaults.archive).toBeUndefined();
    const example = resolve({}, {}, join(repoRoot, "specta.example.json"));
    expect(example.audit).toEqual(defaults.audit);
    expect(resolve({ archiveDir: "/srv/archive" }, {}, join(repoRoot, "specta.example.json")).archive).toEqual({
      dir: "/srv/archive",
      retentionMs: 30 * 86_400_000,
      flushBytes: 10 * 1024 * 1024,
      flushIntervalMs: 60_000,
    });
  });

  it("are read from flags over the environment over the file", () => {
    const dir = tempDir();
    try {
      const file = writeConfigFile(dir.path, {
        audit: { file: "/from/file.ndjson", url: "http://file.example/a", fileMaxBytes: 1000, fileKeep: 0, queue: 5, retention: "7d" },
        archive: { dir: "/from/file", flushInterval: "5s" },
      });
      const fromFile = resolve({}, {}, file);
      expect(fromFile.audit).toEqual({
        file: { path: "/from/file.ndjson", maxBytes: 1000, keep: 0 },
        url: "http://file.example/a",
        queueCapacity: 5,
        retentionMs: 7 * 86_400_000,
      });
      expect(fromFile.archive).toMatchObject({ dir: "/from/file", flushIntervalMs: 5_000 });
      const env = { SPECTA_AUDIT_FILE: "/from/env.ndjson", SPECTA_AUDIT_URL: "https://env.example/a", SPECTA_ARCHIVE_DIR: "/from/env" };
      expect(resolve({}, env, file)).toMatchObject({
        audit: { file: { path: "/from/env.ndjson" }, url: "https://env.example/a" },
        archive: { dir: "/from/env" },
      });
      expect(resolve({ auditFile: "/flag.ndjson", auditUrl: "http://flag.example/", archiveDir: "/flag" }, env, file)).toMatchObject({
        audit: { file: { path: "/flag.ndjson" }, url: "http://flag.example/" },
        archive: { dir: "/flag" },
      });
    } finally {
      dir.remove();
    }
  });

  it("refuse mistakes with one clear line", () => {
    expect(() => resolve({ auditUrl: "siem.example" }, {})).toThrow(ConfigError);
    expect(() => resolve({ auditUrl: "siem.example" }, {})).toThrow('the audit URL "siem.example" must be an http:// or https:// URL');
    const dir = tempDir();
    try {
      expect(() => resolve({}, {}, writeConfigFile(dir.path, { audit: { queue: 0 } }))).toThrow("audit.queue must be a positive whole number");
      expect(() => resolve({}, {}, writeConfigFile(dir.path, { audit: { fileKeep: -1 } }))).toThrow("audit.fileKeep must be a whole number");
      expect(() => resolve({}, {}, writeConfigFile(dir.path, { archive: { dir: "/a", flushInterval: "soon" } }))).toThrow(
        'archive.flushInterval "soon" is not a duration',
      );
    } finally {
      dir.remove();
    }
  });
});
