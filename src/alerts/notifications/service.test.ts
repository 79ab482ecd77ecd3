import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { API as AlertsAPI, ChannelSchema, type Channel } from "../../../gen/alerts/alerts_pb.js";
import { MatchOperator } from "../../../gen/metrics/metrics_pb.js";
import { inMemoryClient, storagePerFile } from "../../../test/support/in-memory.js";
import { codeOf } from "../../../test/support/rpc.js";
import type { Principal } from "../../tokens/tokens.js";
import { alertsService } from "../service.js";
import { activeSilences, isSilenced } from "./silences.js";

const admin: Principal = { tokenId: "t1", name: "ops-alice", role: "admin", agentId: null } as Principal;
const eq = (label: string, value: string) => ({ label, operator: MatchOperator.EQUAL, value });
const re = (label: string, value: string) => ({ label, operator: MatchOperator.REGEX, value });
const hour = 3_600_000;

describe("alerts.API's silences, channels and routes, in memory", () => {
  const storage = storagePerFile();
  const client = () => inMemoryClient(AlertsAPI, alertsService({ db: storage().db }), admin);

  it("creates a silence as the caller, lists it, mutes matching labels only, and expires it by a unique prefix", async () => {
    const now = Date.now();
    const { silence } = await client().createSilence({
      silence: { matchers: [eq("alertname", "DiskFull"), re("host", "web-.*")], ends: timestampFromMs(now + 2 * hour), comment: "disk swap" },
    });
    expect(silence).toMatchObject({ createdBy: "ops-alice", comment: "disk swap" });
    expect(silence?.id).toMatch(/^[0-9a-f-]{36}$/);
    const listed = await client().listSilences({});
    expect(listed.silences.map((s) => s.id)).toContain(silence?.id);
    expect(listed.silences.find((s) => s.id === silence?.id)?.matchers).toEqual(silence?.matchers);

    const active = await activeSilences(storage().db, new Date());
    expect(isSilenced({ alertname: "DiskFull", host: "web-1" }, active)).toBe(true);
    expect(isSilenced({ alertname: "DiskFull", host: "db-1" }, active)).toBe(false);
    expect(isSilenced({ alertname: "CpuBusy", host: "web-1" }, active)).toBe(false);

    await client().expireSilence({ id: silence!.id.slice(0, 8) });
    expect(isSilenced({ alertname: "DiskFull", host: "web-1" }, await activeSilences(storage().db, new Date()))).toBe(false);
    expect((await client().listSilences({})).silences.map((s) => s.id)).not.toContain(silence?.id);
    expect((await client().listSilences({ includeExpired: true })).silences.map((s) => s.id)).toContain(silence?.id);
    expect(await codeOf(client().expireSilence({ id: silence!.id }))).toBe(Code.FailedPrecondition);
    expect(await codeOf(client().expireSilence({ id: "ffffffff-none" }))).toBe(Code.NotFound);
    expect(await codeOf(client().expireSilence({ id: silence!.id.slice(0, 3) }))).toBe(Code.InvalidArgument);
  });

  it("refuses silences without matchers, comment or a valid end, and bad regexes", async () => {
    const now = Date.now();
    const ends = timestampFromMs(now + hour);
    const refused = [
      { matchers: [], ends, comment: "x" },
      { matchers: [eq("a", "b")], ends, comment: "" },
      { matchers: [eq("a", "b")], comment: "x" },
      { matchers: [eq("a", "b")], ends: timestampFromMs(now - hour), comment: "x" },
      { matchers: [eq("a", "b")], starts: timestampFromMs(now + 2 * hour), ends, comment: "x" },
      { matchers: [re("a", "(")], ends, comment: "x" },
      { matchers: [{ label: "a", operator: MatchOperator.UNSPECIFIED, value: "b" }], ends, comment: "x" },
      { matchers: [eq("a", "b")], ends, comment: "x".repeat(501) },
    ];
    for (const silence of refused) expect(await codeOf(client().createSilence({ silence }))).toBe(Code.InvalidArgument);
  });

  it("never returns a channel's secrets, names them in secrets_set, and keeps them when PutChannel leaves them empty", async () => {
    const channel = create(ChannelSchema, {
      name: "ops-webhook",
      settings: { case: "webhook", value: { url: "https://hooks.example.com/s3cr3t-path", bearerToken: "tok-s3cr3t" } },
    });
    const put = await client().putChannel({ channel });
    expect(put.channel?.secretsSet).toEqual(["url", "bearer_token"]);
    expect(JSON.stringify(put.channel)).not.toMatch(/s3cr3t/);
    const listed = await client().listChannels({});
    expect(JSON.stringify(listed.channels)).not.toMatch(/s3cr3t/);
    expect(listed.channels.find((c) => c.name === "ops-webhook")?.secretsSet).toEqual(["url", "bearer_token"]);

    // Replacing it with empty secrets keeps the stored ones (the dispatcher still reads them).
    await client().putChannel({ channel: create(ChannelSchema, { name: "ops-webhook", settings: { case: "webhook", value: {} } }) });
    const { listChannels } = await import("./channels.js");
    const stored = (await listChannels(storage().db)).find((c) => c.name === "ops-webhook") as Channel;
    expect(stored.settings).toMatchObject({ case: "webhook", value: { url: "https://hooks.example.com/s3cr3t-path", bearerToken: "tok-s3cr3t" } });
  });

  it("refuses channels with bad names, non-HTTP URLs, missing fields or oversized values, without echoing secrets", async () => {
    const bad: Channel[] = [
      create(ChannelSchema, { name: "no spaces", settings: { case: "slack", value: { webhookUrl: "https://x.example/a" } } }),
      create(ChannelSchema, { name: "none" }),
      create(ChannelSchema, { name: "ftp", settings: { case: "discord", value: { webhookUrl: "ftp://x.example/secretpath" } } }),
      create(ChannelSchema, { name: "long", settings: { case: "alertmanager", value: { url: `https://x.example/${"a".repeat(3000)}` } } }),
      create(ChannelSchema, { name: "tg", settings: { case: "telegram", value: { botToken: "123:abc" } } }),
      create(ChannelSchema, { name: "ntfy", settings: { case: "ntfy", value: { topic: "bad topic/../" } } }),
      create(ChannelSchema, {
        name: "mail",
        settings: { case: "email", value: { smtpHost: "smtp.example", from: "me@example", to: ["not-an-address"] } },
      }),
      create(ChannelSchema, { name: "mail2", settings: { case: "email", value: { smtpHost: "smtp.example", from: "me@example", to: [] } } }),
    ];
    for (const channel of bad) {
      const err = await client()
        .putChannel({ channel })
        .then(
          () => undefined,
          (e: unknown) => e as Error,
        );
      expect(err?.message, channel.name).toMatch(/invalid_argument/);
      expect(err?.message).not.toMatch(/secretpath/);
    }
  });

  it("replaces the routing table, refusing unknown channels and bad durations, and keeps a named channel from deletion", async () => {
    await client().putChannel({
      channel: create(ChannelSchema, { name: "am", settings: { case: "alertmanager", value: { url: "http://127.0.0.1:9093" } } }),
    });
    const route = { matchers: [eq("severity", "critical")], channels: ["am"], groupBy: ["alertname", "host"], continue: true };
    await client().setRoutes({ routes: [route, { channels: ["ops-webhook"] }] });
    const got = await client().getRoutes({});
    expect(got.routes).toHaveLength(2);
    expect(got.routes[0]).toMatchObject({ channels: ["am"], groupBy: ["alertname", "host"], continue: true });
    expect(await codeOf(client().setRoutes({ routes: [{ channels: ["nope"] }] }))).toBe(Code.InvalidArgument);
    expect(await codeOf(client().setRoutes({ routes: [{ channels: ["am"], groupInterval: { seconds: 0n } }] }))).toBe(Code.InvalidArgument);
    expect(await codeOf(client().setRoutes({ routes: [{ channels: [] }] }))).toBe(Code.InvalidArgument);
    expect((await client().getRoutes({})).routes).toHaveLength(2);
    expect(await codeOf(client().deleteChannel({ name: "am" }))).toBe(Code.FailedPrecondition);
    expect(await codeOf(client().deleteChannel({ name: "missing" }))).toBe(Code.NotFound);
    await client().setRoutes({ routes: [] });
    await client().deleteChannel({ name: "am" });
    expect((await client().listChannels({})).channels.map((c) => c.name)).not.toContain("am");
  });

  it("lists deliveries with its limits checked", async () => {
    expect((await client().listDeliveries({ fingerprint: "abc" })).deliveries).toEqual([]);
    expect(await codeOf(client().listDeliveries({ limit: 1001 }))).toBe(Code.InvalidArgument);
  });
});
