/**
 * smart (every 5 min): disk health through smartmontools, where it is installed: one
 * `smartctl --scan -j`, then one `smartctl -j -a -n standby` per disk (execFile, no shell). A
 * disk that sleeps is not woken (`-n standby`) and is left out of that run. Labels `device`
 * (e.g. /dev/sda, /dev/nvme0), `model` and `serial`:
 *
 * - `smartctl_device_smart_passed` (1 when the disk's overall self-assessment passes);
 * - `smartctl_device_temperature_celsius`;
 * - `smartctl_device_power_on_seconds_total`, `smartctl_device_power_cycles_total`;
 * - ATA: `smartctl_device_reallocated_sectors`, `smartctl_device_pending_sectors`,
 *   `smartctl_device_offline_uncorrectable_sectors` (raw values of attributes 5, 197, 198);
 * - NVMe: `smartctl_device_percentage_used_ratio` (wear, may pass 1), `smartctl_device_available_spare_ratio`,
 *   `smartctl_device_critical_warning` (the bit field), `smartctl_device_media_errors_total`.
 *
 * Throws UnsupportedError when smartctl is missing, finds no disk, or may open none (it needs
 * root, or CAP_SYS_RAWIO and read access to the devices).
 */
import { UnsupportedError, type Collector, type Measurement } from "./collector.js";
import { jsonArray, jsonNumber, jsonRecord, jsonString, mapPool, runTool } from "./util.js";

const ATA_ATTRIBUTES: ReadonlyArray<readonly [id: number, metric: string]> = [
  [5, "smartctl_device_reallocated_sectors"],
  [197, "smartctl_device_pending_sectors"],
  [198, "smartctl_device_offline_uncorrectable_sectors"],
];

export function smartCollector(options: { smartctl?: string; timeoutMs?: number } = {}): Collector {
  const smartctl = options.smartctl ?? "smartctl";
  const timeoutMs = options.timeoutMs ?? 30_000;
  // smartctl's exit status is a bit field: the JSON on stdout says what went wrong per disk.
  const tool = { timeoutMs, maxBytes: 4 * 2 ** 20, okExitCodes: Array.from({ length: 255 }, (_, i) => i + 1) };
  return {
    name: "smart",
    intervalMs: 300_000,
    async collect(signal) {
      const scan = parseJson(await runTool(smartctl, ["--scan", "-j"], signal, tool), "smartctl --scan -j");
      const devices = (jsonArray(jsonRecord(scan)?.devices) ?? []).flatMap((item) => {
        const device = jsonRecord(item);
        const name = jsonString(device?.name);
        return name ? [{ name, type: jsonString(device?.type) }] : [];
      });
      if (devices.length === 0) throw new UnsupportedError("smartctl finds no disk on this host");
      const reports = await mapPool(devices, 2, async ({ name, type }) =>
        parseJson(await runTool(smartctl, ["-j", "-a", "-n", "standby", ...(type ? ["-d", type] : []), name], signal, tool), `smartctl -a ${name}`),
      );
      const readable = reports.map((report) => smartMeasurements(report)).filter((m) => m !== undefined);
      if (readable.length === 0) {
        const message = smartctlMessages(reports[0]);
        throw new UnsupportedError(`smartctl may open no disk${message ? ` (${message})` : ""}: the agent needs root or CAP_SYS_RAWIO`);
      }
      return readable.flat();
    },
  };
}

/**
 * The measurements of one `smartctl -j -a` report, or undefined when smartctl could not read the
 * disk (exit status bits 0 and 1: bad command line, device open failed or asleep).
 */
export function smartMeasurements(report: unknown): Measurement[] | undefined {
  const doc = jsonRecord(report);
  const status = jsonNumber(jsonRecord(doc?.smartctl)?.exit_status) ?? 0;
  const device = jsonString(jsonRecord(doc?.device)?.name);
  if (!doc || (status & 0b11) !== 0 || !device) return undefined;
  const labels = { device, model: jsonString(doc.model_name) ?? jsonString(doc.scsi_model_name) ?? "", serial: jsonString(doc.serial_number) ?? "" };
  const out: Measurement[] = [];
  const gauge = (metric: string, value: number | undefined) => {
    if (value !== undefined) out.push({ metric, labels, kind: "gauge", value });
  };
  const counter = (metric: string, value: number | undefined) => {
    if (value !== undefined && value >= 0) out.push({ metric, labels, kind: "counter", value });
  };
  const passed = jsonRecord(doc.smart_status)?.passed;
  if (typeof passed === "boolean") gauge("smartctl_device_smart_passed", passed ? 1 : 0);
  gauge("smartctl_device_temperature_celsius", jsonNumber(jsonRecord(doc.temperature)?.current));
  const hours = jsonNumber(jsonRecord(doc.power_on_time)?.hours);
  const minutes = jsonNumber(jsonRecord(doc.power_on_time)?.minutes) ?? 0;
  counter("smartctl_device_power_on_seconds_total", hours === undefined ? undefined : hours * 3600 + minutes * 60);
  counter("smartctl_device_power_cycles_total", jsonNumber(doc.power_cycle_count));

  const table = jsonArray(jsonRecord(doc.ata_smart_attributes)?.table) ?? [];
  for (const [id, metric] of ATA_ATTRIBUTES) {
    const attribute = table.map(jsonRecord).find((a) => jsonNumber(a?.id) === id);
    gauge(metric, jsonNumber(jsonRecord(attribute?.raw)?.value));
  }
  const nvme = jsonRecord(doc.nvme_smart_health_information_log);
  if (nvme) {
    const percent = (value: number | undefined) => (value === undefined ? undefined : value / 100);
    gauge("smartctl_device_percentage_used_ratio", percent(jsonNumber(nvme.percentage_used)));
    gauge("smartctl_device_available_spare_ratio", percent(jsonNumber(nvme.available_spare)));
    gauge("smartctl_device_critical_warning", jsonNumber(nvme.critical_warning));
    counter("smartctl_device_media_errors_total", jsonNumber(nvme.media_errors));
  }
  return out;
}

/** smartctl's own messages in a report, e.g. "Smartctl open device: /dev/sda failed: Permission denied". */
function smartctlMessages(report: unknown): string {
  const messages = jsonArray(jsonRecord(jsonRecord(report)?.smartctl)?.messages) ?? [];
  return messages
    .map((m) => jsonString(jsonRecord(m)?.string))
    .filter(Boolean)
    .join("; ");
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new Error(`${what} printed something other than JSON (smartmontools older than 7.0?)`, { cause: error });
  }
}
