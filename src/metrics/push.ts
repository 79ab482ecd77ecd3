import { Code, ConnectError } from "@connectrpc/connect";
import { Kind, type PushRequest, type Refusal, type Series } from "../../gen/metrics/metrics_pb.js";
import { labelKeyPattern, metricNamePattern } from "../config/config.js";
import { dayMs, type Partitions } from "../storage/partitions.js";
import type { SeriesKindNumber } from "../storage/schema.js";
import type { LateSamples } from "../worker/late-samples.js";
import { maxMetricNameLength } from "./instruments.js";
import { SampleRows } from "./sample-rows.js";
import type { SampleWriter } from "./sample-writer.js";
import { seriesKey } from "./series-key.js";
import type { SeriesCache, SeriesKey } from "./series.js";

/** Limits of one Push call, as documented on metrics.PushRequest. */
export const pushLimits = {
  maxSeries: 10_000,
  maxPoints: 50_000,
  maxLabels: 32,
  maxLabelValueLength: 1024,
  /** How far in the future a point may be (clock skew). */
  maxFutureMs: 10 * 60_000,
  maxListedRefusals: 100,
};

export interface PushDeps {
  series: SeriesCache;
  partitions: Partitions;
  writer: SampleWriter;
  /** Points older than this are refused: they would land in an already dropped partition. */
  retentionMs: number;
  /** Notes samples older than the rollups' reach so that their hours are rolled up again. */
  lateSamples: LateSamples;
}

export interface PushOutcome {
  accepted: number;
  refused: number;
  refusals: Pick<Refusal, "metric" | "labels" | "reason" | "points">[];
}

const kinds: Partial<Record<Kind, SeriesKindNumber>> = { [Kind.COUNTER]: 1, [Kind.GAUGE]: 2, [Kind.HISTOGRAM]: 3 };

/**
 * Stores one batch: validates all of it first (a bad series refuses the whole batch, nothing
 * written), resolves series in bulk, writes in one grouped statement and returns after commit.
 */
export async function push(req: PushRequest, deps: PushDeps): Promise<PushOutcome> {
  const batch = req.series;
  const points = batch.reduce((n, s) => n + s.times.length, 0);
  if (batch.length > pushLimits.maxSeries || points > pushLimits.maxPoints) {
    throw new ConnectError(
      `a batch holds at most ${pushLimits.maxSeries} series and ${pushLimits.maxPoints} points, got ${batch.length} series and ${points} points`,
      Code.ResourceExhausted,
    );
  }
  if (points === 0) return { accepted: 0, refused: 0, refusals: [] };
  if (!deps.writer.hasRoomFor(points)) throw new ConnectError("the daemon is writing behind; retry later", Code.ResourceExhausted);

  const wanted = new Map<string, SeriesKey>();
  const keys = batch.map((s, i) => {
    const key = checkSeries(s, `series[${i}]`, Date.now() - deps.retentionMs, Date.now() + pushLimits.maxFutureMs);
    if (!wanted.has(key)) wanted.set(key, { metric: s.metric, labels: s.labels, kind: kinds[s.kind]! });
    return key;
  });

  const resolved = await deps.series.resolve(wanted);
  const rows = new SampleRows(points);
  const refused = new Map<string, number>();
  batch.forEach((s, i) => {
    const r = resolved.get(keys[i]!)!;
    if ("refused" in r) {
      refused.set(keys[i]!, (refused.get(keys[i]!) ?? 0) + s.times.length);
      return;
    }
    for (let p = 0; p < s.times.length; p++) rows.add(r.id, Math.floor(s.times[p]!), s.values[p]!);
  });

  await deps.partitions.ensureFor([...rows.byDay.keys()].map((day) => day * dayMs));
  await deps.writer.write(rows);
  await deps.lateSamples.record(rows.times);

  const refusals = [...refused].slice(0, pushLimits.maxListedRefusals).map(([key, n]) => {
    const s = wanted.get(key)!;
    return { metric: s.metric, labels: s.labels, reason: (resolved.get(key) as { refused: string }).refused, points: n };
  });
  return { accepted: rows.rows, refused: points - rows.rows, refusals };
}

/** Validates one series of a batch and returns its canonical key; throws InvalidArgument naming what is wrong. */
function checkSeries(s: Series, where: string, oldestMs: number, newestMs: number): string {
  if (s.metric.length === 0 || s.metric.length > maxMetricNameLength || !metricNamePattern.test(s.metric)) {
    invalid(`${where}: metric "${s.metric.slice(0, 300)}" must match ${metricNamePattern.source} and be 1 to ${maxMetricNameLength} characters`);
  }
  if (kinds[s.kind] === undefined) invalid(`${where}: kind must be KIND_COUNTER, KIND_GAUGE or KIND_HISTOGRAM`);
  let labelCount = 0;
  for (const k in s.labels) {
    labelCount++;
    if (!labelKeyPattern.test(k) || k.startsWith("__")) {
      invalid(`${where}: label key "${k.slice(0, 300)}" must match ${labelKeyPattern.source} and not start with __`);
    }
    if (s.labels[k]!.length > pushLimits.maxLabelValueLength) {
      invalid(`${where}: label ${k} is longer than ${pushLimits.maxLabelValueLength} characters`);
    }
  }
  if (labelCount > pushLimits.maxLabels) invalid(`${where}: at most ${pushLimits.maxLabels} labels, got ${labelCount}`);
  if (s.times.length !== s.values.length) invalid(`${where}: ${s.times.length} times but ${s.values.length} values`);
  for (let p = 0; p < s.times.length; p++) {
    const t = s.times[p]!;
    if (!(t >= oldestMs && t <= newestMs)) {
      invalid(`${where}: time ${Number.isFinite(t) ? new Date(t).toISOString() : t} is outside the accepted window (the retention period up to ${pushLimits.maxFutureMs / 60_000} minutes ahead)`);
    }
    if (!Number.isFinite(s.values[p]!)) invalid(`${where}: value ${s.values[p]} at ${new Date(t).toISOString()} is not finite`);
  }
  return seriesKey(s.metric, s.labels);
}

function invalid(message: string): never {
  throw new ConnectError(message, Code.InvalidArgument);
}
