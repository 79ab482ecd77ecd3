import { toJson } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Command } from "commander";
import { API as AuditAPI, ListResponseSchema, type Event } from "../../gen/audit/audit_pb.js";
import { parseDuration } from "../shared/duration.js";
import { addClientOptions, ClientError, daemonClient, runClient, type ClientFlags } from "./client.js";
import { formatTable } from "./util.js";

interface AuditFlags extends ClientFlags {
  actor?: string;
  action?: string;
  since?: string;
  from?: string;
  to?: string;
  limit: string;
  pageToken?: string;
  json?: boolean;
}

/** `specta audit`: the command-line face of audit.API/List. */
export function auditCommand(program: Command): void {
  addClientOptions(
    program
      .command("audit")
      .description("list the audit trail, newest first: every write with its time, actor, address, outcome and metrics (audit.API/List, admin)")
      .option("--actor <token>", "only this actor's events: a token id or a credential's name (an agent's is 'agent <hostname>')")
      .option("--action <procedure>", "only this procedure's events, e.g. metrics.API/Push or tokens.API/Create")
      .option("--since <duration>", "only events of the last <duration>, e.g. 1h or 7d")
      .option("--from <time>", "only events at or after this time (ISO 8601, e.g. 2026-12-01T10:00:00Z)")
      .option("--to <time>", "only events before this time (ISO 8601)")
      .option("--limit <n>", "events per page, 1 to 1000", "100")
      .option("--page-token <token>", "the next page (printed at the end of the previous one)")
      .option("--json", "print the ListResponse as JSON"),
  ).action((flags: AuditFlags) =>
    runClient(flags, async (connection) => {
      const pageSize = Number(flags.limit);
      if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 1000) throw new ClientError(`--limit must be 1 to 1000, not "${flags.limit}"`);
      if (flags.since !== undefined && flags.from !== undefined) throw new ClientError("give --since or --from, not both");
      const sinceMs = flags.since === undefined ? undefined : parseDuration(flags.since);
      if (sinceMs === undefined && flags.since !== undefined)
        throw new ClientError(`--since "${flags.since}" is not a duration such as 30m, 1h or 7d`);
      const start = sinceMs !== undefined ? new Date(Date.now() - sinceMs) : flags.from === undefined ? undefined : parseTime(flags.from, "--from");
      const end = flags.to === undefined ? undefined : parseTime(flags.to, "--to");
      const response = await daemonClient(AuditAPI, connection).list({
        actor: flags.actor ?? "",
        action: flags.action ?? "",
        pageSize,
        pageToken: flags.pageToken ?? "",
        ...(start ? { start: timestampFromDate(start) } : {}),
        ...(end ? { end: timestampFromDate(end) } : {}),
      });
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(toJson(ListResponseSchema, response))}\n`);
        return;
      }
      process.stdout.write(formatEvents(response.events));
      if (response.nextPageToken) process.stderr.write(`more: add --page-token ${response.nextPageToken}\n`);
    }),
  );
}

function parseTime(text: string, flag: string): Date {
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) throw new ClientError(`${flag} "${text}" is not a time such as 2026-12-01T10:00:00Z`);
  return date;
}

/** A table: time, action, outcome, actor, address, metrics. */
export function formatEvents(events: Event[]): string {
  if (events.length === 0) return "(no events)\n";
  return formatTable([
    ["TIME", "ACTION", "OUTCOME", "ACTOR", "ADDRESS", "METRICS"],
    ...events.map((e) => [
      e.ts ? timestampDate(e.ts).toISOString() : "",
      e.action,
      e.outcome,
      e.actor?.role === "anonymous" ? "anonymous" : `${e.actor?.name ?? ""} (${e.actor?.role ?? ""})`,
      e.ipAddress,
      e.metrics.length > 3 ? `${e.metrics.slice(0, 3).join(",")},… (${e.metrics.length})` : e.metrics.join(","),
    ]),
  ]);
}
