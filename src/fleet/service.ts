import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  AgentSchema,
  API as AgentAPI,
  HostSchema,
  PackageSchema,
  PackagesSchema,
  type Agent,
  type Packages,
  type RegisterRequest,
} from "../../gen/agent/agent_pb.js";
import { AgentUpdateSchema, UpdateStep } from "../../gen/releases/releases_pb.js";
import { connectedAgents } from "../commands/agent-streams.js";
import type { Logger } from "../shared/log.js";
import type { Db } from "../storage/database.js";
import { isUuid } from "../storage/ids.js";
import { audited } from "../audit/declare.js";
import { principalKey, rules } from "../tokens/access.js";
import { TokenStore } from "../tokens/tokens.js";
import type { AgentRow, StoredPackages } from "./agents.table.js";
import { activeAgentId, deregisterAgent, insertAgent, isHostnameTaken, listAgents, lockAgent, updateInventory, type Inventory } from "./inventory.js";
import { statusAt, type AgentLiveness } from "./liveness.js";

export interface AgentDeps {
  db: Db;
  /** The daemon's credential store: told at once of the credentials this daemon revokes or changes. */
  tokens: TokenStore;
  /** Whether a presented enrolment token is the daemon's (constant time). */
  checkEnrollToken: (candidate: string) => boolean;
  /** Calls not yet written to last_seen; List takes them into account. */
  liveness: AgentLiveness;
  log: Logger;
}

/** Who may call agent.API: Register checks the enrolment token (or the agent's own credential) itself. */
export const fleetAccess = rules(AgentAPI, {
  register: "own-secret",
  list: ["viewer", "admin"],
  deregister: ["admin"],
});

/** The writes of agent.API, audited: enrolment and deregistration. */
export const fleetAudit = audited(AgentAPI, { register: {}, deregister: {} });

/** Limits on what an agent reports about itself. */
export const registerLimits = {
  /** Longest host field, label key or label value, in characters. */
  maxText: 255,
  maxLabels: 32,
  /** Most installed packages one host reports. */
  maxPackages: 20_000,
} as const;

const maxBigint = 2n ** 63n - 1n;
const maxInteger = 2 ** 31 - 1;
/** 9999-12-31T23:59:59.999Z */
const latestTime = 253_402_300_799_999;

/** agent.API: enrolment (Register), the inventory (List) and Deregister. */
export function agentService(deps: AgentDeps): ServiceImpl<typeof AgentAPI> {
  const { db, tokens, checkEnrollToken, liveness, log } = deps;

  /** Re-registration with the agent's own credential: same id, inventory updated, no new credential. */
  const update = async (agentId: string, inventory: Inventory) => {
    const changed = await agentWrite(db, inventory, () =>
      db.transaction().execute(async (trx) => {
        const row = await lockAgent(trx, { id: agentId });
        if (!row) throw new ConnectError("this agent was deregistered; enrol it again with the enrolment token", Code.Unauthenticated);
        // A credential belongs to one machine: a copy of the state directory on another one
        // (a cloned disk) would otherwise make two hosts one agent.
        if (row.machine_id !== null && inventory.machine_id !== null && row.machine_id !== inventory.machine_id) {
          throw new ConnectError(
            "this credential belongs to another machine (its machine id differs): give this machine its own state directory and enrol it with the enrolment token",
            Code.PermissionDenied,
          );
        }
        await updateInventory(trx, agentId, { ...inventory, machine_id: inventory.machine_id ?? row.machine_id });
        // Its hostname may have changed: every daemon verifies its credential again.
        return new TokenStore(trx).agentChanged(agentId);
      }),
    );
    for (const id of changed) tokens.forget(id);
    return { agentId, credential: "" };
  };

  /**
   * Enrolment with the enrolment token: a new agent, or, for the machine that has the hostname
   * (same machine id), that agent again with a new credential, its earlier ones revoked. Another
   * machine's claim of a hostname in use is refused (agentWrite).
   */
  const enrol = async (inventory: Inventory) => {
    const enrolled = await agentWrite(db, inventory, () =>
      db.transaction().execute(async (trx) => {
        const holder = await lockAgent(trx, { hostname: inventory.hostname });
        const again = holder !== undefined && inventory.machine_id !== null && holder.machine_id === inventory.machine_id;
        let agentId: string;
        let revoked: string[] = [];
        if (again) {
          // Two agents running on one machine under one name would take the identity from each
          // other at every start.
          if ((await connectedAgents(trx, [holder.id])).has(holder.id)) {
            throw new ConnectError(
              `this machine's agent "${inventory.hostname}" (${holder.id}) is connected now: run one agent per host name ` +
                `(stop that one first, remove it with "specta agents remove ${holder.id}", or start this one with --hostname <another name>)`,
              Code.AlreadyExists,
            );
          }
          await updateInventory(trx, holder.id, inventory);
          revoked = await new TokenStore(trx).revokeAgent(holder.id);
          agentId = holder.id;
        } else {
          // Fails on the unique index when another machine holds the hostname.
          agentId = await insertAgent(trx, inventory);
        }
        const { token } = await new TokenStore(trx).create("agent", inventory.hostname, agentId);
        return { agentId, credential: token, again, revoked };
      }),
    );
    for (const id of enrolled.revoked) tokens.forget(id);
    if (enrolled.again) {
      log.warn(
        { agentId: enrolled.agentId, hostname: inventory.hostname, revokedCredentials: enrolled.revoked.length },
        "agent enrolled again from the same machine: same id, earlier credentials revoked",
      );
    }
    return { agentId: enrolled.agentId, credential: enrolled.credential };
  };

  return {
    async register(req, ctx) {
      const principal = ctx.values.get(principalKey);
      if (principal?.role === "agent" && principal.agentId) return update(principal.agentId, validateRegister(req));
      if (req.enrollToken === "") {
        throw new ConnectError("agent.API/Register needs the daemon's enrolment token, or the agent's own credential", Code.Unauthenticated);
      }
      if (!checkEnrollToken(req.enrollToken)) throw new ConnectError("the enrolment token is wrong", Code.Unauthenticated);
      return enrol(validateRegister(req));
    },

    async list(req) {
      for (const [key, value] of Object.entries(req.labels)) checkLabel(key, value, "label filter");
      const rows = await listAgents(db, req.labels, req.withPackages);
      const now = Date.now();
      return { agents: rows.map((row) => toAgent(row, liveness.unflushed(row.id), now)) };
    },

    async deregister(req) {
      const agentId = req.agentId.trim().toLowerCase();
      if (!isUuid(agentId)) throw new ConnectError(`agent id "${req.agentId}" is not a UUID`, Code.InvalidArgument);
      // One transaction: never a deregistered agent whose credential still works. Its revocation
      // reaches every daemon, which ends the agent's stream there.
      const revoked = await db
        .transaction()
        .execute(async (trx) => ((await deregisterAgent(trx, agentId)) ? new TokenStore(trx).revokeAgent(agentId) : undefined));
      if (!revoked) throw new ConnectError(`no agent ${agentId} in the inventory`, Code.NotFound);
      for (const id of revoked) tokens.forget(id);
      liveness.forget(agentId);
      return {};
    },
  };
}

/**
 * Runs a write of an agent's row; a second claim of a hostname (unique among the active agents)
 * is refused with AlreadyExists, naming the agent that holds it.
 */
async function agentWrite<T>(db: Db, inventory: Inventory, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (err) {
    if (isHostnameTaken(err)) {
      const holder = await activeAgentId(db, { hostname: inventory.hostname });
      throw new ConnectError(
        `the hostname "${inventory.hostname}" is taken by agent ${holder ?? "(another)"}: start this agent with --hostname <another name>, ` +
          `or, if that agent is gone, remove it first (specta agents remove ${inventory.hostname})`,
        Code.AlreadyExists,
      );
    }
    throw err;
  }
}

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

function checkText(value: string, field: string, required = false): string {
  if (required && value.trim() === "") throw invalid(`${field} must not be empty`);
  if (value.length > registerLimits.maxText) throw invalid(`${field} is longer than ${registerLimits.maxText} characters`);
  if (value.includes("\u0000")) throw invalid(`${field} holds a NUL character`);
  return value;
}

function checkLabel(key: string, value: string, where: string): void {
  checkText(key, `${where} key`, true);
  checkText(value, `${where} ${key}`);
}

/** Checks what an agent reports about itself; InvalidArgument names the first bad field. */
export function validateRegister(req: RegisterRequest): Inventory {
  const host = req.host;
  if (!host) throw invalid("host is missing");
  const labels = Object.entries(req.labels);
  if (labels.length > registerLimits.maxLabels) throw invalid(`at most ${registerLimits.maxLabels} labels, got ${labels.length}`);
  for (const [key, value] of labels) checkLabel(key, value, "label");
  if (host.cpuCount > maxInteger) throw invalid(`host.cpu_count ${host.cpuCount} is too large`);
  if (host.memoryBytes > maxBigint) throw invalid(`host.memory_bytes ${host.memoryBytes} is too large`);
  let bootTime: Date | null = null;
  if (host.bootTime) {
    bootTime = timestampDate(host.bootTime);
    const ms = bootTime.getTime();
    if (!(ms >= 0 && ms <= latestTime)) throw invalid("host.boot_time must lie between 1970 and 9999");
  }
  const machineId = checkText(req.machineId, "machine_id");
  return {
    hostname: checkText(host.hostname, "host.hostname", true),
    os: checkText(host.os, "host.os"),
    os_version: checkText(host.osVersion, "host.os_version"),
    kernel: checkText(host.kernel, "host.kernel"),
    arch: checkText(host.arch, "host.arch"),
    cpu_model: checkText(host.cpuModel, "host.cpu_model"),
    cpu_count: host.cpuCount,
    memory_bytes: host.memoryBytes.toString(),
    boot_time: bootTime,
    labels: JSON.stringify(req.labels),
    agent_version: checkText(req.agentVersion, "agent_version"),
    machine_id: machineId === "" ? null : machineId,
    ...(req.packages ? { packages: JSON.stringify(validatePackages(req.packages)) } : {}),
  };
}

/** Checks a host's package list (limits first, then each field); InvalidArgument names the first bad one. */
function validatePackages(packages: Packages): StoredPackages {
  if (packages.packages.length > registerLimits.maxPackages) {
    throw invalid(`packages: at most ${registerLimits.maxPackages} packages, got ${packages.packages.length}`);
  }
  let collected = new Date();
  if (packages.collected) {
    collected = timestampDate(packages.collected);
    if (!(collected.getTime() >= 0 && collected.getTime() <= latestTime)) throw invalid("packages.collected must lie between 1970 and 9999");
  }
  return {
    manager: checkText(packages.manager, "packages.manager", true),
    collected: collected.toISOString(),
    packages: packages.packages.map((p, i) => ({
      name: checkText(p.name, `packages.packages[${i}].name`, true),
      version: checkText(p.version, `packages.packages[${i}].version`),
      arch: checkText(p.arch, `packages.packages[${i}].arch`),
    })),
  };
}

/** One inventory entry; the status comes from the latest of the stored and the unflushed last call. */
function toAgent(row: AgentRow, unflushedMs: number | undefined, nowMs: number): Agent {
  const lastSeen = Math.max(row.last_seen.getTime(), unflushedMs ?? 0);
  return create(AgentSchema, {
    id: row.id,
    host: create(HostSchema, {
      hostname: row.hostname,
      os: row.os,
      osVersion: row.os_version,
      kernel: row.kernel,
      arch: row.arch,
      cpuModel: row.cpu_model,
      cpuCount: row.cpu_count,
      memoryBytes: BigInt(row.memory_bytes),
      ...(row.boot_time ? { bootTime: timestampFromDate(row.boot_time) } : {}),
    }),
    labels: row.labels,
    agentVersion: row.agent_version,
    firstSeen: timestampFromDate(row.first_seen),
    lastSeen: timestampFromDate(new Date(lastSeen)),
    status: statusAt(lastSeen, nowMs),
    ...(row.update_version !== null && row.update_time !== null
      ? {
          update: create(AgentUpdateSchema, {
            version: row.update_version,
            step: UpdateStep[(row.update_step ?? "") as keyof typeof UpdateStep] ?? UpdateStep.UNSPECIFIED,
            reason: row.update_reason ?? "",
            time: timestampFromDate(row.update_time),
          }),
        }
      : {}),
    ...(row.packages
      ? {
          packages: create(PackagesSchema, {
            manager: row.packages.manager,
            collected: timestampFromDate(new Date(row.packages.collected)),
            packages: row.packages.packages.map((p) => create(PackageSchema, p)),
          }),
        }
      : {}),
  });
}
