import { deflateRawSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { decodeChunk, decodeRollups, encodeChunk, encodeRollups, rollUp, type Buckets } from "./chunk-format.js";
import { ByteReader, ByteWriter, CorruptChunk, decodeSeries, encodeSeries } from "./codec.js";
import { decodeHead, encodeHead } from "./group-payload.js";

/** Seeded PRNG (mulberry32): every run tests the same cases, and a failure names its seed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A float64 from two random 32-bit words: any bit pattern, NaN payloads and subnormals included. */
function anyBits(rand: () => number): number {
  const words = new Uint32Array([Math.floor(rand() * 2 ** 32), Math.floor(rand() * 2 ** 32)]);
  return new Float64Array(words.buffer)[0]!;
}

function bitsOf(v: number): string {
  return Buffer.from(new Float64Array([v]).buffer).toString("hex");
}

function roundTrip(times: number[], values: number[]): void {
  const w = new ByteWriter(16);
  encodeSeries(w, times, values);
  const outTimes = new Float64Array(times.length);
  const outValues = new Float64Array(values.length);
  const r = new ByteReader(w.view());
  expect(decodeSeries(r, outTimes, outValues)).toBe(times.length);
  expect(r.pos).toBe(w.pos);
  expect([...outTimes]).toEqual(times);
  // Bit for bit: NaN payloads, −0 and every other pattern survive.
  expect([...outValues].map(bitsOf)).toEqual(values.map(bitsOf));
}

const edgeValues = [
  0,
  -0,
  1,
  -1,
  0.1,
  0.2 + 0.1,
  Number.MAX_VALUE,
  -Number.MAX_VALUE,
  Number.MIN_VALUE,
  Infinity,
  -Infinity,
  NaN,
  2 ** 53,
  2 ** 49,
  -(2 ** 49),
  1e-300,
  123456789.123,
];

describe("the series codec", () => {
  it("round-trips edge values bit for bit, alone and mixed with decimals", () => {
    const times = edgeValues.map((_, i) => 1_700_000_000_000 + i * 10_000);
    roundTrip(times, edgeValues);
    for (const v of edgeValues) {
      roundTrip([5], [v]);
      roundTrip([1, 2, 3], [1.5, v, 2.25]);
      roundTrip([1, 2, 3], [v, v, v]);
    }
    // A NaN with a payload other than the canonical one.
    const payloadNaN = new Float64Array(new Uint32Array([1, 0x7ff00000]).buffer)[0]!;
    roundTrip([1, 2], [payloadNaN, 1]);
  });

  it("round-trips random series: any bits, short decimals, counters, constants, irregular times", () => {
    for (let seed = 1; seed <= 300; seed++) {
      const rand = random(seed);
      const n = 1 + Math.floor(rand() * (seed % 10 === 0 ? 5000 : 200));
      let t = Math.floor(rand() * 2e12);
      const times: number[] = [];
      for (let i = 0; i < n; i++) {
        times.push(t);
        // Regular steps with jitter, and sometimes a long gap.
        t += rand() < 0.05 ? 1 + Math.floor(rand() * 1e9) : 10_000 + Math.floor((rand() - 0.5) * 50);
      }
      const shape = seed % 5;
      let total = Math.floor(rand() * 1e6);
      const values = times.map(() => {
        if (shape === 0) return anyBits(rand);
        if (shape === 1) return Math.round(rand() * 1e6) / 100;
        if (shape === 2) return (total += Math.floor(rand() * 5000));
        if (shape === 3) return 42.5;
        return rand() < 0.5 ? Math.round(rand() * 1e4) / 1e3 : rand() * 1e6;
      });
      try {
        roundTrip(times, values);
      } catch (err) {
        throw new Error(`seed ${seed}: ${(err as Error).message}`);
      }
    }
  });

  it("keeps node_exporter-like data small: constants and counters cost a few bits per point", () => {
    const n = 720;
    const times = Array.from({ length: n }, (_, i) => 1_700_000_000_000 + i * 10_000);
    const sizeOf = (values: number[]) => encodeChunk({ times: Float64Array.from(times), values: Float64Array.from(values), n }, times[0]!).length;
    expect(sizeOf(times.map(() => 16_684_449_792))).toBeLessThan(30);
    let cpu = 100_000;
    const counter = times.map((_, i) => (cpu += 9 + (i % 3)) / 100);
    expect(sizeOf(counter) / n).toBeLessThan(0.5);
  });

  it("refuses corrupt input with CorruptChunk, never a crash or a hang", () => {
    const w = new ByteWriter();
    encodeSeries(w, [1, 2, 3], [0.5, Number.NaN, 7]);
    const good = w.view().slice();
    for (let cut = 0; cut < good.length; cut++) {
      expect(() => decodeSeries(new ByteReader(good.subarray(0, cut)), new Float64Array(8), new Float64Array(8))).toThrow(CorruptChunk);
    }
    const rand = random(7);
    for (let k = 0; k < 2000; k++) {
      const junk = Uint8Array.from({ length: 1 + Math.floor(rand() * 40) }, () => Math.floor(rand() * 256));
      try {
        decodeSeries(new ByteReader(junk), new Float64Array(64), new Float64Array(64));
      } catch (err) {
        expect(err).toBeInstanceOf(CorruptChunk);
      }
    }
    expect(() => decodeChunk(Uint8Array.from([9, 1, 2]), 0)).toThrow(CorruptChunk);
    // A count larger than the bytes could hold never sizes an allocation; a DEFLATE bomb stops at a bound.
    const huge = new ByteWriter();
    huge.uvarint(2 ** 40);
    expect(() => decodeSeries(new ByteReader(huge.view()), new Float64Array(8), new Float64Array(8))).toThrow(/a count of 1099511627776 points/);
    const bomb = Buffer.concat([Buffer.from([1]), deflateRawSync(Buffer.alloc(100 * 2 ** 20))]);
    expect(() => decodeChunk(bomb, 0)).toThrow(CorruptChunk);
  });
});

describe("chunks, rollups and head payloads", () => {
  const n = 2000;
  const times = Float64Array.from({ length: n }, (_, i) => 1_700_000_000_000 + i * 7_000);
  const values = Float64Array.from({ length: n }, (_, i) => Math.sin(i / 10) * 100);

  it("round-trips a compressed chunk", () => {
    const back = decodeChunk(encodeChunk({ times, values, n }, 1_699_999_200_000), 1_699_999_200_000);
    expect(back.n).toBe(n);
    expect([...back.times]).toEqual([...times]);
    expect([...back.values]).toEqual([...values]);
  });

  it("rolls points up into epoch-aligned buckets with min, max, sum, count and last", () => {
    const b = rollUp(
      { times: Float64Array.from([0, 100_000, 299_999, 300_000, 900_000]), values: Float64Array.from([3, 1, 2, 5, 4]), n: 5 },
      300_000,
    );
    expect(b.n).toBe(3);
    expect([...b.times.subarray(0, 3)]).toEqual([0, 300_000, 900_000]);
    expect([...b.min.subarray(0, 3)]).toEqual([1, 5, 4]);
    expect([...b.max.subarray(0, 3)]).toEqual([3, 5, 4]);
    expect([...b.sum.subarray(0, 3)]).toEqual([6, 5, 4]);
    expect([...b.count.subarray(0, 3)]).toEqual([3, 1, 1]);
    expect([...b.last.subarray(0, 3)]).toEqual([2, 5, 4]);
    // Sums of short decimals are exact decimals, not float sums.
    expect(rollUp({ times: Float64Array.from([0, 1]), values: Float64Array.from([0.1, 0.2]), n: 2 }, 300_000).sum[0]).toBe(0.3);
    // A rollup row holds the buckets of several series; a reader takes only those it wants.
    const direct = rollUp({ times, values, n }, 300_000);
    const other = rollUp({ times, values: values.map((v) => -v), n }, 300_000);
    const row = encodeRollups(
      [
        { id: 5, buckets: direct },
        { id: 9, buckets: other },
      ],
      1_699_999_200_000,
    );
    const back: [number, Buckets][] = [];
    decodeRollups(row, 1_699_999_200_000, new Set([5]), (id, b) => back.push([id, b]));
    expect(back.map(([id]) => id)).toEqual([5]);
    const decoded = back[0]![1];
    expect(decoded.n).toBe(direct.n);
    for (const column of ["times", "min", "max", "sum", "count", "last"] as const) {
      expect([...decoded[column].subarray(0, decoded.n)]).toEqual([...direct[column].subarray(0, direct.n)]);
    }
  });

  it("decodes only the wanted series of a head payload, repeated ids in write order, shared times", () => {
    const entries = [
      { id: 3, times: [1, 2], values: [10, 20], from: 0, to: 2 },
      { id: 3, times: [2, 3], values: [21, 30], from: 0, to: 2 },
      { id: 9, times: [5, 2, 3], values: [1, 2, 3], from: 1, to: 3 },
      { id: 11, times: [2, 3], values: [7, 8], from: 0, to: 2 },
    ];
    const payload = encodeHead(entries);
    const seen: [number, number[], number[]][] = [];
    decodeHead(payload, undefined, (id, t, v, k) => seen.push([id, [...t.subarray(0, k)], [...v.subarray(0, k)]]));
    expect(seen).toEqual([
      [3, [1, 2], [10, 20]],
      [3, [2, 3], [21, 30]],
      [9, [2, 3], [2, 3]],
      [11, [2, 3], [7, 8]],
    ]);
    // Entries 9 and 11 take the times of the entry before them, decoded even when it is not wanted.
    const only11: [number, number[]][] = [];
    decodeHead(payload, new Set([11]), (id, t, _v, k) => only11.push([id, [...t.subarray(0, k)]]));
    expect(only11).toEqual([[11, [2, 3]]]);
  });
});
