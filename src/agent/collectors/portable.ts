/**
 * Collectors for systems other than Linux (macOS, Windows, the BSDs), with the same metric names
 * as on Linux where the same quantity is available:
 *
 * - cpu (5 s): `node_cpu_seconds_total{cpu,mode}` and `node_cpu_all_seconds_total{mode}` from
 *   node:os (modes user, nice, system, idle, irq; no process), `node_load1/5/15` except on
 *   Windows, which has no load average;
 * - memory (10 s): `node_memory_{total,available,free,buffers,cached,swap_total,swap_free}_bytes`
 *   from systeminformation's mem();
 * - disks (60 s): `node_filesystem_{size,used,avail}_bytes` and `node_filesystem_readonly`
 *   {mountpoint,device,fstype} from systeminformation's fsSize() (no inode counts there);
 * - network (5 s): `node_network_{receive,transmit}_{bytes,errs,drop}_total{device}` from
 *   systeminformation's networkStats() (no packet counts there).
 *
 * systeminformation runs system tools (vm_stat, df, netstat, PowerShell …) on these systems; it
 * is loaded only when one of these collectors first runs, so a Linux agent never loads it.
 */
import { cpus, loadavg } from "node:os";
import type { Collector, Measurement } from "./collector.js";
import { PSEUDO_FILESYSTEMS } from "./disks.js";

const OS_CPU_MODES: ReadonlyArray<readonly ["user" | "nice" | "sys" | "idle" | "irq", string]> = [
  ["user", "user"],
  ["nice", "nice"],
  ["sys", "system"],
  ["idle", "idle"],
  ["irq", "irq"],
];

export function portableCollectors(): Collector[] {
  return [portableCpuCollector(), portableMemoryCollector(), portableDisksCollector(), portableNetworkCollector()];
}

export function portableCpuCollector(): Collector {
  return {
    name: "cpu",
    intervalMs: 5_000,
    async collect(signal) {
      signal.throwIfAborted();
      const out: Measurement[] = [];
      const all = new Map<string, number>();
      cpus().forEach((core, index) => {
        for (const [field, mode] of OS_CPU_MODES) {
          const seconds = core.times[field] / 1000; // node:os reports milliseconds
          all.set(mode, (all.get(mode) ?? 0) + seconds);
          out.push({ metric: "node_cpu_seconds_total", labels: { cpu: String(index), mode }, kind: "counter", value: seconds });
        }
      });
      for (const [mode, seconds] of all) out.push({ metric: "node_cpu_all_seconds_total", labels: { mode }, kind: "counter", value: seconds });
      if (process.platform !== "win32") {
        const [one, five, fifteen] = loadavg();
        out.push({ metric: "node_load1", labels: {}, kind: "gauge", value: one ?? 0 });
        out.push({ metric: "node_load5", labels: {}, kind: "gauge", value: five ?? 0 });
        out.push({ metric: "node_load15", labels: {}, kind: "gauge", value: fifteen ?? 0 });
      }
      return out;
    },
  };
}

export function portableMemoryCollector(): Collector {
  return {
    name: "memory",
    intervalMs: 10_000,
    async collect(signal) {
      const si = await import("systeminformation");
      const m = await si.mem();
      signal.throwIfAborted();
      const gauges: Array<[string, number]> = [
        ["node_memory_total_bytes", m.total],
        ["node_memory_available_bytes", m.available],
        ["node_memory_free_bytes", m.free],
        ["node_memory_buffers_bytes", m.buffers],
        ["node_memory_cached_bytes", m.cached],
        ["node_memory_swap_total_bytes", m.swaptotal],
        ["node_memory_swap_free_bytes", m.swapfree],
      ];
      return gauges.filter(([, value]) => Number.isFinite(value)).map(([metric, value]) => ({ metric, labels: {}, kind: "gauge", value }));
    },
  };
}

export function portableDisksCollector(): Collector {
  return {
    name: "disks",
    intervalMs: 60_000,
    async collect(signal) {
      const si = await import("systeminformation");
      const filesystems = await si.fsSize();
      signal.throwIfAborted();
      const out: Measurement[] = [];
      for (const fs of filesystems) {
        if (PSEUDO_FILESYSTEMS.has(fs.type) || fs.type === "devfs" || !(fs.size > 0)) continue;
        const labels = { mountpoint: fs.mount, device: fs.fs, fstype: fs.type };
        out.push({ metric: "node_filesystem_size_bytes", labels, kind: "gauge", value: fs.size });
        out.push({ metric: "node_filesystem_used_bytes", labels, kind: "gauge", value: fs.used });
        out.push({ metric: "node_filesystem_avail_bytes", labels, kind: "gauge", value: fs.available });
        if (fs.rw !== null) out.push({ metric: "node_filesystem_readonly", labels, kind: "gauge", value: fs.rw ? 0 : 1 });
      }
      return out;
    },
  };
}

export function portableNetworkCollector(): Collector {
  return {
    name: "network",
    intervalMs: 5_000,
    async collect(signal) {
      const si = await import("systeminformation");
      const interfaces = await si.networkStats("*");
      signal.throwIfAborted();
      const out: Measurement[] = [];
      for (const n of interfaces) {
        const labels = { device: n.iface };
        const counters: Array<[string, number]> = [
          ["node_network_receive_bytes_total", n.rx_bytes],
          ["node_network_receive_errs_total", n.rx_errors],
          ["node_network_receive_drop_total", n.rx_dropped],
          ["node_network_transmit_bytes_total", n.tx_bytes],
          ["node_network_transmit_errs_total", n.tx_errors],
          ["node_network_transmit_drop_total", n.tx_dropped],
        ];
        for (const [metric, value] of counters) {
          if (Number.isFinite(value)) out.push({ metric, labels, kind: "counter", value });
        }
      }
      return out;
    },
  };
}
