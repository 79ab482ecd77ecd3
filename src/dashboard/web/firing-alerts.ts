/**
 * Firing alerts as the fleet and host pages mark them: an alert is about the host its `host`
 * label names (the default rules group by it), or else its `instance` label (a scraped series,
 * "host:port").
 */
import { AlertState, type Alert } from "../../../gen/alerts/alerts_pb.js";
import { alertHost } from "../../shared/alert-text.js";
import type { Api } from "./api.js";
import { h } from "./dom.js";
import { formatNumber, plural } from "./format.js";

/** The alerts firing now (pending ones are not yet news for a host's row). */
export async function firingAlerts(api: Api, signal: AbortSignal): Promise<Alert[]> {
  const { alerts } = await api.alerts.listAlerts({}, { signal });
  return alerts.filter((a) => a.state === AlertState.FIRING);
}

/** Whether an alert is about `hostname`. */
export function isAbout(alert: Pick<Alert, "labels">, hostname: string): boolean {
  const host = alertHost(alert.labels);
  return hostname !== "" && (host === hostname || host.startsWith(`${hostname}:`));
}

/** The Alerts page, showing only `hostname`'s alerts. */
export const alertsPageOf = (hostname: string) => `#/alerts?host=${encodeURIComponent(hostname)}`;

/** A fleet row's mark: how many alerts fire on the host (`mine`, its alerts), linking to them; null when none. */
export function firingBadge(mine: Alert[], hostname: string): HTMLElement | null {
  if (mine.length === 0) return null;
  return h(
    "a",
    { class: "firing-badge", href: alertsPageOf(hostname), title: mine.map((a) => a.rule).join(", ") },
    `${plural(mine.length, "alert")} firing`,
  );
}

/** The host page's banner: each alert firing on the host with its value and summary; hidden when none. */
export function drawFiringBanner(banner: HTMLElement, alerts: Alert[], hostname: string): void {
  const mine = alerts.filter((a) => isAbout(a, hostname));
  banner.hidden = mine.length === 0;
  banner.replaceChildren(
    h("strong", {}, `${plural(mine.length, "alert")} firing on ${hostname}`),
    h(
      "ul",
      {},
      ...mine.map((a) =>
        h("li", { "data-alert": a.rule }, h("b", {}, a.rule), ` · ${formatNumber(a.value)}`, a.annotations.summary && ` · ${a.annotations.summary}`),
      ),
    ),
    h("a", { href: alertsPageOf(hostname) }, "See them on the Alerts page"),
  );
}
