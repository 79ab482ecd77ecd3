/**
 * nvidia (every 30 s): NVIDIA GPUs, from one `nvidia-smi --query-gpu=… --format=csv,noheader,nounits`
 * per run (execFile, no shell), one line per GPU. Labels `gpu` (its index), `uuid` and `name`:
 *
 * - `nvidia_gpu_temperature_celsius`, `nvidia_gpu_power_watts`;
 * - `nvidia_gpu_utilization_ratio` (share of time a kernel ran), `nvidia_gpu_memory_utilization_ratio`
 *   (share of time memory was read or written), `nvidia_gpu_fan_speed_ratio`;
 * - `nvidia_gpu_memory_total_bytes`, `nvidia_gpu_memory_used_bytes`;
 * - `nvidia_gpu_sm_clock_hertz`, `nvidia_gpu_memory_clock_hertz`.
 *
 * A field the GPU does not report ("[N/A]", "[Not Supported]") is left out. Throws
 * UnsupportedError when nvidia-smi is not installed or finds no driver.
 */
import { UnsupportedError, type Collector, type Measurement } from "./collector.js";
import { runTool } from "./util.js";

/** The queried fields, in order; each is a column of the output. */
export const NVIDIA_FIELDS = [
  "index",
  "uuid",
  "name",
  "temperature.gpu",
  "utilization.gpu",
  "utilization.memory",
  "memory.total",
  "memory.used",
  "power.draw",
  "clocks.sm",
  "clocks.mem",
  "fan.speed",
] as const;

const MIB = 2 ** 20;

/** Each numeric column: its metric and the factor from nvidia-smi's unit (°C, %, MiB, W, MHz). */
const COLUMNS: ReadonlyArray<readonly [field: (typeof NVIDIA_FIELDS)[number], metric: string, factor: number]> = [
  ["temperature.gpu", "nvidia_gpu_temperature_celsius", 1],
  ["utilization.gpu", "nvidia_gpu_utilization_ratio", 0.01],
  ["utilization.memory", "nvidia_gpu_memory_utilization_ratio", 0.01],
  ["memory.total", "nvidia_gpu_memory_total_bytes", MIB],
  ["memory.used", "nvidia_gpu_memory_used_bytes", MIB],
  ["power.draw", "nvidia_gpu_power_watts", 1],
  ["clocks.sm", "nvidia_gpu_sm_clock_hertz", 1e6],
  ["clocks.mem", "nvidia_gpu_memory_clock_hertz", 1e6],
  ["fan.speed", "nvidia_gpu_fan_speed_ratio", 0.01],
];

export function nvidiaCollector(options: { nvidiaSmi?: string; timeoutMs?: number } = {}): Collector {
  const nvidiaSmi = options.nvidiaSmi ?? "nvidia-smi";
  return {
    name: "nvidia",
    intervalMs: 30_000,
    async collect(signal) {
      let stdout: string;
      try {
        stdout = await runTool(nvidiaSmi, [`--query-gpu=${NVIDIA_FIELDS.join(",")}`, "--format=csv,noheader,nounits"], signal, {
          timeoutMs: options.timeoutMs ?? 10_000,
          maxBytes: 1 * MIB,
        });
      } catch (error) {
        // Installed without a loaded driver (a host whose GPU was removed, a container without the device).
        if (error instanceof Error && /communicate with the NVIDIA driver|No devices were found/i.test(error.message))
          throw new UnsupportedError(`nvidia-smi finds no GPU (${error.message.split("\n")[0]})`, { cause: error });
        throw error;
      }
      return parseNvidiaSmi(stdout);
    },
  };
}

/** The lines of `--format=csv,noheader,nounits` for NVIDIA_FIELDS. */
export function parseNvidiaSmi(text: string): Measurement[] {
  const out: Measurement[] = [];
  for (const line of text.split("\n")) {
    const cells = line.split(",").map((cell) => cell.trim());
    if (cells.length !== NVIDIA_FIELDS.length) continue;
    const field = (name: (typeof NVIDIA_FIELDS)[number]): string => cells[NVIDIA_FIELDS.indexOf(name)]!;
    const labels = { gpu: field("index"), uuid: field("uuid"), name: field("name") };
    for (const [name, metric, factor] of COLUMNS) {
      const text = field(name);
      // "[N/A]", "[Not Supported]", "[Unknown Error]": not reported by this GPU.
      if (text === "" || text.startsWith("[")) continue;
      const value = Number(text);
      if (Number.isFinite(value)) out.push({ metric, labels, kind: "gauge", value: value * factor });
    }
  }
  return out;
}
