/**
 * The collectors of hardware and tools a host may lack (Wi-Fi, Raspberry Pi, NVIDIA GPUs, disk
 * health, Proxmox guests, Podman), the agent's own runtime and the installed packages, on captured outputs in
 * fixtures/: each foreign tool is a small script that prints its fixture and records the
 * arguments it was called with.
 */
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UnsupportedError, type Collector, type Measurement } from "./collector.js";
import { containersCollector } from "./containers.js";
import { nvidiaCollector, parseNvidiaSmi } from "./nvidia.js";
import { installedPackages, parseApkInstalled, parseRpmQuery } from "./packages.js";
import { guestMeasurements, proxmoxCollector } from "./proxmox.js";
import { parseVcgencmd, raspberryPiCollector } from "./raspberrypi.js";
import { runtimeCollector } from "./runtime.js";
import { Schedule } from "../schedule.js";
import { smartCollector } from "./smart.js";
import { parseIwLink, parseProcWireless, wifiCollector } from "./wifi.js";

const fixtures = join(dirname(fileURLToPath(import.meta.url)), "fixtures");
let root: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "specta-hardware-"));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

function run(collector: Collector): Promise<Measurement[]> {
  return collector.collect(AbortSignal.timeout(30_000));
}

/** A fake tool in its own folder: `body` is sh, with $F the fixtures folder; every call's arguments are appended to calls.txt. */
async function fakeTool(name: string, tool: string, body: string): Promise<{ path: string; calls: () => Promise<string[]> }> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  const path = join(dir, tool);
  await writeFile(path, `#!/bin/sh\nF='${fixtures}'\necho "$*" >> '${dir}/calls.txt'\n${body}\n`);
  await chmod(path, 0o755);
  const calls = async () => (await readFile(join(dir, "calls.txt"), "utf8").catch(() => "")).split("\n").filter(Boolean);
  return { path, calls };
}

/** Files (path relative to `base` → content or a fixture to copy) under a fake root. */
async function tree(base: string, files: Record<string, string | { fixture: string }>): Promise<string> {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(base, path)), { recursive: true });
    if (typeof content === "string") await writeFile(join(base, path), content);
    else await copyFile(join(fixtures, content.fixture), join(base, path));
  }
  return base;
}

function measured(measurements: Measurement[], metric: string, labels: Record<string, string> = {}): number | undefined {
  const found = measurements.filter(
    (m) =>
      m.metric === metric &&
      Object.keys(m.labels).length === Object.keys(labels).length &&
      Object.entries(labels).every(([k, v]) => m.labels[k] === v),
  );
  expect(found.length, `${metric}${JSON.stringify(labels)} appears ${found.length} times`).toBeLessThanOrEqual(1);
  return found[0]?.value;
}

/** What every collector's output must satisfy. */
function expectWellFormed(measurements: Measurement[]): void {
  const seen = new Set<string>();
  for (const m of measurements) {
    expect(m.metric).toMatch(/^[a-zA-Z_:][a-zA-Z0-9_:]*$/);
    expect(m.kind).toBe(m.metric.endsWith("_total") ? "counter" : "gauge");
    expect(Number.isFinite(m.value), `${m.metric} = ${m.value}`).toBe(true);
    const key = `${m.metric}${JSON.stringify(Object.entries(m.labels).sort())}`;
    expect(seen.has(key), `duplicate series ${key}`).toBe(false);
    seen.add(key);
  }
}

describe("wifi (fixture /proc/net/wireless and iw)", () => {
  it("parses the kernel's table and iw's link", async () => {
    const text = await readFile(join(fixtures, "wifi/proc-net-wireless"), "utf8");
    expect(parseProcWireless(text)).toEqual([
      { interface: "wlp2s0", quality: 56, signal: -54, noise: undefined },
      { interface: "wlan1", quality: 0, signal: undefined, noise: undefined },
    ]);
    expect(parseIwLink(await readFile(join(fixtures, "wifi/iw-link-connected.txt"), "utf8"))).toEqual({
      connected: true,
      ssid: "Home Net 5G",
      frequencyMhz: 5180,
      rxBitrateMbps: 866.7,
      txBitrateMbps: 650,
    });
    expect(parseIwLink(await readFile(join(fixtures, "wifi/iw-link-not-connected.txt"), "utf8"))).toEqual({ connected: false });
  });

  it("reports signal, link quality and bitrates with the SSID as a label, one iw per interface", async () => {
    const proc = await tree(join(root, "wifi-proc"), { "net/wireless": { fixture: "wifi/proc-net-wireless" } });
    const iw = await fakeTool(
      "wifi-iw",
      "iw",
      `case "$2" in wlp2s0) cat "$F/wifi/iw-link-connected.txt";; *) cat "$F/wifi/iw-link-not-connected.txt";; esac`,
    );
    const collector = wifiCollector({ procRoot: proc, iw: iw.path });
    expect(collector).toMatchObject({ name: "wifi", intervalMs: 30_000 });
    const measurements = await run(collector);
    expectWellFormed(measurements);
    expect(await iw.calls()).toEqual(["dev wlp2s0 link", "dev wlan1 link"]);
    const home = { interface: "wlp2s0", ssid: "Home Net 5G" };
    expect(measured(measurements, "node_wifi_connected", home)).toBe(1);
    expect(measured(measurements, "node_wifi_signal_dbm", home)).toBe(-54);
    expect(measured(measurements, "node_wifi_link_quality_ratio", home)).toBeCloseTo(0.8);
    expect(measured(measurements, "node_wifi_receive_bitrate_bits_per_second", home)).toBeCloseTo(866.7e6);
    expect(measured(measurements, "node_wifi_transmit_bitrate_bits_per_second", home)).toBe(650e6);
    expect(measured(measurements, "node_wifi_frequency_hertz", home)).toBe(5.18e9);
    expect(measured(measurements, "node_wifi_noise_dbm", home)).toBeUndefined();
    expect(measured(measurements, "node_wifi_connected", { interface: "wlan1" })).toBe(0);
    expect(measurements.filter((m) => m.labels.interface === "wlan1").map((m) => m.metric)).toEqual([
      "node_wifi_connected",
      "node_wifi_link_quality_ratio",
    ]);
  });

  it("still reports the kernel's figures without iw, and is unsupported without a wireless interface", async () => {
    const proc = await tree(join(root, "wifi-proc-no-iw"), { "net/wireless": { fixture: "wifi/proc-net-wireless" } });
    const measurements = await run(wifiCollector({ procRoot: proc, iw: join(root, "no-such-iw") }));
    expect(measured(measurements, "node_wifi_signal_dbm", { interface: "wlp2s0" })).toBe(-54);
    expect(measured(measurements, "node_wifi_connected", { interface: "wlp2s0" })).toBe(1);
    const header = (await readFile(join(fixtures, "wifi/proc-net-wireless"), "utf8")).split("\n").slice(0, 2).join("\n");
    const empty = await tree(join(root, "wifi-proc-empty"), { "net/wireless": `${header}\n` });
    await expect(run(wifiCollector({ procRoot: empty }))).rejects.toBeInstanceOf(UnsupportedError);
    await expect(run(wifiCollector({ procRoot: join(root, "no-proc") }))).rejects.toBeInstanceOf(UnsupportedError);
  });
});

describe("raspberrypi (fixture device tree, sysfs and vcgencmd)", () => {
  it("parses vcgencmd's answers", () => {
    expect(parseVcgencmd("frequency(1)=500000000\n")).toBe(500_000_000);
    expect(parseVcgencmd("volt=0.8500V\n")).toBe(0.85);
    expect(parseVcgencmd("throttled=0x50005\n")).toBe(0x50005);
    expect(parseVcgencmd('error=1 error_msg="Command not registered"')).toBeUndefined();
    expect(parseVcgencmd(undefined)).toBeUndefined();
  });

  const vcgencmdBody = `case "$*" in "measure_clock core") cat "$F/raspberrypi/vcgencmd-measure_clock-core.txt";; "measure_volts core") cat "$F/raspberrypi/vcgencmd-measure_volts-core.txt";; get_throttled) cat "$F/raspberrypi/vcgencmd-get_throttled.txt";; esac`;

  it("reads clocks, core voltage and throttling flags", async () => {
    const proc = await tree(join(root, "rpi-proc"), { "device-tree/model": { fixture: "raspberrypi/device-tree-model" } });
    const sys = await tree(join(root, "rpi-sys"), {
      "devices/system/cpu/cpu0/cpufreq/scaling_cur_freq": { fixture: "raspberrypi/scaling_cur_freq" },
      "devices/platform/soc/soc:firmware/get_throttled": { fixture: "raspberrypi/get_throttled" },
    });
    const vcgencmd = await fakeTool("rpi-vcgencmd", "vcgencmd", vcgencmdBody);
    const collector = raspberryPiCollector({ procRoot: proc, sysRoot: sys, vcgencmd: vcgencmd.path });
    expect(collector).toMatchObject({ name: "raspberrypi", intervalMs: 30_000 });
    const measurements = await run(collector);
    expectWellFormed(measurements);
    // The flags come from sysfs: vcgencmd is asked only what sysfs lacks.
    expect(await vcgencmd.calls()).toEqual(["measure_clock core", "measure_volts core"]);
    expect(measured(measurements, "node_rpi_cpu_clock_hertz")).toBe(1.5e9);
    expect(measured(measurements, "node_rpi_gpu_clock_hertz")).toBe(5e8);
    expect(measured(measurements, "node_rpi_core_volts")).toBe(0.85);
    const flags = Object.fromEntries(measurements.filter((m) => m.metric === "node_rpi_throttled").map((m) => [m.labels.flag, m.value]));
    // 0x50005: under-voltage and throttled now; both since boot.
    expect(flags).toEqual({
      under_voltage: 1,
      arm_frequency_capped: 0,
      throttled: 1,
      soft_temperature_limit: 0,
      under_voltage_occurred: 1,
      arm_frequency_capped_occurred: 0,
      throttled_occurred: 1,
      soft_temperature_limit_occurred: 0,
    });
  });

  it("asks vcgencmd for the flags on kernels without the sysfs file, goes on without vcgencmd, and is unsupported elsewhere", async () => {
    const proc = await tree(join(root, "rpi-proc-2"), { "device-tree/model": { fixture: "raspberrypi/device-tree-model" } });
    const sys = await tree(join(root, "rpi-sys-2"), {
      "devices/system/cpu/cpu0/cpufreq/scaling_cur_freq": { fixture: "raspberrypi/scaling_cur_freq" },
    });
    const vcgencmd = await fakeTool("rpi-vcgencmd-2", "vcgencmd", vcgencmdBody);
    const withTool = await run(raspberryPiCollector({ procRoot: proc, sysRoot: sys, vcgencmd: vcgencmd.path }));
    expect(await vcgencmd.calls()).toContain("get_throttled");
    expect(measured(withTool, "node_rpi_throttled", { flag: "under_voltage" })).toBe(1);

    const without = await run(raspberryPiCollector({ procRoot: proc, sysRoot: sys, vcgencmd: join(root, "no-vcgencmd") }));
    expect(without).toEqual([{ metric: "node_rpi_cpu_clock_hertz", labels: {}, kind: "gauge", value: 1.5e9 }]);

    const pc = await tree(join(root, "not-rpi"), { "device-tree/model": "Pine64 RockPro64 v2.1\0" });
    await expect(run(raspberryPiCollector({ procRoot: pc, sysRoot: sys }))).rejects.toBeInstanceOf(UnsupportedError);
    await expect(run(raspberryPiCollector({ procRoot: join(root, "no-proc"), sysRoot: join(root, "no-sys") }))).rejects.toBeInstanceOf(
      UnsupportedError,
    );
  });
});

describe("nvidia (fixture nvidia-smi)", () => {
  it("reads every GPU's temperature, use, memory, power and clocks, leaving out what a GPU does not report", async () => {
    const smi = await fakeTool("nvidia", "nvidia-smi", `cat "$F/nvidia-smi/query-gpu.csv"`);
    const collector = nvidiaCollector({ nvidiaSmi: smi.path });
    expect(collector).toMatchObject({ name: "nvidia", intervalMs: 30_000 });
    const measurements = await run(collector);
    expectWellFormed(measurements);
    expect(await smi.calls()).toEqual([
      "--query-gpu=index,uuid,name,temperature.gpu,utilization.gpu,utilization.memory,memory.total,memory.used,power.draw,clocks.sm,clocks.mem,fan.speed --format=csv,noheader,nounits",
    ]);
    const rtx = { gpu: "0", uuid: "GPU-5e5c7f4e-8a6b-9c0d-1e2f-3a4b5c6d7e8f", name: "NVIDIA GeForce RTX 3080" };
    expect(measured(measurements, "nvidia_gpu_temperature_celsius", rtx)).toBe(47);
    expect(measured(measurements, "nvidia_gpu_utilization_ratio", rtx)).toBeCloseTo(0.12);
    expect(measured(measurements, "nvidia_gpu_memory_utilization_ratio", rtx)).toBeCloseTo(0.04);
    expect(measured(measurements, "nvidia_gpu_memory_total_bytes", rtx)).toBe(10240 * 2 ** 20);
    expect(measured(measurements, "nvidia_gpu_memory_used_bytes", rtx)).toBe(1536 * 2 ** 20);
    expect(measured(measurements, "nvidia_gpu_power_watts", rtx)).toBeCloseTo(112.35);
    expect(measured(measurements, "nvidia_gpu_sm_clock_hertz", rtx)).toBe(1710e6);
    expect(measured(measurements, "nvidia_gpu_memory_clock_hertz", rtx)).toBe(9501e6);
    expect(measured(measurements, "nvidia_gpu_fan_speed_ratio", rtx)).toBeCloseTo(0.35);
    const t4 = measurements.filter((m) => m.labels.gpu === "1");
    expect(t4).toHaveLength(8);
    expect(t4.find((m) => m.metric === "nvidia_gpu_fan_speed_ratio")).toBeUndefined();
    expect(parseNvidiaSmi("garbage\n\n")).toEqual([]);
  });

  it("is unsupported without nvidia-smi or without a driver", async () => {
    await expect(run(nvidiaCollector({ nvidiaSmi: join(root, "no-nvidia-smi") }))).rejects.toBeInstanceOf(UnsupportedError);
    const smi = await fakeTool("nvidia-no-driver", "nvidia-smi", `cat "$F/nvidia-smi/no-driver.txt"\nexit 9`);
    await expect(run(nvidiaCollector({ nvidiaSmi: smi.path }))).rejects.toBeInstanceOf(UnsupportedError);
  });
});

describe("smart (fixture smartctl)", () => {
  const body = `case "$*" in
  "--scan -j") cat "$F/smartctl/scan.json";;
  *" /dev/sda") cat "$F/smartctl/sda.json";;
  *" /dev/nvme0") cat "$F/smartctl/nvme0.json";;
  *" /dev/sdb") cat "$F/smartctl/sdb-standby.json"; exit 2;;
esac`;

  it("reads health, temperature, wear and error counts of every disk, leaving sleeping disks asleep", async () => {
    const smartctl = await fakeTool("smart", "smartctl", body);
    const collector = smartCollector({ smartctl: smartctl.path });
    expect(collector).toMatchObject({ name: "smart", intervalMs: 300_000 });
    const measurements = await run(collector);
    expectWellFormed(measurements);
    expect((await smartctl.calls()).sort()).toEqual([
      "--scan -j",
      "-j -a -n standby -d nvme /dev/nvme0",
      "-j -a -n standby -d sat /dev/sda",
      "-j -a -n standby -d sat /dev/sdb",
    ]);
    const sda = { device: "/dev/sda", model: "Samsung SSD 870 EVO 1TB", serial: "S626NF0R123456A" };
    expect(measured(measurements, "smartctl_device_smart_passed", sda)).toBe(1);
    expect(measured(measurements, "smartctl_device_temperature_celsius", sda)).toBe(34);
    expect(measured(measurements, "smartctl_device_power_on_seconds_total", sda)).toBe(21034 * 3600);
    expect(measured(measurements, "smartctl_device_power_cycles_total", sda)).toBe(412);
    expect(measured(measurements, "smartctl_device_reallocated_sectors", sda)).toBe(2);
    expect(measured(measurements, "smartctl_device_pending_sectors", sda)).toBe(0);
    expect(measured(measurements, "smartctl_device_offline_uncorrectable_sectors", sda)).toBe(0);
    const nvme = { device: "/dev/nvme0", model: "WD_BLACK SN770 1TB", serial: "22345F801234" };
    expect(measured(measurements, "smartctl_device_temperature_celsius", nvme)).toBe(41);
    expect(measured(measurements, "smartctl_device_percentage_used_ratio", nvme)).toBeCloseTo(0.03);
    expect(measured(measurements, "smartctl_device_available_spare_ratio", nvme)).toBe(1);
    expect(measured(measurements, "smartctl_device_critical_warning", nvme)).toBe(0);
    expect(measured(measurements, "smartctl_device_media_errors_total", nvme)).toBe(0);
    expect(measurements.filter((m) => m.labels.device === "/dev/sdb")).toEqual([]);
  });

  it("is unsupported without smartctl, without disks, or when no disk may be opened", async () => {
    await expect(run(smartCollector({ smartctl: join(root, "no-smartctl") }))).rejects.toBeInstanceOf(UnsupportedError);
    // Captured on a virtual machine whose only disk is virtio: smartctl finds none.
    const none = await fakeTool("smart-none", "smartctl", `cat "$F/smartctl/scan-none.json"`);
    await expect(run(smartCollector({ smartctl: none.path }))).rejects.toThrow(/finds no disk/);
    const denied = await fakeTool(
      "smart-denied",
      "smartctl",
      `case "$*" in "--scan -j") cat "$F/smartctl/scan.json";; *) cat "$F/smartctl/sda-permission-denied.json"; exit 2;; esac`,
    );
    const failure = run(smartCollector({ smartctl: denied.path }));
    await expect(failure).rejects.toBeInstanceOf(UnsupportedError);
    await expect(failure).rejects.toThrow(/Permission denied/);
  });
});

describe("proxmox (fixture pvesh)", () => {
  it("reports this node's guests, VMs and containers, without templates", async () => {
    const configDir = await tree(join(root, "pve-etc"), { ".version": "{}" });
    const pvesh = await fakeTool("pvesh", "pvesh", `cat "$F/pvesh/cluster-resources-vm.json"`);
    const collector = proxmoxCollector({ pvesh: pvesh.path, configDir, node: "pve1" });
    expect(collector).toMatchObject({ name: "proxmox", intervalMs: 60_000 });
    const measurements = await run(collector);
    expectWellFormed(measurements);
    expect(await pvesh.calls()).toEqual(["get /cluster/resources --type vm --output-format json"]);
    expect([...new Set(measurements.map((m) => `${m.labels.type}/${m.labels.id} ${m.labels.name}`))].sort()).toEqual([
      "lxc/200 pihole",
      "qemu/100 web01",
      "qemu/101 win-test",
    ]);
    const web = { id: "100", name: "web01", type: "qemu" };
    expect(measured(measurements, "pve_guest_up", web)).toBe(1);
    expect(measured(measurements, "pve_guest_cpu_usage_ratio", web)).toBeCloseTo(0.02345);
    expect(measured(measurements, "pve_guest_cpus", web)).toBe(4);
    expect(measured(measurements, "pve_guest_memory_used_bytes", web)).toBe(4_710_252_544);
    expect(measured(measurements, "pve_guest_memory_size_bytes", web)).toBe(8 * 2 ** 30);
    expect(measured(measurements, "pve_guest_network_receive_bytes_total", web)).toBe(58_012_345_678);
    expect(measured(measurements, "pve_guest_disk_written_bytes_total", web)).toBe(7_803_641_856);
    expect(measured(measurements, "pve_guest_uptime_seconds", web)).toBe(1_209_600);
    expect(measured(measurements, "pve_guest_disk_used_bytes", web)).toBeUndefined();
    expect(measured(measurements, "pve_guest_up", { id: "101", name: "win-test", type: "qemu" })).toBe(0);
    expect(measured(measurements, "pve_guest_disk_used_bytes", { id: "200", name: "pihole", type: "lxc" })).toBe(1_573_715_968);
    expect(guestMeasurements({ not: "a list" }, "pve1")).toEqual([]);
  });

  it("is unsupported on a host that is not a Proxmox node", async () => {
    await expect(run(proxmoxCollector({ configDir: join(root, "no-pve") }))).rejects.toBeInstanceOf(UnsupportedError);
    const configDir = await tree(join(root, "pve-etc-2"), { ".version": "{}" });
    await expect(run(proxmoxCollector({ configDir, pvesh: join(root, "no-pvesh") }))).rejects.toBeInstanceOf(UnsupportedError);
  });
});

describe("podman (fake Podman socket with captured answers)", () => {
  let server: Server;
  let socketPath: string;

  beforeAll(async () => {
    socketPath = join(root, "podman.sock");
    const list = await readFile(join(fixtures, "podman/containers.json"), "utf8");
    const stats = await readFile(join(fixtures, "podman/stats-caddy.json"), "utf8");
    const caddy = (JSON.parse(list) as Array<{ Id: string }>)[0]!.Id;
    server = createServer((req, res) => {
      const url = req.url ?? "";
      const body = url === "/containers/json?all=true" ? list : url.startsWith(`/containers/${caddy}/stats`) ? stats : undefined;
      res.writeHead(body ? 200 : 404, { "content-type": "application/json" });
      res.end(body ?? '{"cause":"no such container","message":"no such container","response":404}');
    });
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it("reads Podman's containers next to Docker's, as their own series", async () => {
    const collector = containersCollector({ engine: "podman", socketPath });
    expect(collector).toMatchObject({ name: "podman", intervalMs: 60_000 });
    const measurements = await run(collector);
    expectWellFormed(measurements);
    expect(measured(measurements, "podman_containers", { state: "running" })).toBe(1);
    expect(measured(measurements, "podman_containers", { state: "exited" })).toBe(1);
    const caddy = { name: "caddy", image: "docker.io/library/caddy:2", runtime: "podman" };
    expect(measured(measurements, "container_cpu_usage_seconds_total", caddy)).toBeCloseTo(48.213);
    expect(measured(measurements, "container_memory_usage_bytes", caddy)).toBe(41_943_040);
    expect(measured(measurements, "container_spec_memory_limit_bytes", caddy)).toBe(8_232_689_664);
    expect(measured(measurements, "container_network_receive_bytes_total", { ...caddy, interface: "eth0" })).toBe(91_234_567);
  });

  it("is unsupported without Podman's socket", async () => {
    const failure = run(containersCollector({ engine: "podman", socketPath: join(root, "no-podman.sock") }));
    await expect(failure).rejects.toBeInstanceOf(UnsupportedError);
    await expect(failure).rejects.toThrow(/no Podman socket/);
  });
});

describe("agent (its own runtime)", () => {
  it("reports its memory, CPU, event-loop delay and garbage collections", async () => {
    const collector = runtimeCollector();
    expect(collector).toMatchObject({ name: "agent", intervalMs: 10_000 });
    await run(collector);
    // Work for the event loop and the collector: a delay to measure (how late the schedule's
    // wakeups are), garbage to collect.
    const schedule = new Schedule();
    schedule.every(100, () => undefined);
    await new Promise((resolve) => setTimeout(resolve, 150));
    const end = Date.now() + 400;
    while (Date.now() < end) JSON.stringify(Array.from({ length: 1000 }, (_, i) => ({ i })));
    await new Promise((resolve) => setTimeout(resolve, 150));
    await schedule.stop();
    const measurements = await run(collector);
    expectWellFormed(measurements);
    expect(measured(measurements, "specta_agent_resident_memory_bytes")).toBeGreaterThan(10 * 2 ** 20);
    expect(measured(measurements, "specta_agent_heap_used_bytes")).toBeLessThanOrEqual(measured(measurements, "specta_agent_heap_total_bytes")!);
    expect(measured(measurements, "specta_agent_cpu_seconds_total", { mode: "user" })).toBeGreaterThan(0);
    expect(measured(measurements, "specta_agent_event_loop_delay_seconds", { quantile: "1" })).toBeGreaterThan(0.1);
    expect(measured(measurements, "specta_agent_gc_runs_total", { kind: "minor" })).toBeGreaterThan(0);
    expect(measured(measurements, "specta_agent_gc_seconds_total", { kind: "minor" })).toBeGreaterThan(0);
  });
});

describe("installed packages (fixture dpkg-query, rpm and apk database)", () => {
  it("reads dpkg's installed packages with one dpkg-query, sorted, leaving out removed ones", async () => {
    const debian = await tree(join(root, "dpkg-root"), { "var/lib/dpkg/status": "" });
    const dpkgQuery = await fakeTool("dpkg-query", "dpkg-query", `cat "$F/dpkg-query.txt"`);
    const found = await installedPackages(AbortSignal.timeout(30_000), { root: debian, dpkgQuery: dpkgQuery.path });
    // (sh's echo, which records the call, turns the format's \\t and \\n into tabs and newlines)
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's format syntax
    expect((await dpkgQuery.calls())[0]).toBe("-W -f=${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}");
    // Captured on Debian 12: 934 lines, every one installed ("ii ").
    expect(found?.manager).toBe("dpkg");
    expect(found?.packages).toHaveLength(934);
    expect(found?.packages.find((p) => p.name === "adduser")).toEqual({ name: "adduser", version: "3.134", arch: "all" });
    const names = found!.packages.map((p) => p.name);
    expect(names).toEqual([...names].sort());
  });

  it("reads rpm's list and apk's database", async () => {
    expect(parseRpmQuery(await readFile(join(fixtures, "rpm-qa.txt"), "utf8"))).toEqual([
      { name: "bash", version: "5.2.26-3.fc40", arch: "x86_64" },
      { name: "glibc", version: "2.39-22.fc40", arch: "x86_64" },
      { name: "firefox", version: "131.0-1.fc40", arch: "x86_64" },
      { name: "perl-Errno", version: "1.37-508.fc40", arch: "x86_64" },
      { name: "emacs-filesystem", version: "1:29.4-5.fc40", arch: "noarch" },
    ]);
    expect(parseApkInstalled(await readFile(join(fixtures, "apk-installed"), "utf8"))).toEqual([
      { name: "musl", version: "1.2.5-r0", arch: "x86_64" },
      { name: "busybox", version: "1.36.1-r29", arch: "x86_64" },
    ]);
    const alpine = await tree(join(root, "apk-root"), { "lib/apk/db/installed": { fixture: "apk-installed" } });
    expect(await installedPackages(AbortSignal.timeout(30_000), { root: alpine })).toEqual({
      manager: "apk",
      packages: [
        { name: "busybox", version: "1.36.1-r29", arch: "x86_64" },
        { name: "musl", version: "1.2.5-r0", arch: "x86_64" },
      ],
    });
    expect(await installedPackages(AbortSignal.timeout(30_000), { root: join(root, "no-manager") })).toBeUndefined();
  });
});
