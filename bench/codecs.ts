/**
 * npm run bench:codecs — the chunk encodings DESIGN.md names as candidates, on the same
 * node_exporter-like series (bench/node-exporter-like.ts): Gorilla (delta-of-delta timestamps
 * and XOR floats, bit-packed, as Prometheus' XOR chunks), and decimal integers with delta or
 * delta-of-delta coding (VictoriaMetrics' idea, src/tsdb/codec.ts) alone, with DEFLATE (what
 * the store keeps) and with Brotli. Prints bytes per sample and encode / decode cost for chunks
 * of BENCH_POINTS points (default 720: one 2-hour block at 10 s) of BENCH_HOSTS hosts (default 10).
 *
 * The Gorilla coder is written here only to be measured (the Gorilla paper, VLDB 2015, 4.1).
 */
import { brotliCompressSync, brotliDecompressSync, constants, deflateRawSync, inflateRawSync } from "node:zlib";
import { ByteReader, ByteWriter, decodeSeries, encodeSeries } from "../src/tsdb/codec.js";
import { hostSeries } from "./node-exporter-like.js";
import { fmt, machine } from "./store-load.js";

const hosts = Number(process.env.BENCH_HOSTS ?? 10);
const points = Number(process.env.BENCH_POINTS ?? 720);

/** Bits appended to 32-bit words. */
class BitWriter {
  words: number[] = [];
  private word = 0;
  private used = 0;

  write(value: number, bits: number): void {
    // value < 2^bits, bits ≤ 32
    while (bits > 0) {
      const take = Math.min(bits, 32 - this.used);
      const part = take === 32 ? value >>> 0 : (value >>> (bits - take)) & ((1 << take) - 1);
      this.word = take === 32 ? part : ((this.word << take) | part) >>> 0;
      this.used += take;
      bits -= take;
      if (this.used === 32) {
        this.words.push(this.word >>> 0);
        this.word = 0;
        this.used = 0;
      }
    }
  }

  bytes(): number {
    return this.words.length * 4 + Math.ceil(this.used / 8);
  }

  /** The words, the last one padded with zero bits. */
  finish(): number[] {
    return this.used === 0 ? this.words : [...this.words, (this.word << (32 - this.used)) >>> 0];
  }
}

class BitReader {
  private word = 0;
  private bit = 32;

  constructor(
    private readonly words: number[],
    private index = 0,
  ) {}

  read(bits: number): number {
    let out = 0;
    while (bits > 0) {
      if (this.bit === 32) {
        this.word = this.words[this.index++] ?? 0;
        this.bit = 0;
      }
      const take = Math.min(bits, 32 - this.bit);
      const part = (this.word >>> (32 - this.bit - take)) & (take === 32 ? 0xffffffff : (1 << take) - 1);
      out = take === 32 ? part >>> 0 : out * 2 ** take + part;
      this.bit += take;
      bits -= take;
    }
    return out;
  }
}

const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);

function gorillaEncode(times: number[], values: number[]): BitWriter {
  const w = new BitWriter();
  w.write(Math.floor(times[0]! / 2 ** 32), 32);
  w.write(times[0]! >>> 0, 32);
  f64[0] = values[0]!;
  let prevHi = u32[1]!;
  let prevLo = u32[0]!;
  w.write(prevHi, 32);
  w.write(prevLo, 32);
  let prevDelta = 0;
  let leading = -1;
  let trailing = 0;
  for (let i = 1; i < times.length; i++) {
    const delta = times[i]! - times[i - 1]!;
    const dod = delta - prevDelta;
    prevDelta = delta;
    if (dod === 0) w.write(0, 1);
    else if (dod >= -63 && dod <= 64) w.write(0b10, 2), w.write(dod + 63, 7);
    else if (dod >= -255 && dod <= 256) w.write(0b110, 3), w.write(dod + 255, 9);
    else if (dod >= -2047 && dod <= 2048) w.write(0b1110, 4), w.write(dod + 2047, 12);
    else w.write(0b1111, 4), w.write(dod >>> 0, 32);
    f64[0] = values[i]!;
    const hi = (u32[1]! ^ prevHi) >>> 0;
    const lo = (u32[0]! ^ prevLo) >>> 0;
    prevHi = u32[1]!;
    prevLo = u32[0]!;
    if (hi === 0 && lo === 0) {
      w.write(0, 1);
      continue;
    }
    const lz = hi !== 0 ? Math.clz32(hi) : 32 + Math.clz32(lo);
    const tz = lo !== 0 ? 31 - Math.clz32(lo & -lo) : 32 + (31 - Math.clz32(hi & -hi));
    const meaningfulWrite = (from: number, count: number) => {
      // bits [from, from + count) of the 64-bit word hi:lo, most significant first
      for (let b = from; b < from + count; ) {
        const inHi = b < 32;
        const word = inHi ? hi : lo;
        const offset = inHi ? b : b - 32;
        const take = Math.min(from + count - b, 32 - offset);
        w.write((word >>> (32 - offset - take)) & (take === 32 ? 0xffffffff : (1 << take) - 1), take);
        b += take;
      }
    };
    if (leading >= 0 && lz >= leading && tz >= trailing) {
      w.write(0b10, 2);
      meaningfulWrite(leading, 64 - leading - trailing);
    } else {
      leading = Math.min(lz, 31);
      trailing = tz;
      const significant = 64 - leading - trailing;
      w.write(0b11, 2);
      w.write(leading, 5);
      w.write(significant === 64 ? 0 : significant, 6);
      meaningfulWrite(leading, significant);
    }
  }
  return w;
}

function gorillaDecode(words: number[], n: number, outTimes: Float64Array, outValues: Float64Array): void {
  const r = new BitReader(words);
  let t = r.read(32) * 2 ** 32 + r.read(32);
  let hi = r.read(32);
  let lo = r.read(32);
  u32[1] = hi;
  u32[0] = lo;
  outTimes[0] = t;
  outValues[0] = f64[0]!;
  let delta = 0;
  let leading = 0;
  let significant = 0;
  for (let i = 1; i < n; i++) {
    let dod: number;
    // biome-ignore-start lint/suspicious/noDuplicateElseIf: each condition reads the next bit of the prefix
    if (r.read(1) === 0) dod = 0;
    else if (r.read(1) === 0) dod = r.read(7) - 63;
    else if (r.read(1) === 0) dod = r.read(9) - 255;
    else if (r.read(1) === 0) dod = r.read(12) - 2047;
    else dod = r.read(32) | 0;
    // biome-ignore-end lint/suspicious/noDuplicateElseIf: each condition reads the next bit of the prefix
    delta += dod;
    t += delta;
    if (r.read(1) === 1) {
      if (r.read(1) === 1) {
        leading = r.read(5);
        significant = r.read(6) || 64;
      }
      const trailing = 64 - leading - significant;
      let xhi = 0;
      let xlo = 0;
      for (let b = leading; b < 64 - trailing; b++) {
        const bit = r.read(1);
        if (b < 32) xhi |= bit << (31 - b);
        else xlo |= bit << (63 - b);
      }
      hi = (hi ^ xhi) >>> 0;
      lo = (lo ^ xlo) >>> 0;
    }
    u32[1] = hi;
    u32[0] = lo;
    outTimes[i] = t;
    outValues[i] = f64[0]!;
  }
}

interface Candidate {
  name: string;
  bytes: number;
  encodeNs: number;
  decodeNs: number;
}

function main(): void {
  console.log(machine());
  const series: { times: number[]; values: number[] }[] = [];
  for (let h = 0; h < hosts; h++) {
    for (const s of hostSeries(h)) {
      const times = Array.from({ length: points }, (_, i) => 1_764_547_200_000 + i * 10_000);
      series.push({ times, values: times.map((_, i) => s.valueAt(i)) });
    }
  }
  const samples = series.length * points;
  console.log(`data: ${hosts} hosts × 200 node_exporter-like series, chunks of ${points} points at 10 s (${fmt(samples)} samples)`);

  const measure = (
    name: string,
    encode: (s: (typeof series)[number]) => Uint8Array | BitWriter,
    decode: (encoded: Uint8Array | BitWriter) => void,
  ): Candidate => {
    let bytes = 0;
    const encoded: (Uint8Array | BitWriter)[] = [];
    const e0 = process.hrtime.bigint();
    for (const s of series) encoded.push(encode(s));
    const encodeNs = Number(process.hrtime.bigint() - e0) / samples;
    for (const e of encoded) bytes += e instanceof BitWriter ? e.bytes() : e.length;
    const d0 = process.hrtime.bigint();
    for (const e of encoded) decode(e);
    const decodeNs = Number(process.hrtime.bigint() - d0) / samples;
    return { name, bytes: bytes / samples, encodeNs, decodeNs };
  };
  const specta = (s: (typeof series)[number]) => {
    const w = new ByteWriter();
    encodeSeries(w, s.times, s.values, 0, points, s.times[0]);
    return w.view().slice();
  };
  const times = new Float64Array(points);
  const values = new Float64Array(points);
  const spectaDecode = (bytes: Uint8Array) => decodeSeries(new ByteReader(bytes), times, values, 0, 0);
  const brotli = (b: Uint8Array) => brotliCompressSync(b, { params: { [constants.BROTLI_PARAM_QUALITY]: 4, [constants.BROTLI_PARAM_LGWIN]: 10 } });

  // The coders must give back what they took, bit for bit.
  for (const s of series.slice(0, 400)) {
    gorillaDecode(gorillaEncode(s.times, s.values).finish(), points, times, values);
    const ok = s.times.every((t, i) => t === times[i]) && s.values.every((v, i) => Object.is(v, values[i]));
    if (!ok) throw new Error("the Gorilla coder does not round-trip");
  }

  // Twice: the first round warms the JIT up.
  let results: Candidate[] = [];
  for (let round = 0; round < 2; round++) {
    results = [
      measure(
        "Gorilla: delta-of-delta + XOR, bit-packed (Prometheus' chunks)",
        (s) => gorillaEncode(s.times, s.values),
        (e) => gorillaDecode((e as BitWriter).finish(), points, times, values),
      ),
      measure("decimal delta / delta-of-delta, varints, no compressor", specta, (e) => void spectaDecode(e as Uint8Array)),
      measure(
        "decimal + DEFLATE (the store's chunks)",
        (s) => deflateRawSync(specta(s), { level: 6 }),
        (e) => void spectaDecode(inflateRawSync(e as Uint8Array)),
      ),
      measure(
        "decimal + Brotli (quality 4)",
        (s) => brotli(specta(s)),
        (e) => void spectaDecode(brotliDecompressSync(e as Uint8Array)),
      ),
    ];
  }
  for (const r of results)
    console.log(`  ${r.name}: ${fmt(r.bytes, 3)} bytes/sample, encode ${fmt(r.encodeNs)} ns/sample, decode ${fmt(r.decodeNs)} ns/sample`);
}

main();
