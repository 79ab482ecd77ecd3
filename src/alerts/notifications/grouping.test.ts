/**
 * The dispatcher's grouping and timings as Alertmanager has them, stepped through with a clock
 * the test moves: the handler runs against a real PostgreSQL database and posts to a local
 * HTTP receiver.
 */
import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { create } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChannelSchema } from "../../../gen/alerts/alerts_pb.js";
import { MatchOperator } from "../../../gen/metrics/metrics_pb.js";
import { storagePerFile } from "../../../test/support/in-memory.js";
import { createLogger } from "../../shared/log.js";
import type { Handler } from "../../worker/engine.js";
import type { AlertTables } from "../alerts.table.js";
import { putChannel } from "./channels.js";
import { notificationDispatcher } from "./dispatcher.js";
import { setRoutes } from "./routes.js";

interface Post {
  path: string;
  body: unknown;
}

const s = 1_000;
const t0 = Date.parse("2026-12-01T12:00:00Z");

describe("the dispatcher's groups and timings", () => {
  const storage = storagePerFile();
  const posts: Post[] = [];
  let server: Server;
  let base = "";
  let now = t0;
  let dispatcher: Handler;
  const signal = new AbortController().signal;

  /** Runs one round of the dispatcher at t0 + `at` ms; returns what it posted. */
  async function roundAt(at: number): Promise<Post[]> {
    now = t0 + at;
    const before = posts.length;
    await dispatcher.ensure(signal);
    return posts.slice(before);
  }

  const alerts = () => storage().db.withTables<AlertTables>();
  async function fire(labels: Record<string, string>, at: number): Promise<string> {
    const fingerprint = randomBytes(8).toString("hex");
    const when = new Date(t0 + at);
    await alerts()
      .insertInto("alerts")
      .values({
        fingerprint,
        rule: labels.alertname!,
        labels: JSON.stringify(labels),
        annotations: "{}",
        state: "firing",
        value: 1,
        active_since: when,
        fired_at: when,
        resolved_at: null,
        last_evaluation: when,
        last_active: when,
      })
      .execute();
    return fingerprint;
  }
  const resolve = (fingerprint: string, at: number) =>
    alerts()
      .updateTable("alerts")
      .set({ state: "resolved", resolved_at: new Date(t0 + at) })
      .where("fingerprint", "=", fingerprint)
      .execute();

  type Webhook = { status: string; groupLabels: Record<string, string>; alerts: { fingerprint: string; status: string }[] };
  const webhook = (p: Post | undefined) => p?.body as Webhook;
  const carried = (p: Post | undefined) =>
    webhook(p)
      .alerts.map((a) => `${a.fingerprint}:${a.status}`)
      .sort();

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = "";
      req.setEncoding("utf8").on("data", (c: string) => (body += c));
      req.on("end", () => {
        posts.push({ path: req.url ?? "", body: JSON.parse(body) });
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const db = storage().db;
    await putChannel(db, create(ChannelSchema, { name: "hook", settings: { case: "webhook", value: { url: `${base}/hook` } } }));
    await putChannel(db, create(ChannelSchema, { name: "am", settings: { case: "alertmanager", value: { url: base } } }));
    await setRoutes(db, [
      // Defaults: group_wait 30 s, group_interval 5 min, repeat_interval 4 h, grouped by alertname.
      {
        $typeName: "alerts.Route",
        matchers: [{ $typeName: "metrics.Matcher", label: "team", operator: MatchOperator.EQUAL, value: "web" }],
        channels: ["hook"],
        groupBy: [],
        continue: false,
      },
      { $typeName: "alerts.Route", matchers: [], channels: ["am"], groupBy: [], continue: false },
    ]);
    dispatcher = notificationDispatcher({ db, log: createLogger("silent"), externalUrl: () => "http://specta.example", clock: () => new Date(now) });
  });

  afterAll(() => {
    server?.close();
  });

  it("waits group_wait for a new group, batches changes per group_interval, repeats after repeat_interval, and announces resolutions", async () => {
    const a1 = await fire({ alertname: "Busy", team: "web", host: "a" }, 0);
    expect(await roundAt(0)).toEqual([]);
    expect(await roundAt(29 * s)).toEqual([]);
    const first = await roundAt(30 * s);
    expect(first).toHaveLength(1);
    expect(webhook(first[0])).toMatchObject({ status: "firing", groupLabels: { alertname: "Busy" } });
    expect(carried(first[0])).toEqual([`${a1}:firing`]);

    // A second alert of the group waits for the group's interval (5 min after the first notification).
    const a2 = await fire({ alertname: "Busy", team: "web", host: "b" }, 40 * s);
    expect(await roundAt(41 * s)).toEqual([]);
    expect(await roundAt(329 * s)).toEqual([]);
    const second = await roundAt(330 * s);
    expect(carried(second[0])).toEqual([`${a1}:firing`, `${a2}:firing`].sort());

    // Nothing changes: nothing is sent until repeat_interval (4 h) has passed.
    expect(await roundAt(640 * s)).toEqual([]);
    expect(await roundAt(330 * s + 4 * 3600 * s - 1)).toEqual([]);
    const repeated = await roundAt(330 * s + 4 * 3600 * s + 300 * s);
    expect(carried(repeated[0])).toEqual([`${a1}:firing`, `${a2}:firing`].sort());

    // A resolution is announced at the next interval, with the alerts still firing.
    const later = 330 * s + 4 * 3600 * s + 300 * s;
    await resolve(a1, later + 10 * s);
    const resolvedNote = await roundAt(later + 300 * s);
    expect(webhook(resolvedNote[0]).status).toBe("firing");
    expect(carried(resolvedNote[0])).toEqual([`${a1}:resolved`, `${a2}:firing`].sort());
    // Resolved once: not again.
    expect(await roundAt(later + 600 * s)).toEqual([]);
    await resolve(a2, later + 610 * s);
    const last = await roundAt(later + 900 * s);
    expect(webhook(last[0])).toMatchObject({ status: "resolved" });
    expect(carried(last[0])).toEqual([`${a2}:resolved`]);
    expect(await roundAt(later + 1_200 * s)).toEqual([]);
    expect(posts.every((p) => p.path === "/hook")).toBe(true);
  });

  it("posts to Alertmanager at once, again every minute while firing with endsAt ahead, and the resolution with its time", async () => {
    const base0 = 10 * 3600 * s;
    const fp = await fire({ alertname: "Down", host: "c" }, base0);
    const [first] = await roundAt(base0);
    expect(first?.path).toBe("/api/v2/alerts");
    const [sent] = first!.body as { labels: Record<string, string>; startsAt: string; endsAt: string; generatorURL: string }[];
    expect(sent).toMatchObject({ labels: { alertname: "Down", host: "c" }, startsAt: new Date(t0 + base0).toISOString() });
    expect(Date.parse(sent!.endsAt)).toBe(t0 + base0 + 240 * s);
    expect(sent!.generatorURL).toContain("http://specta.example");
    expect(await roundAt(base0 + 30 * s)).toEqual([]);
    const [resent] = await roundAt(base0 + 61 * s);
    expect((resent!.body as { endsAt: string }[])[0]!.endsAt).toBe(new Date(t0 + base0 + 301 * s).toISOString());

    await resolve(fp, base0 + 70 * s);
    const [resolution] = await roundAt(base0 + 71 * s);
    expect(resolution!.body).toEqual([expect.objectContaining({ endsAt: new Date(t0 + base0 + 70 * s).toISOString() })]);
    expect(await roundAt(base0 + 200 * s)).toEqual([]);
  });
});
