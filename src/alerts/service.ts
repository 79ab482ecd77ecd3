import type { ServiceImpl } from "@connectrpc/connect";
import type { API as AlertsAPI } from "../../gen/alerts/alerts_pb.js";
import { notificationHandlers, type NotificationDeps } from "./notifications/service.js";
import { ruleHandlers, type RuleDeps } from "./rules/service.js";

export type AlertsDeps = RuleDeps & NotificationDeps;

/** alerts.API: rules, alerts and their history (rules/), silences, channels, routes and deliveries (notifications/). */
export function alertsService(deps: AlertsDeps): ServiceImpl<typeof AlertsAPI> {
  return { ...ruleHandlers(deps), ...notificationHandlers(deps) };
}
