import { Code, ConnectError } from "@connectrpc/connect";
import { Kind, type PushRequest, type Refusal } from "../../gen/metrics/metrics_pb.js";
import { labelKeyPattern, metricNamePattern } from "../config/config.js";
import type { Labels } from "../shared/labels.js";
import { seriesKey } from "../shared/series-key.js";
import type { Principal } from "../tokens/tokens.js";
import type { SeriesKindNumber, SeriesPoints, SeriesRef, Tsdb } from "../tsdb/index.js";
import { maxMetricNameLength } from "./instruments.js";

/** Limits of one Push call, as documented on metrics.PushRequest. */
export const pushLimits = {
  maxSeries: 10_000,
  maxPoints: 50_000,
  maxLabels: 32,
  maxLabelKeyLength: 128,
  maxLabelValueLength: 1024,
  /** How far in the future a point may be (clock skew). */
  maxFutureMs: 10 * 60_000,
  maxListedRefusals: 100,
};

export interface PushDeps {
  tsdb: Tsdb;
  /** Points older than this are refused: retention would drop them at once. */
  retentionMs: number;
}

export interface PushOutcome {
  accepted: number;
  refused: number;
  refusals: Pick<Refusal, "metric" | "labels" | "reason" | "points">[];
}

const kinds: Partial<Record<Kind, SeriesKindNumber>> = { [Kind.COUNTER]: 1, [Kind.GAUGE]: 2, [Kind.HISTOGRAM]: 3 };

/**
 * One series of a batch to store: Push's Series, or what remote-write and OTLP map theirs to
 * (kind: metrics.Kind's numbers). Values may be a Float64Array: a JavaScript array of numbers
 * does not keep a NaN's payload (V8 canonicalises NaNs in double arrays), and Prometheus'
 * staleness marker is a NaN told apart by its payload.
 */
export interface BatchSeries {
  metric: string;
  labels: Labels;
  kind: number;
  /** Unix milliseconds; validation floors them in place. */
  times: { [index: number]: number; readonly length: number };
  values: ArrayLike<number>;
}

export interface BatchWriter {
  /** An agent's writes: the host label is forced to its registered hostname, and its series count against its own limit. */
  agent?: { agentId: string; host: string } | undefined;
  /**
   * Keeps NaN and infinite values (Prometheus' samples may be NaN, and its staleness marker is a
   * NaN), as remote-write and OTLP carry them; Push refuses them, as documented.
   */
  nonFinite?: "refuse" | "keep";
}

/**
 * The agent a caller writes as, if any: an agent writes only its own host's series (the host
 * label is its registered hostname, as Prometheus sets instance from the target it scraped), and
 * its series count against its own limit.
 */
export function agentWriter(caller: Pick<Principal, "agentId" | "agentHostname">): { agentId: string; host: string } | undefined {
  return caller.agentId && caller.agentHostname ? { agentId: caller.agentId, host: caller.agentHostname } : undefined;
}

/** Stores one Push batch (storeBatch). */
export function push(req: PushRequest, deps: PushDeps, agent?: { agentId: string; host: string }): Promise<PushOutcome> {
  return storeBatch(req.series, deps, { agent });
}

/**
 * Stores one batch: validates all of it first (a bad series refuses the whole batch, nothing
 * written), resolves series in bulk, appends the points and returns after commit. Push,
 * remote-write and OTLP all store through it, under Push's limits.
 */
export async function storeBatch(batch: BatchSeries[], deps: PushDeps, { agent, nonFinite = "refuse" }: BatchWriter): Promise<PushOutcome> {
  const points = batch.reduce((n, s) => n + s.times.length, 0);
  if (batch.length > pushLimits.maxSeries || points > pushLimits.maxPoints) {
    throw new ConnectError(
      `a batch holds at most ${pushLimits.maxSeries} series and ${pushLimits.maxPoints} points, got ${batch.length} series and ${points} points`,
      Code.ResourceExhausted,
    );
  }
  if (points === 0) return { accepted: 0, refused: 0, refusals: [] };

  const now = Date.now();
  const wanted = new Map<string, SeriesRef>();
  const keys = batch.map((s, i) => {
    if (agent) s.labels.host = agent.host;
    const key = checkSeries(s, `series[${i}]`, now - deps.retentionMs, now + pushLimits.maxFutureMs, nonFinite === "keep");
    if (!wanted.has(key)) wanted.set(key, { metric: s.metric, labels: s.labels, kind: kinds[s.kind as Kind]! });
    return key;
  });

  const resolved = await deps.tsdb.series.resolve(wanted, agent ? { agentId: agent.agentId } : {});
  const appended: SeriesPoints[] = [];
  const refused = new Map<string, number>();
  let accepted = 0;
  batch.forEach((s, i) => {
    const r = resolved.get(keys[i]!)!;
    if ("refused" in r) refused.set(keys[i]!, (refused.get(keys[i]!) ?? 0) + s.times.length);
    else {
      appended.push({ id: r.id, times: s.times, values: s.values });
      accepted += s.times.length;
    }
  });
  await deps.tsdb.append(appended);

  const refusals = [...refused].slice(0, pushLimits.maxListedRefusals).map(([key, n]) => {
    const s = wanted.get(key)!;
    return { metric: s.metric, labels: s.labels, reason: (resolved.get(key) as { refused: string }).refused, points: n };
  });
  return { accepted, refused: points - accepted, refusals };
}

/** Validates one series of a batch and returns its canonical key; throws InvalidArgument naming what is wrong. */
function checkSeries(s: BatchSeries, where: string, oldestMs: number, newestMs: number, keepNonFinite: boolean): string {
  if (s.metric.length === 0 || s.metric.length > maxMetricNameLength || !metricNamePattern.test(s.metric)) {
    invalid(`${where}: metric "${s.metric.slice(0, 300)}" must match ${metricNamePattern.source} and be 1 to ${maxMetricNameLength} characters`);
  }
  if (kinds[s.kind as Kind] === undefined) invalid(`${where}: kind must be KIND_COUNTER, KIND_GAUGE or KIND_HISTOGRAM`);
  let labelCount = 0;
  for (const k in s.labels) {
    labelCount++;
    if (k.length > pushLimits.maxLabelKeyLength || !labelKeyPattern.test(k) || k.startsWith("__")) {
      invalid(
        `${where}: label key "${k.slice(0, 300)}" must match ${labelKeyPattern.source}, be at most ${pushLimits.maxLabelKeyLength} characters and not start with __`,
      );
    }
    const value = s.labels[k]!;
    if (value.length > pushLimits.maxLabelValueLength) invalid(`${where}: label ${k} is longer than ${pushLimits.maxLabelValueLength} characters`);
    if (!isStorableText(value)) invalid(`${where}: label ${k} holds a NUL character or an unpaired UTF-16 surrogate`);
  }
  if (labelCount > pushLimits.maxLabels) invalid(`${where}: at most ${pushLimits.maxLabels} labels, got ${labelCount}`);
  if (s.times.length !== s.values.length) invalid(`${where}: ${s.times.length} times but ${s.values.length} values`);
  const { times, values } = s;
  for (let p = 0; p < times.length; p++) {
    const t = times[p]!;
    if (!(t >= oldestMs && t <= newestMs)) {
      invalid(
        `${where}: time ${describeTime(t)} is outside the accepted window (the retention period up to ${pushLimits.maxFutureMs / 60_000} minutes ahead)`,
      );
    }
    // Whole milliseconds, as documented; the store keeps times in ms.
    times[p] = Math.floor(t);
    if (!keepNonFinite && !Number.isFinite(values[p]!)) invalid(`${where}: value ${values[p]} at ${describeTime(t)} is not finite`);
  }
  return seriesKey(s.metric, s.labels);
}

/** PostgreSQL text cannot hold NUL, and JSON cannot carry an unpaired surrogate. */
function isStorableText(text: string): boolean {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is what PostgreSQL text cannot hold
  return !/\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(text);
}

/** A Unix-ms time as ISO text when it is a representable date, else as the number it is. */
function describeTime(t: number): string {
  return Math.abs(t) <= 8.64e15 ? new Date(t).toISOString() : String(t);
}

function invalid(message: string): never {
  throw new ConnectError(message, Code.InvalidArgument);
}
