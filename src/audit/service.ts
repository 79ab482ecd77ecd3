import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { API as AuditAPI, EventSchema } from "../../gen/audit/audit_pb.js";
import type { Db } from "../storage/database.js";
import { rules } from "../tokens/access.js";
import { listEvents } from "./repository.js";

/** Who may call audit.API: admins only (the trail names every credential and address). */
export const auditAccess = rules(AuditAPI, { list: ["admin"] });

export const auditPageSize = { default: 100, max: 1_000 };

export interface AuditDeps {
  db: Db;
}

/** audit.API: the stored audit trail, filtered and paged. */
export function auditService({ db }: AuditDeps): ServiceImpl<typeof AuditAPI> {
  return {
    async list(req) {
      if (req.pageSize < 0 || req.pageSize > auditPageSize.max) {
        throw new ConnectError(`page_size must be 0 to ${auditPageSize.max}, got ${req.pageSize}`, Code.InvalidArgument);
      }
      if (req.pageToken !== "" && !/^[1-9][0-9]{0,18}$/.test(req.pageToken)) {
        throw new ConnectError("page_token is not one this API gave (pass next_page_token as it came)", Code.InvalidArgument);
      }
      const start = req.start && timestampDate(req.start);
      const end = req.end && timestampDate(req.end);
      if (start && end && start >= end) throw new ConnectError("start must be before end", Code.InvalidArgument);
      const limit = req.pageSize || auditPageSize.default;
      const rows = await listEvents(db, {
        actor: req.actor || undefined,
        action: req.action || undefined,
        start,
        end,
        beforeId: req.pageToken || undefined,
        limit: limit + 1,
      });
      const page = rows.slice(0, limit);
      return {
        events: page.map((r) =>
          create(EventSchema, {
            ts: timestampFromDate(r.ts),
            action: r.action,
            outcome: r.outcome,
            metrics: r.metrics,
            ipAddress: r.ip_address ?? "",
            actor: { tokenId: r.token_id ?? "", name: r.actor_name ?? "", role: r.role },
          }),
        ),
        nextPageToken: rows.length > limit ? String(page.at(-1)!.id) : "",
      };
    },
  };
}
