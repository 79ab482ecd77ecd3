import { toJson } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Command } from "commander";
import { API as AgentAPI, ListResponseSchema, type Agent, type ListResponse } from "../../gen/agent/agent_pb.js";
import { UpdateStep, type AgentUpdate } from "../../gen/releases/releases_pb.js";
import { addClientOptions, ClientError, daemonClient, runClient, type ClientFlags } from "./client.js";
import { statusNames } from "../shared/agent-status.js";
import { collect, formatTable, isIdPrefix } from "./util.js";

interface AgentsFlags extends ClientFlags {
  label?: string[];
  json?: boolean;
}

/** `specta agents [remove ID|HOST]`: the command-line face of agent.API/List and Deregister. */
export function agentsCommand(program: Command): void {
  const agents = addClientOptions(
    program
      .command("agents")
      .description("list the enrolled agents with their hosts, status and last call (agent.API/List)")
      .option("--label <k=v>", "only agents with this label (repeatable: all must match)", collect, undefined)
      .option("--json", "print the ListResponse as JSON"),
  ).action((flags: AgentsFlags) =>
    runClient(flags, async (connection) => {
      const labels = parseLabels(flags.label ?? []);
      const response = await daemonClient(AgentAPI, connection).list({ labels });
      process.stdout.write(flags.json ? JSON.stringify(toJson(ListResponseSchema, response)) + "\n" : formatAgents(response, Date.now()));
    }),
  );

  addClientOptions(
    agents
      .command("remove")
      .description("deregister an agent (agent.API/Deregister): its credential stops working and it leaves the inventory")
      .argument("<agent>", "the agent's id, a unique prefix of it (at least 4 characters), or its hostname"),
  ).action((name: string, flags: ClientFlags) =>
    runClient(flags, async (connection) => {
      const client = daemonClient(AgentAPI, connection);
      const agent = findAgent((await client.list({})).agents, name);
      await client.deregister({ agentId: agent.id });
      process.stdout.write(`removed ${agent.host?.hostname ?? ""} (${agent.id})\n`);
    }),
  );
}

/**
 * The one agent that `name` names: its full id, else its hostname or a unique prefix of its id.
 * A name that matches several (a prefix shared by two ids, or a hostname that is also another
 * agent's id prefix) is refused rather than guessed: removing is not undone.
 */
export function findAgent(agents: Agent[], name: string): Agent {
  const wanted = name.trim().toLowerCase();
  const exact = agents.find((a) => a.id === wanted);
  if (exact) return exact;
  const matches = agents.filter((a) => a.host?.hostname === name.trim() || isIdPrefix(a.id, wanted));
  const [only, ...others] = matches;
  if (!only) throw new ClientError(`no agent has the id, id prefix or hostname "${name}" (see specta agents)`);
  if (others.length > 0) {
    const listed = matches.map((a) => `${a.id} (${a.host?.hostname ?? ""})`).join(", ");
    throw new ClientError(`"${name}" names ${matches.length} agents: ${listed}; give more of the id`);
  }
  return only;
}

/** Parses repeated `--label k=v` into a map; the first "=" splits. */
export function parseLabels(texts: string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const text of texts) {
    const at = text.indexOf("=");
    if (at <= 0) throw new ClientError(`--label "${text}" is not key=value`);
    labels[text.slice(0, at)] = text.slice(at + 1);
  }
  return labels;
}

/** Bytes in binary units with one decimal: 16.0 GiB. */
export function formatBytes(bytes: bigint): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
  let value = Number(bytes);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** How long ago, in the largest whole unit: 4s ago, 12m ago, 3h ago, 2d ago. */
export function formatAgo(ms: number, nowMs: number): string {
  const s = Math.max(0, Math.floor((nowMs - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86_400)}d ago`;
}

/** An agent's latest update step, e.g. "0.2.0 healthy", "0.3.0 rolled_back: <reason>". */
function formatUpdate(update: AgentUpdate | undefined): string {
  if (!update) return "";
  const step = `${update.version} ${(UpdateStep[update.step] ?? "unknown").toLowerCase()}`;
  return update.reason ? `${step}: ${update.reason}` : step;
}

/** A table: id, hostname, status, os, kernel, arch, cpus, memory, version, last seen, and an agent's update once any agent has one. */
export function formatAgents(response: ListResponse, nowMs: number): string {
  if (response.agents.length === 0) return "(no agents)\n";
  const updates = response.agents.some((a) => a.update);
  const rows = [
    ["ID", "HOSTNAME", "STATUS", "OS", "KERNEL", "ARCH", "CPUS", "MEMORY", "VERSION", "LAST SEEN"],
    ...response.agents.map((a) => [
      a.id,
      a.host?.hostname ?? "",
      statusNames[a.status] ?? "unknown",
      a.host?.os ?? "",
      a.host?.kernel ?? "",
      a.host?.arch ?? "",
      String(a.host?.cpuCount ?? 0),
      formatBytes(a.host?.memoryBytes ?? 0n),
      a.agentVersion,
      a.lastSeen ? formatAgo(timestampMs(a.lastSeen), nowMs) : "never",
      ...(updates ? [formatUpdate(a.update)] : []),
    ]),
  ];
  if (updates) rows[0]!.push("UPDATE");
  return formatTable(rows);
}
