import { describe, expect, it } from "vitest";
import { create, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { Kind, PushRequestSchema } from "../../gen/metrics/metrics_pb.js";
import type { Measurement } from "./collectors/collector.js";
import { Batch, decodeBatch, encodeBatch, halve, pointsOfSeries, pushRequestBytes, seriesOfPushRequest } from "./batch.js";

describe("Batch", () => {
  it("groups samples by series whatever their labels' order, with the extra labels, which override the measurement's", () => {
    const batch = new Batch({ host: "web-1" });
    batch.addAll(
      [
        { metric: "node_disk_io_now", labels: { device: "sda", x: "1" }, kind: "gauge", value: 1 },
        { metric: "node_load1", labels: {}, kind: "gauge", value: 0.5 },
      ],
      1_000,
    );
    batch.addAll(
      [
        { metric: "node_disk_io_now", labels: { x: "1", device: "sda" }, kind: "gauge", value: 2 },
        { metric: "node_load1", labels: { host: "elsewhere" }, kind: "gauge", value: 0.7 },
        { metric: "node_load1", labels: {}, kind: "gauge", value: 0.9 }, // the same time: the later value is kept
      ],
      2_000,
    );
    const closed = batch.close();
    expect(closed?.points).toBe(4);
    expect(decodeBatch(closed!).series.map(({ metric, labels, kind, times, values }) => ({ metric, labels, kind, times, values }))).toEqual([
      { metric: "node_disk_io_now", labels: { device: "sda", x: "1", host: "web-1" }, kind: Kind.GAUGE, times: [1_000, 2_000], values: [1, 2] },
      { metric: "node_load1", labels: { host: "web-1" }, kind: Kind.GAUGE, times: [1_000, 2_000], values: [0.5, 0.9] },
    ]);
    expect(batch.close()).toBeUndefined();
  });
});

describe("an encoded batch", () => {
  /** A batch of one gauge series with `points` points, one per ms from `t0`. */
  const batch = (metric: string, t0: number, points: number) =>
    encodeBatch({
      series: [{ metric, kind: Kind.GAUGE, times: Array.from({ length: points }, (_, i) => t0 + i), values: new Array<number>(points).fill(1) }],
    });

  it("is, on the wire, the PushRequest protobuf-es encodes, batch after batch, as series come and go", () => {
    const batch = new Batch({ host: "web-1" });
    const at = 1_764_000_000_000;
    const rounds: Measurement[][] = [
      [{ metric: "a", labels: { x: "1" }, kind: "gauge", value: 0.25 }],
      [
        { metric: "a", labels: { x: "1" }, kind: "gauge", value: -3 },
        { metric: "b_total", labels: { pid: "7", name: "ünïcode, with spaces" }, kind: "counter", value: 2 ** 40 },
      ],
      [{ metric: "b_total", labels: { pid: "8", name: "other" }, kind: "counter", value: 1 }],
    ];
    for (const [i, measurements] of rounds.entries()) {
      // Many points in a series too: a packed field over 127 bytes has a two-byte length.
      for (let t = 0; t < 20; t++) batch.addAll(measurements, at + i * 100_000 + t);
      const closed = batch.close()!;
      const expected = create(PushRequestSchema, {
        series: measurements.map((m) => ({
          metric: m.metric,
          labels: { ...m.labels, host: "web-1" },
          kind: m.kind === "counter" ? Kind.COUNTER : Kind.GAUGE,
          times: Array.from({ length: 20 }, (_, t) => at + i * 100_000 + t),
          values: new Array<number>(20).fill(m.value),
        })),
      });
      expect(pushRequestBytes(closed.series)).toEqual(toBinary(PushRequestSchema, expected));
      expect(closed.points).toBe(20 * measurements.length);
      expect(seriesOfPushRequest(pushRequestBytes(closed.series))).toEqual(closed.series);
    }
  });

  it("counts its points, packed or not", () => {
    expect(batch("m", 0, 3).points).toBe(3);
    // A foreign encoder may write the times one by one (field 4, 64-bit), which is valid protobuf.
    const unpacked = new BinaryWriter().tag(4, WireType.Bit64).double(1).tag(4, WireType.Bit64).double(2).finish();
    expect(pointsOfSeries(unpacked)).toBe(2);
    expect(() => seriesOfPushRequest(new Uint8Array([0x0a, 0x05, 0x01]))).toThrow();
  });

  it("halves by series, or a lone series' points, and nothing smaller than one point", () => {
    const lone = halve(batch("m", 0, 5))!;
    expect(lone.map((r) => decodeBatch(r).series[0]!.times)).toEqual([
      [0, 1, 2],
      [3, 4],
    ]);
    expect(lone.map((r) => r.points)).toEqual([3, 2]);
    const many = { series: [batch("a", 0, 6).series[0]!, batch("b", 0, 1).series[0]!, batch("c", 0, 5).series[0]!], points: 12 };
    const halves = halve(many)!;
    expect(halves.map((r) => decodeBatch(r).series.map((s) => s.metric))).toEqual([["a"], ["b", "c"]]);
    expect(halves.map((r) => r.points)).toEqual([6, 6]);
    expect(halve(batch("m", 0, 1))).toBeUndefined();
  });
});
