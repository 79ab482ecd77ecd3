/**
 * The dispatcher end to end, with real parts: built `specta daemon` processes on one PostgreSQL
 * database, alerts written into the `alerts` table as the evaluator writes them, Debian's
 * prometheus-alertmanager, a local HTTP receiver (webhook, Slack, Discord, ntfy, Telegram) and a
 * local SMTP server (smtp-server).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { Kysely } from "kysely";
import { SMTPServer } from "smtp-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API as AlertsAPI, ChannelSchema } from "../../../gen/alerts/alerts_pb.js";
import { MatchOperator } from "../../../gen/metrics/metrics_pb.js";
import { adminTokenOf, freePort, spawnSpecta, tempDir, type SpectaProcess } from "../../../test/support/daemon.js";
import { createTestDatabase, openDb, type TestDatabase } from "../../../test/support/postgres.js";
import { bearer } from "../../../test/support/rpc.js";
import type { Db } from "../../storage/database.js";
import type { AlertTables } from "../alerts.table.js";

interface Received {
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
  at: number;
}

interface Mail {
  from: string;
  to: string[];
  user: string | undefined;
  raw: string;
}

const secrets = ["hook-s3cr3t", "slack-s3cr3t", "discord-s3cr3t", "ntfy-s3cr3t", "tg-s3cr3t", "smtp-s3cr3t"];

async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Listens on a free loopback port; returns it. */
async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as AddressInfo).port;
}

describe("the alert notifications, end to end", () => {
  const dir = tempDir("specta-notify-");
  let database: TestDatabase;
  let db: Kysely<AlertTables>;
  const daemons: (SpectaProcess & { url: string; dataDir: string })[] = [];
  let client: Client<typeof AlertsAPI>;
  const received: Received[] = [];
  let flakyFailures = 2;
  /** Fingerprints whose notifications the receiver takes in and never answers. */
  const held = new Set<string>();
  const mails: Mail[] = [];
  let receiver: Server;
  let smtp: SMTPServer;
  let alertmanager: ChildProcess;
  let amUrl = "";
  let hookUrl = "";

  async function startDaemon(name: string): Promise<SpectaProcess & { url: string; dataDir: string }> {
    const dataDir = join(dir.path, name);
    // The alerts here are written as the evaluator would, for rules the daemon does not know, which
    // its evaluator would resolve: it evaluates once as it starts, then not again during the test.
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(join(dataDir, "specta.json"), JSON.stringify({ alerts: { evaluationInterval: "24h" } }));
    const proc = spawnSpecta(["daemon", "--addr", "127.0.0.1:0", "--data-dir", dataDir], {
      SPECTA_LOG_LEVEL: "debug",
      SPECTA_DATABASE_URL: database.url,
    });
    const line = await proc.waitForLog((l) => l.message === "daemon listening", 60_000);
    // Its one evaluation done, so that it cannot resolve the alerts the test writes next.
    await proc.waitForLog((l) => l.handler === "alert-evaluation" && l.message === "ran as leader", 60_000);
    const daemon = { ...proc, url: String(line.url), dataDir };
    daemons.push(daemon);
    return daemon;
  }

  const killed = new Set<SpectaProcess>();
  /** kill -9. */
  async function kill(daemon: SpectaProcess): Promise<void> {
    killed.add(daemon);
    await daemon.cleanup();
  }
  const alive = () => daemons.filter((d) => !killed.has(d));
  /**
   * The daemon that sent a webhook (its externalURL). With two daemons either may notify: each
   * round of the dispatcher goes to whichever takes its lock first (src/worker/leader.ts).
   */
  const senderOf = (hook: Received) => {
    const sender = alive().find((d) => d.url === hook.body.externalURL);
    if (!sender) throw new Error(`no running daemon sent the webhook from ${String(hook.body.externalURL)}`);
    return sender;
  };

  const clientOf = (daemon: { url: string; dataDir: string }) =>
    createClient(
      AlertsAPI,
      createConnectTransport({ baseUrl: daemon.url, httpVersion: "1.1", interceptors: [bearer(adminTokenOf(daemon.dataDir))] }),
    );

  /** Writes a firing alert as the evaluator would; returns its fingerprint. */
  async function fire(labels: Record<string, string>, annotations: Record<string, string> = {}): Promise<string> {
    const fingerprint = randomBytes(8).toString("hex");
    const now = new Date();
    await db
      .insertInto("alerts")
      .values({
        fingerprint,
        rule: labels.alertname ?? "",
        labels: JSON.stringify(labels),
        annotations: JSON.stringify(annotations),
        state: "firing",
        value: 97.5,
        active_since: new Date(now.getTime() - 60_000),
        fired_at: now,
        resolved_at: null,
        last_evaluation: now,
        last_active: now,
      })
      .execute();
    return fingerprint;
  }

  async function resolve(fingerprint: string): Promise<Date> {
    const at = new Date();
    await db.updateTable("alerts").set({ state: "resolved", resolved_at: at, last_evaluation: at }).where("fingerprint", "=", fingerprint).execute();
    return at;
  }

  const webhooksOf = (fingerprint: string) =>
    received.filter((r) => r.path === "/webhook" && (r.body.alerts as { fingerprint: string }[]).some((a) => a.fingerprint === fingerprint));

  beforeAll(async () => {
    receiver = createServer((req, res) => {
      let body = "";
      req.setEncoding("utf8").on("data", (c: string) => (body += c));
      req.on("end", () => {
        const path = req.url ?? "";
        const parsed = JSON.parse(body || "{}") as Record<string, unknown>;
        received.push({ path, headers: req.headers, body: parsed, at: Date.now() });
        const alerts = (parsed.alerts ?? []) as { fingerprint: string }[];
        if (alerts.some((a) => held.has(a.fingerprint))) return; // never answered: its sender dies waiting
        if (path === "/flaky" && flakyFailures-- > 0) res.writeHead(503).end("down");
        else res.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}');
      });
    });
    const receiverPort = await listen(receiver);
    hookUrl = `http://127.0.0.1:${receiverPort}`;

    smtp = new SMTPServer({
      authOptional: true,
      allowInsecureAuth: true,
      disabledCommands: ["STARTTLS"],
      logger: false,
      onAuth: (auth, _session, done) => done(null, { user: auth.username }),
      onData: (stream, session, done) => {
        let raw = "";
        stream.setEncoding("utf8").on("data", (c: string) => (raw += c));
        stream.on("end", () => {
          const from = session.envelope.mailFrom;
          mails.push({ from: from ? from.address : "", to: session.envelope.rcptTo.map((r) => r.address), user: session.user, raw });
          done();
        });
      },
    });
    await new Promise<void>((resolve) => smtp.listen(0, "127.0.0.1", resolve));
    const smtpPort = (smtp.server.address() as AddressInfo).port;

    const amPort = await freePort();
    amUrl = `http://127.0.0.1:${amPort}`;
    const amConfig = join(dir.path, "alertmanager.yml");
    writeFileSync(amConfig, 'route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n');
    alertmanager = spawn(
      "prometheus-alertmanager",
      [
        `--config.file=${amConfig}`,
        `--storage.path=${join(dir.path, "am-data")}`,
        `--web.listen-address=127.0.0.1:${amPort}`,
        "--cluster.listen-address=",
      ],
      { stdio: "ignore" },
    );
    await until("Alertmanager to be ready", async () => (await fetch(`${amUrl}/-/ready`).catch(() => undefined))?.ok || undefined, 30_000);

    database = await createTestDatabase();
    const first = await startDaemon("a");
    db = (openDb(database.url, 2) as Db).withTables<AlertTables>();
    client = clientOf(first);

    const channels = [
      create(ChannelSchema, { name: "hook", settings: { case: "webhook", value: { url: `${hookUrl}/webhook`, bearerToken: "hook-s3cr3t" } } }),
      create(ChannelSchema, { name: "am", settings: { case: "alertmanager", value: { url: amUrl } } }),
      create(ChannelSchema, { name: "slack", settings: { case: "slack", value: { webhookUrl: `${hookUrl}/slack/slack-s3cr3t` } } }),
      create(ChannelSchema, { name: "discord", settings: { case: "discord", value: { webhookUrl: `${hookUrl}/discord/discord-s3cr3t` } } }),
      create(ChannelSchema, {
        name: "ntfy",
        settings: { case: "ntfy", value: { serverUrl: `${hookUrl}/ntfy`, topic: "specta-alerts", token: "ntfy-s3cr3t" } },
      }),
      create(ChannelSchema, {
        name: "tg",
        settings: { case: "telegram", value: { botToken: "123:tg-s3cr3t", chatId: "-1001", apiUrl: `${hookUrl}/tg` } },
      }),
      create(ChannelSchema, {
        name: "mail",
        settings: {
          case: "email",
          value: {
            smtpHost: "127.0.0.1",
            smtpPort: smtpPort,
            username: "alerts",
            password: "smtp-s3cr3t",
            from: "specta@example.com",
            to: ["ops@example.com"],
          },
        },
      }),
      create(ChannelSchema, { name: "flaky", settings: { case: "webhook", value: { url: `${hookUrl}/flaky` } } }),
    ];
    for (const channel of channels) await client.putChannel({ channel });
    const timing = { groupWait: { seconds: 1n }, groupInterval: { seconds: 2n }, repeatInterval: { seconds: 3600n } };
    await client.setRoutes({
      routes: [
        { matchers: [{ label: "alertname", operator: MatchOperator.EQUAL, value: "Flaky" }], channels: ["flaky"], ...timing },
        {
          matchers: [{ label: "alertname", operator: MatchOperator.EQUAL, value: "DiskFull" }],
          channels: ["hook", "am", "slack", "discord", "ntfy", "tg", "mail"],
          ...timing,
        },
        { channels: ["hook"], groupBy: ["alertname", "host"], ...timing },
      ],
    });
  }, 120_000);

  afterAll(async () => {
    for (const d of daemons) await d.cleanup();
    await db?.destroy();
    await database?.drop();
    alertmanager?.kill("SIGKILL");
    receiver?.close();
    await new Promise<void>((r) => (smtp ? smtp.close(() => r()) : r()));
    dir.remove();
  });

  it("notifies every kind of channel of a firing alert, then of its resolution", async () => {
    const fp = await fire({ alertname: "DiskFull", host: "web-1", severity: "critical" }, { summary: "web-1: / is 97.5% full" });

    const hook = await until("the webhook", () => webhooksOf(fp)[0]);
    expect(hook.headers.authorization).toBe("Bearer hook-s3cr3t");
    expect(hook.body).toMatchObject({
      version: "4",
      status: "firing",
      receiver: "hook",
      groupLabels: { alertname: "DiskFull" },
      commonLabels: { alertname: "DiskFull", host: "web-1", severity: "critical" },
      commonAnnotations: { summary: "web-1: / is 97.5% full" },
      externalURL: daemons[0]!.url,
      truncatedAlerts: 0,
    });
    expect(hook.body.groupKey).toEqual(expect.any(String));
    const [alert] = hook.body.alerts as Record<string, unknown>[];
    expect(alert).toMatchObject({
      status: "firing",
      fingerprint: fp,
      labels: { alertname: "DiskFull", host: "web-1" },
      endsAt: "0001-01-01T00:00:00Z",
    });
    expect(Date.parse(String(alert?.startsAt))).toBeGreaterThan(Date.now() - 60_000);
    expect(String(alert?.generatorURL)).toContain(daemons[0]!.url);

    const slack = await until("Slack", () => received.find((r) => r.path === "/slack/slack-s3cr3t"));
    expect(slack.body.text).toMatch(/\[FIRING:1\] alertname=DiskFull[\s\S]*web-1: \/ is 97\.5% full/);
    const discord = await until("Discord", () => received.find((r) => r.path === "/discord/discord-s3cr3t"));
    expect(discord.body.content).toBe("[FIRING:1] alertname=DiskFull");
    expect(discord.body.embeds).toEqual([
      expect.objectContaining({ title: "[FIRING:1] alertname=DiskFull", description: expect.stringContaining("97.5% full") }),
    ]);
    const ntfy = await until("ntfy", () => received.find((r) => r.path === "/ntfy"));
    expect(ntfy.headers.authorization).toBe("Bearer ntfy-s3cr3t");
    expect(ntfy.body).toMatchObject({ topic: "specta-alerts", title: "[FIRING:1] alertname=DiskFull", tags: ["rotating_light"], priority: 4 });
    expect(ntfy.body.message).toContain("97.5% full");
    const telegram = await until("Telegram", () => received.find((r) => r.path === "/tg/bot123:tg-s3cr3t/sendMessage"));
    expect(telegram.body).toMatchObject({ chat_id: "-1001", parse_mode: "HTML" });
    expect(telegram.body.text).toMatch(/^<b>\[FIRING:1\] alertname=DiskFull<\/b>\n/);
    const mail = await until("the e-mail", () => mails[0]);
    expect(mail).toMatchObject({ from: "specta@example.com", to: ["ops@example.com"], user: "alerts" });
    expect(mail.raw).toMatch(/^Subject: \[FIRING:1\] alertname=DiskFull\r?$/m);
    expect(mail.raw).toContain("97.5% full");

    type AmAlert = { labels: Record<string, string>; endsAt: string };
    const amAlerts = async (): Promise<AmAlert[]> =>
      ((await (await fetch(`${amUrl}/api/v2/alerts?filter=${encodeURIComponent('alertname="DiskFull"')}`)).json()) as AmAlert[]).filter(
        (a) => a.labels.host === "web-1",
      );
    const inAm = await until("Alertmanager to hold the alert", async () => (await amAlerts())[0]);
    expect(inAm.labels).toMatchObject({ alertname: "DiskFull", host: "web-1", severity: "critical" });
    // Firing: it ends a few resend intervals ahead unless re-sent.
    expect(Date.parse(inAm.endsAt)).toBeGreaterThan(Date.now() + 60_000);

    const resolvedAt = await resolve(fp);
    const resolvedHook = await until("the resolution's webhook", () => webhooksOf(fp).find((r) => r.body.status === "resolved"));
    expect(resolvedHook.body.alerts).toEqual([expect.objectContaining({ status: "resolved", fingerprint: fp, endsAt: resolvedAt.toISOString() })]);
    await until("Alertmanager to see the resolution", async () => {
      const [a] = await amAlerts();
      return !a || Date.parse(a.endsAt) <= resolvedAt.getTime() + 1 || undefined;
    });
    await until("the resolved e-mail", () => mails.find((m) => /^Subject: \[RESOLVED\] alertname=DiskFull/m.test(m.raw)));
    await until("Slack's resolution", () => received.find((r) => r.path === "/slack/slack-s3cr3t" && String(r.body.text).startsWith("*[RESOLVED]")));

    // Every attempt is recorded, per alert: each channel once firing, once resolved.
    const { deliveries } = await until("the deliveries", async () => {
      const d = await client.listDeliveries({ fingerprint: fp });
      return d.deliveries.length >= 14 ? d : undefined;
    });
    expect(deliveries.every((d) => d.ok && d.attempt === 1 && d.fingerprints.includes(fp))).toBe(true);
    const perChannel = new Map<string, number>();
    for (const d of deliveries) perChannel.set(d.channel, (perChannel.get(d.channel) ?? 0) + 1);
    expect(Object.fromEntries(perChannel)).toEqual({ hook: 2, am: 2, slack: 2, discord: 2, ntfy: 2, tg: 2, mail: 2 });
    expect(webhooksOf(fp)).toHaveLength(2);
  });

  it("retries a failing receiver with growing waits, records every attempt, and loses nothing", async () => {
    const fp = await fire({ alertname: "Flaky", host: "db-1" });
    await until("three attempts", () => received.filter((r) => r.path === "/flaky").length >= 3 || undefined);
    const { deliveries } = await until("the third delivery recorded", async () => {
      const d = await client.listDeliveries({ fingerprint: fp, channel: "flaky" });
      return d.deliveries.length >= 3 ? d : undefined;
    });
    const [third, second, first] = deliveries; // newest first
    expect(first).toMatchObject({ attempt: 1, ok: false, error: "HTTP 503" });
    expect(second).toMatchObject({ attempt: 2, ok: false, error: "HTTP 503" });
    expect(third).toMatchObject({ attempt: 3, ok: true, error: "" });
    const ms = (t: { seconds: bigint; nanos: number } | undefined) => Number(t!.seconds) * 1000 + t!.nanos / 1e6;
    // Backoff: 1 s after the first failure, 2 s after the second.
    expect(ms(first!.nextAttempt) - ms(first!.time)).toBeGreaterThanOrEqual(990);
    expect(ms(second!.nextAttempt) - ms(second!.time)).toBeGreaterThanOrEqual(1_990);
    expect(ms(second!.time)).toBeGreaterThanOrEqual(ms(first!.nextAttempt) - 5);
    const bodies = received.filter((r) => r.path === "/flaky");
    expect(bodies).toHaveLength(3);
    for (const b of bodies) expect((b.body.alerts as { fingerprint: string }[]).map((a) => a.fingerprint)).toEqual([fp]);
  });

  it("mutes silenced alerts and notifies the others", async () => {
    await client.createSilence({
      silence: {
        matchers: [
          { label: "alertname", operator: MatchOperator.EQUAL, value: "Muted" },
          { label: "host", operator: MatchOperator.REGEX, value: "lab-.*" },
        ],
        ends: timestampFromMs(Date.now() + 3_600_000),
        comment: "lab maintenance",
      },
    });
    const silenced = await fire({ alertname: "Muted", host: "lab-1" });
    const loud = await fire({ alertname: "Muted", host: "prod-1" });
    await until("the unsilenced alert's webhook", () => webhooksOf(loud)[0]);
    // Two more rounds of the dispatcher after it: the silenced one stays quiet.
    await new Promise((r) => setTimeout(r, 3_000));
    expect(webhooksOf(silenced)).toEqual([]);
    expect((await client.listDeliveries({ fingerprint: silenced })).deliveries).toEqual([]);
  });

  it("notifies once across a change of leader: a second daemon takes over and sends only the resolution", async () => {
    await startDaemon("b");
    const fp = await fire({ alertname: "Leader", host: "web-2" });
    const hook = await until("the firing webhook", () => webhooksOf(fp)[0]);
    const leader = senderOf(hook);
    // Sent and recorded as sent: the record is what the next leader goes by.
    await until("the leader's record of it", async () => (await clientOf(leader).listDeliveries({ fingerprint: fp })).deliveries[0]?.ok || undefined);
    await kill(leader);
    expect(alive()).toHaveLength(1);
    const [second] = alive();
    await resolve(fp);
    const resolution = await until("the resolution, from the other daemon", () => webhooksOf(fp).find((r) => r.body.status === "resolved"), 30_000);
    expect(resolution.body.externalURL).toBe(second!.url);
    // A few more rounds: nothing is sent twice.
    await new Promise((r) => setTimeout(r, 4_000));
    expect(webhooksOf(fp).map((r) => r.body.status)).toEqual(["firing", "resolved"]);
    const deliveries = (await clientOf(second!).listDeliveries({ fingerprint: fp })).deliveries;
    expect(deliveries.map((d) => d.ok)).toEqual([true, true]);
  });

  it("sends again, from the next leader, a notification whose leader died before the receiver answered: at least once, never lost", async () => {
    await startDaemon("c");
    const fp = await fire({ alertname: "Leader", host: "web-3" });
    held.add(fp);
    const hook = await until("the firing webhook, left unanswered", () => webhooksOf(fp)[0]);
    held.delete(fp); // the next one is answered; this one never is
    await kill(senderOf(hook)); // while it waits for the answer
    expect(alive()).toHaveLength(1);
    const [next] = alive();
    const again = await until("the same notification again, from the next leader", () => webhooksOf(fp)[1], 30_000);
    expect(again.body.externalURL).toBe(next!.url);
    await resolve(fp);
    await until("the resolution", () => webhooksOf(fp).find((r) => r.body.status === "resolved"), 30_000);
    await new Promise((r) => setTimeout(r, 4_000));
    expect(webhooksOf(fp).map((r) => r.body.status)).toEqual(["firing", "firing", "resolved"]);
    // The first attempt died with its sender, unrecorded; the next leader's two are.
    const deliveries = (await clientOf(next!).listDeliveries({ fingerprint: fp })).deliveries;
    expect(deliveries.map((d) => ({ ok: d.ok, attempt: d.attempt }))).toEqual([
      { ok: true, attempt: 1 },
      { ok: true, attempt: 1 },
    ]);
  });

  it("never shows a channel's secrets in ListChannels nor in the daemons' logs", async () => {
    const { channels } = await clientOf(alive()[0]!).listChannels({});
    expect(channels).toHaveLength(8);
    expect(channels.find((c) => c.name === "mail")?.secretsSet).toEqual(["password"]);
    const listed = JSON.stringify(channels, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v));
    // The first daemon's log shows the failed deliveries of the flaky receiver: it did log about them.
    expect(daemons[0]!.stdout()).toContain("notification not delivered");
    for (const d of daemons) {
      const output = d.stdout() + d.stderr();
      for (const secret of secrets) {
        expect(listed).not.toContain(secret);
        expect(output).not.toContain(secret);
      }
    }
  });
});
