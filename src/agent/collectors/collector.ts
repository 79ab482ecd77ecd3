/**
 * The contract between the agent runtime and its collectors, and the default set for this
 * platform.
 *
 * On Linux every collector reads /proc and /sys directly (fs, no process spawned); only
 * `services` runs one process (`systemctl`, every 60 s). Elsewhere a smaller portable set is
 * built on node:os and systeminformation (see portable.ts).
 */
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

export { UnsupportedError } from "./util.js";

/** One value of one series, measured now. Kind: "counter" (monotonic running total, name ends _total) or "gauge". */
export interface Measurement {
  metric: string;
  labels: Record<string, string>;
  kind: "counter" | "gauge";
  value: number;
}

export interface Collector {
  /** Short name, e.g. "cpu". */
  name: string;
  /** Default interval between runs in ms. */
  intervalMs: number;
  /** One run. Throws when the collector cannot work on this host (the runtime logs that once and goes on). */
  collect(signal: AbortSignal): Promise<Measurement[]>;
}

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
