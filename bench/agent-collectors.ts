/**
 * The agent's collectors on this machine: CPU time and processes spawned per run.
 *
 *   node --import tsx bench/agent-collectors.ts
 *
 * For each collector of defaultCollectors():
 * - CPU time per run: process.cpuUsage() (user + system, every thread of this process, so the
 *   libuv threads that do the file reads count too) around each of BENCH_RUNS (50) runs, after
 *   two warm-up runs; the median is printed, with the median wall time;
 * - CPU time of child processes per run: the growth of cutime + cstime in /proc/self/stat over
 *   those runs (10 ms resolution, so a mean), which catches what a spawned program costs;
 * - processes spawned per run: the collector runs BENCH_SPAWN_RUNS (5) times in a child Node
 *   process traced with `strace -f -e trace=execve,execveat,kill`; every execve between two
 *   marker kill(pid, 0) calls around those runs is a process started by the collector (or by
 *   anything it started). The first run counts too: nothing is warmed up. A probe that starts
 *   one process per run is counted first, to show that the count works. Needs strace.
 *
 * Environment: BENCH_RUNS, BENCH_SPAWN_RUNS, BENCH_PROC_ROOT, BENCH_SYS_ROOT, BENCH_DOCKER_SOCKET.
 */
import { execFile, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, release, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { UnsupportedError, type Collector } from "../src/agent/collectors/collector.js";
import { defaultCollectors } from "../src/agent/collectors/defaults.js";

const runs = Number(process.env.BENCH_RUNS ?? 50);
const spawnRuns = Number(process.env.BENCH_SPAWN_RUNS ?? 5);
const options = {
  procRoot: process.env.BENCH_PROC_ROOT,
  sysRoot: process.env.BENCH_SYS_ROOT,
  dockerSocket: process.env.BENCH_DOCKER_SOCKET,
};

const PROBE = "__probe";

type Status = "ok" | "unsupported" | "error";

interface Row {
  name: string;
  intervalMs: number;
  status: Status;
  detail: string;
  series: number;
  cpuMs: number;
  wallMs: number;
  childCpuMs: number;
  spawned: number | undefined;
}

async function runOnce(collector: Collector): Promise<{ status: Status; detail: string; series: number }> {
  try {
    const measurements = await collector.collect(AbortSignal.timeout(30_000));
    return { status: "ok", detail: "", series: measurements.length };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { status: error instanceof UnsupportedError ? "unsupported" : "error", detail: message, series: 0 };
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** CPU time of waited-for children (cutime + cstime of /proc/self/stat), in ms. */
function childCpuMs(): number {
  try {
    const text = readFileSync("/proc/self/stat", "latin1");
    const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return ((Number(rest[13]) || 0) + (Number(rest[14]) || 0)) * 10; // USER_HZ = 100
  } catch {
    return 0;
  }
}

async function measure(collector: Collector): Promise<Omit<Row, "spawned">> {
  let last = await runOnce(collector);
  last = await runOnce(collector);
  const cpu: number[] = [];
  const wall: number[] = [];
  const childBefore = childCpuMs();
  for (let i = 0; i < runs; i++) {
    const start = process.cpuUsage();
    const t0 = performance.now();
    last = await runOnce(collector);
    wall.push(performance.now() - t0);
    const used = process.cpuUsage(start);
    cpu.push((used.user + used.system) / 1000);
  }
  return {
    name: collector.name,
    intervalMs: collector.intervalMs,
    status: last.status,
    detail: last.detail,
    series: last.series,
    cpuMs: median(cpu),
    wallMs: median(wall),
    childCpuMs: (childCpuMs() - childBefore) / runs,
  };
}

function hasStrace(): boolean {
  return spawnSync("strace", ["-V"], { stdio: "ignore" }).status === 0;
}

/** Processes spawned per run of one collector, counted by strace in a child process. */
function countSpawns(name: string): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "specta-bench-strace-"));
  const out = join(dir, "trace");
  const script = fileURLToPath(import.meta.url);
  return new Promise((resolve, reject) => {
    execFile(
      "strace",
      ["-f", "-qq", "-e", "trace=execve,execveat,kill", "-o", out, process.execPath, "--import", "tsx", script, "--child", name, String(spawnRuns)],
      { env: process.env, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout) => {
        try {
          if (error) throw new Error(`strace run of ${name} failed: ${error.message}`);
          const childPid = /^child (\d+)$/m.exec(stdout)?.[1];
          if (!childPid) throw new Error(`child of ${name} did not report its pid`);
          const lines = readFileSync(out, "utf8").split("\n");
          const marker = new RegExp(`kill\\(${childPid}, 0\\)`);
          const start = lines.findIndex((line) => marker.test(line));
          const end = lines.findIndex((line, i) => i > start && marker.test(line));
          if (start < 0 || end < 0) throw new Error(`markers missing from the trace of ${name}`);
          const execs = lines.slice(start + 1, end).filter((line) => /\bexecve(at)?\(/.test(line)).length;
          resolve(execs / spawnRuns);
        } catch (failure) {
          reject(failure);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      },
    );
  });
}

/** Starts one process per run: checks that the strace count sees what it should. */
const probe: Collector = {
  name: PROBE,
  intervalMs: 1_000,
  collect: (signal) =>
    new Promise((resolve, reject) => {
      execFile(process.execPath, ["-e", ""], { signal }, (error) => (error ? reject(error) : resolve([])));
    }),
};

/** Child mode: run one collector between two marker syscalls, for strace. */
async function child(name: string, count: number): Promise<void> {
  const collector = name === PROBE ? probe : defaultCollectors(options).find((c) => c.name === name);
  if (!collector) throw new Error(`no collector ${name}`);
  process.stdout.write(`child ${process.pid}\n`);
  process.kill(process.pid, 0);
  for (let i = 0; i < count; i++) await runOnce(collector);
  process.kill(process.pid, 0);
}

function pad(text: string, width: number, right = false): string {
  return right ? text.padStart(width) : text.padEnd(width);
}

async function main(): Promise<void> {
  const processors = cpus();
  console.log(
    `machine: ${processors[0]?.model.trim() ?? "unknown CPU"}, ${processors.length} logical CPUs, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, ${process.platform} ${release()}, Node ${process.version}`,
  );
  console.log(`runs per collector: ${runs} for CPU time (after 2 warm-up runs), ${spawnRuns} under strace for processes\n`);

  const strace = process.platform === "linux" && hasStrace();
  if (strace) {
    const counted = await countSpawns(PROBE);
    console.log(`strace check: a probe that starts 1 process per run is counted as ${counted} per run`);
    if (counted !== 1) throw new Error("the strace count does not work here");
  }
  const rows: Row[] = [];
  for (const collector of defaultCollectors(options)) {
    const row = await measure(collector);
    rows.push({ ...row, spawned: strace ? await countSpawns(collector.name) : undefined });
  }

  const header = ["collector", "interval", "status", "series", "CPU ms/run", "wall ms/run", "child CPU ms/run", "processes/run", "share of 1 core"];
  const widths = [11, 8, 11, 6, 10, 11, 16, 13, 15];
  console.log(header.map((h, i) => pad(h, widths[i]!, i > 2)).join("  "));
  let share = 0;
  for (const r of rows) {
    const rowShare = ((r.cpuMs + r.childCpuMs) / r.intervalMs) * 100;
    share += rowShare;
    console.log(
      [
        pad(r.name, widths[0]!),
        pad(`${r.intervalMs / 1000} s`, widths[1]!, true),
        pad(r.status, widths[2]!),
        pad(String(r.series), widths[3]!, true),
        pad(r.cpuMs.toFixed(3), widths[4]!, true),
        pad(r.wallMs.toFixed(3), widths[5]!, true),
        pad(r.childCpuMs.toFixed(1), widths[6]!, true),
        pad(r.spawned === undefined ? "n/a" : String(r.spawned), widths[7]!, true),
        pad(`${rowShare.toFixed(4)} %`, widths[8]!, true),
      ].join("  "),
    );
  }
  console.log(`\nall collectors at their default intervals: ${share.toFixed(4)} % of one core (collection only; batching and sending not included)`);
  for (const r of rows.filter((x) => x.status !== "ok")) console.log(`${r.name}: ${r.detail}`);
  if (!strace) {
    console.log("\nprocesses/run not measured: strace is not installed (apt-get install strace)");
    return;
  }
  const frequent = rows.filter((r) => r.intervalMs <= 15_000);
  const offenders = frequent.filter((r) => (r.spawned ?? 0) > 0);
  console.log(
    offenders.length === 0
      ? `\ntarget met: no process spawned by the collectors that run every 15 s or more often (${frequent.map((r) => r.name).join(", ")})`
      : `\ntarget MISSED: ${offenders.map((r) => `${r.name} spawns ${r.spawned}/run`).join(", ")}`,
  );
  if (offenders.length > 0) process.exitCode = 1;
}

if (process.argv[2] === "--child") {
  await child(process.argv[3] ?? "", Number(process.argv[4] ?? 1));
} else {
  await main();
}
