/**
 * The points of one series, encoded: times as delta-of-delta varints; values as decimal
 * integers (VictoriaMetrics' idea: most monitoring values are short decimals) coded as deltas
 * or deltas of deltas, whichever is smaller, else as a byte-aligned XOR of each value with the
 * previous one (Gorilla's idea, on whole bytes). Bit-exact for every float64, NaN payloads,
 * −0 and ±Inf included: a value the decimal form cannot hold exactly sends its series to XOR.
 *
 * Written here because no maintained JavaScript codec for time series exists; the formats are
 * described in the Gorilla paper (VLDB 2015) and in VictoriaMetrics' lib/encoding.
 *
 * Layout of one series: uvarint n; times (zigzag t0, zigzag t1−t0, then zigzag delta-of-delta);
 * one mode byte; the values in that mode.
 */

/** How the values of a series are coded. */
export const enum ValueMode {
  /** Every value has the same bits: 8 bytes once. */
  Constant = 0,
  /**
   * uvarint exponent e and uvarint divisor g, zigzag varint m[0], then zigzag varints of
   * (m[i] − m[i−1]) / g, where value = m / 10^e.
   */
  DecimalDelta = 1,
  /** As DecimalDelta, with the first delta, then deltas of deltas, each divided by g. */
  DecimalDoubleDelta = 2,
  /** Per value a control byte (leading zero bytes << 4 | significant bytes) and the significant bytes of value XOR previous. */
  Xor = 3,
}

/** Decimal mantissas stay below this, so that their deltas of deltas and zigzags stay exact in a double. */
const maxMantissa = 2 ** 49;
const maxExponent = 18;
const pow10 = Array.from({ length: maxExponent + 1 }, (_, e) => 10 ** e);

const float = new Float64Array(1);
const floatWords = new Uint32Array(float.buffer); // [low, high] on little-endian machines
const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const lo = littleEndian ? 0 : 1;
const hi = littleEndian ? 1 : 0;

/** A growable byte buffer with varint writers. */
export class ByteWriter {
  buf: Uint8Array;
  pos = 0;

  constructor(capacity = 1024) {
    this.buf = new Uint8Array(capacity);
  }

  ensure(extra: number): void {
    if (this.pos + extra <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.pos + extra));
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  byte(b: number): void {
    this.ensure(1);
    this.buf[this.pos++] = b;
  }

  /** An unsigned integer up to 2^53. */
  uvarint(x: number): void {
    this.ensure(8);
    const buf = this.buf;
    let pos = this.pos;
    while (x >= 0x80) {
      buf[pos++] = (x % 0x80) | 0x80;
      x = Math.floor(x / 0x80);
    }
    buf[pos++] = x;
    this.pos = pos;
  }

  /** A signed integer of magnitude below 2^52. */
  varint(x: number): void {
    this.uvarint(x >= 0 ? x * 2 : -x * 2 - 1);
  }

  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** The bytes written so far (a view: copy it before writing more if it must outlive the writer's next reset). */
  view(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }

  reset(): void {
    this.pos = 0;
  }
}

/** Reads what ByteWriter wrote; throws CorruptChunk past the end. */
export class ByteReader {
  pos: number;

  constructor(
    readonly buf: Uint8Array,
    start = 0,
    readonly end = buf.length,
  ) {
    this.pos = start;
  }

  byte(): number {
    if (this.pos >= this.end) throw new CorruptChunk("unexpected end");
    return this.buf[this.pos++]!;
  }

  uvarint(): number {
    const buf = this.buf;
    let pos = this.pos;
    let b = buf[pos++]!;
    if (b < 0x80 && pos <= this.end) {
      this.pos = pos;
      return b;
    }
    let x = b & 0x7f;
    let scale = 0x80;
    for (;;) {
      if (pos >= this.end) throw new CorruptChunk("unexpected end in a varint");
      b = buf[pos++]!;
      x += (b & 0x7f) * scale;
      if (b < 0x80) break;
      scale *= 0x80;
      if (scale > 2 ** 56) throw new CorruptChunk("varint too long");
    }
    this.pos = pos;
    return x;
  }

  varint(): number {
    const z = this.uvarint();
    return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
  }
}

/** Encoded bytes that do not decode. */
export class CorruptChunk extends Error {
  override name = "CorruptChunk";
}

/** Appends the series' points (times strictly increasing, whole ms) in the layout above. */
export function encodeSeries(w: ByteWriter, times: ArrayLike<number>, values: ArrayLike<number>, from = 0, to = times.length, base = 0): void {
  const n = to - from;
  w.uvarint(n);
  if (n === 0) return;
  encodeTimes(w, times, from, to, base);
  encodeValues(w, values, from, to);
}

/**
 * Appends n times (n ≥ 1) as delta-of-delta varints, the first as its distance from `base` (a
 * chunk's block start: a byte or two instead of six); the count is the caller's to write.
 */
export function encodeTimes(w: ByteWriter, times: ArrayLike<number>, from: number, to: number, base = 0): void {
  let prev = times[from]!;
  w.varint(prev - base);
  let prevDelta = 0;
  for (let i = from + 1; i < to; i++) {
    const t = times[i]!;
    const delta = t - prev;
    w.varint(i === from + 1 ? delta : delta - prevDelta);
    prevDelta = delta;
    prev = t;
  }
}

const mantissas: { buf: Float64Array } = { buf: new Float64Array(1024) };

/** Appends n values (n ≥ 1) in the smallest of the value modes; the count is the caller's to write. */
export function encodeValues(w: ByteWriter, values: ArrayLike<number>, from: number, to: number): void {
  const n = to - from;
  float[0] = values[from]!;
  const firstLo = floatWords[lo]!;
  const firstHi = floatWords[hi]!;
  let constant = true;
  for (let i = from + 1; i < to && constant; i++) {
    float[0] = values[i]!;
    constant = floatWords[lo] === firstLo && floatWords[hi] === firstHi;
  }
  if (constant) {
    w.byte(ValueMode.Constant);
    writeFloat(w, values[from]!);
    return;
  }
  const e = decimalExponent(values, from, to);
  if (e >= 0) {
    if (mantissas.buf.length < n) mantissas.buf = new Float64Array(n * 2);
    const m = mantissas.buf;
    const p = pow10[e]!;
    let exact = true;
    for (let i = 0; i < n; i++) {
      const v = values[from + i]!;
      const x = Math.round(v * p);
      if (x / p !== v) exact = false;
      m[i] = x;
    }
    if (exact) {
      writeDecimal(w, m, n, e);
      return;
    }
  }
  w.byte(ValueMode.Xor);
  writeXor(w, values, from, to);
}

/**
 * The smallest exponent e such that every value of values[from … to) is exactly m / 10^e with
 * |m| < 2^49, or −1.
 * An exponent that holds for one value holds for every larger one (see the round-trip check in
 * encodeValues, which guards it anyway).
 */
export function decimalExponent(values: ArrayLike<number>, from: number, to: number): number {
  let e = 0;
  let maxAbs = 0;
  for (let i = from; i < to; i++) {
    const v = values[i]!;
    if (!Number.isFinite(v) || (v === 0 && 1 / v < 0)) return -1;
    const abs = Math.abs(v);
    if (abs > maxAbs) maxAbs = abs;
    while (Math.round(v * pow10[e]!) / pow10[e]! !== v) {
      if (++e > maxExponent) return -1;
    }
  }
  return maxAbs * pow10[e]! < maxMantissa ? e : -1;
}

function zigzagLength(x: number): number {
  const z = x >= 0 ? x * 2 : -x * 2 - 1;
  return z < 0x80 ? 1 : z < 0x4000 ? 2 : z < 0x200000 ? 3 : z < 0x10000000 ? 4 : Math.ceil(Math.log2(z + 1) / 7);
}

function writeDecimal(w: ByteWriter, m: Float64Array, n: number, e: number): void {
  // Both codings' sizes in one pass; counters usually win with deltas of deltas, gauges with deltas.
  // Each is divided by the greatest common divisor of its steps (page-aligned memory sizes
  // move in multiples of 4096).
  let deltaGcd = 0;
  let doubleGcd = n > 1 ? Math.abs(m[1]! - m[0]!) : 0;
  for (let i = 1; i < n; i++) deltaGcd = gcd(deltaGcd, Math.abs(m[i]! - m[i - 1]!));
  for (let i = 2; i < n; i++) doubleGcd = gcd(doubleGcd, Math.abs(m[i]! - 2 * m[i - 1]! + m[i - 2]!));
  deltaGcd ||= 1;
  doubleGcd ||= 1;
  let deltaBytes = 0;
  let doubleBytes = n > 1 ? zigzagLength((m[1]! - m[0]!) / doubleGcd) : 0;
  for (let i = 1; i < n; i++) deltaBytes += zigzagLength((m[i]! - m[i - 1]!) / deltaGcd);
  for (let i = 2; i < n; i++) doubleBytes += zigzagLength((m[i]! - 2 * m[i - 1]! + m[i - 2]!) / doubleGcd);
  const double = doubleBytes < deltaBytes;
  const g = double ? doubleGcd : deltaGcd;
  w.byte(double ? ValueMode.DecimalDoubleDelta : ValueMode.DecimalDelta);
  w.uvarint(e);
  w.uvarint(g);
  w.varint(m[0]!);
  if (n > 1) w.varint((m[1]! - m[0]!) / g);
  if (double) for (let i = 2; i < n; i++) w.varint((m[i]! - 2 * m[i - 1]! + m[i - 2]!) / g);
  else for (let i = 2; i < n; i++) w.varint((m[i]! - m[i - 1]!) / g);
}

/** Greatest common divisor of two whole numbers below 2^53. */
function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

function writeFloat(w: ByteWriter, v: number): void {
  float[0] = v;
  w.ensure(8);
  writeWord(w, floatWords[hi]!, 4);
  writeWord(w, floatWords[lo]!, 4);
}

/** The `count` low bytes of `word`, most significant first. */
function writeWord(w: ByteWriter, word: number, count: number): void {
  for (let k = count - 1; k >= 0; k--) w.buf[w.pos++] = (word >>> (k * 8)) & 0xff;
}

function writeXor(w: ByteWriter, values: ArrayLike<number>, from: number, to: number): void {
  let prevLo = 0;
  let prevHi = 0;
  for (let i = from; i < to; i++) {
    float[0] = values[i]!;
    const xl = (floatWords[lo]! ^ prevLo) >>> 0;
    const xh = (floatWords[hi]! ^ prevHi) >>> 0;
    prevLo = floatWords[lo]!;
    prevHi = floatWords[hi]!;
    w.ensure(9);
    if (xl === 0 && xh === 0) {
      w.buf[w.pos++] = 0;
      continue;
    }
    const leading = xh !== 0 ? Math.clz32(xh) >>> 3 : 4 + (Math.clz32(xl) >>> 3);
    const trailing = xl !== 0 ? trailingZeroBytes(xl) : 4 + trailingZeroBytes(xh);
    const significant = 8 - leading - trailing;
    w.buf[w.pos++] = (leading << 4) | significant;
    // Bytes leading … 7 − trailing of the 8-byte big-endian word hi:lo.
    for (let b = leading; b < 8 - trailing; b++) {
      w.buf[w.pos++] = b < 4 ? (xh >>> ((3 - b) * 8)) & 0xff : (xl >>> ((7 - b) * 8)) & 0xff;
    }
  }
}

function trailingZeroBytes(word: number): number {
  return (31 - Math.clz32(word & -word)) >>> 3;
}

/** Number of points of the series at the reader's position, without moving it. */
export function peekCount(r: ByteReader): number {
  const pos = r.pos;
  const n = readCount(r);
  r.pos = pos;
  return n;
}

/**
 * Reads a count of points whose times follow: every point after the first takes at least a
 * byte, so a count larger than the bytes left is corrupt (and never sizes an allocation).
 */
export function readCount(r: ByteReader): number {
  const n = r.uvarint();
  if (n > r.end - r.pos + 1) throw new CorruptChunk(`a count of ${n} points in ${r.end - r.pos} bytes`);
  return n;
}

/**
 * Decodes one series at the reader's position into times/values starting at `at`; returns the
 * number of points. The arrays must have room (peekCount tells how much).
 */
export function decodeSeries(r: ByteReader, times: Float64Array, values: Float64Array, at = 0, base = 0): number {
  const n = readCount(r);
  if (n === 0) return 0;
  if (at + n > times.length || at + n > values.length) throw new CorruptChunk(`a series of ${n} points does not fit`);
  decodeTimes(r, times, at, n, base);
  decodeValues(r, values, at, n);
  return n;
}

/** Reads n times written by encodeTimes (with the same base) into times[at …]. */
export function decodeTimes(r: ByteReader, times: Float64Array, at: number, n: number, base = 0): void {
  let t = r.varint() + base;
  times[at] = t;
  let delta = 0;
  for (let i = 1; i < n; i++) {
    delta = i === 1 ? r.varint() : delta + r.varint();
    t += delta;
    times[at + i] = t;
  }
}

/** Reads n values written by encodeValues into values[at …]. */
export function decodeValues(r: ByteReader, values: Float64Array, at: number, n: number): void {
  const mode = r.byte();
  switch (mode) {
    case ValueMode.Constant: {
      const v = readFloat(r);
      values.fill(v, at, at + n);
      break;
    }
    case ValueMode.DecimalDelta:
    case ValueMode.DecimalDoubleDelta: {
      const p = pow10[r.uvarint()];
      if (p === undefined) throw new CorruptChunk("decimal exponent out of range");
      const g = r.uvarint();
      let m = r.varint();
      values[at] = m / p;
      let d = 0;
      for (let i = 1; i < n; i++) {
        d = mode === ValueMode.DecimalDelta || i === 1 ? r.varint() * g : d + r.varint() * g;
        m += d;
        values[at + i] = m / p;
      }
      break;
    }
    case ValueMode.Xor:
      readXor(r, values, at, n);
      break;
    default:
      throw new CorruptChunk(`unknown value mode ${mode}`);
  }
}

function readFloat(r: ByteReader): number {
  if (r.pos + 8 > r.end) throw new CorruptChunk("unexpected end in a float");
  const b = r.buf;
  const p = r.pos;
  floatWords[hi] = ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0;
  floatWords[lo] = ((b[p + 4]! << 24) | (b[p + 5]! << 16) | (b[p + 6]! << 8) | b[p + 7]!) >>> 0;
  r.pos = p + 8;
  return float[0]!;
}

function readXor(r: ByteReader, values: Float64Array, at: number, n: number): void {
  const b = r.buf;
  let pos = r.pos;
  let curLo = 0;
  let curHi = 0;
  for (let i = 0; i < n; i++) {
    if (pos >= r.end) throw new CorruptChunk("unexpected end in XOR values");
    const control = b[pos++]!;
    if (control !== 0) {
      const leading = control >>> 4;
      const significant = control & 0x0f;
      if (leading + significant > 8 || significant === 0) throw new CorruptChunk("bad XOR control byte");
      if (pos + significant > r.end) throw new CorruptChunk("unexpected end in XOR values");
      let xh = 0;
      let xl = 0;
      for (let k = leading; k < leading + significant; k++) {
        const byte = b[pos++]!;
        if (k < 4) xh |= byte << ((3 - k) * 8);
        else xl |= byte << ((7 - k) * 8);
      }
      curLo = (curLo ^ xl) >>> 0;
      curHi = (curHi ^ xh) >>> 0;
    }
    floatWords[lo] = curLo;
    floatWords[hi] = curHi;
    values[at + i] = float[0]!;
  }
  r.pos = pos;
}
