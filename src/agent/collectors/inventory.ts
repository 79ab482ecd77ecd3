/**
 * What the agent tells the daemon about its host at enrolment. On Linux everything comes from
 * node:os, /etc/os-release and /proc/stat (no process); elsewhere the OS name and version come
 * from systeminformation's osInfo().
 */
import { createHmac } from "node:crypto";
import { readFile } from "node:fs/promises";
import { cpus, hostname, machine, release, totalmem, uptime } from "node:os";

export interface HostInventory {
  hostname: string;
  /** Distribution or system name, e.g. "Debian GNU/Linux", "macOS". */
  os: string;
  /** Its version, e.g. "12", "14.5"; "" when unknown. */
  osVersion: string;
  /** Kernel release, e.g. "6.1.0-18-amd64". */
  kernel: string;
  /** Machine architecture as the kernel names it (uname -m): "x86_64", "aarch64", "arm64". */
  arch: string;
  /** Model of the first CPU, e.g. "AMD EPYC 7B13". */
  cpuModel: string;
  /** Logical CPUs. */
  cpuCount: number;
  memoryBytes: number;
  bootTime: Date;
}

export async function hostInventory(): Promise<HostInventory> {
  const processors = cpus();
  const { os, osVersion } = process.platform === "linux" ? await linuxRelease() : await otherRelease();
  return {
    hostname: hostname(),
    os,
    osVersion,
    kernel: release(),
    arch: machine(),
    cpuModel: processors[0]?.model.trim().replace(/\s+/g, " ") ?? "",
    cpuCount: processors.length,
    memoryBytes: totalmem(),
    bootTime: await bootTime(),
  };
}

/** os-release(5): KEY=value lines, values optionally quoted with shell escapes. */
export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const match = /^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*?)\s*$/.exec(line);
    if (!match) continue;
    let value = match[2]!;
    const quote = value[0];
    if ((quote === '"' || quote === "'") && value.endsWith(quote) && value.length >= 2) {
      value = value.slice(1, -1);
      if (quote === '"') value = value.replace(/\\([\\"$`])/g, "$1");
    }
    out[match[1]!] = value;
  }
  return out;
}

async function linuxRelease(): Promise<{ os: string; osVersion: string }> {
  for (const path of ["/etc/os-release", "/usr/lib/os-release"]) {
    try {
      const fields = parseOsRelease(await readFile(path, "utf8"));
      return { os: fields.NAME ?? "Linux", osVersion: fields.VERSION_ID ?? fields.VERSION ?? fields.BUILD_ID ?? "" };
    } catch {
      // try the next file
    }
  }
  return { os: "Linux", osVersion: "" };
}

async function otherRelease(): Promise<{ os: string; osVersion: string }> {
  const si = await import("systeminformation");
  const info = await si.osInfo();
  return { os: info.distro || info.platform, osVersion: info.release };
}

async function bootTime(): Promise<Date> {
  if (process.platform === "linux") {
    try {
      const btime = /^btime\s+(\d+)/m.exec(await readFile("/proc/stat", "latin1"))?.[1];
      if (btime !== undefined) return new Date(Number(btime) * 1000);
    } catch {
      // fall back to the uptime
    }
  }
  return new Date(Math.round((Date.now() - uptime() * 1000) / 1000) * 1000);
}

/** Specta's application id for app-specific machine ids (systemd's sd_id128_get_machine_app_specific). */
export const machineIdApp = "10d5ed767b8241afae0a1e72fd32046a";

/**
 * What identifies this machine to the daemon, so that enrolling it again keeps its agent id:
 * the first of `files` holding a machine id (machine-id(5)), hashed the way systemd makes
 * app-specific ids (HMAC-SHA256 keyed with the machine id, cut to a v4 UUID), because the machine
 * id itself must not leave the host. `systemd-id128 machine-id --app-specific=<machineIdApp>`
 * prints the same. "" when there is none (not Linux; a container without one).
 */
export async function machineId(files = ["/etc/machine-id", "/var/lib/dbus/machine-id"]): Promise<string> {
  for (const file of files) {
    const text = await readFile(file, "latin1").catch(() => "");
    const id = text.trim();
    // Skips "uninitialized" (early boot) and empty files (images made to get a new id).
    if (!/^[0-9a-f]{32}$/.test(id)) continue;
    const app = createHmac("sha256", Buffer.from(id, "hex")).update(Buffer.from(machineIdApp, "hex")).digest().subarray(0, 16);
    app[6] = (app[6]! & 0x0f) | 0x40;
    app[8] = (app[8]! & 0x3f) | 0x80;
    return app.toString("hex");
  }
  return "";
}
