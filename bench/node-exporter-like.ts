/**
 * Deterministic node_exporter-like series for the store's benchmarks: per host 200 series, 65 %
 * counters, 24 % gauges, 11 % constants, the shapes node_exporter reports (CPU seconds in
 * hundredths, byte and packet counters, page-aligned memory, load averages in hundredths, …).
 * The same generator feeds Specta and the peers it is compared with, so every store gets the
 * same numbers.
 */

export type SeriesKindName = "counter" | "gauge";

export interface GeneratedSeries {
  metric: string;
  labels: Record<string, string>;
  kind: SeriesKindName;
  /** The value at sample `i` (i = 0, 1, …): pure, so any time range can be generated on its own. */
  valueAt(i: number): number;
}

/** A small, fast, seedable PRNG (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Deterministic noise in [0, 1) for (seed, i). */
function noise(seed: number, i: number): number {
  return prng(seed * 2654435761 + i * 40503)();
}

/**
 * A counter whose increments are `scale` × noise, rounded to `decimals`, summed from 0.
 * Cumulative sums are kept per series and extended on demand so that valueAt stays O(1)
 * amortised for the sequential reads the benchmarks do.
 */
function counter(seed: number, scale: number, decimals: number, start: number): (i: number) => number {
  const sums: number[] = [start];
  const p = 10 ** decimals;
  return (i) => {
    for (let k = sums.length; k <= i; k++) sums.push(sums[k - 1]! + Math.round(scale * noise(seed, k) * p));
    return decimals === 0 ? sums[i]! : sums[i]! / p;
  };
}

function gauge(seed: number, base: number, spread: number, decimals: number, step = 1): (i: number) => number {
  const p = 10 ** decimals;
  return (i) => {
    const slow = Math.sin((i + seed) / 60) * spread;
    const jitter = (noise(seed, i) - 0.5) * spread * 0.2;
    const v = base + slow + jitter;
    return step === 1 ? Math.round(v * p) / p : Math.round(v / step) * step;
  };
}

const cpuModes: [string, number][] = [
  ["idle", 9.5],
  ["user", 0.4],
  ["system", 0.15],
  ["iowait", 0.02],
  ["irq", 0],
  ["softirq", 0.01],
  ["steal", 0],
  ["nice", 0],
];

/** The 200 series of host `host` (0-based). */
export function hostSeries(host: number): GeneratedSeries[] {
  const out: GeneratedSeries[] = [];
  const hostLabel = `host-${String(host).padStart(3, "0")}`;
  let seed = host * 1000 + 1;
  const add = (metric: string, labels: Record<string, string>, kind: SeriesKindName, valueAt: (i: number) => number) =>
    out.push({ metric, labels: { host: hostLabel, ...labels }, kind, valueAt });

  // 64 CPU counters: 8 cores × 8 modes, in hundredths of a second (USER_HZ).
  for (let cpu = 0; cpu < 8; cpu++) {
    for (const [mode, perSample] of cpuModes) {
      const s = seed++;
      add("node_cpu_seconds_total", { cpu: String(cpu), mode }, "counter", perSample === 0 ? () => 0 : counter(s, perSample * 2, 2, 100_000 + s));
    }
  }
  // 66 more counters: network, disks and kernel activity.
  for (const device of ["eth0", "eth1", "lo"]) {
    for (const [metric, scale] of [
      ["node_network_receive_bytes_total", 200_000],
      ["node_network_transmit_bytes_total", 150_000],
      ["node_network_receive_packets_total", 300],
      ["node_network_transmit_packets_total", 250],
      ["node_network_receive_errs_total", 0.02],
      ["node_network_receive_drop_total", 0.05],
      ["node_network_transmit_errs_total", 0.01],
      ["node_network_transmit_drop_total", 0.01],
    ] as const) {
      add(metric, { device }, "counter", counter(seed++, scale, 0, 1_000_000));
    }
  }
  for (const device of ["sda", "sdb", "nvme0n1"]) {
    for (const [metric, scale, decimals] of [
      ["node_disk_reads_completed_total", 40, 0],
      ["node_disk_writes_completed_total", 90, 0],
      ["node_disk_read_bytes_total", 800_000, 0],
      ["node_disk_written_bytes_total", 1_500_000, 0],
      ["node_disk_read_time_seconds_total", 0.05, 3],
      ["node_disk_write_time_seconds_total", 0.2, 3],
      ["node_disk_io_time_seconds_total", 0.3, 3],
      ["node_disk_io_time_weighted_seconds_total", 0.4, 3],
    ] as const) {
      add(metric, { device }, "counter", counter(seed++, scale, decimals, 5_000_000));
    }
  }
  for (const [metric, scale] of [
    ["node_context_switches_total", 40_000],
    ["node_intr_total", 30_000],
    ["node_forks_total", 20],
    ["node_vmstat_pgfault", 50_000],
    ["node_vmstat_pgmajfault", 1],
    ["node_vmstat_pgpgin", 3_000],
    ["node_vmstat_pgpgout", 6_000],
    ["node_vmstat_pswpin", 0.01],
    ["node_vmstat_pswpout", 0.01],
    ["node_netstat_Tcp_ActiveOpens", 10],
    ["node_netstat_Tcp_PassiveOpens", 8],
    ["node_netstat_Tcp_RetransSegs", 2],
    ["node_netstat_Tcp_InSegs", 5_000],
    ["node_netstat_Tcp_OutSegs", 4_500],
    ["node_netstat_Udp_InDatagrams", 300],
    ["node_netstat_Udp_OutDatagrams", 280],
    ["node_timex_pps_calibration_total", 0],
    ["node_schedstat_timeslices_total", 10_000],
  ] as const) {
    add(metric, {}, "counter", counter(seed++, scale, 0, 10_000_000));
  }
  // 48 gauges: memory (page-aligned bytes), filesystems, load, processes, temperatures, entropy.
  for (const [metric, base, spread] of [
    ["node_memory_MemFree_bytes", 2e9, 3e8],
    ["node_memory_MemAvailable_bytes", 9e9, 4e8],
    ["node_memory_Buffers_bytes", 3e8, 2e7],
    ["node_memory_Cached_bytes", 6e9, 3e8],
    ["node_memory_Active_bytes", 5e9, 3e8],
    ["node_memory_Inactive_bytes", 3e9, 2e8],
    ["node_memory_Dirty_bytes", 2e6, 2e6],
    ["node_memory_Slab_bytes", 4e8, 1e7],
    ["node_memory_Shmem_bytes", 1e8, 5e6],
    ["node_memory_Committed_AS_bytes", 1.2e10, 5e8],
    ["node_memory_SwapFree_bytes", 2e9, 1e6],
    ["node_memory_Mapped_bytes", 5e8, 2e7],
  ] as const) {
    add(metric, {}, "gauge", gauge(seed++, base, spread, 0, 4096));
  }
  for (const mountpoint of ["/", "/var", "/home", "/boot"]) {
    add("node_filesystem_avail_bytes", { mountpoint }, "gauge", gauge(seed++, 5e10, 1e8, 0, 4096));
    add("node_filesystem_free_bytes", { mountpoint }, "gauge", gauge(seed++, 5.5e10, 1e8, 0, 4096));
    add("node_filesystem_files_free", { mountpoint }, "gauge", gauge(seed++, 3e6, 1e3, 0));
  }
  for (const [metric, base, spread, decimals] of [
    ["node_load1", 0.8, 0.6, 2],
    ["node_load5", 0.7, 0.3, 2],
    ["node_load15", 0.6, 0.2, 2],
    ["node_procs_running", 3, 2, 0],
    ["node_procs_blocked", 0.5, 0.5, 0],
    ["node_entropy_available_bits", 3500, 200, 0],
    ["node_sockstat_TCP_inuse", 40, 10, 0],
    ["node_sockstat_sockets_used", 300, 30, 0],
    ["node_filefd_allocated", 2500, 100, 0],
    ["node_nf_conntrack_entries", 800, 200, 0],
    ["node_timex_offset_seconds", 0.0001, 0.0002, 6],
    ["node_timex_frequency_adjustment_ratio", 1.00001, 0.00001, 8],
  ] as const) {
    add(metric, {}, "gauge", gauge(seed++, base, spread, decimals));
  }
  for (let zone = 0; zone < 12; zone++) {
    add("node_hwmon_temp_celsius", { chip: "coretemp", sensor: `temp${zone}` }, "gauge", gauge(seed++, 45, 8, 0));
  }
  // 22 constants: sizes, totals and info series.
  for (const mountpoint of ["/", "/var", "/home", "/boot"]) {
    add("node_filesystem_size_bytes", { mountpoint }, "gauge", () => 1.0737418e11);
    add("node_filesystem_files", { mountpoint }, "gauge", () => 6_553_600);
    add("node_filesystem_readonly", { mountpoint }, "gauge", () => 0);
  }
  for (const [metric, value] of [
    ["node_memory_MemTotal_bytes", 16_684_449_792],
    ["node_memory_SwapTotal_bytes", 2_147_479_552],
    ["node_boot_time_seconds", 1_764_547_200],
    ["node_uname_info", 1],
    ["node_os_info", 1],
    ["node_exporter_build_info", 1],
    ["node_nf_conntrack_entries_limit", 262_144],
    ["node_filefd_maximum", 9_223_372_036],
    ["node_cooling_device_max_state", 10],
    ["node_network_mtu_bytes", 1500],
  ] as const) {
    add(metric, {}, "gauge", () => value);
  }
  return out;
}
