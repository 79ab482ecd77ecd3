import type { ColumnType, Generated, Selectable } from "kysely";

export type CommandState = "queued" | "delivered" | "running" | "succeeded" | "failed" | "timed_out" | "expired" | "cancelled";

/** On-demand diagnostics: one row per command for one agent. */
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

export type CommandRow = Selectable<CommandsTable>;

/** The tables of src/commands/, for `db.withTables` (a type literal: kysely wants an index signature). */
export type CommandsTables = { commands: CommandsTable; agent_streams: AgentStreamsTable };
