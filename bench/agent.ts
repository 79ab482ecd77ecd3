/**
 * The agent as a process, at its default intervals, against a real daemon: its CPU share of
 * one core, its RSS, and the processes it spawns (counted with strace when it is installed).
 * Part of `npm run bench:agent` (after bench/agent-collectors.ts, the per-collector figures).
 *
 * Settings (environment): BENCH_SECONDS (default 60) measured after a 10 s warm-up;
 * BENCH_AGENT_NODE_ARGS, node flags for the agent process.
 */
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { listeningUrl, startSpecta, stopSpecta } from "./specta-process.js";

const seconds = Number(process.env.BENCH_SECONDS ?? 60);
const dir = mkdtempSync(join(tmpdir(), "specta-bench-agent-"));
chmodSync(dir, 0o711);

/** utime + stime of a process, in seconds (USER_HZ = 100). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** A field of /proc/<pid>/status in bytes: VmRSS, VmHWM (the peak of VmRSS since start), RssAnon (the process's own memory) or RssFile (mapped files: the node binary's pages, shared with every node process). */
function statusBytes(pid: number, field: "VmRSS" | "VmHWM" | "RssAnon" | "RssFile"): number {
  return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;
}

async function main(): Promise<void> {
  const dataDir = join(dir, "data");
  const daemon = await startSpecta(["daemon", "--addr", "127.0.0.1:0", "--data-dir", dataDir], /"daemon listening"/);
  const server = listeningUrl(daemon.line);
  const enroll = readFileSync(join(dataDir, "enroll.token"), "utf8").trim();
  // BENCH_AGENT_NODE_ARGS: node flags for the agent process, e.g. "--max-semi-space-size=1"
  // (bin/specta.js sets --no-opt, --no-maglev and --optimize-for-size after them).
  const nodeArgs = (process.env.BENCH_AGENT_NODE_ARGS ?? "").split(" ").filter(Boolean);
  const agent = await startSpecta(
    ["agent", "--server", server, "--enroll-token", enroll, "--state-dir", join(dir, "agent")],
    /"agent running"/,
    nodeArgs,
  );
  const pid = agent.child.pid!;

  await new Promise((r) => setTimeout(r, 10_000));
  // CPU and memory first, untraced: strace attached to a running process stops it at every
  // system call, which would be counted as the agent's CPU time.
  const cpuBefore = cpuSeconds(pid);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const cpuUsed = cpuSeconds(pid) - cpuBefore;
  const rss = statusBytes(pid, "VmRSS");
  const peakRss = statusBytes(pid, "VmHWM"); // since start, warm-up included
  const anon = statusBytes(pid, "RssAnon");
  const file = statusBytes(pid, "RssFile");
  // Then the processes it starts, over a window as long as the slowest frequent collector's
  // interval (15 s) twice.
  const straceSeconds = 30;
  const strace = existsSync("/usr/bin/strace")
    ? spawn("strace", ["-f", "-qq", "-e", "trace=execve,execveat,clone3,fork,vfork", "-o", join(dir, "strace.out"), "-p", String(pid)], {
        stdio: "ignore",
      })
    : undefined;
  if (strace) {
    await new Promise((r) => setTimeout(r, straceSeconds * 1000));
    strace.kill("SIGINT");
    await new Promise((r) => strace.once("exit", r));
  }
  const execs = strace
    ? readFileSync(join(dir, "strace.out"), "utf8")
        .split("\n")
        .filter((l) => /execve\(/.test(l)).length
    : undefined;

  console.log(`machine: ${cpus()[0]?.model} x${cpus().length}, Node ${process.versions.node}`);
  console.log(
    `agent at default intervals${nodeArgs.length ? ` with node ${nodeArgs.join(" ")}` : ""}, ${seconds} s after a 10 s warm-up (pushing to a daemon on this host):`,
  );
  const cpuShare = (cpuUsed / seconds) * 100;
  const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  console.log(`  CPU: ${cpuShare.toFixed(2)} % of one core (${cpuUsed.toFixed(2)} s CPU)`);
  console.log(
    `  RSS: ${mib(rss)} (${(rss / 1e6).toFixed(1)} MB) at the end: ${mib(anon)} its own, ${mib(file)} mapped files (the node binary, shared); peak since start ${mib(peakRss)} (${(peakRss / 1e6).toFixed(1)} MB)`,
  );
  console.log(
    `  processes spawned: ${execs === undefined ? "not counted (install strace)" : `${execs} in ${straceSeconds} s (counted with strace, after the CPU window)`}`,
  );
  const verdict = (met: boolean | undefined) => (met === undefined ? "not measured" : met ? "met" : "MISSED");
  console.log(
    `targets: CPU <= 0.5 % of one core ${verdict(cpuShare <= 0.5)}; peak RSS <= 60 MB ${verdict(peakRss <= 60e6)}; no process spawned ${verdict(execs === undefined ? undefined : execs === 0)}`,
  );
}

main()
  .catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(async () => {
    await stopSpecta();
    rmSync(dir, { recursive: true, force: true });
  });
