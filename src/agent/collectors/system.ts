/**
 * system (every 300 s), gauges:
 *
 * - `node_uptime_seconds` (first field of /proc/uptime);
 * - `node_boot_time_seconds` (Unix time of the boot, the btime line of /proc/stat);
 * - `node_logged_in_users`: login sessions in utmp (USER_PROCESS records whose process is still
 *   alive), the count `uptime` and `who` show; left out when the host keeps no utmp file (musl
 *   systems, some recent distributions);
 * - `node_processes_pids`: number of processes (the numeric entries of /proc).
 */
import { readFile, stat } from "node:fs/promises";
import { endianness } from "node:os";
import type { Collector, Measurement } from "./collector.js";
import { isGone, listDir, readText, toNumber } from "./util.js";

/** Size of `struct utmp` in glibc on every Linux architecture (x86_64, arm64, and 32-bit ones). */
export const UTMP_RECORD_SIZE = 384;
/** ut_type of a login session. */
export const USER_PROCESS = 7;

export interface UtmpEntry {
  type: number;
  pid: number;
  line: string;
  user: string;
  host: string;
}

export function systemCollector(options: { procRoot?: string; utmpPath?: string } = {}): Collector {
  const procRoot = options.procRoot ?? "/proc";
  const utmpPath = options.utmpPath ?? "/var/run/utmp";
  return {
    name: "system",
    intervalMs: 300_000,
    async collect(signal) {
      const [uptime, procStat, entries, utmp] = await Promise.all([
        readText(`${procRoot}/uptime`, signal),
        readText(`${procRoot}/stat`, signal),
        listDir(procRoot),
        readUtmp(utmpPath, signal),
      ]);
      const out: Measurement[] = [];
      const seconds = toNumber(uptime.trim().split(/\s+/)[0]);
      if (seconds !== undefined) out.push({ metric: "node_uptime_seconds", labels: {}, kind: "gauge", value: seconds });
      const btime = toNumber(/^btime\s+(\d+)/m.exec(procStat)?.[1]);
      if (btime !== undefined) out.push({ metric: "node_boot_time_seconds", labels: {}, kind: "gauge", value: btime });
      if (utmp !== undefined) {
        const sessions = utmp.filter((entry) => entry.type === USER_PROCESS && entry.user !== "");
        const alive = await Promise.all(sessions.map((entry) => processExists(procRoot, entry.pid)));
        out.push({ metric: "node_logged_in_users", labels: {}, kind: "gauge", value: alive.filter(Boolean).length });
      }
      if (entries !== undefined) {
        out.push({ metric: "node_processes_pids", labels: {}, kind: "gauge", value: entries.filter((name) => /^\d+$/.test(name)).length });
      }
      return out;
    },
  };
}

async function readUtmp(path: string, signal: AbortSignal): Promise<UtmpEntry[] | undefined> {
  try {
    return parseUtmp(await readFile(path, { signal }));
  } catch (error) {
    if (isGone(error)) return undefined;
    throw error;
  }
}

async function processExists(procRoot: string, pid: number): Promise<boolean> {
  if (pid <= 0) return false;
  try {
    await stat(`${procRoot}/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** Records of glibc's `struct utmp` (native byte order); a trailing partial record is ignored. */
export function parseUtmp(buffer: Buffer): UtmpEntry[] {
  const little = endianness() === "LE";
  const out: UtmpEntry[] = [];
  for (let offset = 0; offset + UTMP_RECORD_SIZE <= buffer.length; offset += UTMP_RECORD_SIZE) {
    out.push({
      type: little ? buffer.readInt16LE(offset) : buffer.readInt16BE(offset),
      pid: little ? buffer.readInt32LE(offset + 4) : buffer.readInt32BE(offset + 4),
      line: cString(buffer, offset + 8, 32),
      user: cString(buffer, offset + 44, 32),
      host: cString(buffer, offset + 76, 256),
    });
  }
  return out;
}

function cString(buffer: Buffer, start: number, length: number): string {
  const end = buffer.indexOf(0, start);
  return buffer.toString("utf8", start, end < 0 || end > start + length ? start + length : end);
}
