import { randomUUID } from "node:crypto";
import { link, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Counter, Gauge, type Registry } from "prom-client";
import type { Logger } from "../shared/log.js";
import type { Handler } from "../worker/engine.js";
import { archiveFileName, listArchive } from "./files.js";
import { compress } from "./zstd.js";

export interface ArchiveConfig {
  /** Where the files go (--archive-dir). */
  dir: string;
  /** Files whose first record is older than this are removed. */
  retentionMs: number;
  /** A file is written once the buffer holds this many bytes (10 MiB) … */
  flushBytes: number;
  /** … or this long after the last one (60 s), whichever comes first, and on shutdown. */
  flushIntervalMs: number;
}

export const archiveDefaults = { flushBytes: 10 * 1024 * 1024, flushIntervalMs: 60_000 };

/** One accepted write, as a line of an archive file. */
export interface ArchiveRecord {
  /** When the daemon received it (ISO 8601, UTC). */
  ts: string;
  action: string;
  actor: { token_id: string | null; name: string | null; role: string };
  ip_address: string | null;
  /** The request as sent, in protobuf's JSON form. */
  request: unknown;
}

/** Logs at most one line per this many milliseconds about failed writes. */
const logEveryMs = 10_000;

/**
 * The raw archive (off unless --archive-dir is set): every accepted Push and instrument call, one
 * JSON line each, gathered in memory and written as one zstd file when the buffer reaches 10 MiB,
 * every 60 s, and on shutdown. append() only stringifies and buffers: no I/O is awaited on the
 * call's path. A file that cannot be written (full disk, read-only folder) is logged and counted,
 * its records lost; ingest goes on. Files are created exclusively, never overwritten.
 */
export class Archive {
  private lines: string[] = [];
  private bytes = 0;
  private first: Date | undefined;
  /** Bytes of buffers being compressed and written: the buffer refuses records beyond 4 files' worth in all. */
  private pendingBytes = 0;
  private writes: Promise<void> = Promise.resolve();
  private readonly timer: NodeJS.Timeout;
  private lastFailureLog = -Infinity;
  private readonly lost: Counter;
  private readonly failures: Counter;
  private readonly files: Counter;
  private readonly written: Counter;

  constructor(
    private readonly config: ArchiveConfig,
    registry: Registry,
    private readonly log: Logger,
  ) {
    this.lost = new Counter({
      name: "specta_archive_records_lost_total",
      help: "Archive records lost: their file could not be written (full disk, …) or too much waited to be written.",
      registers: [registry],
    });
    this.failures = new Counter({
      name: "specta_archive_write_failures_total",
      help: "Archive files that could not be written, by error code (ENOSPC: the disk is full); backlog: records refused while too many waited to be written.",
      labelNames: ["code"],
      registers: [registry],
    });
    this.files = new Counter({ name: "specta_archive_files_written_total", help: "Archive files written.", registers: [registry] });
    this.written = new Counter({
      name: "specta_archive_bytes_written_total",
      help: "Compressed bytes written to archive files.",
      registers: [registry],
    });
    const self = this;
    new Gauge({
      name: "specta_archive_buffer_bytes",
      help: "Bytes of archive records in memory, not yet written.",
      registers: [registry],
      collect() {
        this.set(self.bytes + self.pendingBytes);
      },
    });
    this.timer = setInterval(() => this.flush(), config.flushIntervalMs);
    this.timer.unref();
  }

  /** Buffers one record; writes a file once the buffer is full. Never waits. */
  append(record: ArchiveRecord): void {
    const line = `${JSON.stringify(record)}\n`;
    const size = Buffer.byteLength(line);
    if (this.bytes + this.pendingBytes + size > 4 * this.config.flushBytes) {
      this.lost.inc();
      this.failed(new Error("the archive's files are written more slowly than records arrive"), "backlog");
      return;
    }
    this.first ??= new Date(record.ts);
    this.lines.push(line);
    this.bytes += size;
    if (this.bytes >= this.config.flushBytes) this.flush();
  }

  /** Writes what is buffered and waits for every write. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.flush();
    await this.writes;
  }

  /** Removes files older than the retention, every 10 minutes (each daemon its own directory). */
  retention(): Handler {
    const { dir, retentionMs } = this.config;
    return {
      name: "archive-retention",
      coolerMs: 600_000,
      async ensure() {
        const before = Date.now() - retentionMs;
        for (const file of await listArchive(dir)) if (file.time.getTime() < before) await unlink(file.path).catch(() => undefined);
      },
    };
  }

  private flush(): void {
    if (this.lines.length === 0) return;
    const lines = this.lines;
    const bytes = this.bytes;
    const first = this.first!;
    this.lines = [];
    this.bytes = 0;
    this.first = undefined;
    this.pendingBytes += bytes;
    // One file at a time, in order: their names sort as their records came.
    this.writes = this.writes
      .then(() => this.write(Buffer.from(lines.join("")), first))
      .catch((err: unknown) => {
        this.lost.inc(lines.length);
        this.failed(err, (err as NodeJS.ErrnoException).code ?? "error");
      })
      .finally(() => (this.pendingBytes -= bytes));
  }

  private async write(text: Buffer, first: Date): Promise<void> {
    const data = await compress(text);
    // Written under a hidden name first, then linked to its own: a reader (specta archive cat) sees a
    // file whole or not at all, a full disk leaves nothing behind, and link refuses a name that is taken.
    const temp = join(this.config.dir, `.writing-${process.pid}-${randomUUID()}`);
    try {
      await writeFile(temp, data, { flag: "wx", mode: 0o640 });
      for (let attempt = 0; ; attempt++) {
        try {
          await link(temp, join(this.config.dir, archiveFileName(first, attempt)));
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        }
      }
    } finally {
      await unlink(temp).catch(() => undefined);
    }
    this.files.inc();
    this.written.inc(data.length);
  }

  private failed(err: unknown, code: string): void {
    this.failures.inc({ code });
    const now = performance.now();
    if (now - this.lastFailureLog < logEveryMs) return;
    this.lastFailureLog = now;
    this.log.error({ err, dir: this.config.dir }, "archive records lost: a file could not be written (ingest goes on)");
  }
}
