import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { sql, type Kysely, type Selectable } from "kysely";
import { AgentSchema, API as AgentAPI, HostSchema, type Agent, type RegisterRequest } from "../../gen/agent/agent_pb.js";
import { principalKey } from "../server/auth.js";
import { storageStep } from "../storage/errors.js";
import { isUuid } from "../storage/ids.js";
import type { AgentsTable, Database } from "../storage/schema.js";
import { TokenStore } from "../tokens/tokens.js";
import { statusAt, type AgentLiveness } from "./liveness.js";

export interface AgentDeps {
  db: Kysely<Database>;
  /** The daemon's credential store: Deregister revokes through it, so that its cache forgets at once. */
  tokens: TokenStore;
  /** Whether a presented enrolment token is the daemon's (constant time). */
  checkEnrollToken: (candidate: string) => boolean;
  /** Calls not yet written to last_seen; List takes them into account. */
  liveness: AgentLiveness;
}

/** Limits on what an agent reports about itself. */
export const registerLimits = {
  /** Longest host field, label key or label value, in characters. */
  maxText: 255,
  maxLabels: 32,
} as const;

const maxBigint = 2n ** 63n - 1n;
const maxInteger = 2 ** 31 - 1;
/** 9999-12-31T23:59:59.999Z */
const latestTime = 253_402_300_799_999;

/** The inventory columns Register writes, validated. */
interface Inventory {
  hostname: string;
  os: string;
  os_version: string;
  kernel: string;
  arch: string;
  cpu_model: string;
  cpu_count: number;
  memory_bytes: string;
  boot_time: Date | null;
  labels: string;
  agent_version: string;
}

/** agent.API: enrolment (Register), the inventory (List) and Deregister. */
export function agentService(deps: AgentDeps): ServiceImpl<typeof AgentAPI> {
  const { db, tokens, checkEnrollToken, liveness } = deps;
  return {
    async register(req, ctx) {
      const principal = ctx.values.get(principalKey);
      if (principal?.role === "agent" && principal.agentId) {
        // Re-registration with the agent's own credential: same id, inventory updated, no new credential.
        const inventory = validateRegister(req);
        const agentId = principal.agentId;
        const row = await storageStep("updating the agent's inventory", () =>
          db
            .updateTable("agents")
            .set({ ...inventory, last_seen: new Date() })
            .where("id", "=", agentId)
            .where("deregistered", "is", null)
            .returning("id")
            .executeTakeFirst(),
        );
        if (!row) throw new ConnectError("this agent was deregistered; enrol it again with the enrolment token", Code.Unauthenticated);
        return { agentId, credential: "" };
      }
      if (req.enrollToken === "") {
        throw new ConnectError("agent.API/Register needs the daemon's enrolment token, or the agent's own credential", Code.Unauthenticated);
      }
      if (!checkEnrollToken(req.enrollToken)) throw new ConnectError("the enrolment token is wrong", Code.Unauthenticated);
      const inventory = validateRegister(req);
      return storageStep("enrolling the agent", () =>
        db.transaction().execute(async (trx) => {
          const { id } = await trx.insertInto("agents").values(inventory).returning("id").executeTakeFirstOrThrow();
          const { token } = await new TokenStore(trx).create("agent", inventory.hostname, id);
          return { agentId: id, credential: token };
        }),
      );
    },

    async list(req) {
      for (const [key, value] of Object.entries(req.labels)) checkLabel(key, value, "label filter");
      let query = db.selectFrom("agents").selectAll().where("deregistered", "is", null);
      if (Object.keys(req.labels).length > 0) query = query.where(sql<boolean>`labels @> ${JSON.stringify(req.labels)}::jsonb`);
      const rows = await storageStep("listing the agents", () => query.orderBy("hostname").orderBy("id").execute());
      const now = Date.now();
      return { agents: rows.map((row) => toAgent(row, liveness.unflushed(row.id), now)) };
    },

    async deregister(req) {
      const agentId = req.agentId.trim();
      if (!isUuid(agentId)) throw new ConnectError(`agent id "${req.agentId}" is not a UUID`, Code.InvalidArgument);
      // Credentials first: a failure after this leaves an agent that a retry deregisters, never a
      // deregistered agent whose credential still works.
      await storageStep("revoking the agent's credentials", () => tokens.revokeAgent(agentId));
      const row = await storageStep("deregistering the agent", () =>
        db
          .updateTable("agents")
          .set({ deregistered: new Date() })
          .where("id", "=", agentId)
          .where("deregistered", "is", null)
          .returning("id")
          .executeTakeFirst(),
      );
      liveness.forget(agentId);
      if (!row) throw new ConnectError(`no agent ${agentId} in the inventory`, Code.NotFound);
      return {};
    },
  };
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
  };
}

/** One inventory entry; the status comes from the latest of the stored and the unflushed last call. */
function toAgent(row: Selectable<AgentsTable>, unflushedMs: number | undefined, nowMs: number): Agent {
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
  });
}
