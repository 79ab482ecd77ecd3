import { fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { durationMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Kysely } from "kysely";
import { RouteSchema, type Route } from "../../../gen/alerts/alerts_pb.js";
import type { Db } from "../../storage/database.js";
import { storedMatchers } from "./matchers.js";
import type { NotificationTables, StoredMatcher } from "./notifications.table.js";

const tables = (db: Db): Kysely<NotificationTables> => db.withTables<NotificationTables>();

/** Alertmanager's defaults, as alerts.Route documents them. */
export const routeDefaults = { groupBy: ["alertname"], groupWaitMs: 30_000, groupIntervalMs: 300_000, repeatIntervalMs: 4 * 3_600_000 };
export const routeLimits = { maxRoutes: 100, maxChannelsPerRoute: 20, maxGroupBy: 20, maxDurationMs: 30 * 86_400_000 };

/** A route as the dispatcher applies it: defaults filled in. */
export interface ResolvedRoute {
  index: number;
  matchers: StoredMatcher[];
  channels: string[];
  groupBy: string[];
  groupWaitMs: number;
  groupIntervalMs: number;
  repeatIntervalMs: number;
  continue: boolean;
}

function invalid(message: string): never {
  throw new ConnectError(message, Code.InvalidArgument);
}

function checkedMs(route: Route, field: "groupWait" | "groupInterval" | "repeatInterval", name: string, i: number): number | undefined {
  const d = route[field];
  if (!d) return undefined;
  const ms = durationMs(d);
  if (ms < 0 || ms > routeLimits.maxDurationMs) invalid(`route ${i + 1}: ${name} must be between 0 and 30 days`);
  if (field !== "groupWait" && ms < 1_000) invalid(`route ${i + 1}: ${name} must be at least 1 s`);
  return ms;
}

/** Checks a routing table (InvalidArgument) and fills in the defaults; with `channels`, every channel named must be one of them. */
export function resolveRoutes(routes: readonly Route[], channels?: ReadonlySet<string>): ResolvedRoute[] {
  if (routes.length > routeLimits.maxRoutes) invalid(`at most ${routeLimits.maxRoutes} routes`);
  return routes.map((route, i) => {
    if (route.channels.length === 0 || route.channels.length > routeLimits.maxChannelsPerRoute) {
      invalid(`route ${i + 1}: name 1 to ${routeLimits.maxChannelsPerRoute} channels`);
    }
    for (const name of route.channels) if (channels && !channels.has(name)) invalid(`route ${i + 1}: no channel is named "${name.slice(0, 100)}"`);
    if (route.groupBy.length > routeLimits.maxGroupBy) invalid(`route ${i + 1}: at most ${routeLimits.maxGroupBy} group_by labels`);
    for (const label of route.groupBy)
      if (!/^[A-Za-z_][A-Za-z0-9_]{0,99}$/.test(label)) invalid(`route ${i + 1}: group_by "${label.slice(0, 100)}" is not a label name`);
    return {
      index: i,
      matchers: storedMatchers(route.matchers, `route ${i + 1}`),
      channels: [...new Set(route.channels)],
      groupBy: route.groupBy.length > 0 ? [...route.groupBy] : routeDefaults.groupBy,
      groupWaitMs: checkedMs(route, "groupWait", "group_wait", i) ?? routeDefaults.groupWaitMs,
      groupIntervalMs: checkedMs(route, "groupInterval", "group_interval", i) ?? routeDefaults.groupIntervalMs,
      repeatIntervalMs: checkedMs(route, "repeatInterval", "repeat_interval", i) ?? routeDefaults.repeatIntervalMs,
      continue: route.continue,
    };
  });
}

/** The routing table as stored, in order. */
export async function getRoutes(db: Db): Promise<Route[]> {
  const rows = await tables(db).selectFrom("notification_routes").select("route").orderBy("position").execute();
  return rows.map((r) => fromJson(RouteSchema, r.route as JsonValue));
}

/** Replaces the routing table in one transaction. */
export async function setRoutes(db: Db, routes: readonly Route[]): Promise<void> {
  await tables(db)
    .transaction()
    .execute(async (tx) => {
      await tx.deleteFrom("notification_routes").execute();
      if (routes.length === 0) return;
      await tx
        .insertInto("notification_routes")
        .values(routes.map((route, position) => ({ position, route: JSON.stringify(toJson(RouteSchema, route)) })))
        .execute();
    });
}

/** Whether a route names the channel (DeleteChannel refuses then). */
export async function routesNaming(db: Db, channel: string): Promise<number> {
  const routes = await getRoutes(db);
  return routes.filter((r) => r.channels.includes(channel)).length;
}
