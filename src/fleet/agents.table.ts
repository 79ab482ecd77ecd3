import type { ColumnType, Generated, Insertable, Selectable } from "kysely";
import type { Labels } from "../shared/labels.js";

/** The fleet's inventory: one row per enrolled agent; deregistered agents keep their row. */
export interface AgentsTable {
  id: Generated<string>;
  hostname: string;
  os: string;
  os_version: string;
  kernel: string;
  arch: string;
  cpu_model: string;
  cpu_count: number;
  /** bigint: written as a decimal string, read as a number (the pool parses int8 as numbers). */
  memory_bytes: ColumnType<number, string, string>;
  boot_time: Date | null;
  labels: ColumnType<Labels, string, string>;
  agent_version: string;
  first_seen: ColumnType<Date, Date | undefined, never>;
  last_seen: ColumnType<Date, Date | undefined, Date>;
  deregistered: ColumnType<Date | null, never, Date>;
  /** The machine's identity (an app-specific hash of its machine id), unique among active agents; null if it sent none. */
  machine_id: string | null;
  /** The latest step of its self-update (releases.API/ReportUpdate): the release, the step's name, why, when; null before any. */
  update_version: ColumnType<string | null, never, string>;
  update_step: ColumnType<string | null, never, string>;
  update_reason: ColumnType<string | null, never, string>;
  update_time: ColumnType<Date | null, never, Date>;
  /** The host's installed packages as last reported (agent.API Packages); null until reported. Written as JSON text. */
  packages: ColumnType<StoredPackages | null, string | undefined, string>;
}

/** The packages column: agent.API's Packages message, as stored. */
export interface StoredPackages {
  manager: string;
  /** ISO 8601. */
  collected: string;
  packages: Array<{ name: string; version: string; arch: string }>;
}

export type AgentRow = Selectable<AgentsTable>;
export type NewAgentRow = Insertable<AgentsTable>;

/** The tables of the fleet (src/fleet/), for `db.withTables` (a type literal: kysely wants an index signature). */
export type AgentsTables = { agents: AgentsTable };
