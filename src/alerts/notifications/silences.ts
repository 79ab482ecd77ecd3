import { randomUUID } from "node:crypto";
import { sql, type Kysely } from "kysely";
import type { Db } from "../../storage/database.js";
import { labelsMatch } from "./matchers.js";
import type { NotificationTables, SilenceRow, StoredMatcher } from "./notifications.table.js";

const tables = (db: Db): Kysely<NotificationTables> => db.withTables<NotificationTables>();

/** A silence in force: alerts whose labels match all its matchers are not notified. */
export interface ActiveSilence {
  id: string;
  matchers: StoredMatcher[];
  ends: Date;
}

/** The silences in force at `at` (started, not ended). */
export async function activeSilences(db: Db, at: Date): Promise<ActiveSilence[]> {
  return tables(db).selectFrom("alert_silences").select(["id", "matchers", "ends"]).where("starts", "<=", at).where("ends", ">", at).execute();
}

/** Whether one of `silences` mutes an alert with these labels. */
export function isSilenced(labels: Record<string, string>, silences: readonly ActiveSilence[]): boolean {
  return silences.some((s) => labelsMatch(labels, s.matchers));
}

export interface NewSilence {
  matchers: StoredMatcher[];
  starts: Date;
  ends: Date;
  comment: string;
  createdBy: string;
}

export async function createSilence(db: Db, silence: NewSilence): Promise<SilenceRow> {
  return tables(db)
    .insertInto("alert_silences")
    .values({
      id: randomUUID(),
      matchers: JSON.stringify(silence.matchers),
      starts: silence.starts,
      ends: silence.ends,
      comment: silence.comment,
      created_by: silence.createdBy,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** Silences in force or yet to start first (by start), then, with `includeExpired`, those that ended (latest first). */
export async function listSilences(db: Db, includeExpired: boolean, now: Date): Promise<SilenceRow[]> {
  const open = await tables(db).selectFrom("alert_silences").selectAll().where("ends", ">", now).orderBy("starts").orderBy("id").execute();
  if (!includeExpired) return open;
  const ended = await tables(db).selectFrom("alert_silences").selectAll().where("ends", "<=", now).orderBy("ends", "desc").limit(1_000).execute();
  return [...open, ...ended];
}

/** The silences whose id starts with `prefix`, at most two (enough to tell a unique prefix). */
export async function silencesByPrefix(db: Db, prefix: string): Promise<SilenceRow[]> {
  const escaped = prefix.replace(/[\\%_]/g, (c) => `\\${c}`);
  return tables(db).selectFrom("alert_silences").selectAll().where("id", "like", `${escaped}%`).orderBy("id").limit(2).execute();
}

/** Ends a silence now (one yet to start ends before it starts). */
export async function expireSilence(db: Db, id: string): Promise<void> {
  await tables(db)
    .updateTable("alert_silences")
    .set({ starts: sql`least(starts, now() - interval '1 millisecond')`, ends: sql`now()` })
    .where("id", "=", id)
    .execute();
}
