/**
 * diskio (every 5 s): per block device counters from /proc/diskstats, as in node_exporter, with
 * the label `device`:
 *
 * - `node_disk_reads_completed_total`, `node_disk_writes_completed_total` (operations);
 * - `node_disk_read_bytes_total`, `node_disk_written_bytes_total` (diskstats sectors are always
 *   512 bytes);
 * - `node_disk_read_time_seconds_total`, `node_disk_write_time_seconds_total` (time spent by all
 *   reads / writes), `node_disk_io_time_seconds_total` (time the device was busy);
 * - `node_disk_io_now` gauge (operations in flight).
 *
 * Skipped: loop, ram, zram and floppy devices, and partitions whose whole disk is listed too (the
 * disk's counters already include them). Whole disks are the entries of /sys/block (listed once a
 * minute); without it, a partition is recognised by its name (sda1 of sda, nvme0n1p1 of nvme0n1).
 */
import type { Collector, Measurement } from "./collector.js";
import { FieldScanner, heldFile, listDir } from "./util.js";

const SKIPPED_DEVICES = /^(loop|ram|zram|fd)\d+$/;
const wholeDisksListedEveryMs = 60_000;

export function diskIoCollector(options: { procRoot?: string; sysRoot?: string } = {}): Collector {
  const procRoot = options.procRoot ?? "/proc";
  const readDiskstats = heldFile(`${procRoot}/diskstats`);
  const sysRoot = options.sysRoot ?? "/sys";
  // /sys/block is listed once a minute, not every 5 s: a disk added since is told from a
  // partition by its name meanwhile (sdb has no disk "sd"), which is what the listing would say.
  let wholeDisks: { names: ReadonlySet<string> | undefined; listedAt: number } | undefined;
  return {
    name: "diskio",
    intervalMs: 5_000,
    async collect(signal) {
      const text = await readDiskstats(signal);
      if (wholeDisks === undefined || performance.now() - wholeDisks.listedAt >= wholeDisksListedEveryMs) {
        const names = await listDir(`${sysRoot}/block`);
        wholeDisks = { names: names === undefined ? undefined : new Set(names), listedAt: performance.now() };
      }
      return parseDiskstats(text, wholeDisks.names);
    },
  };
}

/**
 * Lines such as " 254  0 vda 29506 5830 1618498 6076 245444 118181 31511728 201542 0 44684 …"
 * (major, minor, name, then at least 11 counters).
 */
export function parseDiskstats(text: string, wholeDisks?: ReadonlySet<string>): Measurement[] {
  // "major minor name" and at least 11 numbers (17 on current kernels).
  const rows: Array<{ device: string; fields: number[] }> = [];
  const names = new Set<string>();
  const skipped: number[] = [];
  const scan = new FieldScanner(text);
  do {
    scan.skip();
    scan.skip();
    const device = scan.word();
    if (device === "") continue;
    // Loop and RAM devices are read only for their names, which partitions are told apart by.
    const fields = SKIPPED_DEVICES.test(device) ? skipped : [];
    if (scan.numbers(fields, 11) < 11) continue;
    names.add(device);
    if (fields !== skipped) rows.push({ device, fields });
  } while (scan.nextLine());
  const out: Measurement[] = [];
  for (const { device, fields } of rows) {
    if (!wholeDisks?.has(device) && parentDisk(device, names) !== undefined) continue;
    const labels = { device };
    const push = (metric: string, kind: "counter" | "gauge", field: number, scale: number, divide: boolean): void => {
      const raw = fields[field]!;
      if (Number.isNaN(raw)) return;
      out.push({ metric, labels, kind, value: divide ? raw / scale : raw * scale });
    };
    push("node_disk_reads_completed_total", "counter", 0, 1, false);
    push("node_disk_read_bytes_total", "counter", 2, 512, false);
    push("node_disk_read_time_seconds_total", "counter", 3, 1000, true);
    push("node_disk_writes_completed_total", "counter", 4, 1, false);
    push("node_disk_written_bytes_total", "counter", 6, 512, false);
    push("node_disk_write_time_seconds_total", "counter", 7, 1000, true);
    push("node_disk_io_now", "gauge", 8, 1, false);
    push("node_disk_io_time_seconds_total", "counter", 9, 1000, true);
  }
  return out;
}

/** The listed whole disk that `device` is a partition of, by name: sda1 → sda, nvme0n1p2 → nvme0n1. */
function parentDisk(device: string, names: ReadonlySet<string>): string | undefined {
  // A disk whose name ends in a digit numbers its partitions after a "p" (nvme0n1p1, mmcblk0p1).
  for (let cut = device.length - 1; cut > 0; cut--) {
    const suffix = device.slice(cut);
    const disk = device.slice(0, cut);
    if (!/^p?\d+$/.test(suffix)) break;
    if (!names.has(disk)) continue;
    const endsInDigit = /\d$/.test(disk);
    if (endsInDigit ? suffix.startsWith("p") : /^\d+$/.test(suffix)) return disk;
  }
  return undefined;
}
