import { toJson } from "@bufbuild/protobuf";
import { ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Archive } from "../archive/archive.js";
import { clientAddressKey } from "../audit/declare.js";
import { actorOf, outcomeOf, uniqueNames } from "../audit/event.js";
import type { AuditTrail } from "../audit/trail.js";
import { principalKey } from "../tokens/access.js";

/**
 * Records each call of an audited procedure (as its service declares, audit/declare.ts) once it
 * ends: one event with the metric names it wrote, its caller, address and outcome (the code its
 * caller sees: this interceptor runs outside CallLog's). With an archive, an accepted call of a
 * method declared `archive: true` is appended too. Both only queue: nothing waits on a sink.
 */
export function auditCalls(trail: AuditTrail, archive: Archive | undefined): Interceptor {
  return (next) => async (req) => {
    const procedure = `${req.service.typeName}/${req.method.name}`;
    const rule = trail.ruleOf(procedure);
    if (!rule || req.stream) return next(req);
    const ts = new Date().toISOString();
    const actor = actorOf(req.contextValues.get(principalKey));
    const ip = req.contextValues.get(clientAddressKey) ?? null;
    const message = req.message as never;
    let code;
    try {
      const res = await next(req);
      if (rule.archive && archive) archive.append({ ts, action: procedure, actor, ip_address: ip, request: toJson(req.method.input, req.message) });
      return res;
    } catch (err) {
      code = ConnectError.from(err).code;
      throw err;
    } finally {
      trail.record({
        ts,
        action: procedure,
        outcome: outcomeOf(code),
        metrics: rule.metrics ? uniqueNames(rule.metrics(message)) : [],
        ip_address: ip,
        actor,
      });
    }
  };
}
