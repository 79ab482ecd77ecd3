/**
 * A batch of samples, from collection to the wire. The agent keeps and sends its batches encoded:
 * each series as an encoded metrics.v1.Series message, and a batch as the list of them, which
 * laid end to end with their field tags is the encoded PushRequest (pushRequestBytes).
 *
 * Why not PushRequest messages: the agent runs in V8's interpreter (bin/agent-v8-flags.js), where
 * protobuf-es' reflective toBinary of a host's 10-second batch took ~3 ms of CPU, a third of a
 * push's cost (npm run bench:agent). A series' metric, labels and kind are the same batch after
 * batch: they are encoded once, with toBinary, and kept while the series is in every batch; only
 * the points (two packed double fields) are written per batch, by hand. In the spool an encoded
 * point takes ~65 bytes of heap where a message took 300 to 400 (bench/agent-spool.ts).
 */
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { Kind, PushRequestSchema, SeriesSchema, type PushRequest } from "../../gen/metrics/metrics_pb.js";
import { seriesKey } from "../shared/series-key.js";
import type { Measurement } from "./collectors/collector.js";

/** A closed batch, encoded: each series an encoded metrics.v1.Series, and how many points they hold in all. */
export interface EncodedBatch {
  series: Uint8Array[];
  points: number;
}

/** Series fields (metrics.proto): the points' times and values, packed doubles. */
const timesField = 4;
const valuesField = 5;
/** PushRequest's field of the series. */
const seriesField = 1;

/** A series of the batch: its encoded metric, labels and kind, and its points since the last close (the first `n`). */
interface BatchSeries {
  head: Uint8Array;
  times: number[];
  values: number[];
  n: number;
}

/**
 * Samples collected since the last close, grouped by series (columnar, as Push takes them). A
 * series and its arrays outlive the batch, reused while the series goes on: the agent runs in V8's
 * interpreter, where what a turn allocates is paid for again by the scavenger, and after every
 * scavenge V8 gives the young generation's pages back to the kernel (a process that allocates
 * less than 1 MB/s), so each page allocated into faults afresh.
 */
export class Batch {
  private readonly series = new Map<string, BatchSeries>();
  points = 0;

  constructor(private readonly extraLabels: Record<string, string>) {}

  addAll(measurements: Measurement[], at: number): void {
    // Indexed loops here and in close(): in the interpreter for…of allocates a result per step.
    for (let i = 0; i < measurements.length; i++) {
      const m = measurements[i]!;
      const key = this.keyOf(m);
      let s = this.series.get(key);
      if (!s) {
        const head = toBinary(
          SeriesSchema,
          create(SeriesSchema, {
            metric: m.metric,
            labels: { ...m.labels, ...this.extraLabels },
            kind: m.kind === "counter" ? Kind.COUNTER : Kind.GAUGE,
          }),
        );
        s = { head, times: [], values: [], n: 0 };
        this.series.set(key, s);
      }
      // Two runs within one millisecond would collide on the (series, time) key: keep the later.
      if (s.n > 0 && s.times[s.n - 1] === at) s.values[s.n - 1] = m.value;
      else {
        s.times[s.n] = at;
        s.values[s.n] = m.value;
        s.n++;
        this.points++;
      }
    }
  }

  /**
   * seriesKey of the measurement's metric and its labels but those the extra labels override (the
   * same for every series of the batch, they tell no series apart). Labels given in sorted order,
   * as the collectors give them, are joined as they come; others are sorted by seriesKey.
   */
  private keyOf(m: Measurement): string {
    const { labels } = m;
    let key = m.metric;
    let previous = "";
    for (const k in labels) {
      if (k < previous) return seriesKey(m.metric, this.ownLabels(labels));
      previous = k;
      if (!(k in this.extraLabels)) key += `\u0000${k}\u0001${labels[k]}`;
    }
    return key;
  }

  /** `labels` without those the extra labels override. */
  private ownLabels(labels: Record<string, string>): Record<string, string> {
    return Object.fromEntries(Object.entries(labels).filter(([key]) => !(key in this.extraLabels)));
  }

  /** Everything added, encoded, or undefined when empty; starts a new batch. */
  close(): EncodedBatch | undefined {
    if (this.points === 0) return undefined;
    // One buffer for the whole batch, the series views into it: few allocations per batch. A
    // series that had no point since the last close has ended (a process that left the top
    // list) and is forgotten.
    let size = 0;
    this.series.forEach((s, key) => {
      if (s.n === 0) this.series.delete(key);
      else size += s.head.length + 2 * packedFieldSize(s.n);
    });
    const out = new Uint8Array(size);
    const view = new DataView(out.buffer);
    const series: Uint8Array[] = [];
    let at = 0;
    this.series.forEach((s) => {
      const start = at;
      out.set(s.head, at);
      at = writeDoubles(view, writeDoubles(view, at + s.head.length, timesField, s.times, s.n), valuesField, s.values, s.n);
      series.push(out.subarray(start, at));
      s.n = 0;
    });
    const closed = { series, points: this.points };
    this.points = 0;
    return closed;
  }
}

/** Bytes of a packed field of `count` doubles: its tag, its length, the doubles. */
function packedFieldSize(count: number): number {
  return 1 + varintSize(count * 8) + count * 8;
}

/**
 * Writes the first `count` of `numbers` at `at` as field `field` of packed doubles (little-endian, as protobuf has
 * them); returns where it ends. One DataView call per number: in V8's interpreter that is ~5×
 * cheaper than a Float64Array made of each series' numbers.
 */
function writeDoubles(view: DataView, at: number, field: number, numbers: number[], count: number): number {
  view.setUint8(at++, (field << 3) | WireType.LengthDelimited);
  at = writeVarint(view, at, count * 8);
  for (let i = 0; i < count; i++, at += 8) view.setFloat64(at, numbers[i]!, true);
  return at;
}

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n >>>= 7;
    size++;
  }
  return size;
}

function writeVarint(view: DataView, at: number, n: number): number {
  while (n >= 0x80) {
    view.setUint8(at++, (n & 0x7f) | 0x80);
    n >>>= 7;
  }
  view.setUint8(at++, n);
  return at;
}

/** The encoded PushRequest of these encoded series: each as field 1, length-delimited. */
export function pushRequestBytes(series: Uint8Array[]): Uint8Array {
  let size = 0;
  for (const s of series) size += 1 + varintSize(s.length) + s.length;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let at = 0;
  for (const s of series) {
    view.setUint8(at++, (seriesField << 3) | WireType.LengthDelimited);
    at = writeVarint(view, at, s.length);
    out.set(s, at);
    at += s.length;
  }
  return out;
}

/** The encoded series of an encoded PushRequest (views into `bytes`); throws when it is malformed. */
export function seriesOfPushRequest(bytes: Uint8Array): Uint8Array[] {
  const reader = new BinaryReader(bytes);
  const series: Uint8Array[] = [];
  while (reader.pos < reader.len) {
    const [no, wireType] = reader.tag();
    if (no === seriesField && wireType === WireType.LengthDelimited) series.push(reader.bytes());
    else reader.skip(wireType, no);
  }
  return series;
}

/** The points of an encoded series: its times, packed (as written here and by protobuf-es) or not. */
export function pointsOfSeries(bytes: Uint8Array): number {
  const reader = new BinaryReader(bytes);
  let points = 0;
  while (reader.pos < reader.len) {
    const [no, wireType] = reader.tag();
    if (no === timesField && wireType === WireType.LengthDelimited) points += reader.bytes().length / 8;
    else {
      if (no === timesField && wireType === WireType.Bit64) points++;
      reader.skip(wireType, no);
    }
  }
  return points;
}

/** A PushRequest message as an encoded batch (for batches made as messages: tests, tools). */
export function encodeBatch(request: { series: MessageInitShape<typeof SeriesSchema>[] }): EncodedBatch {
  return {
    series: request.series.map((s) => toBinary(SeriesSchema, create(SeriesSchema, s))),
    points: request.series.reduce((n, s) => n + (s.times?.length ?? 0), 0),
  };
}

/** An encoded batch as a PushRequest message (to read it: tests, halving one series). */
export function decodeBatch(batch: EncodedBatch): PushRequest {
  return fromBinary(PushRequestSchema, pushRequestBytes(batch.series));
}

/**
 * Two batches of about half the points each: the series split in two, or a lone series' points;
 * undefined for a batch of one point (or none), which cannot be made smaller.
 */
export function halve(batch: EncodedBatch): [EncodedBatch, EncodedBatch] | undefined {
  const { series } = batch;
  if (series.length > 1) {
    const counts = series.map(pointsOfSeries);
    const half = batch.points / 2;
    let cut = 1;
    let points = counts[0]!;
    for (; cut < series.length - 1 && points + counts[cut]! <= half; cut++) points += counts[cut]!;
    return [
      { series: series.slice(0, cut), points },
      { series: series.slice(cut), points: batch.points - points },
    ];
  }
  if (series.length === 0 || batch.points < 2) return undefined;
  // Rare (a daemon that takes fewer points than one series holds), so decoded and encoded again.
  const only = fromBinary(SeriesSchema, series[0]!);
  const mid = Math.ceil(only.times.length / 2);
  const part = (from: number, to?: number): EncodedBatch => {
    const times = only.times.slice(from, to);
    return { series: [toBinary(SeriesSchema, create(SeriesSchema, { ...only, times, values: only.values.slice(from, to) }))], points: times.length };
  };
  return [part(0, mid), part(mid)];
}
