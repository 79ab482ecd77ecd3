import type { Migration } from "kysely";
import * as initial from "./2026_11_22_0001_initial.js";
import * as samplesTsBrin from "./2026_11_22_0002_samples_ts_brin.js";
import * as agents from "./2026_11_22_0003_agents.js";
import * as commands from "./2026_11_22_0004_commands.js";
import * as tsdb from "./2026_12_01_0001_tsdb.js";
import * as agentIdentity from "./2026_12_01_0100_agent_identity.js";
import * as agentPackages from "./2026_12_01_1500_agent_packages.js";
import * as alerts from "./2026_12_02_0100_alerts.js";
import * as notifications from "./2026_12_02_0200_notifications.js";
import * as auditEvents from "./2026_12_02_0300_audit_events.js";
import * as releases from "./2026_12_02_0700_releases.js";

/** Every migration, by name; names sort in the order they apply. Add new ones at the end. */
export const migrations: Record<string, Migration> = {
  "2026_11_22_0001_initial": initial,
  "2026_11_22_0002_samples_ts_brin": samplesTsBrin,
  "2026_11_22_0003_agents": agents,
  "2026_11_22_0004_commands": commands,
  "2026_12_01_0001_tsdb": tsdb,
  "2026_12_01_0100_agent_identity": agentIdentity,
  "2026_12_01_1500_agent_packages": agentPackages,
  "2026_12_02_0100_alerts": alerts,
  "2026_12_02_0200_notifications": notifications,
  "2026_12_02_0300_audit_events": auditEvents,
  "2026_12_02_0700_releases": releases,
};
