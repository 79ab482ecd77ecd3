/**
 * network (every 5 s): per interface counters from /proc/net/dev, as in node_exporter, with the
 * label `device` (every interface, loopback included):
 * `node_network_{receive,transmit}_{bytes,packets,errs,drop}_total`.
 *
 * /proc/net/dev shows the network namespace of the reading process: run the agent in the host's
 * network namespace to see the host's interfaces.
 */
import type { Collector, Measurement } from "./collector.js";
import { FieldScanner, heldFile } from "./util.js";

/** Column of each counter in the receive (0–7) and transmit (8–15) groups. */
const COLUMNS: ReadonlyArray<readonly [number, string]> = [
  [0, "node_network_receive_bytes_total"],
  [1, "node_network_receive_packets_total"],
  [2, "node_network_receive_errs_total"],
  [3, "node_network_receive_drop_total"],
  [8, "node_network_transmit_bytes_total"],
  [9, "node_network_transmit_packets_total"],
  [10, "node_network_transmit_errs_total"],
  [11, "node_network_transmit_drop_total"],
];

export function networkCollector(options: { procRoot?: string } = {}): Collector {
  const procRoot = options.procRoot ?? "/proc";
  const readNetDev = heldFile(`${procRoot}/net/dev`);
  return {
    name: "network",
    intervalMs: 5_000,
    async collect(signal) {
      return parseNetDev(await readNetDev(signal));
    },
  };
}

/** Lines such as "  eth0: 939407038   29260    0 …" (a large first number may touch the colon). */
export function parseNetDev(text: string): Measurement[] {
  const out: Measurement[] = [];
  const scan = new FieldScanner(text);
  const fields: number[] = [];
  do {
    const colon = text.indexOf(":", scan.at);
    if (colon < 0) break;
    if (colon > scan.lineEnd()) continue;
    const device = text.slice(scan.at, colon).trim();
    if (device === "" || device.includes("|")) continue;
    scan.at = colon + 1;
    if (scan.numbers(fields, 16) < 16) continue;
    const labels = { device };
    for (let i = 0; i < COLUMNS.length; i++) {
      const [column, metric] = COLUMNS[i]!;
      const value = fields[column]!;
      if (!Number.isNaN(value)) out.push({ metric, labels, kind: "counter", value });
    }
  } while (scan.nextLine());
  return out;
}
