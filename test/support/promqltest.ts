/**
 * A small interpreter of Prometheus' promqltest scripts (promql/promqltest/README.md), enough for
 * the cases ported from its test data: `load <interval>` with series in its notation (`0+10x10`,
 * `1 _ 3`, `stale`, `NaN`, `Inf`), `clear`, `eval instant at <time> <expr>` and `eval range from
 * <time> to <time> step <step> <expr>` with expected series or a scalar, `eval_ordered`, and
 * `expect fail`. Series live in memory behind the evaluator's SeriesReader.
 */
import { expect } from "vitest";
import type { Matcher } from "../../src/promql/ast.js";
import { instantQuery, rangeQuery, type SeriesReader } from "../../src/promql/engine.js";
import { parseDurationMs, parseNumber, parsePromql, unquote } from "../../src/promql/parse.js";
import { matchesValue } from "../../src/promql/regex.js";
import { labelsKey, type Labels, type Sample, type SeriesSamples } from "../../src/promql/values.js";

/** Prometheus' staleness marker (value.StaleNaN). */
const staleNaN = new Float64Array(new BigUint64Array([0x7ff0000000000002n]).buffer)[0]!;

/** promqltest compares floats with this relative tolerance (promqltest: defaultEpsilon). */
const epsilon = 1e-6;

export class MemoryStore implements SeriesReader {
  readonly series = new Map<string, { labels: Labels; points: Map<number, number> }>();

  add(labels: Labels, t: number, v: number): void {
    const key = labelsKey(labels);
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = { labels, points: new Map() }));
    s.points.set(t, v);
  }

  async read(matchers: Matcher[], fromMs: number, toMs: number): Promise<SeriesSamples[]> {
    const out: SeriesSamples[] = [];
    for (const s of this.series.values()) {
      if (!matchers.every((m) => matchesValue(m, s.labels[m.label] ?? ""))) continue;
      const points = [...s.points].filter(([t]) => t >= fromMs && t < toMs).sort((a, b) => a[0] - b[0]);
      if (points.length === 0) continue;
      out.push({ labels: s.labels, times: Float64Array.from(points, (p) => p[0]), values: Float64Array.from(points, (p) => p[1]) });
    }
    return out;
  }
}

/** `metric{a="b", c="d"}` or `{a="b"}` as labels. */
export function parseSeriesLabels(text: string): Labels {
  const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*(?:\{(.*)\})?$/.exec(text.trim());
  if (!m) throw new Error(`cannot read series ${text}`);
  const labels: Record<string, string> = {};
  if (m[1]) labels.__name__ = m[1];
  const pair = /\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*("(?:[^"\\]|\\.)*")\s*,?/g;
  for (const p of (m[2] ?? "").matchAll(pair)) labels[p[1]!] = unquote(p[2]!);
  return labels;
}

/** A series' values in promqltest's notation: undefined for `_` (no sample). */
export function expandValues(text: string): (number | undefined)[] {
  const out: (number | undefined)[] = [];
  for (const token of text.trim().split(/\s+/)) {
    if (token === "") continue;
    if (token === "_") {
      out.push(undefined);
      continue;
    }
    if (token === "stale") {
      out.push(staleNaN);
      continue;
    }
    const series = /^(.+?)([+-][^x]+)?x(\d+)$/.exec(token);
    if (series && !/^[+-]?(inf|nan)$/i.test(token)) {
      const start = parseNumber(series[1]!);
      const delta = series[2] ? parseNumber(series[2]) : 0;
      for (let i = 0; i <= Number(series[3]); i++) out.push(start + i * delta);
      continue;
    }
    out.push(parseNumber(token));
  }
  return out;
}

interface Expected {
  labels: Labels;
  values: (number | undefined)[];
}

/** Runs a promqltest script; every eval is an expect(). */
export async function runScript(script: string): Promise<void> {
  let store = new MemoryStore();
  const lines = script.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (line === "clear") {
      store = new MemoryStore();
      continue;
    }
    const load = /^load (\S+)$/.exec(line);
    if (load) {
      const intervalMs = parseDurationMs(load[1]!);
      while (i + 1 < lines.length && /^\s+\S/.test(lines[i + 1]!)) {
        const def = lines[++i]!.trim();
        const split = def.lastIndexOf("}") >= 0 ? def.lastIndexOf("}") + 1 : def.search(/\s/);
        const labels = parseSeriesLabels(def.slice(0, split));
        expandValues(def.slice(split)).forEach((v, n) => {
          if (v !== undefined) store.add(labels, n * intervalMs, v);
        });
      }
      continue;
    }
    const evalLine = /^eval(_ordered)? (instant at (\S+)|range from (\S+) to (\S+) step (\S+)) (.+)$/.exec(line);
    if (!evalLine) throw new Error(`promqltest: cannot read line ${i + 1}: ${line}`);
    const body: string[] = [];
    while (i + 1 < lines.length && /^\s+\S/.test(lines[i + 1]!)) body.push(lines[++i]!.trim());
    await runEval(store, evalLine, body, `line ${i + 1}: ${line}`);
  }
}

function timeMs(text: string): number {
  return /^\d+$/.test(text) ? Number(text) * 1000 : parseDurationMs(text);
}

async function runEval(store: MemoryStore, m: RegExpExecArray, body: string[], where: string): Promise<void> {
  const query = m[7]!;
  const fails = body.some((b) => b.startsWith("expect fail"));
  const expected: Expected[] = [];
  let scalar: number | undefined;
  for (const b of body) {
    if (b.startsWith("expect") || b.startsWith("#")) continue;
    if (/^[-+]?[\d.]|^[-+]?(Inf|NaN)/i.test(b) && !b.includes("{")) {
      scalar = parseNumber(b);
      continue;
    }
    const split = b.lastIndexOf("}") >= 0 ? b.lastIndexOf("}") + 1 : b.search(/\s/);
    expected.push({ labels: parseSeriesLabels(b.slice(0, split)), values: expandValues(b.slice(split)) });
  }
  const run = async () => {
    const expr = parsePromql(query);
    if (m[3] !== undefined) return { instant: await instantQuery(store, expr, timeMs(m[3])) };
    return { range: await rangeQuery(store, expr, timeMs(m[4]!), timeMs(m[5]!), parseDurationMs(m[6]!)) };
  };
  if (fails) {
    await expect(run(), where).rejects.toThrow();
    return;
  }
  const result = await run();
  if (result.instant) {
    const value = result.instant.value;
    if (scalar !== undefined) {
      expect(value.type, where).toBe("scalar");
      if (value.type === "scalar") expectClose(value.value, scalar, where);
      return;
    }
    expect(value.type, where).toBe("vector");
    const samples: Sample[] = value.type === "vector" ? value.samples : [];
    expect(samples.map((s) => labelsKey(s.labels)).sort(), where).toEqual(expected.map((e) => labelsKey(e.labels)).sort());
    if (m[1])
      expect(
        samples.map((s) => labelsKey(s.labels)),
        `${where} (ordered)`,
      ).toEqual(expected.map((e) => labelsKey(e.labels)));
    for (const e of expected) {
      const s = samples.find((x) => labelsKey(x.labels) === labelsKey(e.labels))!;
      expectClose(s.value, e.values[0]!, `${where} ${labelsKey(e.labels)}`);
    }
    return;
  }
  const series = result.range!.series;
  if (scalar !== undefined) expected.push({ labels: {}, values: [scalar] });
  expect(series.map((s) => labelsKey(s.labels)).sort(), where).toEqual(expected.map((e) => labelsKey(e.labels)).sort());
  const start = timeMs(m[4]!);
  const step = parseDurationMs(m[6]!);
  for (const e of expected) {
    const s = series.find((x) => labelsKey(x.labels) === labelsKey(e.labels))!;
    const got = new Map(s.times.map((t, n) => [t, s.values[n]!]));
    e.values.forEach((v, n) => {
      const t = start + n * step;
      if (v === undefined) expect(got.has(t), `${where} ${labelsKey(e.labels)} at ${t} ms`).toBe(false);
      else expectClose(got.get(t) ?? Number.NaN, v, `${where} ${labelsKey(e.labels)} at ${t} ms`);
    });
  }
}

function expectClose(actual: number, wanted: number, where: string): void {
  if (Number.isNaN(wanted)) return expect(actual, where).toBeNaN();
  if (!Number.isFinite(wanted)) return expect(actual, where).toBe(wanted);
  if (actual === wanted) return;
  expect(Math.abs(actual - wanted) / Math.max(Math.abs(wanted), Math.abs(actual)), `${where}: ${actual} vs ${wanted}`).toBeLessThan(epsilon);
}
