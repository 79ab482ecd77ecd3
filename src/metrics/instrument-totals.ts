/**
 * The metrics feature's repository of instrument_totals, used on the transaction in which the
 * store appends the totals' samples (Tsdb.appendWith): any kysely handle on it will do, since
 * these statements are raw SQL (unnest, FOR UPDATE) and typed by the table's row.
 */
import { sql, type Kysely } from "kysely";
import type { InstrumentTotalRow } from "./instrument-totals.table.js";

/** Locks the totals of `seriesIds` until the transaction ends, creating the missing ones at 0; by series id. */
export async function lockTotals<DB>(tx: Kysely<DB>, seriesIds: number[]): Promise<InstrumentTotalRow[]> {
  // Rows exist before they are locked, so two first calls on a series cannot both start from 0.
  await sql`INSERT INTO instrument_totals (series_id, total) SELECT unnest(${seriesIds}::int4[]), 0 ON CONFLICT DO NOTHING`.execute(tx);
  const { rows } = await sql<InstrumentTotalRow>`
    SELECT series_id, total, at FROM instrument_totals WHERE series_id = ANY(${seriesIds}::int4[]) ORDER BY series_id FOR UPDATE`.execute(tx);
  return rows;
}

/** Writes new totals (and the times of their samples), in one statement. */
export async function saveTotals<DB>(tx: Kysely<DB>, totals: InstrumentTotalRow[]): Promise<void> {
  await sql`
    UPDATE instrument_totals t SET total = u.total, at = u.at
    FROM unnest(${totals.map((u) => u.series_id)}::int4[], ${totals.map((u) => u.total)}::float8[], ${totals.map((u) => u.at)}::int8[]) AS u(id, total, at)
    WHERE t.series_id = u.id`.execute(tx);
}

/** The totals of those of `seriesIds` that have one, by series id. */
export async function readTotals<DB>(db: Kysely<DB>, seriesIds: number[]): Promise<Map<number, number>> {
  const { rows } = await sql<Pick<InstrumentTotalRow, "series_id" | "total">>`
    SELECT series_id, total FROM instrument_totals WHERE series_id = ANY(${seriesIds}::int4[])`.execute(db);
  return new Map(rows.map((r) => [r.series_id, r.total]));
}
