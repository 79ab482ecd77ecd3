import { ReadBudget, type SeriesReader } from "../../promql/engine.js";
import { tsdbReader } from "../../promql/tsdb-reader.js";
import type { TsdbReads } from "../../tsdb/index.js";

/** Store calls of one cycle running at once, at most: they go to the database pool, which other work shares. */
const concurrency = 4;

/**
 * Series one batched read asks for at most: the statement's result is in memory at once. The
 * requests it joins are themselves bounded (the PromQL reader's batches hold up to 1,024 series,
 * a query's selection up to maxSelectedSeries), so a batch holds a few requests' worth.
 */
export const maxBatchSeries = 4_096;

/**
 * What one evaluation cycle reads, shared by its rules:
 * - `once` runs a read (or any work on reads) once per key;
 * - `store` is the store through the cycle: a selection (metric and matchers) or a metric listing
 *   is read once, and points or samples over the same range are read together, in one statement
 *   for every rule that asks for them: each rule would otherwise fetch the same head rows (a row
 *   holds the points of 64 series, usually most of one host's), so that a thousand rules over a
 *   few dozen metrics read each row about once rather than once per metric;
 * - `promql` reads a selector (matchers and range) once for every PromQL rule that has it, with
 *   the same series objects, which keeps the evaluator's per-label-set caches warm across rules.
 * The results are read-only for their users. A read that fails fails every rule that shares it.
 */
export interface CycleReads {
  once<T>(key: string, read: () => Promise<T>): Promise<T>;
  store: TsdbReads;
  promql: SeriesReader;
}

/** A read of the union of its requests' series, sent when the cycle has nothing else to wait for. */
interface Batch {
  ids: Set<number>;
  result: Promise<unknown>;
  send(): void;
}

/**
 * The cycle's reads. Batches are sent once every store call of the cycle has settled and the
 * event loop has run what was waiting on them (a check queued with setImmediate): by then every
 * rule still evaluating waits on a batch, so each batch holds every request of its range that
 * this round of the cycle makes. Rules that read in several rounds (a PromQL expression's
 * selectors, one after the other) get a batch per round. `signal` stops the batches not yet sent.
 */
export function cycleReads(tsdb: TsdbReads, signal?: AbortSignal): CycleReads {
  const results = new Map<string, Promise<unknown>>();
  const once = <T>(key: string, read: () => Promise<T>): Promise<T> => {
    let p = results.get(key);
    if (!p) results.set(key, (p = read()));
    return p as Promise<T>;
  };

  let running = 0;
  const queue: (() => void)[] = [];
  /** Store calls started or waiting for a turn, not yet settled. */
  let unsettled = 0;
  const call = async <T>(read: () => Promise<T>): Promise<T> => {
    unsettled++;
    try {
      if (running < concurrency) running++;
      else await new Promise<void>((resolve) => queue.push(resolve)); // the call that ends hands its turn over
      try {
        return await read();
      } finally {
        const next = queue.shift();
        if (next) next();
        else running--;
      }
    } finally {
      unsettled--;
      wake();
    }
  };

  const pending = new Map<string, Batch>();
  let checking = false;
  const wake = () => {
    if (checking || pending.size === 0) return;
    checking = true;
    setImmediate(() => {
      checking = false;
      if (unsettled > 0) return; // the last call to settle wakes this again
      const batches = [...pending.values()];
      pending.clear();
      for (const b of batches) b.send();
    });
  };
  /** Joins the pending batch of `key` (one range of one kind of read), or starts one when there is none or it is full. */
  const batched = <R>(key: string, ids: readonly number[], read: (ids: number[]) => Promise<R>): Promise<R> => {
    let batch = pending.get(key);
    if (batch && batch.ids.size + ids.length > maxBatchSeries) {
      pending.delete(key);
      batch.send();
      batch = undefined;
    }
    if (!batch) {
      const all = new Set<number>();
      let send!: () => void;
      const sent = new Promise<void>((resolve) => (send = resolve));
      batch = {
        ids: all,
        result: sent.then(() => {
          if (signal?.aborted) throw new Error("the evaluation cycle was stopped");
          return call(() => read([...all]));
        }),
        send,
      };
      pending.set(key, batch);
    }
    for (const id of ids) batch.ids.add(id);
    wake();
    return batch.result as Promise<R>;
  };

  const series: TsdbReads["series"] = Object.create(tsdb.series);
  series.select = (metric, matchers) => once(`s${JSON.stringify([metric, matchers])}`, () => call(() => tsdb.series.select(metric, matchers)));
  series.list = (prefix) => once(`l${prefix}`, () => call(() => tsdb.series.list(prefix)));
  const store: TsdbReads = {
    series,
    // Every step's latest value is read, so that rules differing only in their aggregation share a batch.
    readPoints: (q, nowMs) =>
      batched(`p${JSON.stringify([q.startMs, q.endMs, q.stepMs, q.increase, nowMs])}`, q.seriesIds, (ids) =>
        tsdb.readPoints({ ...q, seriesIds: ids, last: true }, nowMs),
      ),
    readSamples: (ids, fromMs, toMs) => batched(`r${fromMs},${toMs}`, ids, (all) => tsdb.readSamples(all, fromMs, toMs)),
  };

  const reader = tsdbReader(store);
  const promql: SeriesReader = {
    async read(matchers, fromMs, toMs, budget) {
      const shared = await once(`x${JSON.stringify([matchers, fromMs, toMs])}`, async () => {
        const recorder = new RecordingBudget(budget);
        return { series: await reader.read(matchers, fromMs, toMs, recorder), charged: recorder.charged };
      });
      // Charged to every query that reads it, as if it had read it alone: a query's limits count each of its selectors.
      budget.check();
      budget.chargeSeries(shared.charged.series);
      budget.chargeSamples(shared.charged.samples);
      return shared.series;
    },
  };
  return { once, store, promql };
}

/** A budget of a shared read: the first reader's limits on the read alone, and what the read charged, for each query that uses it. */
class RecordingBudget extends ReadBudget {
  readonly charged: { series: number; samples: number } = { series: 0, samples: 0 };

  constructor(first: ReadBudget) {
    super(first.limits, first.signal, Date.now() + first.limits.timeoutMs);
  }

  override chargeSeries(n: number): void {
    this.charged.series += n;
    super.chargeSeries(n);
  }

  override chargeSamples(n: number): void {
    this.charged.samples += n;
    super.chargeSamples(n);
  }
}
