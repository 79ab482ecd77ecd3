import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { API as AlertsAPI } from "../../../gen/alerts/alerts_pb.js";
import type { Db } from "../../storage/database.js";
import type { RuleMethods } from "../rules/service.js";

export interface NotificationDeps {
  db: Db;
}

const unimplemented = (): never => {
  throw new ConnectError("not implemented yet", Code.Unimplemented);
};

/** alerts.API's silences, channels, routes and deliveries. */
export function notificationHandlers(_deps: NotificationDeps): Omit<ServiceImpl<typeof AlertsAPI>, RuleMethods> {
  return {
    listSilences: unimplemented,
    createSilence: unimplemented,
    expireSilence: unimplemented,
    listChannels: unimplemented,
    putChannel: unimplemented,
    deleteChannel: unimplemented,
    getRoutes: unimplemented,
    setRoutes: unimplemented,
    listDeliveries: unimplemented,
  };
}
