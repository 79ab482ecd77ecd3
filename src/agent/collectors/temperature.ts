/**
 * temperature (every 10 s): sensors from sysfs, in degrees Celsius (gauges):
 *
 * - `node_thermal_zone_temp_celsius{zone,type}` from /sys/class/thermal/thermal_zone*\/temp
 *   (zone "0" for thermal_zone0, type from its `type` file, e.g. "x86_pkg_temp");
 * - `node_hwmon_temp_celsius{chip,sensor[,label]}` from /sys/class/hwmon/hwmon*\/temp*_input
 *   (chip "hwmon0_coretemp": the hwmon folder and its `name` file; sensor "temp1"; label from
 *   temp1_label when the driver provides one, e.g. "Package id 0").
 *
 * Throws UnsupportedError when the host shows no sensor (virtual machines, most containers).
 * A sensor that cannot be read right now (some answer EIO or ENODATA while asleep) is left out.
 */
import { UnsupportedError, type Collector, type Measurement } from "./collector.js";
import { listDir, readOptional, toNumber } from "./util.js";

export function temperatureCollector(options: { sysRoot?: string } = {}): Collector {
  const sysRoot = options.sysRoot ?? "/sys";
  return {
    name: "temperature",
    intervalMs: 10_000,
    async collect(signal) {
      const [zones, chips] = await Promise.all([thermalZones(sysRoot, signal), hwmonSensors(sysRoot, signal)]);
      if (zones.sensors === 0 && chips.sensors === 0)
        throw new UnsupportedError(`no temperature sensor under ${sysRoot}/class/thermal or ${sysRoot}/class/hwmon`);
      return [...zones.out, ...chips.out];
    },
  };
}

async function readSensor(path: string, signal: AbortSignal): Promise<string | undefined> {
  try {
    return await readOptional(path, signal);
  } catch (error) {
    if (signal.aborted) throw error;
    return undefined; // EIO, ENODATA, EAGAIN: a sensor that does not answer now
  }
}

async function thermalZones(sysRoot: string, signal: AbortSignal): Promise<{ sensors: number; out: Measurement[] }> {
  const base = `${sysRoot}/class/thermal`;
  const names = ((await listDir(base)) ?? []).filter((name) => /^thermal_zone\d+$/.test(name)).sort(byNumber);
  const out: Measurement[] = [];
  for (const dir of names) {
    const [temp, type] = await Promise.all([readSensor(`${base}/${dir}/temp`, signal), readSensor(`${base}/${dir}/type`, signal)]);
    const milli = toNumber(temp?.trim());
    if (milli === undefined) continue;
    out.push({
      metric: "node_thermal_zone_temp_celsius",
      labels: { zone: dir.slice("thermal_zone".length), type: type?.trim() ?? "" },
      kind: "gauge",
      value: milli / 1000,
    });
  }
  return { sensors: names.length, out };
}

async function hwmonSensors(sysRoot: string, signal: AbortSignal): Promise<{ sensors: number; out: Measurement[] }> {
  const base = `${sysRoot}/class/hwmon`;
  const chips = ((await listDir(base)) ?? []).filter((name) => /^hwmon\d+$/.test(name)).sort(byNumber);
  const out: Measurement[] = [];
  let sensors = 0;
  for (const dir of chips) {
    const files = (await listDir(`${base}/${dir}`)) ?? [];
    const inputs = files.filter((name) => /^temp\d+_input$/.test(name)).sort(byNumber);
    if (inputs.length === 0) continue;
    sensors += inputs.length;
    const name = (await readSensor(`${base}/${dir}/name`, signal))?.trim();
    const chip = name ? `${dir}_${name}` : dir;
    for (const input of inputs) {
      const sensor = input.slice(0, -"_input".length);
      const [temp, label] = await Promise.all([
        readSensor(`${base}/${dir}/${input}`, signal),
        files.includes(`${sensor}_label`) ? readSensor(`${base}/${dir}/${sensor}_label`, signal) : undefined,
      ]);
      const milli = toNumber(temp?.trim());
      if (milli === undefined) continue;
      const labels: Record<string, string> = { chip, sensor };
      if (label?.trim()) labels.label = label.trim();
      out.push({ metric: "node_hwmon_temp_celsius", labels, kind: "gauge", value: milli / 1000 });
    }
  }
  return { sensors, out };
}

function byNumber(a: string, b: string): number {
  return Number(/\d+/.exec(a)?.[0] ?? 0) - Number(/\d+/.exec(b)?.[0] ?? 0);
}
