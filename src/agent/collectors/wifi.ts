/**
 * wifi (every 30 s): wireless links. The kernel's wireless statistics (/proc/net/wireless: link
 * quality, signal and noise, no process) for every wireless interface, and, where `iw` is
 * installed, one `iw dev <interface> link` per interface (execFile, no shell) for the network's
 * name, the frequency and the bitrates. Labels `interface`, and `ssid` when known:
 *
 * - `node_wifi_connected` (1 when associated with an access point);
 * - `node_wifi_link_quality_ratio` (the driver's link quality over its maximum, 70 for cfg80211 drivers);
 * - `node_wifi_signal_dbm`, `node_wifi_noise_dbm` (when the driver knows it);
 * - `node_wifi_frequency_hertz`, `node_wifi_receive_bitrate_bits_per_second`, `node_wifi_transmit_bitrate_bits_per_second` (iw).
 *
 * Throws UnsupportedError when the host has no wireless interface. Without iw the kernel's
 * figures still come, without the SSID, the frequency and the bitrates.
 */
import { UnsupportedError, type Collector, type Measurement } from "./collector.js";
import { readOptional, runTool, toNumber } from "./util.js";

/** Link quality's maximum as cfg80211 (every current driver) reports it through wireless extensions. */
const CFG80211_MAX_QUALITY = 70;

export interface WirelessStats {
  interface: string;
  quality: number;
  /** dBm; undefined when the driver does not report it. */
  signal?: number;
  noise?: number;
}

export interface IwLink {
  connected: boolean;
  ssid?: string;
  frequencyMhz?: number;
  rxBitrateMbps?: number;
  txBitrateMbps?: number;
}

export function wifiCollector(options: { procRoot?: string; iw?: string; timeoutMs?: number } = {}): Collector {
  const procRoot = options.procRoot ?? "/proc";
  const iw = options.iw ?? "iw";
  let iwMissing = false;
  return {
    name: "wifi",
    intervalMs: 30_000,
    async collect(signal) {
      const text = await readOptional(`${procRoot}/net/wireless`, signal);
      const interfaces = text === undefined ? [] : parseProcWireless(text);
      if (interfaces.length === 0) throw new UnsupportedError("no wireless interface (/proc/net/wireless lists none)");
      const out: Measurement[] = [];
      for (const stats of interfaces) {
        let link: IwLink | undefined;
        if (!iwMissing) {
          try {
            link = parseIwLink(
              await runTool(iw, ["dev", stats.interface, "link"], signal, { timeoutMs: options.timeoutMs ?? 5_000, maxBytes: 64 * 1024 }),
            );
          } catch (error) {
            // Without iw the kernel's figures still come; not asked again.
            if (error instanceof UnsupportedError) iwMissing = true;
            else throw error;
          }
        }
        out.push(...wifiMeasurements(stats, link));
      }
      return out;
    },
  };
}

/**
 * /proc/net/wireless: two header lines, then per interface
 * "wlan0: 0000   70.  -40.  -256        0      0      0      0     12        0"
 * (status, link quality, signal level, noise level, discarded packets…). A trailing "." marks a
 * value updated since the last read; -256 (or 0 for a driver without it) is "not known".
 */
export function parseProcWireless(text: string): WirelessStats[] {
  const out: WirelessStats[] = [];
  for (const line of text.split("\n").slice(2)) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const fields = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .map((f) => f.replace(/\.$/, ""));
    const quality = toNumber(fields[1]);
    if (quality === undefined) continue;
    const level = (f: string | undefined) => {
      const value = toNumber(f);
      return value === undefined || value === -256 || value === 0 ? undefined : value;
    };
    out.push({ interface: line.slice(0, colon).trim(), quality, signal: level(fields[2]), noise: level(fields[3]) });
  }
  return out;
}

/** `iw dev <interface> link`: "Not connected." or "Connected to …" with "SSID:", "freq:", "rx bitrate:", "tx bitrate:" lines. */
export function parseIwLink(text: string): IwLink {
  if (!/^Connected to /m.test(text)) return { connected: false };
  const field = (name: string) => new RegExp(`^\\s*${name}:\\s*(.*)$`, "m").exec(text)?.[1]?.trim();
  const mbps = (value: string | undefined) => toNumber(/^([\d.]+) MBit\/s/.exec(value ?? "")?.[1]);
  const ssid = field("SSID");
  return {
    connected: true,
    ...(ssid ? { ssid } : {}),
    frequencyMhz: toNumber(/^[\d.]+/.exec(field("freq") ?? "")?.[0]),
    rxBitrateMbps: mbps(field("rx bitrate")),
    txBitrateMbps: mbps(field("tx bitrate")),
  };
}

export function wifiMeasurements(stats: WirelessStats, link: IwLink | undefined): Measurement[] {
  const labels: Record<string, string> = { interface: stats.interface, ...(link?.ssid ? { ssid: link.ssid } : {}) };
  const out: Measurement[] = [];
  const gauge = (metric: string, value: number | undefined) => {
    if (value !== undefined) out.push({ metric, labels, kind: "gauge", value });
  };
  // Without iw: associated when the driver reports a link at all.
  gauge("node_wifi_connected", (link?.connected ?? stats.quality > 0) ? 1 : 0);
  gauge("node_wifi_link_quality_ratio", Math.min(1, stats.quality / CFG80211_MAX_QUALITY));
  gauge("node_wifi_signal_dbm", stats.signal);
  gauge("node_wifi_noise_dbm", stats.noise);
  if (link?.connected) {
    gauge("node_wifi_frequency_hertz", link.frequencyMhz === undefined ? undefined : link.frequencyMhz * 1e6);
    gauge("node_wifi_receive_bitrate_bits_per_second", link.rxBitrateMbps === undefined ? undefined : link.rxBitrateMbps * 1e6);
    gauge("node_wifi_transmit_bitrate_bits_per_second", link.txBitrateMbps === undefined ? undefined : link.txBitrateMbps * 1e6);
  }
  return out;
}
