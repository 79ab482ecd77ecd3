/**
 * The collectors of this platform, each with its default interval.
 *
 * On Linux the frequent collectors read /proc and /sys directly (fs, no process spawned). Those
 * that ask a foreign tool run every 30 s or less often, one process per run (per interface or
 * disk for wifi and smart): `systemctl` (services), `iw` (wifi), `vcgencmd` (raspberrypi),
 * `nvidia-smi` (nvidia), `pvesh` (proxmox), `smartctl` (smart). A collector whose hardware or
 * tool is missing says so once and is asked again only every 10 minutes (agent.ts). Elsewhere a
 * smaller portable set is built on node:os and systeminformation (see portable.ts).
 */
import type { Collector } from "./collector.js";
import { containersCollector } from "./containers.js";
import { cpuCollector } from "./cpu.js";
import { diskIoCollector } from "./diskio.js";
import { disksCollector } from "./disks.js";
import { memoryCollector } from "./memory.js";
import { networkCollector } from "./network.js";
import { portableCollectors } from "./portable.js";
import { processesCollector } from "./processes.js";
import { servicesCollector } from "./services.js";
import { systemCollector } from "./system.js";
import { nvidiaCollector } from "./nvidia.js";
import { proxmoxCollector } from "./proxmox.js";
import { raspberryPiCollector } from "./raspberrypi.js";
import { runtimeCollector } from "./runtime.js";
import { smartCollector } from "./smart.js";
import { temperatureCollector } from "./temperature.js";
import { wifiCollector } from "./wifi.js";

/** Every collector with its default interval, for this platform. */
export function defaultCollectors(options: { procRoot?: string; sysRoot?: string; dockerSocket?: string }): Collector[] {
  if (process.platform !== "linux") return [...portableCollectors(), runtimeCollector()];
  const { procRoot, sysRoot, dockerSocket } = options;
  return [
    cpuCollector({ procRoot }),
    memoryCollector({ procRoot }),
    disksCollector({ procRoot }),
    diskIoCollector({ procRoot, sysRoot }),
    networkCollector({ procRoot }),
    processesCollector({ procRoot }),
    servicesCollector(),
    temperatureCollector({ sysRoot }),
    containersCollector({ socketPath: dockerSocket }),
    systemCollector({ procRoot }),
    wifiCollector({ procRoot }),
    raspberryPiCollector({ procRoot, sysRoot }),
    nvidiaCollector(),
    smartCollector(),
    proxmoxCollector(),
    containersCollector({ engine: "podman" }),
    runtimeCollector(),
  ];
}
