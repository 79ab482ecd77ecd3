import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { decompress } from "./zstd.js";

/** An archive file's name: batches-<UTC time of its first record, 20261201T181754.123Z>[-<n>].jsonl.zst. */
const fileName = /^batches-(\d{8}T\d{6}\.\d{3}Z)(?:-\d+)?\.jsonl\.zst$/;

/** The name of a file whose first record was received at `time`, the `attempt`th tried (0: the first). */
export function archiveFileName(time: Date, attempt: number): string {
  const stamp = time.toISOString().replace(/[-:]/g, "");
  return `batches-${stamp}${attempt === 0 ? "" : `-${attempt}`}.jsonl.zst`;
}

export interface ArchiveFile {
  name: string;
  path: string;
  /** Its first record's time, from the name. */
  time: Date;
  bytes: number;
}

/** The archive files in `dir`, oldest first (other files are left alone). */
export async function listArchive(dir: string): Promise<ArchiveFile[]> {
  const files: ArchiveFile[] = [];
  for (const name of (await readdir(dir)).sort()) {
    const m = fileName.exec(name);
    if (!m) continue;
    const stamp = m[1]!;
    const time = new Date(`${stamp.slice(0, 4)}-${stamp.slice(4, 6)}-${stamp.slice(6, 11)}:${stamp.slice(11, 13)}:${stamp.slice(13)}`);
    const path = join(dir, name);
    const info = await stat(path).catch(() => undefined);
    if (info) files.push({ name, path, time, bytes: info.size });
  }
  return files;
}

/** The JSON lines of one archive file, decompressed. */
export async function readArchiveFile(path: string): Promise<Buffer> {
  return decompress(await readFile(path));
}
