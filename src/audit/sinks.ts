import { open, rename, type FileHandle } from "node:fs/promises";
import type { AuditEvent } from "./event.js";
import type { SinkWriter } from "./queue.js";

export interface FileSinkOptions {
  path: string;
  /** The file is rotated before it would grow past this many bytes. */
  maxBytes: number;
  /** Rotated files kept: <path>.1 (the newest) to <path>.<keep>. */
  keep: number;
}

/** NDJSON appended to a file, one event a line; rotated by size (<path>.1, .2, …, the oldest removed). */
export function fileSink({ path, maxBytes, keep }: FileSinkOptions): SinkWriter<AuditEvent> {
  let file: FileHandle | undefined;
  let size = 0;
  const openFile = async () => {
    file = await open(path, "a", 0o640);
    size = (await file.stat()).size;
    return file;
  };
  const rotate = async () => {
    await file?.close();
    file = undefined;
    for (let n = keep - 1; n >= 1; n--) await rename(`${path}.${n}`, `${path}.${n + 1}`).catch(ignoreMissing);
    // keep = 0 keeps no old file: the current one is started afresh.
    if (keep >= 1) await rename(path, `${path}.1`);
    else await (await open(path, "w")).close();
  };
  return {
    name: "file",
    async write(batch) {
      const text = Buffer.from(batch.map((e) => `${JSON.stringify(e)}\n`).join(""));
      let handle = file ?? (await openFile());
      if (size > 0 && size + text.length > maxBytes) {
        await rotate();
        handle = await openFile();
      }
      await handle.write(text);
      size += text.length;
    },
    async close() {
      await file?.close();
      file = undefined;
    },
  };
}

function ignoreMissing(err: NodeJS.ErrnoException): void {
  if (err.code !== "ENOENT") throw err;
}

/** How long one POST may take before it counts as failed (and is retried). */
const postTimeoutMs = 10_000;

/** Batches POSTed as a JSON array of events; anything but a 2xx answer is a failure, retried. */
export function urlSink(url: string): SinkWriter<AuditEvent> {
  return {
    name: "url",
    async write(batch, signal) {
      const res = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(batch),
        signal: AbortSignal.any([signal, AbortSignal.timeout(postTimeoutMs)]),
      });
      // Read (and drop) the body, so that the connection can be reused.
      await res.arrayBuffer();
      if (!res.ok) throw new Error(`${url} answered ${res.status} ${res.statusText}`);
    },
  };
}
