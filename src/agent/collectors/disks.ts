/**
 * disks (every 60 s): one set of gauges per mounted filesystem, from /proc/self/mounts and
 * statfs(2) (`fs.statfs`), with the labels `mountpoint`, `device` and `fstype`:
 *
 * - `node_filesystem_size_bytes`, `node_filesystem_used_bytes` (size − free, as df's "Used"),
 *   `node_filesystem_free_bytes` (free blocks), `node_filesystem_avail_bytes` (free blocks an
 *   unprivileged user may take, df's "Avail");
 * - `node_filesystem_files` and `node_filesystem_files_free` (inodes);
 * - `node_filesystem_readonly` (1 when mounted read-only);
 * - `node_filesystem_device_error` (1 when statfs failed or did not answer in time; the other
 *   gauges of that mount are then left out).
 *
 * Pseudo and in-memory filesystems (proc, sysfs, cgroup, tmpfs, devtmpfs, …) are skipped, as are
 * mounts under /proc, /sys, /dev and the per-container layers of Docker, containerd and podman;
 * overlay (a container's root) is kept. A mount seen twice is reported once (the last one, which
 * is the one visible). A statfs that hangs (a dead network filesystem) is abandoned after a
 * timeout and not tried again until it returns, so it never holds more than one thread.
 */
import { statfs as fsStatfs } from "node:fs/promises";
import type { Collector, Measurement } from "./collector.js";
import { errorCode, mapPool, readText } from "./util.js";

export const PSEUDO_FILESYSTEMS: ReadonlySet<string> = new Set([
  "autofs",
  "binfmt_misc",
  "bpf",
  "cgroup",
  "cgroup2",
  "configfs",
  "debugfs",
  "devpts",
  "devtmpfs",
  "efivarfs",
  "fusectl",
  "hugetlbfs",
  "mqueue",
  "nsfs",
  "proc",
  "procfs",
  "pstore",
  "ramfs",
  "rpc_pipefs",
  "securityfs",
  "selinuxfs",
  "sysfs",
  "tmpfs",
  "tracefs",
  "nfsd",
  "fuse.lxcfs",
  "fuse.gvfsd-fuse",
  "fuse.portal",
  "iso9660",
  "squashfs",
  "erofs",
]);

const SKIPPED_MOUNTPOINTS =
  /^\/(dev|proc|sys|run\/credentials\/.+|run\/containerd\/.+|var\/lib\/docker\/.+|var\/lib\/containers\/storage\/.+|var\/lib\/kubelet\/pods\/.+)($|\/)/;

/** What the collector needs from statfs(2); `fs.statfs` returns more. */
export interface FsStats {
  bsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
}

export interface Mount {
  device: string;
  mountpoint: string;
  fstype: string;
  readonly: boolean;
}

export function disksCollector(
  options: { procRoot?: string; statfs?: (path: string) => Promise<FsStats>; statfsTimeoutMs?: number } = {},
): Collector {
  const procRoot = options.procRoot ?? "/proc";
  const statfs = options.statfs ?? ((path: string) => fsStatfs(path));
  const timeoutMs = options.statfsTimeoutMs ?? 5_000;
  /** Mount points whose statfs has not returned yet. */
  const pending = new Set<string>();

  const statMount = async (mountpoint: string): Promise<FsStats | undefined> => {
    if (pending.has(mountpoint)) return undefined;
    pending.add(mountpoint);
    const call = statfs(mountpoint).finally(() => pending.delete(mountpoint));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), timeoutMs);
      timer.unref();
    });
    try {
      return await Promise.race([call, timeout]);
    } catch (error) {
      // Permission denied, stale file handle, …: reported as a device error.
      if (errorCode(error) === undefined) throw error;
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  };

  return {
    name: "disks",
    intervalMs: 60_000,
    async collect(signal) {
      const mounts = selectMounts(parseMounts(await readText(`${procRoot}/self/mounts`, signal)));
      const stats = await mapPool(mounts, 4, (mount) => {
        signal.throwIfAborted();
        return statMount(mount.mountpoint);
      });
      signal.throwIfAborted();
      const out: Measurement[] = [];
      mounts.forEach((mount, i) => {
        const labels = { mountpoint: mount.mountpoint, device: mount.device, fstype: mount.fstype };
        const s = stats[i];
        if (s !== undefined && s.blocks === 0) return; // a size-less filesystem: nothing to measure
        const gauge = (metric: string, value: number): void => {
          out.push({ metric, labels, kind: "gauge", value });
        };
        gauge("node_filesystem_device_error", s === undefined ? 1 : 0);
        gauge("node_filesystem_readonly", mount.readonly ? 1 : 0);
        if (s === undefined) return;
        gauge("node_filesystem_size_bytes", s.blocks * s.bsize);
        gauge("node_filesystem_used_bytes", (s.blocks - s.bfree) * s.bsize);
        gauge("node_filesystem_free_bytes", s.bfree * s.bsize);
        gauge("node_filesystem_avail_bytes", s.bavail * s.bsize);
        gauge("node_filesystem_files", s.files);
        gauge("node_filesystem_files_free", s.ffree);
      });
      return out;
    },
  };
}

/** /proc/self/mounts lines: device mountpoint fstype options 0 0 (spaces escaped as \040). */
export function parseMounts(text: string): Mount[] {
  const out: Mount[] = [];
  for (const line of text.split("\n")) {
    const fields = line.split(" ");
    if (fields.length < 4) continue;
    out.push({
      device: unescapeMount(fields[0]!),
      mountpoint: unescapeMount(fields[1]!),
      fstype: fields[2]!,
      readonly: fields[3]!.split(",").includes("ro"),
    });
  }
  return out;
}

/** Real filesystems only, each mount point once (the last mount on a path is the visible one). */
export function selectMounts(mounts: readonly Mount[]): Mount[] {
  const byMountpoint = new Map<string, Mount>();
  for (const mount of mounts) {
    if (PSEUDO_FILESYSTEMS.has(mount.fstype) || SKIPPED_MOUNTPOINTS.test(mount.mountpoint)) {
      byMountpoint.delete(mount.mountpoint);
      continue;
    }
    byMountpoint.delete(mount.mountpoint);
    byMountpoint.set(mount.mountpoint, mount);
  }
  return [...byMountpoint.values()];
}

function unescapeMount(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}
