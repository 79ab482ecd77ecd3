import { uncompress } from "snappyjs";
import { WriteRequestSchema } from "../../gen/prometheus/remote_pb.js";
import { LabelSchema, SampleSchema, TimeSeriesSchema } from "../../gen/prometheus/types_pb.js";
import type { BatchSeries } from "../metrics/push.js";
import type { Labels } from "../shared/labels.js";
import { SeriesKind, type SeriesKindNumber } from "../tsdb/index.js";
import { IngestRefusal } from "./errors.js";
import { ingestLimits } from "./limits.js";

/**
 * Prometheus remote-write 1.0 (https://prometheus.io/docs/specs/remote_write_spec/): the body of
 * POST /api/v1/write is a WriteRequest (proto-ext/prometheus/remote.proto) in protobuf binary,
 * compressed with snappy's block format. Its series are stored as Push stores a batch.
 */

/** Checks what a request declares before its body is read: snappy-compressed protobuf of remote-write 1.0. */
export function checkRemoteWriteHeaders(headers: { "content-type"?: string | undefined; "content-encoding"?: string | undefined }): void {
  const type = headers["content-type"] ?? "application/x-protobuf";
  // Remote-write 2.0 says so in the content type (proto=io.prometheus.write.v2.Request); 1.0 senders send none or v1's.
  if (!/^application\/x-protobuf\s*(;\s*proto=prometheus\.WriteRequest\s*)?$/i.test(type)) {
    throw new IngestRefusal(
      415,
      `remote-write takes Content-Type application/x-protobuf (remote-write 1.0, prometheus.WriteRequest), got ${JSON.stringify(type)}`,
    );
  }
  if (!/^snappy$/i.test(headers["content-encoding"] ?? "")) {
    throw new IngestRefusal(
      415,
      `remote-write bodies are snappy-compressed: Content-Encoding must be snappy, got ${JSON.stringify(headers["content-encoding"] ?? "")}`,
    );
  }
}

/** The series of a snappy-compressed WriteRequest, refused (400, 413) when it is malformed or decodes to more than the limit. */
export function decodeRemoteWrite(body: Uint8Array, limit = ingestLimits.remoteWrite.decoded): BatchSeries[] {
  const declared = snappyLength(body);
  if (declared === undefined) throw new IngestRefusal(400, "the body is not a snappy block: its uncompressed length is missing or malformed");
  if (declared > limit) throw new IngestRefusal(413, `the body declares ${declared} bytes uncompressed; remote-write takes at most ${limit}`);
  let bytes: Uint8Array;
  try {
    bytes = uncompress(body, limit);
  } catch (err) {
    throw new IngestRefusal(400, `the body is not a valid snappy block: ${(err as Error).message}`);
  }
  try {
    return new WriteRequestReader(bytes).series();
  } catch (err) {
    if (err instanceof IngestRefusal) throw err;
    throw new IngestRefusal(400, `the body is not a prometheus.WriteRequest in protobuf binary: ${(err as Error).message}`);
  }
}

/**
 * The uncompressed length a snappy block starts with (a little-endian base-128 varint of at most
 * 32 bits), read before anything is allocated for it; undefined when it is not one.
 */
export function snappyLength(block: Uint8Array): number | undefined {
  let length = 0;
  for (let i = 0; i < 5 && i < block.length; i++) {
    const byte = block[i]!;
    length += (byte & 0x7f) * 2 ** (7 * i);
    if ((byte & 0x80) === 0) return length <= 0xffff_ffff ? length : undefined;
  }
  return undefined;
}

/** Field numbers of the declared messages (proto-ext/prometheus), from the generated descriptors. */
const field = {
  timeseries: WriteRequestSchema.field.timeseries!.number,
  labels: TimeSeriesSchema.field.labels!.number,
  samples: TimeSeriesSchema.field.samples!.number,
  histograms: TimeSeriesSchema.field.histograms!.number,
  name: LabelSchema.field.name!.number,
  value: LabelSchema.field.value!.number,
  sampleValue: SampleSchema.field.value!.number,
  timestamp: SampleSchema.field.timestamp!.number,
};

/** Label names and values must be UTF-8 (Prometheus refuses others too): fatal, not replaced. */
const utf8 = new TextDecoder("utf-8", { fatal: true });

const varint = 0;
const fixed64 = 1;
const lengthDelimited = 2;
const fixed32 = 5;

/**
 * Decodes a WriteRequest straight into the series to store. fromBinary(WriteRequestSchema) builds
 * a message per label and per sample and a bigint per timestamp, which made remote-write cost a
 * quarter more daemon CPU than Push on the same samples (bench:remote-write); this reads the same
 * declared fields (numbers from the generated descriptors, unknown fields skipped, as protobuf
 * decoders do) into the arrays storeBatch takes. test/ingest-http.test.ts checks it against
 * fromBinary.
 */
class WriteRequestReader {
  private pos = 0;
  private readonly view: DataView;

  constructor(private readonly buf: Uint8Array) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  series(): BatchSeries[] {
    const batch: BatchSeries[] = [];
    while (this.pos < this.buf.length) {
      const tag = this.uint32();
      if (tag >>> 3 === field.timeseries && (tag & 7) === lengthDelimited) this.timeSeries(this.end(), batch);
      else this.skip(tag & 7);
    }
    return batch;
  }

  private timeSeries(end: number, batch: BatchSeries[]): void {
    const where = () => `timeseries[${batch.length}]`;
    let metric: string | undefined;
    const labels: Labels = {};
    const times: number[] = [];
    const values: number[] = [];
    /** Where NaN values are in the buffer, by sample: read again below with their payload. */
    let nans: [number, number][] | undefined;
    while (this.pos < end) {
      const tag = this.uint32();
      const no = tag >>> 3;
      const type = tag & 7;
      if (no === field.labels && type === lengthDelimited) {
        const [name, value] = this.label(this.end());
        if (name === "__name__") metric = value;
        else if (Object.hasOwn(labels, name)) throw new IngestRefusal(400, `${where()} has the label ${JSON.stringify(name)} twice`);
        // As its own key, not the object's prototype: storeBatch then refuses it as any key starting with __.
        else if (name === "__proto__") Object.defineProperty(labels, name, { value, enumerable: true, writable: true, configurable: true });
        else labels[name] = value;
      } else if (no === field.samples && type === lengthDelimited) {
        const sampleEnd = this.end();
        let timestamp = 0;
        let value = 0;
        while (this.pos < sampleEnd) {
          const sampleTag = this.uint32();
          if (sampleTag === ((field.sampleValue << 3) | fixed64)) {
            value = this.view.getFloat64(this.pos, true);
            if (Number.isNaN(value)) (nans ??= []).push([values.length, this.pos]);
            this.pos += 8;
          } else if (sampleTag === ((field.timestamp << 3) | varint)) timestamp = this.int64();
          else this.skip(sampleTag & 7);
        }
        times.push(timestamp);
        values.push(value);
      } else if (no === field.histograms && type === lengthDelimited) {
        // Storing the floats and not the histograms would keep part of what was sent and say nothing.
        throw new IngestRefusal(
          400,
          `${where()} holds native histogram samples, which Specta does not store; send classic histograms (disable native histograms for this remote_write)`,
        );
      } else this.skip(type);
    }
    if (this.pos !== end) throw new Error("a message overruns its length");
    if (times.length === 0) return;
    if (metric === undefined) throw new IngestRefusal(400, `${where()} has no __name__ label`);
    batch.push({ metric, labels, kind: kindOfName(metric), times, values: nans ? this.withPayloads(values, nans) : values });
  }

  /**
   * The values in a Float64Array with each NaN read again from the bytes: a number array loses a
   * NaN's payload (see BatchSeries), and the staleness marker is one. A typed array costs more to
   * allocate than an array, so only series holding a NaN get one.
   */
  private withPayloads(values: number[], nans: [number, number][]): Float64Array {
    const out = Float64Array.from(values);
    for (const [k, at] of nans) out[k] = this.view.getFloat64(at, true);
    return out;
  }

  private label(end: number): [string, string] {
    let name = "";
    let value = "";
    while (this.pos < end) {
      const tag = this.uint32();
      if (tag === ((field.name << 3) | lengthDelimited)) name = this.string();
      else if (tag === ((field.value << 3) | lengthDelimited)) value = this.string();
      else this.skip(tag & 7);
    }
    return [name, value];
  }

  /** The end of a length-delimited field that starts here, checked against the buffer. */
  private end(): number {
    const length = this.uint32();
    const end = this.pos + length;
    if (end > this.buf.length) throw new Error("a field overruns the message");
    return end;
  }

  private uint32(): number {
    // Tags and lengths are mostly one byte.
    const first = this.byte();
    if (first < 0x80) return first;
    let result = first & 0x7f;
    for (let shift = 7; shift < 35; shift += 7) {
      const byte = this.byte();
      result += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return result >>> 0;
    }
    throw new Error("a varint is too long");
  }

  /** An int64 varint as a number: exact for every millisecond time (|t| < 2^53); a negative one is two's complement. */
  private int64(): number {
    let low = 0;
    let high = 0;
    let shift = 0;
    for (let i = 0; i < 10; i++) {
      const byte = this.byte();
      if (shift < 28) low |= (byte & 0x7f) << shift;
      else if (shift === 28) {
        low |= (byte & 0x0f) << 28;
        high |= (byte & 0x7f) >>> 4;
      } else high |= (byte & 0x7f) << (shift - 32);
      shift += 7;
      if ((byte & 0x80) === 0) return (high | 0) * 2 ** 32 + (low >>> 0);
    }
    throw new Error("a varint is too long");
  }

  private string(): string {
    const end = this.end();
    const text = utf8.decode(this.buf.subarray(this.pos, end));
    this.pos = end;
    return text;
  }

  private byte(): number {
    if (this.pos >= this.buf.length) throw new Error("the message ends inside a field");
    return this.buf[this.pos++]!;
  }

  private skip(type: number): void {
    if (type === varint) while ((this.byte() & 0x80) !== 0);
    else if (type === fixed64) this.pos += 8;
    else if (type === lengthDelimited) this.pos = this.end();
    else if (type === fixed32) this.pos += 4;
    else throw new Error(`wire type ${type} is not one Specta reads`);
    if (this.pos > this.buf.length) throw new Error("a field overruns the message");
  }
}

/**
 * Remote-write 1.0 carries no metric types (metadata travels apart, if at all), so the kind
 * follows Prometheus' naming conventions, the same for every series of a metric: _total a counter,
 * _bucket, _sum and _count a histogram's (or a summary's) series, anything else a gauge.
 */
export function kindOfName(metric: string): SeriesKindNumber {
  if (metric.endsWith("_total")) return SeriesKind.counter;
  if (/_(bucket|sum|count)$/.test(metric)) return SeriesKind.histogram;
  return SeriesKind.gauge;
}
