/**
 * The collectors of this platform, each with its default interval.
 *
 * On Linux every collector reads /proc and /sys directly (fs, no process spawned); only
 * `services` runs one process (`systemctl`, every 60 s). Elsewhere a smaller portable set is
 * built on node:os and systeminformation (see portable.ts).
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
import { temperatureCollector } from "./temperature.js";

/** Every collector with its default interval, for this platform. */
export function defaultCollectors(options: { procRoot?: string; sysRoot?: string; dockerSocket?: string }): Collector[] {
  if (process.platform !== "linux") return portableCollectors();
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
  ];
}
