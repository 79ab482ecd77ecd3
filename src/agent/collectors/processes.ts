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
import { USER_HZ, errorCode, isGone, listDir, readFdText, readTextSync, toNumber } from "./util.js";

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
  let previous: { at: number; byPid: Map<string, { cpuTicks: number; startTicks: number }> } | undefined;
  /** The open stat file of each pid listed at the last run. */
  let openFiles = new Map<string, number>();

  /** The stat file of `pid`, read through the file kept open for it, opened (again) when needed. */
  const readStat = (pid: string, keep: Map<string, number>): string => {
    const held = openFiles.get(pid);
    if (held !== undefined) {
      openFiles.delete(pid);
      try {
        const text = readFdText(held);
        keep.set(pid, held);
        return text;
      } catch (error) {
        closeSync(held);
        if (errorCode(error) !== "ESRCH") throw error;
        // The process that was opened has exited: the pid, if listed, is another one's now.
      }
    }
    if (keep.size >= maxOpenFiles) return readTextSync(`${procRoot}/${pid}/stat`);
    const fd = openSync(`${procRoot}/${pid}/stat`, "r");
    try {
      const text = readFdText(fd);
      keep.set(pid, fd);
      return text;
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
      const list: ProcessStat[] = [];
      const keep = new Map<string, number>();
      try {
        for (const pid of entries) {
          if (!/^\d+$/.test(pid)) continue;
          try {
            const stat = parseProcessStat(readStat(pid, keep));
            if (stat) list.push(stat);
          } catch (error) {
            if (!(isGone(error) || errorCode(error) === "EACCES")) throw error; // exited meanwhile, or hidden
          }
        }
      } finally {
        // Files of pids no longer listed (or of a failed run) are closed; the others are kept.
        for (const fd of openFiles.values()) closeSync(fd);
        openFiles = keep;
      }
      signal.throwIfAborted();

      const out: Measurement[] = [];
      const byState = new Map<string, number>(ALWAYS_REPORTED_STATES.map((state) => [state, 0]));
      let threads = 0;
      for (const s of list) {
        byState.set(s.state, (byState.get(s.state) ?? 0) + 1);
        threads += s.threads;
      }
      for (const [state, count] of byState) out.push({ metric: "node_processes_state", labels: { state }, kind: "gauge", value: count });
      out.push({ metric: "node_processes_threads", labels: {}, kind: "gauge", value: threads });

      if (previous !== undefined) {
        const seconds = (at - previous.at) / 1000;
        const usage: Array<{ s: ProcessStat; ratio: number }> = [];
        for (const s of list) {
          const before = previous.byPid.get(s.pid);
          // A pid not seen last time (or reused since) is a process started since: all its CPU time is new.
          const used = before !== undefined && before.startTicks === s.startTicks ? s.cpuTicks - before.cpuTicks : s.cpuTicks;
          if (used > 0 && seconds > 0) usage.push({ s, ratio: used / (USER_HZ * seconds) });
        }
        usage.sort((a, b) => b.ratio - a.ratio);
        for (const { s, ratio } of usage.slice(0, topN)) {
          out.push({ metric: "node_top_process_cpu_usage_ratio", labels: { pid: s.pid, name: s.name }, kind: "gauge", value: ratio });
        }
      }
      const byRss = list.filter((s) => s.rssPages > 0).sort((a, b) => b.rssPages - a.rssPages);
      for (const s of byRss.slice(0, topN)) {
        out.push({
          metric: "node_top_process_resident_memory_bytes",
          labels: { pid: s.pid, name: s.name },
          kind: "gauge",
          value: s.rssPages * pageSize,
        });
      }

      previous = { at, byPid: new Map(list.map((s) => [s.pid, { cpuTicks: s.cpuTicks, startTicks: s.startTicks }])) };
      return out;
    },
  };
}

/**
 * /proc/[pid]/stat: "pid (comm) state ppid …". comm may hold spaces and parentheses, so the
 * fields are counted from the last ")". Returns undefined for a malformed line.
 */
export function parseProcessStat(text: string): ProcessStat | undefined {
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  if (open < 0 || close < open) return undefined;
  // Where field n of proc(5) starts, for n from 3 (the state) to 24 (rss): found with indexOf,
  // and only the six fields read are made strings (a split made 22 for each process).
  const starts: number[] = [];
  for (let at = close + 2, n = 3; n <= 25 && at > 0; n++) {
    starts[n] = at;
    at = text.indexOf(" ", at) + 1;
  }
  const field = (n: number) => {
    const start = starts[n];
    if (start === undefined) return undefined;
    const next = starts[n + 1];
    return text.slice(start, next === undefined ? text.trimEnd().length : next - 1);
  };
  const state = field(3);
  const utime = toNumber(field(14));
  const stime = toNumber(field(15));
  const threads = toNumber(field(20));
  const startTicks = toNumber(field(22));
  const rssPages = toNumber(field(24));
  if (!state || utime === undefined || stime === undefined || threads === undefined || startTicks === undefined || rssPages === undefined) {
    return undefined;
  }
  return {
    pid: text.slice(0, open).trim(),
    name: decodeComm(text.slice(open + 1, close)),
    state,
    cpuTicks: utime + stime,
    startTicks,
    threads,
    rssPages,
  };
}

/** comm is bytes (usually UTF-8); the file was read as latin1, one char per byte. */
function decodeComm(latin1: string): string {
  return nonAscii.test(latin1) ? Buffer.from(latin1, "latin1").toString("utf8") : latin1;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: any byte outside ASCII, NUL included in the range on purpose
const nonAscii = /[^\x00-\x7f]/;

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
