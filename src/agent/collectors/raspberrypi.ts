/**
 * raspberrypi (every 30 s): what a Raspberry Pi's firmware reports. From sysfs (no process): the
 * ARM clock (cpufreq) and the throttling flags (the firmware driver's get_throttled); where
 * `vcgencmd` is installed, one process each for the core (GPU) clock, the core voltage and, on
 * kernels without the sysfs file, the throttling flags (execFile, no shell).
 *
 * - `node_rpi_cpu_clock_hertz`, `node_rpi_gpu_clock_hertz`, `node_rpi_core_volts`;
 * - `node_rpi_throttled{flag}`: 1 or 0 for each of under_voltage, arm_frequency_capped,
 *   throttled, soft_temperature_limit (now), and the same with "_occurred" (since boot).
 *
 * Throws UnsupportedError on anything but a Raspberry Pi (its device tree's model says so).
 */
import { UnsupportedError, type Collector, type Measurement } from "./collector.js";
import { readOptional, runTool, toNumber } from "./util.js";

/** get_throttled's bits (the firmware's documentation of vcgencmd get_throttled). */
export const THROTTLED_FLAGS: ReadonlyArray<readonly [bit: number, flag: string]> = [
  [0, "under_voltage"],
  [1, "arm_frequency_capped"],
  [2, "throttled"],
  [3, "soft_temperature_limit"],
  [16, "under_voltage_occurred"],
  [17, "arm_frequency_capped_occurred"],
  [18, "throttled_occurred"],
  [19, "soft_temperature_limit_occurred"],
];

export function raspberryPiCollector(options: { procRoot?: string; sysRoot?: string; vcgencmd?: string; timeoutMs?: number } = {}): Collector {
  const procRoot = options.procRoot ?? "/proc";
  const sysRoot = options.sysRoot ?? "/sys";
  const vcgencmd = options.vcgencmd ?? "vcgencmd";
  let vcgencmdMissing = false;
  return {
    name: "raspberrypi",
    intervalMs: 30_000,
    async collect(signal) {
      const model =
        (await readOptional(`${procRoot}/device-tree/model`, signal)) ?? (await readOptional(`${sysRoot}/firmware/devicetree/base/model`, signal));
      if (!model?.startsWith("Raspberry Pi")) throw new UnsupportedError("not a Raspberry Pi (its device tree names no Raspberry Pi model)");

      const ask = async (...args: string[]): Promise<string | undefined> => {
        if (vcgencmdMissing) return undefined;
        try {
          return await runTool(vcgencmd, args, signal, { timeoutMs: options.timeoutMs ?? 5_000, maxBytes: 4096 });
        } catch (error) {
          // Without vcgencmd what sysfs has still comes; not asked again.
          if (error instanceof UnsupportedError) vcgencmdMissing = true;
          else throw error;
          return undefined;
        }
      };
      const out: Measurement[] = [];
      const gauge = (metric: string, value: number | undefined, labels: Record<string, string> = {}) => {
        if (value !== undefined) out.push({ metric, labels, kind: "gauge", value });
      };
      const khz = toNumber((await readOptional(`${sysRoot}/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq`, signal))?.trim());
      gauge("node_rpi_cpu_clock_hertz", khz === undefined ? undefined : khz * 1000);
      gauge("node_rpi_gpu_clock_hertz", parseVcgencmd(await ask("measure_clock", "core")));
      gauge("node_rpi_core_volts", parseVcgencmd(await ask("measure_volts", "core")));
      const sysfsThrottled = await readOptional(`${sysRoot}/devices/platform/soc/soc:firmware/get_throttled`, signal);
      const throttled = sysfsThrottled !== undefined ? Number.parseInt(sysfsThrottled.trim(), 16) : parseVcgencmd(await ask("get_throttled"));
      if (throttled !== undefined && Number.isFinite(throttled)) {
        for (const [bit, flag] of THROTTLED_FLAGS) gauge("node_rpi_throttled", (throttled >>> bit) & 1, { flag });
      }
      return out;
    },
  };
}

/**
 * One value of vcgencmd's "name=value" answer: "frequency(0)=1500000000", "volt=0.8600V",
 * "throttled=0x50005"; undefined for no answer or an error.
 */
export function parseVcgencmd(text: string | undefined): number | undefined {
  if (text === undefined || text.startsWith("error=")) return undefined;
  const value = /=\s*(\S+)/.exec(text)?.[1];
  if (value === undefined) return undefined;
  if (/^0x[0-9a-f]+$/i.test(value)) return Number.parseInt(value.slice(2), 16);
  return toNumber(value.replace(/V$/, ""));
}
