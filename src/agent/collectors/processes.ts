/**
 * processes (every 15 s): one read of /proc/[pid]/stat per process (synchronous: see readTextSync), no process spawned.
 * Each process's stat file stays open from one run to the next and is read again from offset 0,
 * which makes the kernel generate it afresh: opening and closing it every run (a path lookup
 * in /proc and the teardown of its seq_file) cost more than the read itself, about 60 % of the
 * collector's CPU on a host of 200 processes. An open file follows its process, not its pid: once
 * the process has exited, reads fail with ESRCH, and the pid (maybe reused) is opened again. At
 * most `maxOpenFiles` (1,024) stay open (each holds a page of kernel memory); beyond that, files
 * are opened and closed each run.
 *
 * - `node_processes_state{state}` gauge: processes by state, as in node_exporter; the state is
 *   the kernel's letter (R running, S sleeping, D uninterruptible, Z zombie, T stopped,
 *   t traced, I idle kernel thread, …). R, S, D, Z, T and I are always present (0 when none);
 * - `node_processes_threads` gauge: threads of all processes;
 * - `node_top_process_cpu_usage_ratio{pid,name}` gauge: the `topN` (5) processes that used the
 *   most CPU since the previous run, in cores (1 = one core busy the whole interval), from the
 *   growth of utime + stime; nothing on the first run, which has no previous run to compare with;
 *   processes that used no CPU are left out;
 * - `node_top_process_resident_memory_bytes{pid,name}` gauge: the `topN` processes with the
 *   largest resident set.
 *
 * `name` is the kernel's command name (comm, at most 15 bytes). The top lists change over time,
 * so each run brings at most 2 × topN series; keep topN small.
 */
import type { Collector, Measurement } from "./collector.js";
import { closeSync, openSync } from "node:fs";
import { USER_HZ, errorCode, isGone, listDir, readFdBytes, readTextSync } from "./util.js";

export interface ProcessStat {
  pid: string;
  name: string;
  state: string;
  /** utime + stime, in clock ticks. */
  cpuTicks: number;
  /** Start time after boot, in clock ticks (tells a reused pid from the old process). */
  startTicks: number;
  threads: number;
  rssPages: number;
}

const ALWAYS_REPORTED_STATES = ["R", "S", "D", "Z", "T", "I"];

/** A process seen by the last run: its stat file, kept open, and what the run read of it. */
interface Tracked {
  /** Undefined beyond maxOpenFiles: opened and closed each run. */
  fd: number | undefined;
  cpuTicks: number;
  startTicks: number;
  /** The number of the last run that read it. */
  seen: number;
}

/** A process in a top list, ranked by `value`. */
interface Ranked {
  pid: string;
  name: string;
  value: number;
}

export function processesCollector(
  options: {
    procRoot?: string;
    /** Length of the top lists (5). */
    topN?: number;
    /** Page size in bytes; detected when absent. */
    pageSize?: number;
    /** Monotonic clock in ms (performance.now); for tests. */
    clock?: () => number;
    /** Stat files kept open between runs (1,024). */
    maxOpenFiles?: number;
  } = {},
): Collector {
  const procRoot = options.procRoot ?? "/proc";
  const topN = options.topN ?? 5;
  const clock = options.clock ?? (() => performance.now());
  let pageSize = options.pageSize;
  const maxOpenFiles = options.maxOpenFiles ?? 1_024;
  const tracked = new Map<string, Tracked>();
  let openFiles = 0;
  let runs = 0;
  let previousAt: number | undefined;
  const scan = newStatScan();
  /** Processes by the kernel's state letter (a byte), counted afresh each run. */
  const byState = new Array<number>(256).fill(0);

  /** The stat file of `pid`, read through the file kept open for it, opened (again) when needed. */
  const readStat = (pid: string, process: Tracked): Uint8Array => {
    if (process.fd !== undefined) {
      try {
        return readFdBytes(process.fd);
      } catch (error) {
        closeSync(process.fd);
        process.fd = undefined;
        openFiles--;
        if (errorCode(error) !== "ESRCH") throw error;
        // The process that was opened has exited: the pid, if listed, is another one's now.
      }
    }
    const fd = openSync(`${procRoot}/${pid}/stat`, "r");
    try {
      const bytes = readFdBytes(fd);
      if (openFiles < maxOpenFiles) {
        process.fd = fd;
        openFiles++;
      } else closeSync(fd);
      return bytes;
    } catch (error) {
      closeSync(fd);
      throw error;
    }
  };

  return {
    name: "processes",
    intervalMs: 15_000,
    async collect(signal) {
      pageSize ??= detectPageSize();
      const entries = await listDir(procRoot);
      if (entries === undefined) throw new Error(`${procRoot} does not exist`);
      const at = clock();
      const run = ++runs;
      const seconds = previousAt === undefined ? 0 : (at - previousAt) / 1000;
      byState.fill(0);
      let threads = 0;
      const topCpu: Ranked[] = [];
      const topRss: Ranked[] = [];
      // Indexed loops, plain objects reused from run to run, and stat files parsed as bytes: the
      // agent runs in V8's interpreter, where the garbage of ~100 processes every 15 s was a fifth
      // of what it allocated (npm run bench:agent).
      for (let i = 0; i < entries.length; i++) {
        const pid = entries[i]!;
        const first = pid.charCodeAt(0);
        if (first < 48 || first > 57) continue; // only a pid's folder starts with a digit
        let process = tracked.get(pid);
        if (!process) {
          process = { fd: undefined, cpuTicks: 0, startTicks: -1, seen: 0 };
          tracked.set(pid, process);
        }
        let bytes: Uint8Array;
        try {
          bytes = readStat(pid, process);
        } catch (error) {
          if (isGone(error) || errorCode(error) === "EACCES") continue; // exited meanwhile, or hidden: forgotten below
          throw error;
        }
        if (!scanStat(bytes, scan)) continue;
        byState[scan.state]!++;
        threads += scan.threads;
        if (seconds > 0) {
          // A pid not seen last time (or reused since) is a process started since: all its CPU time is new.
          const known = process.seen === run - 1 && process.startTicks === scan.startTicks;
          const used = known ? scan.cpuTicks - process.cpuTicks : scan.cpuTicks;
          if (used > 0) rank(topCpu, topN, used / (USER_HZ * seconds), pid, bytes, scan);
        }
        if (scan.rssPages > 0) rank(topRss, topN, scan.rssPages * pageSize, pid, bytes, scan);
        process.cpuTicks = scan.cpuTicks;
        process.startTicks = scan.startTicks;
        process.seen = run;
      }
      // Processes no longer listed (or no longer readable) have exited: their files are closed.
      tracked.forEach((process, pid) => {
        if (process.seen === run) return;
        if (process.fd !== undefined) {
          closeSync(process.fd);
          openFiles--;
        }
        tracked.delete(pid);
      });
      previousAt = at;
      signal.throwIfAborted();

      const out: Measurement[] = [];
      for (let i = 0; i < ALWAYS_REPORTED_STATES.length; i++) {
        const state = ALWAYS_REPORTED_STATES[i]!;
        out.push({ metric: "node_processes_state", labels: { state }, kind: "gauge", value: byState[state.charCodeAt(0)]! });
      }
      for (let code = 0; code < byState.length; code++) {
        if (byState[code] === 0 || ALWAYS_REPORTED_STATES.includes(String.fromCharCode(code))) continue;
        out.push({ metric: "node_processes_state", labels: { state: String.fromCharCode(code) }, kind: "gauge", value: byState[code]! });
      }
      out.push({ metric: "node_processes_threads", labels: {}, kind: "gauge", value: threads });
      for (let i = 0; i < topCpu.length; i++) {
        const { name, pid, value } = topCpu[i]!;
        out.push({ metric: "node_top_process_cpu_usage_ratio", labels: { name, pid }, kind: "gauge", value });
      }
      for (let i = 0; i < topRss.length; i++) {
        const { name, pid, value } = topRss[i]!;
        out.push({ metric: "node_top_process_resident_memory_bytes", labels: { name, pid }, kind: "gauge", value });
      }
      return out;
    },
  };
}

/**
 * Puts a process into a top list of at most `topN`, largest value first (after those of the same
 * value, as a stable sort would). Its name is decoded only when it gets in.
 */
function rank(list: Ranked[], topN: number, value: number, pid: string, bytes: Uint8Array, scan: StatScan): void {
  if (list.length === topN && value <= list[topN - 1]!.value) return;
  let at = list.length;
  while (at > 0 && list[at - 1]!.value < value) at--;
  list.splice(at, 0, { pid, name: commOf(bytes, scan), value });
  if (list.length > topN) list.pop();
}

/** The fields of a /proc/[pid]/stat that the collector reads, as scanStat finds them. */
interface StatScan {
  /** The state letter's byte. */
  state: number;
  cpuTicks: number;
  startTicks: number;
  threads: number;
  rssPages: number;
  /** Where comm starts (after "(") and ends (at the last ")"). */
  commStart: number;
  commEnd: number;
}

function newStatScan(): StatScan {
  return { state: 0, cpuTicks: 0, startTicks: 0, threads: 0, rssPages: 0, commStart: 0, commEnd: 0 };
}

/**
 * Reads /proc/[pid]/stat ("pid (comm) state ppid …") into `scan` without making strings of it;
 * false for a malformed one. comm may hold spaces and parentheses, so the fields are counted from
 * the last ")".
 */
function scanStat(bytes: Uint8Array, scan: StatScan): boolean {
  const open = bytes.indexOf(0x28); // (
  const close = bytes.lastIndexOf(0x29); // )
  if (open < 0 || close < open || close + 2 >= bytes.length) return false;
  scan.commStart = open + 1;
  scan.commEnd = close;
  scan.state = bytes[close + 2]!;
  // Fields of proc(5), counted from 3 (the state): 14 utime, 15 stime, 20 threads, 22 starttime, 24 rss.
  let utime = Number.NaN;
  let stime = Number.NaN;
  let at = close + 2;
  for (let field = 3; field <= 24; field++) {
    if (field === 14) utime = decimalAt(bytes, at);
    else if (field === 15) stime = decimalAt(bytes, at);
    else if (field === 20) scan.threads = decimalAt(bytes, at);
    else if (field === 22) scan.startTicks = decimalAt(bytes, at);
    else if (field === 24) scan.rssPages = decimalAt(bytes, at);
    if (field === 24) break;
    const space = bytes.indexOf(0x20, at);
    if (space < 0) return false;
    at = space + 1;
  }
  scan.cpuTicks = utime + stime;
  return !Number.isNaN(scan.cpuTicks + scan.threads + scan.startTicks + scan.rssPages);
}

/** The unsigned decimal at `at`, or NaN when there is none. */
function decimalAt(bytes: Uint8Array, at: number): number {
  let value = 0;
  let end = at;
  for (; end < bytes.length; end++) {
    const digit = bytes[end]! - 48;
    if (digit < 0 || digit > 9) break;
    value = value * 10 + digit;
  }
  return end === at ? Number.NaN : value;
}

/** comm is bytes, usually UTF-8 (at most 15 of them). */
const utf8 = new TextDecoder();
function commOf(bytes: Uint8Array, scan: StatScan): string {
  return utf8.decode(bytes.subarray(scan.commStart, scan.commEnd));
}

/** /proc/[pid]/stat as text (its fields as scanStat reads them), or undefined for a malformed line. */
export function parseProcessStat(text: string): ProcessStat | undefined {
  const bytes = new Uint8Array(Buffer.from(text, "latin1"));
  const scan = newStatScan();
  if (!scanStat(bytes, scan)) return undefined;
  return {
    pid: text.slice(0, text.indexOf("(")).trim(),
    name: commOf(bytes, scan),
    state: String.fromCharCode(scan.state),
    cpuTicks: scan.cpuTicks,
    startTicks: scan.startTicks,
    threads: scan.threads,
    rssPages: scan.rssPages,
  };
}

/**
 * The kernel's page size, which /proc/[pid]/stat counts RSS in (4 KiB on x86_64, 4, 16 or 64 KiB
 * on arm64): our own RSS in bytes (libuv: pages × getpagesize()) over our RSS in pages, rounded to
 * a power of two.
 */
function detectPageSize(): number {
  try {
    const own = parseProcessStat(readTextSync("/proc/self/stat"));
    const bytes = process.memoryUsage.rss();
    if (own && own.rssPages > 0) {
      const size = 2 ** Math.round(Math.log2(bytes / own.rssPages));
      if (size >= 4096 && size <= 65536) return size;
    }
  } catch {
    // fall through to the common size
  }
  return 4096;
}
