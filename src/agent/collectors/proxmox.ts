/**
 * proxmox (every 60 s): the guests (QEMU VMs and LXC containers) of this Proxmox VE node, from one
 * `pvesh get /cluster/resources --type vm --output-format json` per run (execFile, no shell), of
 * which this node's guests are kept, so that in a cluster every node's agent reports its own. Templates are left out. Labels `id` (the VMID), `name`
 * and `type` ("qemu" or "lxc"):
 *
 * - `pve_guest_up` (1 when running), `pve_guest_uptime_seconds`;
 * - `pve_guest_cpu_usage_ratio` (share of its CPUs), `pve_guest_cpus`;
 * - `pve_guest_memory_used_bytes`, `pve_guest_memory_size_bytes`, `pve_guest_disk_used_bytes`
 *   (containers only: Proxmox does not see inside a VM's disk), `pve_guest_disk_size_bytes`;
 * - `pve_guest_network_{receive,transmit}_bytes_total`, `pve_guest_disk_{read,written}_bytes_total`.
 *
 * Throws UnsupportedError on a host that is not a Proxmox VE node (no /etc/pve, no pvesh).
 */
import { stat } from "node:fs/promises";
import { hostname } from "node:os";
import { UnsupportedError, type Collector, type Measurement } from "./collector.js";
import { isGone, jsonArray, jsonNumber, jsonRecord, jsonString, runTool } from "./util.js";

const GAUGES: ReadonlyArray<readonly [field: string, metric: string]> = [
  ["uptime", "pve_guest_uptime_seconds"],
  ["cpu", "pve_guest_cpu_usage_ratio"],
  ["maxcpu", "pve_guest_cpus"],
  ["mem", "pve_guest_memory_used_bytes"],
  ["maxmem", "pve_guest_memory_size_bytes"],
  ["maxdisk", "pve_guest_disk_size_bytes"],
];

const COUNTERS: ReadonlyArray<readonly [field: string, metric: string]> = [
  ["netin", "pve_guest_network_receive_bytes_total"],
  ["netout", "pve_guest_network_transmit_bytes_total"],
  ["diskread", "pve_guest_disk_read_bytes_total"],
  ["diskwrite", "pve_guest_disk_written_bytes_total"],
];

export function proxmoxCollector(options: { pvesh?: string; configDir?: string; node?: string; timeoutMs?: number } = {}): Collector {
  const pvesh = options.pvesh ?? "pvesh";
  const configDir = options.configDir ?? "/etc/pve";
  // Proxmox names a node by its short host name.
  const node = options.node ?? hostname().split(".")[0]!;
  return {
    name: "proxmox",
    intervalMs: 60_000,
    async collect(signal) {
      try {
        await stat(configDir);
      } catch (error) {
        if (isGone(error)) throw new UnsupportedError(`not a Proxmox VE node (no ${configDir})`, { cause: error });
        throw error;
      }
      const stdout = await runTool(pvesh, ["get", "/cluster/resources", "--type", "vm", "--output-format", "json"], signal, {
        timeoutMs: options.timeoutMs ?? 20_000,
        maxBytes: 16 * 2 ** 20,
      });
      let resources: unknown;
      try {
        resources = JSON.parse(stdout) as unknown;
      } catch (error) {
        throw new Error("pvesh printed something other than JSON", { cause: error });
      }
      return guestMeasurements(resources, node);
    },
  };
}

/** The measurements of `node`'s guests in pvesh's /cluster/resources list. */
export function guestMeasurements(resources: unknown, node: string): Measurement[] {
  const out: Measurement[] = [];
  for (const item of jsonArray(resources) ?? []) {
    const guest = jsonRecord(item);
    const type = jsonString(guest?.type);
    const vmid = jsonNumber(guest?.vmid);
    if (!guest || (type !== "qemu" && type !== "lxc") || vmid === undefined) continue;
    if (jsonString(guest.node) !== node || jsonNumber(guest.template) === 1) continue;
    const labels = { id: String(vmid), name: jsonString(guest.name) ?? "", type };
    out.push({ metric: "pve_guest_up", labels, kind: "gauge", value: jsonString(guest.status) === "running" ? 1 : 0 });
    for (const [field, metric] of GAUGES) {
      const value = jsonNumber(guest[field]);
      if (value !== undefined) out.push({ metric, labels, kind: "gauge", value });
    }
    // A VM's "disk" is always 0: Proxmox cannot see inside it.
    const disk = jsonNumber(guest.disk);
    if (type === "lxc" && disk !== undefined) out.push({ metric: "pve_guest_disk_used_bytes", labels, kind: "gauge", value: disk });
    for (const [field, metric] of COUNTERS) {
      const value = jsonNumber(guest[field]);
      if (value !== undefined && value >= 0) out.push({ metric, labels, kind: "counter", value });
    }
  }
  return out;
}
