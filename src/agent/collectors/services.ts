/**
 * services (every 60 s): systemd service states, from one `systemctl list-units` process per
 * run (execFile, no shell; reading systemd over D-Bus would need a D-Bus client for one call a
 * minute).
 *
 * `node_systemd_unit_state{name,state}` gauge, as in node_exporter: for every loaded service
 * (units listed but "not-found" are left out), one series per state of activating, active,
 * deactivating, inactive, failed, 1 for the current state and 0 for the others (a rarer current
 * state such as "reloading" gets its own series with 1).
 *
 * Throws UnsupportedError when the host was not booted with systemd (no /run/systemd/system, the
 * test sd_booted(3) makes) or systemctl is missing.
 */
import { stat } from "node:fs/promises";
import { UnsupportedError, type Collector, type Measurement } from "./collector.js";
import { runTool } from "./util.js";

export const UNIT_STATES = ["activating", "active", "deactivating", "inactive", "failed"] as const;

export interface UnitState {
  name: string;
  load: string;
  active: string;
  sub: string;
}

export function servicesCollector(options: { systemctl?: string; systemdRunDir?: string; timeoutMs?: number } = {}): Collector {
  const systemctl = options.systemctl ?? "systemctl";
  const runDir = options.systemdRunDir ?? "/run/systemd/system";
  const timeoutMs = options.timeoutMs ?? 20_000;
  return {
    name: "services",
    intervalMs: 60_000,
    async collect(signal) {
      try {
        if (!(await stat(runDir)).isDirectory()) throw new UnsupportedError(`${runDir} is not a directory: not booted with systemd`);
      } catch (error) {
        if (error instanceof UnsupportedError) throw error;
        throw new UnsupportedError(`no ${runDir}: this host was not booted with systemd`, { cause: error });
      }
      const stdout = await runTool(systemctl, ["list-units", "--type=service", "--all", "--no-legend", "--plain", "--no-pager"], signal, {
        timeoutMs,
        maxBytes: 16 * 2 ** 20,
        env: { SYSTEMD_COLORS: "0", SYSTEMD_PAGER: "" },
      });
      return unitMeasurements(parseListUnits(stdout));
    },
  };
}

/** `systemctl list-units --plain --no-legend` lines: "unit load active sub description…". */
export function parseListUnits(text: string): UnitState[] {
  const out: UnitState[] = [];
  for (const line of text.split("\n")) {
    const fields = line.trim().split(/\s+/);
    // Some systemd versions still mark failed or not-found units with a bullet.
    if (fields[0] === "●" || fields[0] === "*") fields.shift();
    const [name, load, active, sub] = fields;
    if (!name || !load || !active || !sub) continue;
    out.push({ name, load, active, sub });
  }
  return out;
}

export function unitMeasurements(units: readonly UnitState[]): Measurement[] {
  const out: Measurement[] = [];
  for (const unit of units) {
    if (unit.load === "not-found") continue;
    const states: readonly string[] = UNIT_STATES.includes(unit.active as (typeof UNIT_STATES)[number]) ? UNIT_STATES : [...UNIT_STATES, unit.active];
    for (const state of states) {
      out.push({ metric: "node_systemd_unit_state", labels: { name: unit.name, state }, kind: "gauge", value: state === unit.active ? 1 : 0 });
    }
  }
  return out;
}
