import { createTransport } from "nodemailer";
import type { Channel } from "../../../gen/alerts/alerts_pb.js";
import type { NotifiedAlert } from "./notifications.table.js";

/** One notification of one group, as every channel kind renders it. */
export interface Outgoing {
  /** The channel's name (the webhook's "receiver"). */
  receiver: string;
  groupKey: string;
  groupLabels: Record<string, string>;
  alerts: NotifiedAlert[];
  /** The daemon's URL, for links back. */
  externalUrl: string;
  now: Date;
}

/** A failed delivery; its message is safe to record and log (never a URL or a secret). */
export class DeliveryError extends Error {}

/** Alerts one webhook notification carries at most, as Alertmanager's max_alerts; the rest are counted in truncatedAlerts. */
export const maxAlertsPerNotification = 500;
/** How long past now Alertmanager keeps a firing alert that is not re-sent (Prometheus: 4 × its resend delay). */
export const alertmanagerResendMs = 60_000;
const alertmanagerEndsAfterMs = 4 * alertmanagerResendMs;

/** Alertmanager's "zero" time, the endsAt of a firing alert in its webhook. */
const zeroTime = "0001-01-01T00:00:00Z";

const status = (alerts: readonly NotifiedAlert[]): "firing" | "resolved" => (alerts.some((a) => a.status === "firing") ? "firing" : "resolved");

/** The labels (or annotations) every alert has with the same value. */
function common(maps: readonly Record<string, string>[]): Record<string, string> {
  const [first, ...rest] = maps;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(first ?? {})) if (rest.every((m) => m[k] === v)) out[k] = v;
  return out;
}

const generatorUrl = (n: Outgoing, a: NotifiedAlert) => `${n.externalUrl}/?alert=${a.fingerprint}`;

/** Alertmanager's webhook JSON, version "4". */
export function webhookPayload(n: Outgoing): Record<string, unknown> {
  const alerts = n.alerts.slice(0, maxAlertsPerNotification);
  return {
    version: "4",
    groupKey: n.groupKey,
    truncatedAlerts: n.alerts.length - alerts.length,
    status: status(n.alerts),
    receiver: n.receiver,
    groupLabels: n.groupLabels,
    commonLabels: common(n.alerts.map((a) => a.labels)),
    commonAnnotations: common(n.alerts.map((a) => a.annotations)),
    externalURL: n.externalUrl,
    alerts: alerts.map((a) => ({
      status: a.status,
      labels: a.labels,
      annotations: a.annotations,
      startsAt: a.startsAt,
      endsAt: a.endsAt || zeroTime,
      generatorURL: generatorUrl(n, a),
      fingerprint: a.fingerprint,
    })),
  };
}

/** Alertmanager's v2 API body: firing alerts end a few resend intervals ahead (re-sent before), resolved ones at their resolution. */
export function alertmanagerPayload(n: Outgoing): Record<string, unknown>[] {
  const ahead = new Date(n.now.getTime() + alertmanagerEndsAfterMs).toISOString();
  return n.alerts.map((a) => ({
    labels: a.labels,
    annotations: a.annotations,
    startsAt: a.startsAt,
    endsAt: a.status === "firing" ? ahead : a.endsAt,
    generatorURL: generatorUrl(n, a),
  }));
}

/** "[FIRING:2] alertname=HighCPU": the one-line title of the chat and e-mail kinds. */
export function title(n: Outgoing): string {
  const firing = n.alerts.filter((a) => a.status === "firing").length;
  const labels = Object.entries(n.groupLabels).map(([k, v]) => `${k}=${v}`);
  const head = firing > 0 ? `[FIRING:${firing}]` : "[RESOLVED]";
  return [head, ...labels].join(" ");
}

/** One line per alert: its status, its summary (or its labels) and since when. */
export function lines(n: Outgoing): string[] {
  return n.alerts.slice(0, maxAlertsPerNotification).map((a) => {
    const what =
      a.annotations.summary ??
      Object.entries(a.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(" ");
    const when = a.status === "firing" ? `since ${a.startsAt}` : `resolved ${a.endsAt}`;
    return `[${a.status}] ${what} (${when})`;
  });
}

const cut = (text: string, max: number) => (text.length <= max ? text : `${text.slice(0, max - 1)}…`);
const escapeHtml = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const body = (n: Outgoing) => lines(n).join("\n");

/** What one channel kind sends: the URL, the JSON body and the headers. */
interface HttpRequest {
  url: string;
  body: unknown;
  headers: Record<string, string>;
}

function httpRequest(channel: Channel, n: Outgoing): HttpRequest | undefined {
  const { settings } = channel;
  const bearer = (token: string): Record<string, string> => (token ? { authorization: `Bearer ${token}` } : {});
  switch (settings.case) {
    case "webhook":
      return { url: settings.value.url, body: webhookPayload(n), headers: bearer(settings.value.bearerToken) };
    case "alertmanager":
      return { url: `${settings.value.url.replace(/\/+$/, "")}/api/v2/alerts`, body: alertmanagerPayload(n), headers: {} };
    case "slack":
      return { url: settings.value.webhookUrl, body: { text: cut(`*${title(n)}*\n${body(n)}`, 40_000) }, headers: {} };
    case "discord": {
      const firing = status(n.alerts) === "firing";
      const embed = { title: cut(title(n), 256), description: cut(body(n), 4_096), color: firing ? 0xe0_1e_5a : 0x2e_b6_7d };
      return { url: settings.value.webhookUrl, body: { content: cut(title(n), 2_000), embeds: [embed] }, headers: {} };
    }
    case "ntfy": {
      const firing = status(n.alerts) === "firing";
      const payload = {
        topic: settings.value.topic,
        title: cut(title(n), 250),
        message: cut(body(n), 4_000),
        tags: [firing ? "rotating_light" : "white_check_mark"],
        priority: firing ? 4 : 3,
      };
      return { url: settings.value.serverUrl || "https://ntfy.sh", body: payload, headers: bearer(settings.value.token) };
    }
    case "telegram": {
      const api = (settings.value.apiUrl || "https://api.telegram.org").replace(/\/+$/, "");
      const text = cut(`<b>${escapeHtml(title(n))}</b>\n${escapeHtml(body(n))}`, 4_096);
      return {
        url: `${api}/bot${settings.value.botToken}/sendMessage`,
        body: { chat_id: settings.value.chatId, text, parse_mode: "HTML" },
        headers: {},
      };
    }
    default:
      return undefined;
  }
}

/** Why a request failed, without its URL (which may carry a secret). */
function reason(err: unknown, timeoutMs: number): string {
  if (err instanceof DOMException && (err.name === "TimeoutError" || err.name === "AbortError")) return `timed out after ${timeoutMs} ms`;
  const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
  if (typeof cause?.code === "string") return `connect ${cause.code}`;
  return err instanceof Error ? err.name : "request failed";
}

async function postJson(request: HttpRequest, timeoutMs: number): Promise<void> {
  let res: Response;
  try {
    res = await fetch(request.url, {
      method: "POST",
      headers: { "content-type": "application/json", "user-agent": "specta", ...request.headers },
      body: JSON.stringify(request.body),
      redirect: "error",
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    throw new DeliveryError(reason(err, timeoutMs));
  }
  await res.body?.cancel();
  if (!res.ok) throw new DeliveryError(`HTTP ${res.status}`);
}

async function sendEmail(settings: Extract<Channel["settings"], { case: "email" }>["value"], n: Outgoing, timeoutMs: number): Promise<void> {
  const port = settings.smtpPort || 587;
  const transport = createTransport({
    host: settings.smtpHost,
    port,
    secure: port === 465,
    requireTLS: settings.requireTls,
    ...(settings.username ? { auth: { user: settings.username, pass: settings.password } } : {}),
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
  });
  try {
    await transport.sendMail({ from: settings.from, to: settings.to, subject: title(n), text: `${body(n)}\n\n${n.externalUrl}\n` });
  } catch (err) {
    const e = err as { code?: unknown; responseCode?: unknown };
    throw new DeliveryError(`SMTP ${typeof e.responseCode === "number" ? e.responseCode : String(e.code ?? "error")}`);
  } finally {
    transport.close();
  }
}

/** Delivers one notification to one channel within `timeoutMs`; throws DeliveryError. */
export async function deliver(channel: Channel, n: Outgoing, timeoutMs: number): Promise<void> {
  if (channel.settings.case === "email") return sendEmail(channel.settings.value, n, timeoutMs);
  const request = httpRequest(channel, n);
  if (!request) throw new DeliveryError("the channel has no settings");
  await postJson(request, timeoutMs);
}
