import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { compress } from "snappyjs";
import { describe, expect, it } from "vitest";
import { WriteRequestSchema } from "../../gen/prometheus/remote_pb.js";
import { isStaleMarker, staleMarker } from "../promql/values.js";
import { SeriesKind } from "../tsdb/index.js";
import { IngestRefusal } from "./errors.js";
import { decodeRemoteWrite, kindOfName, snappyLength } from "./remote-write.js";

function body(bytes: Uint8Array): Uint8Array {
  return compress(bytes);
}

function refusal(run: () => unknown): { status: number; message: string } {
  try {
    run();
  } catch (err) {
    if (err instanceof IngestRefusal) return { status: err.status, message: err.message };
    throw err;
  }
  throw new Error("not refused");
}

describe("decodeRemoteWrite", () => {
  it("reads what fromBinary reads, skipping fields it does not declare", () => {
    const request = create(WriteRequestSchema, {
      timeseries: [
        {
          labels: [
            { name: "__name__", value: "http_requests_total" },
            { name: "job", value: "api" },
            { name: "path", value: "/ü/€" },
          ],
          samples: [
            { value: 1.5, timestamp: 1_700_000_000_123n },
            { value: -0, timestamp: 1_700_000_015_123n },
            { value: staleMarker, timestamp: 1_700_000_030_123n },
          ],
        },
        { labels: [{ name: "__name__", value: "up" }], samples: [{ value: 1, timestamp: -5n }] },
        { labels: [{ name: "__name__", value: "no_samples" }] },
      ],
    });
    const bytes = toBinary(WriteRequestSchema, request);
    // An exemplar (TimeSeries field 3) and metadata (WriteRequest field 3), which Specta does not declare.
    const exemplar = Uint8Array.of(0x1a, 0x02, 0x11, 0x00);
    const first = bytes.subarray(0, 2 + bytes[1]!);
    const withUnknown = Uint8Array.from([
      0x0a,
      first[1]! + exemplar.length,
      ...first.subarray(2),
      ...exemplar,
      ...bytes.subarray(first.length),
      0x1a,
      0x00,
    ]);
    expect(fromBinary(WriteRequestSchema, withUnknown).timeseries).toHaveLength(3);

    const series = decodeRemoteWrite(body(withUnknown));
    expect(series.map((s) => ({ metric: s.metric, labels: s.labels, kind: s.kind, times: s.times }))).toEqual([
      {
        metric: "http_requests_total",
        labels: { job: "api", path: "/ü/€" },
        kind: SeriesKind.counter,
        times: [1_700_000_000_123, 1_700_000_015_123, 1_700_000_030_123],
      },
      { metric: "up", labels: {}, kind: SeriesKind.gauge, times: [-5] },
    ]);
    const values = series[0]!.values;
    expect([values[0], Object.is(values[1], -0)]).toEqual([1.5, true]);
    expect(isStaleMarker(values[2]!)).toBe(true);
  });

  it("refuses what is not a snappy-compressed WriteRequest with 400, and a declared length over the limit with 413 before decoding", () => {
    expect(refusal(() => decodeRemoteWrite(Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff)))).toMatchObject({ status: 400 });
    expect(refusal(() => decodeRemoteWrite(body(Uint8Array.of(0x0a, 0x05, 0x0a))))).toMatchObject({
      status: 400,
      message: expect.stringMatching(/overruns/),
    });
    expect(refusal(() => decodeRemoteWrite(body(Uint8Array.of(0x0a, 0x06, 0x0a, 0x04, 0x0a, 0x02, 0xc3, 0x28))))).toMatchObject({
      status: 400,
      message: expect.stringMatching(/UTF-8|encoded/i),
    });
    expect(refusal(() => decodeRemoteWrite(Uint8Array.of(0x81, 0x80, 0x04), 65_536))).toEqual({
      status: 413,
      message: "the body declares 65537 bytes uncompressed; remote-write takes at most 65536",
    });
    expect(snappyLength(Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0x0f))).toBe(0xffff_ffff);
    expect(snappyLength(Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0x1f))).toBeUndefined();
  });

  it("refuses a series without __name__, with a label twice, or with native histograms", () => {
    const encode = (timeseries: Parameters<typeof create<typeof WriteRequestSchema>>[1]) =>
      body(toBinary(WriteRequestSchema, create(WriteRequestSchema, timeseries)));
    expect(
      refusal(() => decodeRemoteWrite(encode({ timeseries: [{ labels: [{ name: "a", value: "1" }], samples: [{ value: 1, timestamp: 1n }] }] }))),
    ).toEqual({ status: 400, message: "timeseries[0] has no __name__ label" });
    const twice = [
      { name: "__name__", value: "m" },
      { name: "a", value: "1" },
      { name: "a", value: "2" },
    ];
    expect(refusal(() => decodeRemoteWrite(encode({ timeseries: [{ labels: twice, samples: [{ value: 1, timestamp: 1n }] }] })))).toEqual({
      status: 400,
      message: 'timeseries[0] has the label "a" twice',
    });
    expect(
      refusal(() => decodeRemoteWrite(encode({ timeseries: [{ labels: [{ name: "__name__", value: "m" }], histograms: [{}] }] }))),
    ).toMatchObject({ status: 400, message: expect.stringMatching(/native histogram/) });
  });

  it("keeps a label named __proto__ as a key, for the store's checks to refuse", () => {
    const request = create(WriteRequestSchema, {
      timeseries: [
        {
          labels: [
            { name: "__name__", value: "m" },
            { name: "__proto__", value: "x" },
          ],
          samples: [{ value: 1, timestamp: 1n }],
        },
      ],
    });
    const [series] = decodeRemoteWrite(body(toBinary(WriteRequestSchema, request)));
    expect(Object.keys(series!.labels)).toEqual(["__proto__"]);
    expect(Object.getPrototypeOf(series!.labels)).toBe(Object.prototype);
  });
});

describe("kindOfName", () => {
  it("follows Prometheus' naming conventions", () => {
    expect(["a_total", "a_bucket", "a_sum", "a_count", "a_bytes", "total"].map(kindOfName)).toEqual([
      SeriesKind.counter,
      SeriesKind.histogram,
      SeriesKind.histogram,
      SeriesKind.histogram,
      SeriesKind.gauge,
      SeriesKind.gauge,
    ]);
  });
});
