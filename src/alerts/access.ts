import { API as AlertsAPI } from "../../gen/alerts/alerts_pb.js";
import { audited } from "../audit/declare.js";
import { rules } from "../tokens/access.js";

/** Who may call alerts.API: viewers and admins read; admins change rules, silences, channels and routes. */
export const alertsAccess = rules(AlertsAPI, {
  listRules: ["viewer", "admin"],
  putRule: ["admin"],
  deleteRule: ["admin"],
  listAlerts: ["viewer", "admin"],
  history: ["viewer", "admin"],
  listSilences: ["viewer", "admin"],
  createSilence: ["admin"],
  expireSilence: ["admin"],
  listChannels: ["viewer", "admin"],
  putChannel: ["admin"],
  deleteChannel: ["admin"],
  getRoutes: ["viewer", "admin"],
  setRoutes: ["admin"],
  listDeliveries: ["viewer", "admin"],
});

/** The writes of alerts.API that the audit trail records: rule, silence, channel and route changes. */
export const alertsAudit = audited(AlertsAPI, {
  putRule: {},
  deleteRule: {},
  createSilence: {},
  expireSilence: {},
  putChannel: {},
  deleteChannel: {},
  setRoutes: {},
});
