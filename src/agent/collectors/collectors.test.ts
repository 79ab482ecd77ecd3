import { spawn } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { cpus, hostname, tmpdir, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UnsupportedError, type Collector, type Measurement } from "./collector.js";
import { defaultCollectors } from "./defaults.js";
import { containersCollector } from "./containers.js";
import { cpuCollector } from "./cpu.js";
import { diskIoCollector } from "./diskio.js";
import { disksCollector, type FsStats } from "./disks.js";
import { hostInventory, machineId, parseOsRelease } from "./inventory.js";
import { memoryCollector } from "./memory.js";
import { networkCollector } from "./network.js";
import { portableCpuCollector, portableDisksCollector, portableMemoryCollector, portableNetworkCollector } from "./portable.js";
import { parseProcessStat, processesCollector } from "./processes.js";
import { servicesCollector } from "./services.js";
import { parseUtmp, systemCollector, USER_PROCESS, UTMP_RECORD_SIZE } from "./system.js";
import { temperatureCollector } from "./temperature.js";

let root: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "specta-collectors-"));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Writes files (path relative to `base` → content) and returns `base`. */
async function tree(base: string, files: Record<string, string | Buffer>): Promise<string> {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(base, path)), { recursive: true });
    await writeFile(join(base, path), content);
  }
  return base;
}

function run(collector: Collector): Promise<Measurement[]> {
  return collector.collect(AbortSignal.timeout(30_000));
}

/** The value of the one measurement with this metric and exactly these labels. */
// biome-ignore lint/suspicious/noShadowRestrictedNames: a module-level helper, never called as a method
function valueOf(measurements: Measurement[], metric: string, labels: Record<string, string> = {}): number | undefined {
  const found = measurements.filter((m) => m.metric === metric && sameLabels(m.labels, labels));
  expect(found.length, `${metric}${JSON.stringify(labels)} appears ${found.length} times`).toBeLessThanOrEqual(1);
  return found[0]?.value;
}

function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => a[k] === b[k]);
}

function labelValues(measurements: Measurement[], metric: string, label: string): string[] {
  return [...new Set(measurements.filter((m) => m.metric === metric).map((m) => m.labels[label] ?? ""))].sort();
}

/** What every collector's output must satisfy, whatever the host. */
function expectWellFormed(measurements: Measurement[]): void {
  const seen = new Set<string>();
  for (const m of measurements) {
    expect(m.metric).toMatch(/^[a-zA-Z_:][a-zA-Z0-9_:]*$/);
    expect(m.kind).toBe(m.metric.endsWith("_total") ? "counter" : "gauge");
    expect(Number.isFinite(m.value), `${m.metric} = ${m.value}`).toBe(true);
    if (m.kind === "counter") expect(m.value).toBeGreaterThanOrEqual(0);
    for (const key of Object.keys(m.labels)) expect(key).toMatch(/^[a-zA-Z_][a-zA-Z0-9_]*$/);
    const key = `${m.metric}${JSON.stringify(Object.entries(m.labels).sort())}`;
    expect(seen.has(key), `duplicate series ${key}`).toBe(false);
    seen.add(key);
  }
}

describe("cpu (fixture)", () => {
  it("reads per-core and all-core seconds by mode, growing between runs, and load averages", async () => {
    const proc = await tree(join(root, "cpu"), {
      stat: [
        "cpu  245352 10 30586 210726 1743 0 1475 31770 0 0",
        "cpu0 123774 4 15257 104561 969 0 568 15749 0 0",
        "cpu1 121578 6 15329 106165 774 0 907 16021 0 0",
        "intr 2917631 0 0 0",
        "ctxt 9647692",
        "btime 1795327532",
        "",
      ].join("\n"),
      loadavg: "0.52 0.58 0.59 2/200 6904\n",
    });
    const collector = cpuCollector({ procRoot: proc });
    expect(collector).toMatchObject({ name: "cpu", intervalMs: 5_000 });
    const first = await run(collector);
    expectWellFormed(first);
    expect(first).toHaveLength(8 + 16 + 3);
    expect(labelValues(first, "node_cpu_seconds_total", "cpu")).toEqual(["0", "1"]);
    expect(labelValues(first, "node_cpu_seconds_total", "mode")).toEqual(["idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"]);
    expect(valueOf(first, "node_cpu_seconds_total", { cpu: "0", mode: "user" })).toBe(1237.74);
    expect(valueOf(first, "node_cpu_seconds_total", { cpu: "1", mode: "idle" })).toBe(1061.65);
    expect(valueOf(first, "node_cpu_seconds_total", { cpu: "1", mode: "steal" })).toBe(160.21);
    expect(valueOf(first, "node_cpu_all_seconds_total", { mode: "iowait" })).toBe(17.43);
    expect(valueOf(first, "node_cpu_all_seconds_total", { mode: "nice" })).toBe(0.1);
    expect(valueOf(first, "node_load1")).toBe(0.52);
    expect(valueOf(first, "node_load5")).toBe(0.58);
    expect(valueOf(first, "node_load15")).toBe(0.59);

    await writeFile(
      join(proc, "stat"),
      "cpu  245552 10 30600 210900 1750 0 1475 31770 0 0\ncpu0 123874 4 15264 104650 972 0 568 15749 0 0\ncpu1 121678 6 15336 106250 778 0 907 16021 0 0\n",
    );
    await writeFile(join(proc, "loadavg"), "1.00 0.70 0.61 1/201 6999\n");
    const second = await run(collector);
    expect(valueOf(second, "node_cpu_seconds_total", { cpu: "0", mode: "user" })).toBe(1238.74);
    expect(valueOf(second, "node_cpu_seconds_total", { cpu: "1", mode: "idle" })).toBe(1062.5);
    expect(valueOf(second, "node_cpu_all_seconds_total", { mode: "user" })).toBe(2455.52);
    expect(valueOf(second, "node_load1")).toBe(1);
  });

  it("keeps the columns an older kernel has and stops on an aborted signal", async () => {
    const proc = await tree(join(root, "cpu-old"), { stat: "cpu  100 0 50 1000\ncpu0 100 0 50 1000\n", loadavg: "0.00 0.01 0.05 1/50 10\n" });
    const measurements = await run(cpuCollector({ procRoot: proc }));
    expect(labelValues(measurements, "node_cpu_seconds_total", "mode")).toEqual(["idle", "nice", "system", "user"]);
    await expect(cpuCollector({ procRoot: proc }).collect(AbortSignal.abort())).rejects.toThrow();
  });
});

describe("memory (fixture)", () => {
  it("reads RAM and swap in bytes", async () => {
    const proc = await tree(join(root, "memory"), {
      meminfo: [
        "MemTotal:       24684084 kB",
        "MemFree:        21117620 kB",
        "MemAvailable:   23436572 kB",
        "Buffers:          101020 kB",
        "Cached:          2569968 kB",
        "SwapCached:            0 kB",
        "SwapTotal:       2097148 kB",
        "SwapFree:        2000000 kB",
        "HugePages_Total:       0",
        "",
      ].join("\n"),
    });
    const collector = memoryCollector({ procRoot: proc });
    expect(collector).toMatchObject({ name: "memory", intervalMs: 10_000 });
    const measurements = await run(collector);
    expectWellFormed(measurements);
    expect(measurements.map((m) => [m.metric, m.value])).toEqual([
      ["node_memory_total_bytes", 24684084 * 1024],
      ["node_memory_available_bytes", 23436572 * 1024],
      ["node_memory_free_bytes", 21117620 * 1024],
      ["node_memory_buffers_bytes", 101020 * 1024],
      ["node_memory_cached_bytes", 2569968 * 1024],
      ["node_memory_swap_total_bytes", 2097148 * 1024],
      ["node_memory_swap_free_bytes", 2000000 * 1024],
    ]);
  });
});

describe("disks (fixture)", () => {
  it("measures real mounts, skips pseudo ones, reports failing and hanging ones as device errors", async () => {
    const proc = await tree(join(root, "disks"), {
      "self/mounts": [
        "proc /proc proc rw,relatime 0 0",
        "sysfs /sys sysfs rw,relatime 0 0",
        "/dev/sda1 / ext4 rw,relatime 0 0",
        "tmpfs /run tmpfs rw,nosuid 0 0",
        "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0",
        "overlay /var/lib/docker/overlay2/0123/merged overlay rw 0 0",
        "overlay /containers/root overlay rw,lowerdir=/a:/b 0 0",
        "/dev/sdb1 /mnt/my\\040disk xfs ro,relatime 0 0",
        "/dev/sdc1 /data ext4 rw 0 0",
        "tmpfs /data tmpfs rw 0 0",
        "/dev/sdd1 /denied ext4 rw 0 0",
        "server:/export /hang nfs4 rw 0 0",
        "/dev/sda1 /twice ext4 rw 0 0",
        "/dev/sda2 /twice ext4 rw 0 0",
        "none /empty fuse.unknown rw 0 0",
        "",
      ].join("\n"),
    });
    const calls: string[] = [];
    const stats: Record<string, FsStats> = {
      "/": { bsize: 4096, blocks: 1000, bfree: 400, bavail: 300, files: 500, ffree: 100 },
      "/containers/root": { bsize: 4096, blocks: 2000, bfree: 1000, bavail: 1000, files: 50, ffree: 5 },
      "/mnt/my disk": { bsize: 1024, blocks: 10, bfree: 10, bavail: 10, files: 0, ffree: 0 },
      "/twice": { bsize: 512, blocks: 8, bfree: 2, bavail: 1, files: 3, ffree: 1 },
      "/empty": { bsize: 4096, blocks: 0, bfree: 0, bavail: 0, files: 0, ffree: 0 },
    };
    const statfs = (path: string): Promise<FsStats> => {
      calls.push(path);
      if (path === "/hang") return new Promise<FsStats>(() => {});
      if (path === "/denied") return Promise.reject(Object.assign(new Error("EACCES: permission denied"), { code: "EACCES" }));
      const s = stats[path];
      return s ? Promise.resolve(s) : Promise.reject(new Error(`unexpected statfs ${path}`));
    };
    const collector = disksCollector({ procRoot: proc, statfs, statfsTimeoutMs: 50 });
    expect(collector).toMatchObject({ name: "disks", intervalMs: 60_000 });
    const first = await run(collector);
    expectWellFormed(first);
    expect(labelValues(first, "node_filesystem_device_error", "mountpoint")).toEqual([
      "/",
      "/containers/root",
      "/denied",
      "/hang",
      "/mnt/my disk",
      "/twice",
    ]);

    const root_ = { mountpoint: "/", device: "/dev/sda1", fstype: "ext4" };
    expect(valueOf(first, "node_filesystem_size_bytes", root_)).toBe(4096000);
    expect(valueOf(first, "node_filesystem_used_bytes", root_)).toBe(600 * 4096);
    expect(valueOf(first, "node_filesystem_free_bytes", root_)).toBe(400 * 4096);
    expect(valueOf(first, "node_filesystem_avail_bytes", root_)).toBe(300 * 4096);
    expect(valueOf(first, "node_filesystem_files", root_)).toBe(500);
    expect(valueOf(first, "node_filesystem_files_free", root_)).toBe(100);
    expect(valueOf(first, "node_filesystem_readonly", root_)).toBe(0);
    expect(valueOf(first, "node_filesystem_device_error", root_)).toBe(0);

    const spaced = { mountpoint: "/mnt/my disk", device: "/dev/sdb1", fstype: "xfs" };
    expect(valueOf(first, "node_filesystem_readonly", spaced)).toBe(1);
    expect(valueOf(first, "node_filesystem_size_bytes", spaced)).toBe(10240);
    expect(valueOf(first, "node_filesystem_size_bytes", { mountpoint: "/containers/root", device: "overlay", fstype: "overlay" })).toBe(2000 * 4096);
    expect(valueOf(first, "node_filesystem_size_bytes", { mountpoint: "/twice", device: "/dev/sda2", fstype: "ext4" })).toBe(4096);

    for (const [mountpoint, device, fstype] of [
      ["/denied", "/dev/sdd1", "ext4"],
      ["/hang", "server:/export", "nfs4"],
    ] as const) {
      const labels = { mountpoint, device, fstype };
      expect(valueOf(first, "node_filesystem_device_error", labels)).toBe(1);
      expect(valueOf(first, "node_filesystem_size_bytes", labels)).toBeUndefined();
    }

    // The hanging statfs is not called again while it has not returned.
    const second = await run(collector);
    expect(valueOf(second, "node_filesystem_device_error", { mountpoint: "/hang", device: "server:/export", fstype: "nfs4" })).toBe(1);
    expect(calls.filter((p) => p === "/hang")).toHaveLength(1);
    expect(calls.filter((p) => p === "/")).toHaveLength(2);
  });
});

describe("diskio (fixture)", () => {
  const diskstats = [
    "   7       0 loop0 10 0 80 1 0 0 0 0 0 1 1 0 0 0 0 0 0",
    "   1       0 ram0 1 0 8 0 0 0 0 0 0 0 0 0 0 0 0 0 0",
    " 253       0 zram0 5 0 40 0 5 0 40 0 0 0 0 0 0 0 0 0 0",
    "   8       0 sda 100 5 2000 50 200 10 4000 300 1 400 350 0 0 0 0 0 0",
    "   8       1 sda1 60 5 1500 40 150 10 3000 200 0 300 240 0 0 0 0 0 0",
    " 259       0 nvme0n1 7 0 56 3 9 0 72 4 0 6 7 0 0 0 0 0 0",
    " 259       1 nvme0n1p1 7 0 56 3 9 0 72 4 0 6 7 0 0 0 0 0 0",
    "   9       1 md1 1 0 8 0 1 0 8 0 0 0 0 0 0 0 0 0 0",
    "   9      12 md12 2 0 16 0 2 0 16 0 0 0 0 0 0 0 0 0 0",
    " 179       1 mmcblk0p1 3 0 24 0 3 0 24 0 0 0 0 0 0 0 0 0 0",
    " 253       1 dm-0 4 0 32 1 4 0 32 1 0 2 2",
    "",
  ].join("\n");

  it("reads whole disks and skips loop, ram and zram devices and partitions of listed disks", async () => {
    const proc = await tree(join(root, "diskio/proc"), { diskstats });
    const sys = join(root, "diskio/sys");
    for (const disk of ["loop0", "ram0", "zram0", "sda", "nvme0n1", "md1", "md12", "dm-0"])
      await mkdir(join(sys, "block", disk), { recursive: true });
    const collector = diskIoCollector({ procRoot: proc, sysRoot: sys });
    expect(collector).toMatchObject({ name: "diskio", intervalMs: 5_000 });
    const first = await run(collector);
    expectWellFormed(first);
    expect(labelValues(first, "node_disk_reads_completed_total", "device")).toEqual(["dm-0", "md1", "md12", "mmcblk0p1", "nvme0n1", "sda"]);
    const sda = { device: "sda" };
    expect(valueOf(first, "node_disk_reads_completed_total", sda)).toBe(100);
    expect(valueOf(first, "node_disk_read_bytes_total", sda)).toBe(2000 * 512);
    expect(valueOf(first, "node_disk_read_time_seconds_total", sda)).toBe(0.05);
    expect(valueOf(first, "node_disk_writes_completed_total", sda)).toBe(200);
    expect(valueOf(first, "node_disk_written_bytes_total", sda)).toBe(4000 * 512);
    expect(valueOf(first, "node_disk_write_time_seconds_total", sda)).toBe(0.3);
    expect(valueOf(first, "node_disk_io_now", sda)).toBe(1);
    expect(valueOf(first, "node_disk_io_time_seconds_total", sda)).toBe(0.4);
    expect(valueOf(first, "node_disk_io_time_seconds_total", { device: "dm-0" })).toBe(0.002);

    await writeFile(
      join(proc, "diskstats"),
      diskstats.replace(" sda 100 5 2000 50 200 10 4000 300 1 400", " sda 164 5 3024 51 220 10 4800 310 0 411"),
    );
    const second = await run(collector);
    expect(valueOf(second, "node_disk_reads_completed_total", sda)).toBe(164);
    expect(valueOf(second, "node_disk_read_bytes_total", sda)).toBe(3024 * 512);
    expect(valueOf(second, "node_disk_io_time_seconds_total", sda)).toBe(0.411);
  });

  it("recognises partitions by name when /sys/block is not there", async () => {
    const proc = await tree(join(root, "diskio-nosys"), { diskstats });
    const measurements = await run(diskIoCollector({ procRoot: proc, sysRoot: join(root, "diskio-nosys/none") }));
    expect(labelValues(measurements, "node_disk_reads_completed_total", "device")).toEqual(["dm-0", "md1", "md12", "mmcblk0p1", "nvme0n1", "sda"]);
  });
});

describe("network (fixture)", () => {
  it("reads per-interface counters, loopback included", async () => {
    const proc = await tree(join(root, "network"), {
      "net/dev": [
        "Inter-|   Receive                                                |  Transmit",
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed",
        "    lo: 433936819  117888    0    0    0     0          0         0 433936819  117888    0    0    0     0       0          0",
        "  eth0:12345678901234 29260    3    4    0     0          0         7  1942676   18179    5    6    0     0       0          0",
        "docker0:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0",
        "",
      ].join("\n"),
    });
    const collector = networkCollector({ procRoot: proc });
    expect(collector).toMatchObject({ name: "network", intervalMs: 5_000 });
    const measurements = await run(collector);
    expectWellFormed(measurements);
    expect(measurements).toHaveLength(24);
    expect(labelValues(measurements, "node_network_receive_bytes_total", "device")).toEqual(["docker0", "eth0", "lo"]);
    const eth0 = { device: "eth0" };
    expect(valueOf(measurements, "node_network_receive_bytes_total", eth0)).toBe(12345678901234);
    expect(valueOf(measurements, "node_network_receive_packets_total", eth0)).toBe(29260);
    expect(valueOf(measurements, "node_network_receive_errs_total", eth0)).toBe(3);
    expect(valueOf(measurements, "node_network_receive_drop_total", eth0)).toBe(4);
    expect(valueOf(measurements, "node_network_transmit_bytes_total", eth0)).toBe(1942676);
    expect(valueOf(measurements, "node_network_transmit_packets_total", eth0)).toBe(18179);
    expect(valueOf(measurements, "node_network_transmit_errs_total", eth0)).toBe(5);
    expect(valueOf(measurements, "node_network_transmit_drop_total", eth0)).toBe(6);
    expect(valueOf(measurements, "node_network_transmit_bytes_total", { device: "lo" })).toBe(433936819);
  });
});

/** A /proc/[pid]/stat line with the fields the processes collector reads; the others are 0. */
function statLine(p: {
  pid: number;
  comm: string;
  state: string;
  utime: number;
  stime: number;
  threads: number;
  start: number;
  rss: number;
}): string {
  const rest = new Array<string>(49).fill("0");
  rest[0] = p.state;
  rest[1] = "1"; // ppid
  rest[11] = String(p.utime);
  rest[12] = String(p.stime);
  rest[17] = String(p.threads);
  rest[19] = String(p.start);
  rest[21] = String(p.rss);
  return `${p.pid} (${p.comm}) ${rest.join(" ")}\n`;
}

describe("processes (fixture)", () => {
  it("parses comm with spaces and parentheses", () => {
    expect(parseProcessStat(statLine({ pid: 42, comm: "a (b) c)", state: "S", utime: 7, stime: 3, threads: 2, start: 99, rss: 10 }))).toEqual({
      pid: "42",
      name: "a (b) c)",
      state: "S",
      cpuTicks: 10,
      startTicks: 99,
      threads: 2,
      rssPages: 10,
    });
    expect(parseProcessStat("garbage")).toBeUndefined();
    // A line that ends at rss (field 24), and one cut short before it.
    expect(parseProcessStat("7 (x) R 1 1 1 0 -1 0 0 0 0 0 5 6 0 0 20 0 3 0 44 100 12\n")).toMatchObject({
      cpuTicks: 11,
      threads: 3,
      startTicks: 44,
      rssPages: 12,
    });
    expect(parseProcessStat("7 (x) R 1 1 1 0 -1 0 0 0 0 0 5 6 0 0 20 0 3 0 44 100")).toBeUndefined();
  });

  it.runIf(process.platform === "linux")("parses this process's own /proc/self/stat", () => {
    const own = parseProcessStat(readFileSync("/proc/self/stat", "latin1"))!;
    expect(own).toMatchObject({ pid: String(process.pid), state: "R" });
    expect(own.threads).toBeGreaterThan(1);
    expect(own.rssPages).toBeGreaterThan(1000);
    expect(own.cpuTicks).toBeGreaterThanOrEqual(0);
  });

  it("counts by state and lists the top processes by CPU since the last run and by memory", async () => {
    const proc = join(root, "processes");
    const write = (p: Parameters<typeof statLine>[0]): Promise<string> => tree(proc, { [`${p.pid}/stat`]: statLine(p) });
    await write({ pid: 1, comm: "systemd", state: "S", utime: 100, stime: 50, threads: 1, start: 1, rss: 1000 });
    await write({ pid: 2, comm: "kthreadd", state: "S", utime: 0, stime: 5, threads: 1, start: 1, rss: 0 });
    await write({ pid: 100, comm: "my (odd) name", state: "R", utime: 1000, stime: 500, threads: 4, start: 500, rss: 5000 });
    await write({ pid: 200, comm: "wörker", state: "D", utime: 10, stime: 10, threads: 2, start: 600, rss: 300 });
    await write({ pid: 300, comm: "old", state: "Z", utime: 40, stime: 0, threads: 1, start: 700, rss: 0 });
    await mkdir(join(proc, "400"), { recursive: true }); // exited between readdir and read
    await tree(proc, { "self/stat": "not a pid", stat: "cpu 0 0 0 0\n" });

    let now = 1_000;
    const collector = processesCollector({ procRoot: proc, topN: 3, pageSize: 4096, clock: () => now });
    expect(collector).toMatchObject({ name: "processes", intervalMs: 15_000 });
    const first = await run(collector);
    expectWellFormed(first);
    expect(valueOf(first, "node_processes_state", { state: "S" })).toBe(2);
    expect(valueOf(first, "node_processes_state", { state: "R" })).toBe(1);
    expect(valueOf(first, "node_processes_state", { state: "D" })).toBe(1);
    expect(valueOf(first, "node_processes_state", { state: "Z" })).toBe(1);
    expect(valueOf(first, "node_processes_state", { state: "T" })).toBe(0);
    expect(valueOf(first, "node_processes_state", { state: "I" })).toBe(0);
    expect(valueOf(first, "node_processes_threads")).toBe(9);
    // No previous run: no CPU ranking yet.
    expect(first.filter((m) => m.metric === "node_top_process_cpu_usage_ratio")).toEqual([]);
    expect(first.filter((m) => m.metric === "node_top_process_resident_memory_bytes")).toEqual([
      { metric: "node_top_process_resident_memory_bytes", labels: { pid: "100", name: "my (odd) name" }, kind: "gauge", value: 5000 * 4096 },
      { metric: "node_top_process_resident_memory_bytes", labels: { pid: "1", name: "systemd" }, kind: "gauge", value: 1000 * 4096 },
      { metric: "node_top_process_resident_memory_bytes", labels: { pid: "200", name: "wörker" }, kind: "gauge", value: 300 * 4096 },
    ]);

    // 10 s later: pid 100 used 0.5 s of CPU, pid 1 0.1 s, pid 200 nothing; pid 300 is a new
    // process under a reused pid (0.05 s), pid 500 a new one (0.2 s).
    now += 10_000;
    await write({ pid: 1, comm: "systemd", state: "S", utime: 105, stime: 55, threads: 1, start: 1, rss: 1000 });
    await write({ pid: 100, comm: "my (odd) name", state: "S", utime: 1030, stime: 520, threads: 4, start: 500, rss: 6000 });
    await write({ pid: 300, comm: "new", state: "R", utime: 3, stime: 2, threads: 1, start: 9000, rss: 10 });
    await write({ pid: 500, comm: "fresh", state: "R", utime: 15, stime: 5, threads: 3, start: 9100, rss: 20 });
    const second = await run(collector);
    expectWellFormed(second);
    expect(second.filter((m) => m.metric === "node_top_process_cpu_usage_ratio")).toEqual([
      { metric: "node_top_process_cpu_usage_ratio", labels: { pid: "100", name: "my (odd) name" }, kind: "gauge", value: 0.05 },
      { metric: "node_top_process_cpu_usage_ratio", labels: { pid: "500", name: "fresh" }, kind: "gauge", value: 0.02 },
      { metric: "node_top_process_cpu_usage_ratio", labels: { pid: "1", name: "systemd" }, kind: "gauge", value: 0.01 },
    ]);
    expect(valueOf(second, "node_top_process_resident_memory_bytes", { pid: "100", name: "my (odd) name" })).toBe(6000 * 4096);
    expect(valueOf(second, "node_processes_state", { state: "R" })).toBe(2);
    expect(valueOf(second, "node_processes_state", { state: "Z" })).toBe(0);

    // With topN 5 the reused pid shows up with its own CPU time, not a negative difference.
    const wide = processesCollector({ procRoot: proc, pageSize: 4096, clock: () => now });
    await run(wide);
    now += 5_000;
    await write({ pid: 300, comm: "new", state: "R", utime: 8, stime: 2, threads: 1, start: 9000, rss: 10 });
    const third = await run(wide);
    expect(third.filter((m) => m.metric === "node_top_process_cpu_usage_ratio")).toEqual([
      { metric: "node_top_process_cpu_usage_ratio", labels: { pid: "300", name: "new" }, kind: "gauge", value: 0.01 },
    ]);
  });
});

describe("processes (this host's /proc)", () => {
  it("keeps each process's stat file open between runs, at most maxOpenFiles of them, and closes those of exited processes", async () => {
    const openStatFiles = () =>
      readdirSync("/proc/self/fd").flatMap((fd) => {
        try {
          const target = readlinkSync(`/proc/self/fd/${fd}`);
          return /^\/proc\/\d+\/stat$/.test(target) ? [target] : [];
        } catch {
          return []; // the listing's own descriptor, closed meanwhile
        }
      });
    const child = spawn("sleep", ["30"]);
    await new Promise((resolve) => child.once("spawn", resolve));
    const childStat = `/proc/${child.pid}/stat`;
    const kept = processesCollector({ pageSize: 4096 });
    expectWellFormed(await run(kept));
    const afterFirst = openStatFiles();
    expect(afterFirst).toContain(childStat);
    // Over the cap, files are opened and closed each run: one more file open at most.
    const capped = processesCollector({ pageSize: 4096, maxOpenFiles: 1 });
    expectWellFormed(await run(capped));
    expect(openStatFiles().length - afterFirst.length).toBeLessThanOrEqual(1);
    // The file of a process that has exited is closed at the next run.
    child.kill();
    await new Promise((resolve) => child.once("exit", resolve));
    const second = await run(kept);
    expectWellFormed(second);
    expect(valueOf(second, "node_processes_state", { state: "R" })).toBeGreaterThanOrEqual(1); // this process, reading
    expect(openStatFiles()).not.toContain(childStat);
  });
});

describe("services (fixture systemctl)", () => {
  const listing = [
    "cron.service          loaded    active    running Regular background program processing daemon",
    "● nginx.service       loaded    failed    failed  A high performance web server",
    "ssh.service           loaded    active    running OpenBSD Secure Shell server",
    "gone.service          not-found inactive  dead    gone.service",
    "odd.service           loaded    reloading reload  Odd",
    "",
  ].join("\n");

  async function fakeSystemctl(name: string, body: string): Promise<{ dir: string; systemctl: string; runDir: string }> {
    const dir = join(root, name);
    await tree(dir, { "units.txt": listing, "run/systemd/system/.keep": "" });
    const systemctl = join(dir, "systemctl");
    await writeFile(systemctl, `#!/bin/sh\n${body}\n`);
    await chmod(systemctl, 0o755);
    return { dir, systemctl, runDir: join(dir, "run/systemd/system") };
  }

  it("reports one series per service and state", async () => {
    const { dir, systemctl, runDir } = await fakeSystemctl("services", `echo "$@" > "$(dirname "$0")/args.txt"\ncat "$(dirname "$0")/units.txt"`);
    const collector = servicesCollector({ systemctl, systemdRunDir: runDir });
    expect(collector).toMatchObject({ name: "services", intervalMs: 60_000 });
    const measurements = await run(collector);
    expectWellFormed(measurements);
    expect((await readFile(join(dir, "args.txt"), "utf8")).trim()).toBe("list-units --type=service --all --no-legend --plain --no-pager");
    expect(labelValues(measurements, "node_systemd_unit_state", "name")).toEqual(["cron.service", "nginx.service", "odd.service", "ssh.service"]);
    expect(measurements).toHaveLength(5 * 3 + 6);
    const states = (name: string): Record<string, number> =>
      Object.fromEntries(measurements.filter((m) => m.labels.name === name).map((m) => [m.labels.state, m.value]));
    expect(states("cron.service")).toEqual({ activating: 0, active: 1, deactivating: 0, inactive: 0, failed: 0 });
    expect(states("nginx.service")).toEqual({ activating: 0, active: 0, deactivating: 0, inactive: 0, failed: 1 });
    expect(states("odd.service")).toEqual({ activating: 0, active: 0, deactivating: 0, inactive: 0, failed: 0, reloading: 1 });
  });

  it("is unsupported without systemd or systemctl, and fails plainly when systemctl fails", async () => {
    const { systemctl, runDir } = await fakeSystemctl("services-failing", `echo "Failed to connect to bus" >&2\nexit 1`);
    await expect(run(servicesCollector({ systemctl, systemdRunDir: join(root, "no-such-dir") }))).rejects.toBeInstanceOf(UnsupportedError);
    await expect(run(servicesCollector({ systemctl: join(root, "no-such-systemctl"), systemdRunDir: runDir }))).rejects.toBeInstanceOf(
      UnsupportedError,
    );
    const failure = run(servicesCollector({ systemctl, systemdRunDir: runDir }));
    await expect(failure).rejects.toThrow(/Failed to connect to bus/);
    await expect(failure).rejects.not.toBeInstanceOf(UnsupportedError);
  });
});

describe("temperature (fixture)", () => {
  it("reads thermal zones and hwmon sensors in degrees Celsius", async () => {
    const sys = await tree(join(root, "temperature"), {
      "class/thermal/thermal_zone0/temp": "45000\n",
      "class/thermal/thermal_zone0/type": "x86_pkg_temp\n",
      "class/thermal/thermal_zone1/temp": "38500\n",
      "class/thermal/thermal_zone1/type": "acpitz\n",
      "class/thermal/cooling_device0/type": "Processor\n",
      "class/hwmon/hwmon0/name": "coretemp\n",
      "class/hwmon/hwmon0/temp1_input": "52000\n",
      "class/hwmon/hwmon0/temp1_label": "Package id 0\n",
      "class/hwmon/hwmon0/temp2_input": "50125\n",
      "class/hwmon/hwmon0/temp2_label": "Core 0\n",
      "class/hwmon/hwmon1/name": "nvme\n",
      "class/hwmon/hwmon1/temp1_input": "41850\n",
      "class/hwmon/hwmon2/name": "acpi_fan\n",
      "class/hwmon/hwmon2/fan1_input": "1200\n",
    });
    const collector = temperatureCollector({ sysRoot: sys });
    expect(collector).toMatchObject({ name: "temperature", intervalMs: 10_000 });
    const measurements = await run(collector);
    expectWellFormed(measurements);
    expect(measurements).toEqual([
      { metric: "node_thermal_zone_temp_celsius", labels: { zone: "0", type: "x86_pkg_temp" }, kind: "gauge", value: 45 },
      { metric: "node_thermal_zone_temp_celsius", labels: { zone: "1", type: "acpitz" }, kind: "gauge", value: 38.5 },
      { metric: "node_hwmon_temp_celsius", labels: { chip: "hwmon0_coretemp", sensor: "temp1", label: "Package id 0" }, kind: "gauge", value: 52 },
      { metric: "node_hwmon_temp_celsius", labels: { chip: "hwmon0_coretemp", sensor: "temp2", label: "Core 0" }, kind: "gauge", value: 50.125 },
      { metric: "node_hwmon_temp_celsius", labels: { chip: "hwmon1_nvme", sensor: "temp1" }, kind: "gauge", value: 41.85 },
    ]);
  });

  it("is unsupported when there is no sensor", async () => {
    const sys = await tree(join(root, "temperature-none"), { "class/thermal/cooling_device0/type": "Processor\n" });
    await expect(run(temperatureCollector({ sysRoot: sys }))).rejects.toBeInstanceOf(UnsupportedError);
  });
});

describe("containers (fake Docker socket)", () => {
  let server: Server;
  let socketPath: string;
  const requests: string[] = [];

  beforeAll(async () => {
    socketPath = join(root, "docker.sock");
    server = createServer((req, res) => {
      requests.push(req.url ?? "");
      const json = (status: number, body: unknown): void => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
      };
      const url = req.url ?? "";
      if (url === "/containers/json?all=true") {
        json(200, [
          { Id: "a".repeat(64), Names: ["/web"], Image: "nginx:1.25", State: "running" },
          { Id: "b".repeat(64), Names: ["/db"], Image: "postgres:16", State: "running" },
          { Id: "c".repeat(64), Names: ["/old"], Image: "busybox", State: "exited" },
          { Id: "d".repeat(64), Names: ["/gone"], Image: "busybox", State: "running" },
        ]);
      } else if (url.startsWith(`/containers/${"a".repeat(64)}/stats`)) {
        json(200, {
          cpu_stats: { cpu_usage: { total_usage: 12_500_000_000 } },
          memory_stats: { usage: 50_000_000, limit: 1_000_000_000, stats: { inactive_file: 10_000_000 } },
          networks: {
            eth0: { rx_bytes: 1000, rx_packets: 10, rx_errors: 1, rx_dropped: 2, tx_bytes: 2000, tx_packets: 20, tx_errors: 3, tx_dropped: 4 },
          },
        });
      } else if (url.startsWith(`/containers/${"b".repeat(64)}/stats`)) {
        json(200, {
          cpu_stats: { cpu_usage: { total_usage: 3_000_000_000 } },
          memory_stats: { usage: 80_000_000, limit: 2_000_000_000, stats: { total_inactive_file: 30_000_000 } },
        });
      } else {
        json(404, { message: "No such container" });
      }
    });
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it("reads container states, CPU, memory and network per running container", async () => {
    const collector = containersCollector({ socketPath });
    expect(collector).toMatchObject({ name: "containers", intervalMs: 60_000 });
    const measurements = await run(collector);
    expectWellFormed(measurements);
    expect(requests).toContain(`/containers/${"a".repeat(64)}/stats?stream=false&one-shot=true`);
    expect(Object.fromEntries(measurements.filter((m) => m.metric === "docker_containers").map((m) => [m.labels.state, m.value]))).toEqual({
      created: 0,
      running: 3,
      paused: 0,
      restarting: 0,
      removing: 0,
      exited: 1,
      dead: 0,
    });
    const web = { name: "web", image: "nginx:1.25" };
    expect(valueOf(measurements, "container_cpu_usage_seconds_total", web)).toBe(12.5);
    expect(valueOf(measurements, "container_memory_usage_bytes", web)).toBe(50_000_000);
    expect(valueOf(measurements, "container_memory_working_set_bytes", web)).toBe(40_000_000);
    expect(valueOf(measurements, "container_spec_memory_limit_bytes", web)).toBe(1_000_000_000);
    const eth0 = { ...web, interface: "eth0" };
    expect(valueOf(measurements, "container_network_receive_bytes_total", eth0)).toBe(1000);
    expect(valueOf(measurements, "container_network_receive_packets_total", eth0)).toBe(10);
    expect(valueOf(measurements, "container_network_receive_errors_total", eth0)).toBe(1);
    expect(valueOf(measurements, "container_network_receive_packets_dropped_total", eth0)).toBe(2);
    expect(valueOf(measurements, "container_network_transmit_bytes_total", eth0)).toBe(2000);
    expect(valueOf(measurements, "container_network_transmit_packets_total", eth0)).toBe(20);
    expect(valueOf(measurements, "container_network_transmit_errors_total", eth0)).toBe(3);
    expect(valueOf(measurements, "container_network_transmit_packets_dropped_total", eth0)).toBe(4);
    const db = { name: "db", image: "postgres:16" };
    expect(valueOf(measurements, "container_cpu_usage_seconds_total", db)).toBe(3);
    expect(valueOf(measurements, "container_memory_working_set_bytes", db)).toBe(50_000_000);
    expect(measurements.filter((m) => m.metric.startsWith("container_network") && m.labels.name === "db")).toEqual([]);
    expect(measurements.filter((m) => m.labels.name === "gone" || m.labels.name === "old")).toEqual([]);
  });

  it("is unsupported without a socket", async () => {
    await expect(run(containersCollector({ socketPath: join(root, "no-docker.sock") }))).rejects.toBeInstanceOf(UnsupportedError);
  });
});

/** A glibc `struct utmp` record (little-endian, as on x86_64 and arm64). */
function utmpRecord(type: number, pid: number, user: string, line = "pts/0", host = ""): Buffer {
  const record = Buffer.alloc(UTMP_RECORD_SIZE);
  record.writeInt16LE(type, 0);
  record.writeInt32LE(pid, 4);
  record.write(line, 8, 32);
  record.write(user, 44, 32);
  record.write(host, 76, 256);
  return record;
}

describe("system (fixture)", () => {
  it("reads uptime, boot time, logged-in sessions and the process count", async () => {
    const proc = await tree(join(root, "system/proc"), {
      uptime: "12345.67 23456.78\n",
      stat: "cpu  1 2 3 4\nbtime 1700000000\nprocesses 4242\n",
      "1/stat": "x",
      "100/stat": "x",
      "200/stat": "x",
      "self/stat": "x",
      "net/dev": "x",
    });
    const utmpPath = join(root, "system/utmp");
    await writeFile(
      utmpPath,
      Buffer.concat([
        utmpRecord(2, 0, "reboot", "~"), // BOOT_TIME
        utmpRecord(6, 1, "LOGIN", "tty1"), // LOGIN_PROCESS
        utmpRecord(USER_PROCESS, 100, "alice", "pts/0", "192.0.2.1"),
        utmpRecord(USER_PROCESS, 99999, "bob", "pts/1"), // its process is gone: a stale record
        utmpRecord(USER_PROCESS, 200, "alice", "tty2"),
        utmpRecord(8, 300, ""), // DEAD_PROCESS
      ]),
    );
    const collector = systemCollector({ procRoot: proc, utmpPath });
    expect(collector).toMatchObject({ name: "system", intervalMs: 300_000 });
    const measurements = await run(collector);
    expectWellFormed(measurements);
    expect(measurements).toEqual([
      { metric: "node_uptime_seconds", labels: {}, kind: "gauge", value: 12345.67 },
      { metric: "node_boot_time_seconds", labels: {}, kind: "gauge", value: 1700000000 },
      { metric: "node_logged_in_users", labels: {}, kind: "gauge", value: 2 },
      { metric: "node_processes_pids", labels: {}, kind: "gauge", value: 3 },
    ]);
    expect(parseUtmp(utmpRecord(USER_PROCESS, 100, "alice", "pts/0", "192.0.2.1"))).toEqual([
      { type: USER_PROCESS, pid: 100, line: "pts/0", user: "alice", host: "192.0.2.1" },
    ]);

    // No utmp file: the other gauges still come.
    const without = await run(systemCollector({ procRoot: proc, utmpPath: join(root, "system/no-utmp") }));
    expect(without.map((m) => m.metric)).toEqual(["node_uptime_seconds", "node_boot_time_seconds", "node_processes_pids"]);
  });
});

describe("inventory", () => {
  it("parses os-release", () => {
    expect(
      parseOsRelease(
        'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n# comment\nID=debian\nX=\'single\'\nY="a \\"quoted\\" word"\n',
      ),
    ).toEqual({
      PRETTY_NAME: "Debian GNU/Linux 12 (bookworm)",
      NAME: "Debian GNU/Linux",
      VERSION_ID: "12",
      ID: "debian",
      X: "single",
      Y: 'a "quoted" word',
    });
  });

  it("sends an app-specific machine id, as systemd-id128 makes it, never the machine id itself", async () => {
    const dir = await tree(join(root, "machine-id"), {
      uninitialized: "uninitialized\n",
      empty: "",
      "machine-id": "3d1219c7c4c5404aaa1f6d2a48adfda4\n",
    });
    // `systemd-id128 machine-id --app-specific=10d5ed767b8241afae0a1e72fd32046a` on a machine with that id.
    const expected = "ec178d874248424aa586deb353dcca2b";
    expect(await machineId([join(dir, "missing"), join(dir, "uninitialized"), join(dir, "empty"), join(dir, "machine-id")])).toBe(expected);
    expect(await machineId([join(dir, "missing"), join(dir, "empty")])).toBe("");
  });

  it("describes this host", async () => {
    const inventory = await hostInventory();
    expect(inventory.hostname).toBe(hostname());
    expect(inventory.os).not.toBe("");
    expect(inventory.kernel).not.toBe("");
    expect(inventory.arch).toMatch(/^(x86_64|aarch64|arm64|armv\w+|i\d86|ppc64le|s390x|riscv64|amd64)$/);
    expect(inventory.cpuCount).toBe(cpus().length);
    expect(inventory.cpuModel).not.toBe("");
    expect(inventory.memoryBytes).toBe(totalmem());
    expect(inventory.bootTime.getTime()).toBeLessThan(Date.now());
    expect(inventory.bootTime.getTime()).toBeGreaterThan(Date.UTC(2000, 0, 1));
  });
});

describe("this host", () => {
  const collectors = defaultCollectors({});
  const byName = new Map(collectors.map((c) => [c.name, c]));
  const optional = new Set(["services", "temperature", "containers", "wifi", "raspberrypi", "nvidia", "smart", "proxmox", "podman"]);

  it("has every collector with its default interval", () => {
    expect(collectors.map((c) => [c.name, c.intervalMs])).toEqual(
      process.platform === "linux"
        ? [
            ["cpu", 5_000],
            ["memory", 10_000],
            ["disks", 60_000],
            ["diskio", 5_000],
            ["network", 5_000],
            ["processes", 15_000],
            ["services", 60_000],
            ["temperature", 10_000],
            ["containers", 60_000],
            ["system", 300_000],
            ["wifi", 30_000],
            ["raspberrypi", 30_000],
            ["nvidia", 30_000],
            ["smart", 300_000],
            ["proxmox", 60_000],
            ["podman", 60_000],
            ["agent", 10_000],
          ]
        : [
            ["cpu", 5_000],
            ["memory", 10_000],
            ["disks", 60_000],
            ["network", 5_000],
            ["agent", 10_000],
          ],
    );
  });

  for (const collector of collectors) {
    it(`${collector.name} returns sane values${optional.has(collector.name) ? " or is unsupported" : ""}`, async () => {
      let measurements: Measurement[];
      try {
        measurements = await run(collector);
      } catch (error) {
        if (optional.has(collector.name) && error instanceof UnsupportedError) {
          expect(error.message).toMatch(/^unsupported: /);
          return;
        }
        throw error;
      }
      expectWellFormed(measurements);
      if (!optional.has(collector.name)) expect(measurements.length).toBeGreaterThan(0);
    });
  }

  it.runIf(process.platform === "linux")("cpu: one series per core and mode, and counters that do not go back", async () => {
    const collector = byName.get("cpu")!;
    const first = await run(collector);
    expect(labelValues(first, "node_cpu_seconds_total", "cpu")).toHaveLength(cpus().length);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const second = await run(collector);
    for (const m of first.filter((x) => x.kind === "counter")) {
      expect(valueOf(second, m.metric, m.labels)).toBeGreaterThanOrEqual(m.value);
    }
    const busy =
      (valueOf(second, "node_cpu_all_seconds_total", { mode: "user" }) ?? 0) + (valueOf(second, "node_cpu_all_seconds_total", { mode: "idle" }) ?? 0);
    expect(busy).toBeGreaterThan(0);
    expect(valueOf(second, "node_load1")).toBeGreaterThanOrEqual(0);
  });

  it.runIf(process.platform === "linux")("memory, disks, network, processes and system agree with the host", async () => {
    const memory = await run(byName.get("memory")!);
    expect(valueOf(memory, "node_memory_total_bytes")).toBe(totalmem());
    expect(valueOf(memory, "node_memory_available_bytes")).toBeLessThanOrEqual(totalmem());

    const disks = await run(byName.get("disks")!);
    expect(labelValues(disks, "node_filesystem_size_bytes", "mountpoint")).toContain("/");
    for (const m of disks.filter((x) => x.metric === "node_filesystem_used_bytes")) {
      expect(m.value).toBeLessThanOrEqual(valueOf(disks, "node_filesystem_size_bytes", m.labels)!);
    }

    const network = await run(byName.get("network")!);
    expect(labelValues(network, "node_network_receive_bytes_total", "device")).toContain("lo");

    const processes = byName.get("processes")!;
    const before = await run(processes);
    const total = before.filter((m) => m.metric === "node_processes_state").reduce((sum, m) => sum + m.value, 0);
    expect(total).toBeGreaterThan(1);
    const rss = before.filter((m) => m.metric === "node_top_process_resident_memory_bytes");
    expect(rss.length).toBeGreaterThan(0);
    expect(rss.length).toBeLessThanOrEqual(5);
    const end = Date.now() + 200;
    while (Date.now() < end); // burn some CPU so that this process ranks
    const after = await run(processes);
    const cpuTop = after.filter((m) => m.metric === "node_top_process_cpu_usage_ratio");
    expect(cpuTop.length).toBeGreaterThan(0);
    expect(cpuTop.length).toBeLessThanOrEqual(5);

    const system = await run(byName.get("system")!);
    const uptime = valueOf(system, "node_uptime_seconds")!;
    const boot = valueOf(system, "node_boot_time_seconds")!;
    expect(uptime).toBeGreaterThan(0);
    expect(Math.abs(boot + uptime - Date.now() / 1000)).toBeLessThan(120);
    expect(valueOf(system, "node_processes_pids")).toBeGreaterThan(1);
  });

  it("portable collectors (the set for other systems) also run here", async () => {
    for (const collector of [portableCpuCollector(), portableMemoryCollector(), portableDisksCollector(), portableNetworkCollector()]) {
      const measurements = await run(collector);
      expectWellFormed(measurements);
      expect(measurements.length, collector.name).toBeGreaterThan(0);
    }
    const cpu = await run(portableCpuCollector());
    expect(labelValues(cpu, "node_cpu_seconds_total", "cpu")).toHaveLength(cpus().length);
  });
});
