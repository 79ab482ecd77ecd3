/**
 * A growing list of doubles in a Float64Array. The store keeps every value bit-exact, and a
 * JavaScript array of numbers does not: V8 canonicalises the NaNs it holds, so Prometheus'
 * staleness marker (a NaN told apart by its payload, which remote-write and OTLP carry) would
 * come back as a plain NaN.
 */
export class Doubles {
  private buf = new Float64Array(16);
  length = 0;

  push(value: number): void {
    if (this.length === this.buf.length) {
      const grown = new Float64Array(this.buf.length * 2);
      grown.set(this.buf);
      this.buf = grown;
    }
    this.buf[this.length++] = value;
  }

  at(index: number): number {
    return this.buf[index]!;
  }

  set(index: number, value: number): void {
    this.buf[index] = value;
  }

  /** The values, without copying (valid until the next push). */
  view(): Float64Array {
    return this.buf.subarray(0, this.length);
  }
}
