/**
 * disk_usage: walks the tree under a path (no symlinks followed, one filesystem only, bounded by
 * the timeout and an entry budget) and returns the largest files and folders. No `du` process.
 */
import type { JsonObject } from "@bufbuild/protobuf";
import type { Dirent } from "node:fs";
import { lstat, opendir } from "node:fs/promises";
import { join } from "node:path";
import { failed, humanBytes, succeeded, type DiagnosticResult, type RunContext } from "./result.js";
import type { ValidDiagnostic } from "../../shared/diagnostics.js";

type DiskUsageArgs = Extract<ValidDiagnostic, { kind: "disk_usage" }>;

export const defaultMaxEntries = 2_000_000;
/** lstat calls in flight at once within one folder. */
const parallel = 32;

interface Folder {
  path: string;
  parent: number;
  size: number;
}

export async function runDiskUsage(args: DiskUsageArgs, ctx: RunContext): Promise<DiagnosticResult> {
  let root;
  try {
    root = await lstat(args.path, { bigint: false });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return failed(code === "ENOENT" ? `${args.path} does not exist` : `cannot read ${args.path}: ${(err as Error).message}`);
  }
  if (root.isSymbolicLink()) return failed(`${args.path} is a symbolic link; give the path it points to`);
  if (root.isFile()) {
    const files = [{ path: args.path, size: root.size }];
    return succeeded(`${humanBytes(root.size)}\t${args.path}\n`, { path: args.path, files, folders: [], entries: 1, errors: 0, complete: true });
  }
  if (!root.isDirectory()) return failed(`${args.path} is neither a folder nor a file`);

  const maxEntries = ctx.maxEntries ?? defaultMaxEntries;
  const folders: Folder[] = [{ path: args.path, parent: -1, size: 0 }];
  // The largest files seen; trimmed to `top` now and then.
  let files: { path: string; size: number }[] = [];
  let entries = 0;
  let errors = 0;
  let stopped: "" | "budget" | "timeout" | "aborted" = "";
  const pending = [0];

  walk: while (pending.length > 0) {
    const index = pending.pop()!;
    const folder = folders[index]!;
    let dir;
    try {
      dir = await opendir(folder.path);
    } catch {
      errors++;
      continue;
    }
    try {
      let batch: Dirent[] = [];
      const flush = async () => {
        const stats = await Promise.all(batch.map((d) => lstat(join(folder.path, d.name)).catch(() => undefined)));
        for (let i = 0; i < batch.length; i++) {
          const st = stats[i];
          const path = join(folder.path, batch[i]!.name);
          if (!st) {
            errors++;
            continue;
          }
          if (st.isDirectory()) {
            // Another filesystem mounted here: not ours to count.
            if (st.dev !== root.dev) continue;
            folders.push({ path, parent: index, size: 0 });
            pending.push(folders.length - 1);
          } else if (st.isFile()) {
            folder.size += st.size;
            files.push({ path, size: st.size });
          }
        }
        batch = [];
        if (files.length > Math.max(4 * args.top, 10_000)) files = largest(files, args.top);
      };
      for await (const entry of dir) {
        if (ctx.signal.aborted) {
          stopped = ctx.timedOut() ? "timeout" : "aborted";
          break walk;
        }
        if (++entries > maxEntries) {
          stopped = "budget";
          break walk;
        }
        if (entry.isDirectory() || entry.isFile()) batch.push(entry);
        else if (!entry.isSymbolicLink() && !entry.isFIFO() && !entry.isSocket() && !entry.isCharacterDevice() && !entry.isBlockDevice()) {
          batch.push(entry); // unknown type (some filesystems): lstat decides
        }
        if (batch.length >= parallel) await flush();
      }
      await flush();
    } catch {
      errors++;
    } finally {
      // Closing an already-exhausted Dir throws; nothing to do about it.
      await dir.close().catch(() => undefined);
    }
  }

  // Children were added after their parents: add each folder's total into its parent, last first.
  for (let i = folders.length - 1; i > 0; i--) {
    const f = folders[i]!;
    folders[f.parent]!.size += f.size;
  }
  const topFiles = largest(files, args.top);
  const topFolders = largest(
    folders.map((f) => ({ path: f.path, size: f.size })),
    args.top,
  );
  const complete = stopped === "";
  const note =
    stopped === "budget"
      ? `stopped after ${maxEntries} entries; sizes are partial\n`
      : stopped === "timeout"
        ? "timed out; sizes are partial\n"
        : stopped === "aborted"
          ? "stopped; sizes are partial\n"
          : "";
  const text =
    note +
    `largest folders under ${args.path}:\n` +
    topFolders.map((f) => `${humanBytes(f.size).padStart(10)}  ${f.path}\n`).join("") +
    `largest files under ${args.path}:\n` +
    topFiles.map((f) => `${humanBytes(f.size).padStart(10)}  ${f.path}\n`).join("") +
    (errors > 0 ? `${errors} entries could not be read\n` : "");
  const data: JsonObject = { path: args.path, files: topFiles, folders: topFolders, entries: Math.min(entries, maxEntries), errors, complete };
  return succeeded(text, data, stopped === "budget");
}

function largest<T extends { size: number; path: string }>(list: T[], top: number): T[] {
  return [...list].sort((a, b) => b.size - a.size || a.path.localeCompare(b.path)).slice(0, top);
}
