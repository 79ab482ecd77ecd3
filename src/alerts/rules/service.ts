import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { API as AlertsAPI } from "../../../gen/alerts/alerts_pb.js";
import type { Db } from "../../storage/database.js";

export interface RuleDeps {
  db: Db;
}

/** The methods of alerts.API served from here. */
export type RuleMethods = "listRules" | "putRule" | "deleteRule" | "listAlerts" | "history";

const unimplemented = (): never => {
  throw new ConnectError("not implemented yet", Code.Unimplemented);
};

/** alerts.API's rules, alerts and history. */
export function ruleHandlers(_deps: RuleDeps): Pick<ServiceImpl<typeof AlertsAPI>, RuleMethods> {
  return { listRules: unimplemented, putRule: unimplemented, deleteRule: unimplemented, listAlerts: unimplemented, history: unimplemented };
}
