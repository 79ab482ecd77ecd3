import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import type { Logger } from "../shared/log.js";
import { pushRequestBytes, seriesOfPushRequest, type EncodedBatch } from "./batch.js";

/** One unacknowledged batch. */
export interface SpoolEntry extends EncodedBatch {
  seq: number;
}

export interface SpoolLimits {
  /** Points kept in memory (encoded, as they were closed) before new batches go to disk. */
  memoryPoints: number;
  /** Batches kept on disk; beyond this the oldest are dropped, counted and logged. */
  diskBytes: number;
}

export interface SpoolStats {
  batches: number;
  points: number;
  diskBytes: number;
  /** Points dropped because the spool was full, since start. */
  droppedPoints: number;
  /** Spool files that could not be read back (and were set aside), since start. */
  corruptFiles: number;
}

// A spool file: magic, crc32 of the rest, point count, then the batch as an encoded PushRequest.
const magic = 0x5350_4c31; // "SPL1"
const headerBytes = 12;

/**
 * Keeps batches until the daemon acknowledges them, oldest first: in memory up to a bound,
 * then in files in the state directory, so that nothing is lost while the daemon is away or
 * the agent restarts. When the disk bound is reached the oldest batches are dropped, and every
 * dropped point is counted and reported, never silently.
 */
export class Spool {
  private memory: SpoolEntry[] = [];
  private memoryPoints = 0;
  /** Sequence numbers of the files on disk, oldest first; all newer than every memory entry. */
  private disk: { seq: number; points: number; size: number }[] = [];
  private diskBytes = 0;
  private nextSeq = 1;
  private droppedPoints = 0;
  private corruptFiles = 0;

  constructor(
    private readonly dir: string,
    private readonly limits: SpoolLimits,
    private readonly log: Logger,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const name of readdirSync(dir)
      .filter((n) => /^\d{16}\.batch$/.test(n))
      .sort()) {
      const seq = Number(name.slice(0, 16));
      const file = join(dir, name);
      const header = readHeader(file);
      if (!header) {
        this.setAside(file, "unreadable header");
        continue;
      }
      this.disk.push({ seq, points: header.points, size: header.size });
      this.diskBytes += header.size;
      this.nextSeq = seq + 1;
    }
    if (this.disk.length > 0) this.log.info({ batches: this.disk.length, bytes: this.diskBytes }, "spooled batches found; sending them first");
  }

  add(batch: EncodedBatch): void {
    const { points } = batch;
    const entry = { seq: this.nextSeq++, points, series: batch.series };
    // Once anything is on disk, new batches go there too, so that order is kept. A batch larger
    // than the whole bound (a host with very many series) may still wait in memory alone, so
    // that while the daemon is up no batch goes through the disk.
    const fits = this.memoryPoints + points <= this.limits.memoryPoints || (this.memory.length === 0 && this.limits.memoryPoints > 0);
    if (this.disk.length === 0 && fits) {
      this.memory.push(entry);
      this.memoryPoints += points;
      return;
    }
    this.writeFile(entry);
  }

  /** The oldest batch, or undefined when the spool is empty. A corrupted file is set aside, counted and skipped. */
  peek(): SpoolEntry | undefined {
    if (this.memory.length > 0) return this.memory[0];
    while (this.disk.length > 0) {
      const head = this.disk[0]!;
      const entry = this.readFile(head.seq);
      if (entry) return entry;
      this.disk.shift();
      this.diskBytes -= head.size;
    }
    return undefined;
  }

  /** Forgets the oldest batch (after the daemon acknowledged it). */
  remove(seq: number): void {
    if (this.memory[0]?.seq === seq) {
      this.memoryPoints -= this.memory.shift()!.points;
    } else if (this.disk[0]?.seq === seq) {
      this.diskBytes -= this.disk.shift()!.size;
      rmSync(this.path(seq), { force: true });
    }
  }

  /** Moves memory batches to disk, e.g. at shutdown, so that a restart sends them. */
  persist(): void {
    const entries = this.memory;
    this.memory = [];
    this.memoryPoints = 0;
    // Memory entries are older than disk ones: keep them first by their (smaller) sequence numbers.
    for (const entry of entries) this.writeFile(entry);
    this.disk.sort((a, b) => a.seq - b.seq);
  }

  stats(): SpoolStats {
    return {
      batches: this.memory.length + this.disk.length,
      points: this.memory.reduce((n, e) => n + e.points, 0) + this.disk.reduce((n, e) => n + e.points, 0),
      diskBytes: this.diskBytes,
      droppedPoints: this.droppedPoints,
      corruptFiles: this.corruptFiles,
    };
  }

  private makeRoom(size: number): void {
    while (this.disk.length > 0 && this.diskBytes + size > this.limits.diskBytes) {
      const oldest = this.disk.shift()!;
      this.diskBytes -= oldest.size;
      rmSync(this.path(oldest.seq), { force: true });
      this.droppedPoints += oldest.points;
      this.log.warn(
        { points: oldest.points, droppedPoints: this.droppedPoints, diskBytes: this.limits.diskBytes },
        "spool full: dropped its oldest batch",
      );
    }
  }

  private writeFile(entry: SpoolEntry): void {
    const bytes = pushRequestBytes(entry.series);
    this.makeRoom(bytes.length + headerBytes);
    const header = Buffer.alloc(headerBytes);
    header.writeUInt32BE(magic, 0);
    header.writeUInt32BE(entry.points, 8);
    const body = Buffer.concat([header.subarray(8), bytes]);
    header.writeUInt32BE(crc32(body), 4);
    const file = this.path(entry.seq);
    // Write then rename, so that a crash never leaves a half-written batch under its real name.
    writeFileSync(`${file}.tmp`, Buffer.concat([header.subarray(0, 8), body]), { mode: 0o600 });
    renameSync(`${file}.tmp`, file);
    const size = bytes.length + headerBytes;
    this.disk.push({ seq: entry.seq, points: entry.points, size });
    this.diskBytes += size;
  }

  private readFile(seq: number): SpoolEntry | undefined {
    const file = this.path(seq);
    try {
      const data = readFileSync(file);
      if (data.length < headerBytes || data.readUInt32BE(0) !== magic || data.readUInt32BE(4) !== crc32(data.subarray(8))) {
        this.setAside(file, "checksum mismatch");
        return undefined;
      }
      return { seq, points: data.readUInt32BE(8), series: seriesOfPushRequest(data.subarray(headerBytes)) };
    } catch (err) {
      this.setAside(file, (err as Error).message);
      return undefined;
    }
  }

  private setAside(file: string, reason: string): void {
    this.corruptFiles++;
    this.log.error({ file, reason, corruptFiles: this.corruptFiles }, "corrupted spool file set aside (renamed to .corrupt) and skipped");
    try {
      renameSync(file, `${file}.corrupt`);
    } catch {
      rmSync(file, { force: true });
    }
  }

  private path(seq: number): string {
    return join(this.dir, `${String(seq).padStart(16, "0")}.batch`);
  }
}

function readHeader(file: string): { points: number; size: number } | undefined {
  try {
    const size = statSync(file).size;
    const data = readFileSync(file).subarray(0, headerBytes);
    if (data.length < headerBytes || data.readUInt32BE(0) !== magic) return undefined;
    return { points: data.readUInt32BE(8), size };
  } catch {
    return undefined;
  }
}
