import type { Selectable } from "kysely";

/** Running totals of Counter and Histogram instruments, shared by every daemon. */
export interface InstrumentTotalsTable {
  series_id: number;
  total: number;
  /** Unix ms of the total's latest sample. */
  at: number;
}

export type InstrumentTotalRow = Selectable<InstrumentTotalsTable>;
