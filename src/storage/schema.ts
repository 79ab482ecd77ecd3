import type { ColumnType, Generated } from "kysely";
import type { Labels } from "../shared/labels.js";
import type { TokenRole } from "../tokens/roles.js";

export type { Labels };

/** Running totals of Counter and Histogram instruments, shared by every daemon. */
export interface InstrumentTotalsTable {
  series_id: number;
  total: number;
  /** Unix ms of the total's latest sample. */
  at: number;
}

/** Defined with the contract's roles, where the dashboard can use it too. */
export type { TokenRole };

/** Credentials: only a SHA-256 hash of each token is stored. */
export interface TokensTable {
  id: Generated<string>;
  name: string;
  role: TokenRole;
  hash: Buffer;
  agent_id: string | null;
  /** The token that minted this one (tokens.API/Create); revoking it revokes this one too. */
  created_by: ColumnType<string | null, string | null | undefined, never>;
  created: ColumnType<Date, never, never>;
  revoked: Date | null;
}

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
}

export type CommandState = "queued" | "delivered" | "running" | "succeeded" | "failed" | "timed_out" | "expired" | "cancelled";

/** On-demand diagnostics: one row per command for one agent (src/commands/). */
export interface CommandsTable {
  id: Generated<string>;
  agent_id: string;
  /** The Diagnostic's oneof case, as the proto field name ("disk_usage"). */
  kind: string;
  /** commands.Diagnostic as protobuf JSON. */
  diagnostic: ColumnType<unknown, string, string>;
  timeout_ms: number;
  state: ColumnType<CommandState, CommandState | undefined, CommandState>;
  created: ColumnType<Date, Date | undefined, never>;
  deadline: Date;
  updated: ColumnType<Date, Date | undefined, Date>;
  delivered: Date | null;
  /** commands.Output as protobuf JSON, once there is one. */
  output: ColumnType<unknown, string | null, string | null>;
}

/** Open commands.API/Stream calls: one row per agent, refreshed by the daemon that holds it. */
export interface AgentStreamsTable {
  agent_id: string;
  stream_id: string;
  daemon_id: string;
  since: ColumnType<Date, Date | undefined, Date>;
  refreshed: ColumnType<Date, Date | undefined, Date>;
}

export interface Database {
  instrument_totals: InstrumentTotalsTable;
  tokens: TokensTable;
  agents: AgentsTable;
  commands: CommandsTable;
  agent_streams: AgentStreamsTable;
}
