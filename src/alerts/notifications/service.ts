import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { sql, type Kysely } from "kysely";
import { DeliverySchema, SilenceSchema, type API as AlertsAPI, type Silence } from "../../../gen/alerts/alerts_pb.js";
import type { Db } from "../../storage/database.js";
import { callerOf } from "../../tokens/access.js";
import { listLimit } from "../list-limit.js";
import type { RuleMethods } from "../rules/service.js";
import * as channels from "./channels.js";
import { contractMatchers, storedMatchers } from "./matchers.js";
import type { NotificationTables, SilenceRow } from "./notifications.table.js";
import * as routes from "./routes.js";
import * as silences from "./silences.js";

export interface NotificationDeps {
  db: Db;
}

/** Silences open (in force or yet to start) at once, at most: bounds what the dispatcher reads every second. */
export const maxOpenSilences = 10_000;

function invalid(message: string): never {
  throw new ConnectError(message, Code.InvalidArgument);
}

function silenceOf(row: SilenceRow): Silence {
  return create(SilenceSchema, {
    id: row.id,
    matchers: contractMatchers(row.matchers),
    starts: timestampFromDate(row.starts),
    ends: timestampFromDate(row.ends),
    comment: row.comment,
    createdBy: row.created_by,
  });
}

/** alerts.API's silences, channels, routes and deliveries. */
export function notificationHandlers(deps: NotificationDeps): Omit<ServiceImpl<typeof AlertsAPI>, RuleMethods> {
  const { db } = deps;
  const t = (): Kysely<NotificationTables> => db.withTables<NotificationTables>();
  return {
    async listSilences(req) {
      const rows = await silences.listSilences(db, req.includeExpired, new Date());
      return { silences: rows.map(silenceOf) };
    },

    async createSilence(req, ctx) {
      const s = req.silence;
      if (!s) invalid("silence is required");
      if (s.matchers.length === 0) invalid("a silence needs at least one matcher");
      const matchers = storedMatchers(s.matchers, "silence");
      if (s.comment.trim() === "" || s.comment.length > 500) invalid("comment must be 1 to 500 characters");
      const now = new Date();
      const starts = s.starts ? timestampDate(s.starts) : now;
      if (!s.ends) invalid("ends is required");
      const ends = timestampDate(s.ends);
      if (Number.isNaN(starts.getTime()) || Number.isNaN(ends.getTime())) invalid("starts and ends must be valid times");
      if (ends <= starts) invalid("ends must be after starts");
      if (ends <= now) invalid("ends must be in the future");
      const open = await t()
        .selectFrom("alert_silences")
        .select((eb) => eb.fn.countAll<string>().as("n"))
        .where("ends", ">", now)
        .executeTakeFirstOrThrow();
      if (Number(open.n) >= maxOpenSilences)
        throw new ConnectError(`at most ${maxOpenSilences} silences may be open at once`, Code.ResourceExhausted);
      const row = await silences.createSilence(db, { matchers, starts, ends, comment: s.comment, createdBy: callerOf(ctx).name });
      return { silence: silenceOf(row) };
    },

    async expireSilence(req) {
      const prefix = req.id.trim().toLowerCase();
      // At least 4 characters, as specta agents remove takes id prefixes: a slip of one character ends nothing by chance.
      if (prefix.length < 4 || prefix.length > 36) invalid("id must be a silence's id or a prefix of it of at least 4 characters");
      const found = await silences.silencesByPrefix(db, prefix);
      const [only, other] = found;
      if (!only) throw new ConnectError(`no silence has the id or prefix "${prefix}"`, Code.NotFound);
      if (other && only.id !== prefix) invalid(`"${prefix}" names more than one silence; give more of the id`);
      if (only.ends <= new Date()) throw new ConnectError(`silence ${only.id} has already ended`, Code.FailedPrecondition);
      await silences.expireSilence(db, only.id);
      return {};
    },

    async listChannels() {
      return { channels: (await channels.listChannels(db)).map(channels.withoutSecrets) };
    },

    async putChannel(req) {
      if (!req.channel) invalid("channel is required");
      const stored = await channels.getChannel(db, req.channel.name);
      const channel = channels.keepSecrets(req.channel, stored);
      channels.validateChannel(channel);
      if (!stored && (await channels.countChannels(db)) >= channels.channelLimits.maxChannels) {
        throw new ConnectError(`at most ${channels.channelLimits.maxChannels} channels`, Code.ResourceExhausted);
      }
      await channels.putChannel(db, channel);
      return { channel: channels.withoutSecrets(channel) };
    },

    async deleteChannel(req) {
      const named = await routes.routesNaming(db, req.name);
      if (named > 0)
        throw new ConnectError(`${named} route(s) name channel "${req.name.slice(0, 100)}": change the routes first`, Code.FailedPrecondition);
      if (!(await channels.deleteChannel(db, req.name))) throw new ConnectError(`no channel is named "${req.name.slice(0, 100)}"`, Code.NotFound);
      return {};
    },

    async getRoutes() {
      return { routes: await routes.getRoutes(db) };
    },

    async setRoutes(req) {
      const names = new Set((await channels.listChannels(db)).map((c) => c.name));
      routes.resolveRoutes(req.routes, names);
      await routes.setRoutes(db, req.routes);
      return {};
    },

    async listDeliveries(req) {
      const limit = listLimit(req.limit);
      let q = t().selectFrom("notification_deliveries").selectAll().orderBy("at", "desc").orderBy("id", "desc").limit(limit);
      if (req.fingerprint !== "") q = q.where("fingerprints", "@>", sql<string[]>`ARRAY[${req.fingerprint}]::text[]`);
      if (req.channel !== "") q = q.where("channel", "=", req.channel);
      const rows = await q.execute();
      return {
        deliveries: rows.map((r) =>
          create(DeliverySchema, {
            channel: r.channel,
            groupKey: r.group_key,
            fingerprints: r.fingerprints,
            attempt: r.attempt,
            time: timestampFromDate(r.at),
            ok: r.ok,
            error: r.error,
            ...(r.next_attempt ? { nextAttempt: timestampFromDate(r.next_attempt) } : {}),
          }),
        ),
      };
    },
  };
}
