import type { Kysely } from "kysely";
import type { Channel } from "../../../gen/alerts/alerts_pb.js";
import type { Logger } from "../../shared/log.js";
import type { Db } from "../../storage/database.js";
import type { Handler } from "../../worker/engine.js";
import type { AlertRow } from "../alerts.table.js";
import { listChannels } from "./channels.js";
import { labelsMatch } from "./matchers.js";
import type { NotificationRow, NotificationTables, NotifiedAlert } from "./notifications.table.js";
import { getRoutes, resolveRoutes, type ResolvedRoute } from "./routes.js";
import { alertmanagerResendMs, deliver, DeliveryError } from "./senders.js";
import { activeSilences, isSilenced } from "./silences.js";

/** The advisory lock of the dispatcher: one daemon of those sharing a database notifies (other keys: src/worker/leader.ts). */
export const notificationDispatcherLock = 0x5e_c7_a0_11;

export interface RetryPolicy {
  /** The wait after the first failed attempt; doubled after each next one. */
  initialMs: number;
  maxMs: number;
  /** Attempts of one notification before it is given up (recorded as failed). */
  maxAttempts: number;
}

export const defaultRetry: RetryPolicy = { initialMs: 1_000, maxMs: 300_000, maxAttempts: 10 };

export interface DispatcherOptions {
  db: Db;
  log: Logger;
  /** The daemon's URL, for links back to it (known once it listens). */
  externalUrl: () => string;
  /** How often it runs; default 1 s. */
  intervalMs?: number;
  /** Per attempt; default 10 s. */
  timeoutMs?: number;
  retry?: RetryPolicy;
  /** Deliveries and finished notifications are kept this long; default 30 days. */
  keepMs?: number;
  /** The time; tests move it to step through group_wait, group_interval and repeat_interval. */
  clock?: () => Date;
}

/** Notifications sent at once per round, at most. */
const batch = 50;

const tables = (db: Db): Kysely<NotificationTables> => db.withTables<NotificationTables>();

/** The wait before attempt `attempt + 1`, after `attempt` failed ones. */
export function backoffMs(retry: RetryPolicy, attempt: number): number {
  return Math.min(retry.maxMs, retry.initialMs * 2 ** (attempt - 1));
}

/** An alert's group under a route: the route's group_by labels that it has. */
function groupOf(route: ResolvedRoute, labels: Record<string, string>): { key: string; labels: Record<string, string> } {
  const group: Record<string, string> = {};
  for (const label of route.groupBy) if (labels[label] !== undefined) group[label] = labels[label];
  const inner = Object.entries(group)
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    .join(",");
  return { key: `route${route.index}:{${inner}}`, labels: group };
}

function notified(alert: AlertRow, status: NotifiedAlert["status"]): NotifiedAlert {
  return {
    fingerprint: alert.fingerprint,
    status,
    labels: alert.labels,
    annotations: alert.annotations,
    startsAt: (alert.fired_at ?? alert.active_since).toISOString(),
    endsAt: status === "resolved" && alert.resolved_at ? alert.resolved_at.toISOString() : "",
  };
}

/** One group's alerts for one channel, as this round sees them. */
interface Pending {
  groupKey: string;
  channel: string;
  groupLabels: Record<string, string>;
  route: ResolvedRoute;
  firing: AlertRow[];
  resolved: AlertRow[];
}

/**
 * The leader-only job that turns the `alerts` table into notifications, as Alertmanager does:
 * silenced alerts are dropped, the rest routed (first matching route, unless `continue`) and
 * grouped; a new group waits group_wait, changes wait group_interval, an unchanged firing group
 * is notified again after repeat_interval (Alertmanager channels: every minute, as Prometheus
 * re-sends). What each channel was told per group is kept in notification_groups, and each
 * notification in an outbox (notifications) sent with retries and backoff, every attempt in
 * notification_deliveries: a restart or a new leader carries on where the last one stopped.
 * Delivery is at least once: a send and its record cannot be one transaction, so a leader that
 * dies between them leaves the notification pending, and the next one sends it again.
 */
export function notificationDispatcher(options: DispatcherOptions): Handler {
  const { db, externalUrl } = options;
  const log = options.log.child({ handler: "alert-notifications" });
  const retry = options.retry ?? defaultRetry;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const keepMs = options.keepMs ?? 30 * 86_400_000;
  const clock = options.clock ?? (() => new Date());
  let lastCleanup = 0;

  async function plan(now: Date, channels: Map<string, Channel>): Promise<void> {
    let routes: ResolvedRoute[];
    try {
      routes = resolveRoutes(await getRoutes(db));
    } catch (err) {
      log.error({ err: (err as Error).message }, "the stored routing table cannot be used; nothing is notified");
      return;
    }
    // No routes, nothing to notify: a daemon without notifications configured reads no alerts every second.
    if (routes.length === 0) return;
    const t = tables(db);
    const [alerts, silences] = await Promise.all([
      t.selectFrom("alerts").selectAll().where("state", "in", ["firing", "resolved"]).execute(),
      activeSilences(db, now),
    ]);
    const groups = new Map<string, Pending>();
    for (const alert of alerts) {
      if (isSilenced(alert.labels, silences)) continue;
      for (const route of routes) {
        if (!labelsMatch(alert.labels, route.matchers)) continue;
        const group = groupOf(route, alert.labels);
        for (const channel of route.channels) {
          const id = `${group.key}\u0000${channel}`;
          let pending = groups.get(id);
          if (!pending) groups.set(id, (pending = { groupKey: group.key, channel, groupLabels: group.labels, route, firing: [], resolved: [] }));
          (alert.state === "firing" ? pending.firing : pending.resolved).push(alert);
        }
        if (!route.continue) break;
      }
    }

    await t.transaction().execute(async (tx) => {
      const states = await tx.selectFrom("notification_groups").selectAll().forUpdate().execute();
      const known = new Map(states.map((s) => [`${s.group_key}\u0000${s.channel}`, s]));
      for (const [id, state] of known) {
        if (!groups.has(id)) {
          // Every alert of the group is gone or silenced: nothing is owed any more.
          await tx.deleteFrom("notification_groups").where("group_key", "=", state.group_key).where("channel", "=", state.channel).execute();
        }
      }
      for (const [id, group] of groups) {
        const alertmanager = channels.get(group.channel)?.settings.case === "alertmanager";
        // Alertmanager groups by itself: it gets every change at once and the firing alerts every minute.
        const waitMs = alertmanager ? 0 : group.route.groupWaitMs;
        const intervalMs = alertmanager ? 0 : group.route.groupIntervalMs;
        const repeatMs = alertmanager ? alertmanagerResendMs : group.route.repeatIntervalMs;
        let state = known.get(id);
        if (!state) {
          if (group.firing.length === 0) continue; // resolutions of alerts it was never told about
          state = {
            group_key: group.groupKey,
            channel: group.channel,
            group_labels: group.groupLabels,
            notified_firing: [],
            next_flush: new Date(now.getTime() + waitMs),
            last_notified: null,
          };
          await tx
            .insertInto("notification_groups")
            .values({ ...state, group_labels: JSON.stringify(group.groupLabels) })
            .execute();
        }
        if (state.next_flush > now) continue;
        const told = new Set(state.notified_firing);
        const resolved = group.resolved.filter((a) => told.has(a.fingerprint));
        const changed = group.firing.some((a) => !told.has(a.fingerprint)) || resolved.length > 0;
        const repeat = group.firing.length > 0 && (!state.last_notified || now.getTime() - state.last_notified.getTime() >= repeatMs);
        const next_flush = new Date(now.getTime() + intervalMs);
        if (!changed && !repeat) {
          if (group.firing.length === 0) {
            await tx.deleteFrom("notification_groups").where("group_key", "=", state.group_key).where("channel", "=", state.channel).execute();
          } else {
            await tx
              .updateTable("notification_groups")
              .set({ next_flush })
              .where("group_key", "=", state.group_key)
              .where("channel", "=", state.channel)
              .execute();
          }
          continue;
        }
        const carried = [...group.firing.map((a) => notified(a, "firing")), ...resolved.map((a) => notified(a, "resolved"))];
        await tx
          .insertInto("notifications")
          .values({
            channel: group.channel,
            group_key: group.groupKey,
            group_labels: JSON.stringify(group.groupLabels),
            alerts: JSON.stringify(carried),
            fingerprints: carried.map((a) => a.fingerprint),
            next_attempt: now,
          })
          .execute();
        if (group.firing.length === 0) {
          await tx.deleteFrom("notification_groups").where("group_key", "=", state.group_key).where("channel", "=", state.channel).execute();
        } else {
          await tx
            .updateTable("notification_groups")
            .set({ notified_firing: group.firing.map((a) => a.fingerprint), last_notified: now, next_flush })
            .where("group_key", "=", state.group_key)
            .where("channel", "=", state.channel)
            .execute();
        }
      }
    });
  }

  async function attempt(n: NotificationRow, channel: Channel | undefined): Promise<void> {
    const attemptNo = n.attempts + 1;
    let error = "";
    if (!channel) error = "the channel no longer exists";
    else {
      try {
        await deliver(
          channel,
          { receiver: n.channel, groupKey: n.group_key, groupLabels: n.group_labels, alerts: n.alerts, externalUrl: externalUrl(), now: clock() },
          timeoutMs,
        );
      } catch (err) {
        error = err instanceof DeliveryError ? err.message : "delivery failed";
        if (!(err instanceof DeliveryError)) log.error({ err, channel: n.channel }, "unexpected delivery error");
      }
    }
    const ok = error === "";
    const retrying = !ok && channel !== undefined && attemptNo < retry.maxAttempts;
    // The attempt's record and its next attempt on one clock (the daemon's): the database's own now() is
    // the transaction's start, later by however long that took, which made the recorded wait short of the backoff.
    const attemptedAt = clock();
    const next = retrying ? new Date(attemptedAt.getTime() + backoffMs(retry, attemptNo)) : null;
    await tables(db)
      .transaction()
      .execute(async (tx) => {
        await tx
          .updateTable("notifications")
          .set({ attempts: attemptNo, state: ok ? "sent" : retrying ? "pending" : "failed", ...(next ? { next_attempt: next } : {}) })
          .where("id", "=", n.id)
          .execute();
        await tx
          .insertInto("notification_deliveries")
          .values({
            notification_id: n.id,
            channel: n.channel,
            group_key: n.group_key,
            fingerprints: n.fingerprints,
            attempt: attemptNo,
            ok,
            error,
            at: attemptedAt,
            next_attempt: next,
          })
          .execute();
      });
    if (!ok) log.warn({ channel: n.channel, groupKey: n.group_key, attempt: attemptNo, error, retrying }, "notification not delivered");
  }

  async function send(now: Date, channels: Map<string, Channel>): Promise<void> {
    // Per group and channel in order: a retried notification holds back the ones after it, so a resolution never overtakes its firing.
    const due = await tables(db)
      .selectFrom("notifications as n")
      .selectAll()
      .where("n.state", "=", "pending")
      .where("n.next_attempt", "<=", now)
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom("notifications as o")
              .select("o.id")
              .where("o.state", "=", "pending")
              .whereRef("o.channel", "=", "n.channel")
              .whereRef("o.group_key", "=", "n.group_key")
              .whereRef("o.id", "<", "n.id"),
          ),
        ),
      )
      .orderBy("n.id")
      .limit(batch)
      .execute();
    await Promise.all(due.map((n) => attempt(n, channels.get(n.channel))));
  }

  async function cleanup(now: Date): Promise<void> {
    if (now.getTime() - lastCleanup < 3_600_000) return;
    lastCleanup = now.getTime();
    const before = new Date(now.getTime() - keepMs);
    await tables(db).deleteFrom("notification_deliveries").where("at", "<", before).execute();
    await tables(db).deleteFrom("notifications").where("state", "!=", "pending").where("created", "<", before).execute();
  }

  return {
    name: "alert-notifications",
    coolerMs: options.intervalMs ?? 1_000,
    leaderLock: notificationDispatcherLock,
    async ensure() {
      const now = clock();
      const channels = new Map((await listChannels(db)).map((c) => [c.name, c]));
      await plan(now, channels);
      await send(now, channels);
      await cleanup(now);
    },
  };
}
