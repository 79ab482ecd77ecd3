/**
 * The raw archive end to end: every accepted Push and instrument call of a run, byte for byte
 * after decompression with the real `zstd` tool, including what was still buffered when a real
 * daemon process got SIGTERM; `specta archive ls|cat`; a full disk loses archive records (logged,
 * counted) but never fails ingest.
 */
import { create, fromJson, toBinary, type JsonValue } from "@bufbuild/protobuf";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { API as MetricsAPI, HistogramRequestSchema, Kind, PushRequestSchema, type PushRequest } from "../gen/metrics/metrics_pb.js";
import { adminTokenOf, runSpecta, spawnDaemon, startTestDaemon, tempDir, writeConfigFile } from "./support/daemon.js";
import { bearer, codeOf } from "./support/rpc.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Line {
  ts: string;
  action: string;
  actor: { token_id: string | null; name: string | null; role: string };
  ip_address: string | null;
  request: JsonValue;
}

/** The archive's files, oldest first, decompressed by the zstd command-line tool. */
function zstdLines(dir: string): Line[] {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(".jsonl.zst"))
    .sort();
  return files.flatMap((f) =>
    execFileSync("zstd", ["-dc", join(dir, f)], { encoding: "utf8" })
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as Line),
  );
}

/** A batch as an agent would send it: a few series, a few points each, values that JSON must keep exactly. */
function batch(n: number, now: number): PushRequest {
  return create(PushRequestSchema, {
    series: Array.from({ length: 4 }, (_, s) => ({
      metric: `archived_${s}`,
      labels: { batch: String(n % 3), core: String(s) },
      kind: s === 0 ? Kind.COUNTER : Kind.GAUGE,
      times: [now - 2000, now - 1000, now],
      values: [n * 0.1 + s / 3, Math.PI * n, 1e-300 * (s + 1)],
    })),
  });
}

const dirs: { remove(): void }[] = [];
afterAll(() => {
  for (const d of dirs) d.remove();
});

describe("the raw archive", () => {
  it("holds every accepted batch of a run byte for byte, what was buffered at SIGTERM included; specta archive ls|cat read it", async () => {
    const dir = tempDir("specta-archive-");
    dirs.push(dir);
    const archiveDir = join(dir.path, "archive");
    // Small files, so that the run writes several before the last one is written at SIGTERM.
    const config = writeConfigFile(dir.path, { archive: { flushBytes: 8192 } }, "config.json");
    const daemon = await spawnDaemon(["--archive-dir", archiveDir, "--config", config]);
    try {
      const admin = adminTokenOf(daemon.dataDir);
      const metrics = createClient(MetricsAPI, createGrpcTransport({ baseUrl: daemon.url, interceptors: [bearer(admin)] }));
      const now = Date.now();
      const sent: { action: string; bytes: Uint8Array }[] = [];
      for (let n = 0; n < 40; n++) {
        const push = batch(n, now);
        await metrics.push(push);
        sent.push({ action: "metrics.API/Push", bytes: toBinary(PushRequestSchema, push) });
        if (n % 10 === 0) {
          const histogram = create(HistogramRequestSchema, { action: [{ metric: "page_ready_duration_seconds", number: n / 7 }] });
          await createClient(MetricsAPI, createGrpcTransport({ baseUrl: daemon.url })).histogram(histogram);
          sent.push({ action: "metrics.API/Histogram", bytes: toBinary(HistogramRequestSchema, histogram) });
        }
      }
      // Refused calls are not archived.
      expect(await codeOf(metrics.push({ series: [{ metric: "bad name", kind: Kind.GAUGE, times: [now], values: [1] }] }))).toBe(
        Code.InvalidArgument,
      );

      const beforeStop = zstdLines(archiveDir).length;
      expect(beforeStop).toBeGreaterThan(0);
      expect(beforeStop).toBeLessThan(sent.length);
      daemon.child.kill("SIGTERM");
      expect((await daemon.exited).code).toBe(0);

      const lines = zstdLines(archiveDir);
      expect(lines.map((l) => l.action)).toEqual(sent.map((s) => s.action));
      lines.forEach((line, i) => {
        const schema = line.action === "metrics.API/Push" ? PushRequestSchema : HistogramRequestSchema;
        expect(Buffer.from(toBinary(schema, fromJson(schema, line.request)))).toEqual(Buffer.from(sent[i]!.bytes));
        expect(line.ip_address).toBe("127.0.0.1");
        expect(line.actor.role).toBe(line.action === "metrics.API/Push" ? "admin" : "anonymous");
      });
      const names = readdirSync(archiveDir);
      expect(names.length).toBeGreaterThan(2);
      for (const name of names) expect(name).toMatch(/^batches-\d{8}T\d{6}\.\d{3}Z(-\d+)?\.jsonl\.zst$/);

      const ls = await runSpecta(["archive", "ls", "--archive-dir", archiveDir]);
      expect(ls.code).toBe(0);
      expect(
        ls.stdout
          .split("\n")
          .slice(1, -1)
          .map((row) => row.split(/\s+/)[0]),
      ).toEqual(names.sort());
      const cat = await runSpecta(["archive", "cat"], { SPECTA_ARCHIVE_DIR: archiveDir });
      expect(cat.code).toBe(0);
      expect(
        cat.stdout
          .split("\n")
          .filter((l) => l !== "")
          .map((l) => JSON.parse(l) as Line),
      ).toEqual(lines);
    } finally {
      await daemon.cleanup();
    }
  });

  it("goes on ingesting when the disk is full: the lost records are logged and counted, and archiving resumes when there is room", async () => {
    const dir = tempDir("specta-archive-full-");
    dirs.push(dir);
    const archiveDir = join(dir.path, "archive");
    mkdirSync(archiveDir);
    // A tiny tmpfs where the test may mount one (root); else a folder the daemon cannot write to at all (its path becomes a file).
    const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", archiveDir]).status === 0;
    const filler = join(archiveDir, "filler");
    const fill = () => {
      if (!mounted) {
        rmSync(archiveDir, { recursive: true });
        writeFileSync(archiveDir, "not a folder");
        return;
      }
      try {
        writeFileSync(filler, Buffer.alloc(1024 * 1024));
      } catch (err) {
        expect((err as NodeJS.ErrnoException).code).toBe("ENOSPC");
      }
    };
    const free = () => {
      rmSync(mounted ? filler : archiveDir, { force: true });
      if (!mounted) mkdirSync(archiveDir);
    };
    const daemon = await startTestDaemon({ config: { archive: { dir: archiveDir, flushBytes: 1024, flushInterval: "200ms" } } });
    try {
      const metrics = createClient(MetricsAPI, createGrpcTransport({ baseUrl: daemon.url, interceptors: [bearer(daemon.adminToken())] }));
      const counter = async (name: string) => {
        const text = await (await fetch(`${daemon.url}/metrics`)).text();
        return text
          .split("\n")
          .filter((l) => l.startsWith(name))
          .reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);
      };
      fill();
      const now = Date.now();
      for (let n = 0; n < 20; n++) await metrics.push(batch(n, now));
      for (let i = 0; (await counter("specta_archive_records_lost_total")) === 0; i++) {
        if (i > 100) throw new Error("no archive records were counted as lost");
        await sleep(100);
      }
      expect(await counter("specta_archive_write_failures_total")).toBeGreaterThan(0);
      if (mounted) expect(await counter('specta_archive_write_failures_total{code="ENOSPC"}')).toBeGreaterThan(0);

      free();
      const later = batch(99, now);
      await metrics.push(later);
      // Only whole files: each one decompresses, and the batch sent after the disk had room comes to be in one (records
      // still buffered from before may be written first).
      const wanted = Buffer.from(toBinary(PushRequestSchema, later));
      const pushed = () => zstdLines(archiveDir).map((l) => Buffer.from(toBinary(PushRequestSchema, fromJson(PushRequestSchema, l.request))));
      for (let i = 0; !pushed().some((p) => p.equals(wanted)); i++) {
        if (i > 100) throw new Error("the batch sent once there was room was not archived");
        await sleep(100);
      }
    } finally {
      await daemon.stop();
      if (mounted) spawnSync("umount", [archiveDir]);
    }
  });
});
