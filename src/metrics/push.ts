import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { Kind, type PushRequest, type Refusal } from "../../gen/metrics/metrics_pb.js";
import { labelKeyPattern, metricNamePattern } from "../config/config.js";
import type { Partitions } from "../storage/partitions.js";
import type { Labels, SeriesKindNumber } from "../storage/schema.js";
import { maxMetricNameLength } from "./instruments.js";
import type { SampleWriter } from "./sample-writer.js";
import { seriesKey, type SeriesCache, type SeriesKey } from "./series.js";

/** Limits of one Push call, as documented on metrics.PushRequest. */
export const pushLimits = {
  maxSamples: 50_000,
  maxLabels: 32,
  maxLabelValueLength: 1024,
  /** How far in the future a sample may be (clock skew). */
  maxFutureMs: 10 * 60_000,
  maxListedRefusals: 100,
};

export interface PushDeps {
  series: SeriesCache;
  partitions: Partitions;
  writer: SampleWriter;
  /** Samples older than this are refused: they would land in an already dropped partition. */
  retentionMs: number;
}

export interface PushOutcome {
  accepted: number;
  refused: number;
  refusals: Pick<Refusal, "metric" | "labels" | "reason" | "samples">[];
}

const kinds: Partial<Record<Kind, SeriesKindNumber>> = { [Kind.COUNTER]: 1, [Kind.GAUGE]: 2, [Kind.HISTOGRAM]: 3 };

/**
 * Stores one batch: validates all of it first (a bad sample refuses the whole batch, nothing
 * written), resolves series in bulk, writes in one grouped statement and returns after commit.
 */
export async function push(req: PushRequest, deps: PushDeps): Promise<PushOutcome> {
  const samples = req.samples;
  if (samples.length > pushLimits.maxSamples) {
    throw new ConnectError(`a batch holds at most ${pushLimits.maxSamples} samples, got ${samples.length}`, Code.ResourceExhausted);
  }
  if (samples.length === 0) return { accepted: 0, refused: 0, refusals: [] };
  if (!deps.writer.hasRoomFor(samples.length)) {
    throw new ConnectError("the daemon is writing behind; retry later", Code.ResourceExhausted);
  }

  const now = Date.now();
  const batchTime = req.time ? timestampMs(req.time) : now;
  const oldest = now - deps.retentionMs;
  const newest = now + pushLimits.maxFutureMs;
  const wanted = new Map<string, SeriesKey>();
  const keys: string[] = new Array(samples.length);
  const times: number[] = new Array(samples.length);
  const values: number[] = new Array(samples.length);
  const labelKeyValid = new Set<string>();

  for (let i = 0; i < samples.length; i++) {
    const s = samples[i]!;
    const where = `samples[${i}]`;
    if (s.metric.length === 0 || s.metric.length > maxMetricNameLength || !metricNamePattern.test(s.metric)) {
      invalid(`${where}: metric "${s.metric.slice(0, 300)}" must match ${metricNamePattern.source} and be 1 to ${maxMetricNameLength} characters`);
    }
    const kind = kinds[s.kind];
    if (kind === undefined) invalid(`${where}: kind must be KIND_COUNTER, KIND_GAUGE or KIND_HISTOGRAM`);
    if (!Number.isFinite(s.value)) invalid(`${where}: value must be finite, got ${s.value}`);
    const labels: Labels = s.labels;
    let labelCount = 0;
    for (const k in labels) {
      labelCount++;
      if (!labelKeyValid.has(k)) {
        if (!labelKeyPattern.test(k) || k.startsWith("__")) invalid(`${where}: label key "${k.slice(0, 300)}" must match ${labelKeyPattern.source} and not start with __`);
        labelKeyValid.add(k);
      }
      if (labels[k]!.length > pushLimits.maxLabelValueLength) invalid(`${where}: label ${k} is longer than ${pushLimits.maxLabelValueLength} characters`);
    }
    if (labelCount > pushLimits.maxLabels) invalid(`${where}: at most ${pushLimits.maxLabels} labels, got ${labelCount}`);
    const t = s.time ? timestampMs(s.time) : batchTime;
    if (!(t >= oldest && t <= newest)) {
      invalid(`${where}: time ${new Date(t).toISOString()} is outside the accepted window (retention to ${pushLimits.maxFutureMs / 60_000} minutes ahead)`);
    }
    const key = seriesKey(s.metric, labels);
    if (!wanted.has(key)) wanted.set(key, { metric: s.metric, labels, kind: kind! });
    keys[i] = key;
    times[i] = t;
    values[i] = s.value;
  }

  const resolved = await deps.series.resolve(wanted);
  const ids: number[] = [];
  const rowTimes: number[] = [];
  const rowValues: number[] = [];
  const refusedCount = new Map<string, number>();
  for (let i = 0; i < samples.length; i++) {
    const r = resolved.get(keys[i]!)!;
    if ("id" in r) {
      ids.push(r.id);
      rowTimes.push(times[i]!);
      rowValues.push(values[i]!);
    } else {
      refusedCount.set(keys[i]!, (refusedCount.get(keys[i]!) ?? 0) + 1);
    }
  }

  await deps.partitions.ensureFor(new Set(rowTimes.map((t) => t - (t % 86_400_000))));
  await deps.writer.write(ids, rowTimes, rowValues);

  const refusals = [...refusedCount].slice(0, pushLimits.maxListedRefusals).map(([key, n]) => {
    const s = wanted.get(key)!;
    const r = resolved.get(key) as { refused: string };
    return { metric: s.metric, labels: s.labels, reason: r.refused, samples: n };
  });
  return { accepted: ids.length, refused: samples.length - ids.length, refusals };
}

function invalid(message: string): never {
  throw new ConnectError(message, Code.InvalidArgument);
}
