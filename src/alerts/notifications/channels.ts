import { clone, fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Kysely } from "kysely";
import { ChannelSchema, type Channel } from "../../../gen/alerts/alerts_pb.js";
import type { Db } from "../../storage/database.js";
import type { NotificationTables } from "./notifications.table.js";

const tables = (db: Db): Kysely<NotificationTables> => db.withTables<NotificationTables>();

export type ChannelKind = NonNullable<Channel["settings"]["case"]>;

/** The secret fields of each kind: local name → the proto field name that secrets_set reports. */
const secretFields: Record<ChannelKind, Record<string, string>> = {
  webhook: { url: "url", bearerToken: "bearer_token" },
  alertmanager: {},
  slack: { webhookUrl: "webhook_url" },
  discord: { webhookUrl: "webhook_url" },
  ntfy: { topic: "topic", token: "token" },
  telegram: { botToken: "bot_token" },
  email: { password: "password" },
};

export const channelLimits = { maxChannels: 200, maxUrl: 2_048, maxText: 1_000, maxRecipients: 50 };

type Fields = Record<string, unknown>;
const fieldsOf = (channel: Channel): Fields => (channel.settings.value ?? {}) as unknown as Fields;

function invalid(message: string): never {
  throw new ConnectError(message, Code.InvalidArgument);
}

/** The channel without its secrets, with `secrets_set` naming those that are set: what the API returns. */
export function withoutSecrets(channel: Channel): Channel {
  const out = clone(ChannelSchema, channel);
  out.secretsSet = [];
  const kind = out.settings.case;
  if (!kind) return out;
  const fields = fieldsOf(out);
  for (const [local, name] of Object.entries(secretFields[kind])) {
    if (fields[local] !== "") out.secretsSet.push(name);
    fields[local] = "";
  }
  return out;
}

/** `next` with the secrets it leaves empty taken from `stored` (same name and kind): PutChannel keeps them. */
export function keepSecrets(next: Channel, stored: Channel | undefined): Channel {
  const out = clone(ChannelSchema, next);
  out.secretsSet = [];
  const kind = out.settings.case;
  if (!kind || !stored || stored.settings.case !== kind) return out;
  const fields = fieldsOf(out);
  const old = fieldsOf(stored);
  for (const local of Object.keys(secretFields[kind])) if (fields[local] === "") fields[local] = old[local];
  return out;
}

function checkUrl(value: string, field: string, required: boolean): void {
  if (value === "") {
    if (required) invalid(`${field} is required`);
    return;
  }
  if (value.length > channelLimits.maxUrl) invalid(`${field} is longer than ${channelLimits.maxUrl} characters`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    // Not echoed: the URL may carry a secret.
    return invalid(`${field} is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") invalid(`${field} must be an http:// or https:// URL`);
}

function checkText(value: string, field: string, required: boolean, max = channelLimits.maxText): void {
  if (required && value === "") invalid(`${field} is required`);
  if (value.length > max) invalid(`${field} is longer than ${max} characters`);
  if (/[\r\n]/.test(value)) invalid(`${field} must be one line`);
}

const address = /^[^\s@<>,;]+@[^\s@<>,;]+$/;

/** Checks a channel (after keepSecrets) before it is stored: InvalidArgument says what is wrong, never a secret's value. */
export function validateChannel(channel: Channel): void {
  if (!/^[A-Za-z0-9_.-]{1,100}$/.test(channel.name)) invalid("name must be 1 to 100 characters of A-Z, a-z, 0-9, '_', '.' and '-'");
  const { settings } = channel;
  switch (settings.case) {
    case undefined:
      return invalid("a channel needs settings: webhook, alertmanager, slack, discord, ntfy, telegram or email");
    case "webhook":
      checkUrl(settings.value.url, "webhook.url", true);
      return checkText(settings.value.bearerToken, "webhook.bearer_token", false);
    case "alertmanager":
      return checkUrl(settings.value.url, "alertmanager.url", true);
    case "slack":
      return checkUrl(settings.value.webhookUrl, "slack.webhook_url", true);
    case "discord":
      return checkUrl(settings.value.webhookUrl, "discord.webhook_url", true);
    case "ntfy":
      checkUrl(settings.value.serverUrl, "ntfy.server_url", false);
      if (!/^[-_A-Za-z0-9]{1,64}$/.test(settings.value.topic)) invalid("ntfy.topic must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'");
      return checkText(settings.value.token, "ntfy.token", false);
    case "telegram":
      checkText(settings.value.botToken, "telegram.bot_token", true, 200);
      checkText(settings.value.chatId, "telegram.chat_id", true, 200);
      return checkUrl(settings.value.apiUrl, "telegram.api_url", false);
    case "email": {
      const e = settings.value;
      if (!/^[A-Za-z0-9.-]{1,253}$/.test(e.smtpHost) && !/^\[?[0-9a-fA-F:.]+\]?$/.test(e.smtpHost))
        invalid("email.smtp_host must be a host name or address");
      if (e.smtpPort > 65_535) invalid("email.smtp_port must be at most 65535");
      checkText(e.username, "email.username", false);
      checkText(e.password, "email.password", false);
      if (!address.test(e.from) || e.from.length > 254) invalid("email.from must be an e-mail address");
      if (e.to.length === 0 || e.to.length > channelLimits.maxRecipients) invalid(`email.to must hold 1 to ${channelLimits.maxRecipients} addresses`);
      for (const to of e.to) if (!address.test(to) || to.length > 254) invalid(`email.to: "${to.slice(0, 254)}" is not an e-mail address`);
      return;
    }
  }
}

const parse = (json: unknown): Channel => fromJson(ChannelSchema, json as JsonValue);

/** Every channel, secrets included (for the dispatcher; the API strips them), by name. */
export async function listChannels(db: Db): Promise<Channel[]> {
  const rows = await tables(db).selectFrom("notification_channels").select("channel").orderBy("name").execute();
  return rows.map((r) => parse(r.channel));
}

export async function getChannel(db: Db, name: string): Promise<Channel | undefined> {
  const row = await tables(db).selectFrom("notification_channels").select("channel").where("name", "=", name).executeTakeFirst();
  return row && parse(row.channel);
}

/** Stores a checked channel (replacing the one of its name). */
export async function putChannel(db: Db, channel: Channel): Promise<void> {
  const json = JSON.stringify(toJson(ChannelSchema, channel));
  await tables(db)
    .insertInto("notification_channels")
    .values({ name: channel.name, channel: json })
    .onConflict((oc) => oc.column("name").doUpdateSet({ channel: json, updated: new Date() }))
    .execute();
}

export async function countChannels(db: Db): Promise<number> {
  const row = await tables(db)
    .selectFrom("notification_channels")
    .select((eb) => eb.fn.countAll<string>().as("n"))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** Deletes a channel; false when there was none of that name. */
export async function deleteChannel(db: Db, name: string): Promise<boolean> {
  const result = await tables(db).deleteFrom("notification_channels").where("name", "=", name).executeTakeFirst();
  return result.numDeletedRows > 0n;
}
