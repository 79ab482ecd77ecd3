import { fromBinary } from "@bufbuild/protobuf";
import { uncompress } from "snappyjs";
import { WriteRequestSchema, type WriteRequest } from "../../gen/prometheus/remote_pb.js";
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
    throw new IngestRefusal(415, `remote-write takes Content-Type application/x-protobuf (remote-write 1.0, prometheus.WriteRequest), got ${JSON.stringify(type)}`);
  }
  if (!/^snappy$/i.test(headers["content-encoding"] ?? "")) {
    throw new IngestRefusal(415, `remote-write bodies are snappy-compressed: Content-Encoding must be snappy, got ${JSON.stringify(headers["content-encoding"] ?? "")}`);
  }
}

/** The series of a snappy-compressed WriteRequest, refused (400, 413) when it is malformed or decodes to more than the limit. */
export function decodeRemoteWrite(body: Uint8Array, limit = ingestLimits.remoteWrite.decoded): BatchSeries[] {
  const declared = snappyLength(body);
  if (declared === undefined) throw new IngestRefusal(400, "the body is not a snappy block: its uncompressed length is missing or malformed");
  if (declared > limit) throw new IngestRefusal(413, `the body declares ${declared} bytes uncompressed; remote-write takes at most ${limit}`);
  let request: WriteRequest;
  try {
    request = fromBinary(WriteRequestSchema, uncompress(body, limit));
  } catch (err) {
    throw new IngestRefusal(400, `the body is not a snappy-compressed prometheus.WriteRequest: ${(err as Error).message}`);
  }
  return toBatch(request);
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

function toBatch(request: WriteRequest): BatchSeries[] {
  const batch: BatchSeries[] = [];
  request.timeseries.forEach((ts, i) => {
    if (ts.histograms.length > 0) {
      // Storing the floats and not the histograms would keep part of what was sent and say nothing.
      throw new IngestRefusal(400, `timeseries[${i}] holds native histogram samples, which Specta does not store; send classic histograms (disable native histograms for this remote_write)`);
    }
    if (ts.samples.length === 0) return;
    let metric: string | undefined;
    // No prototype: a label named __proto__ is a key like any other (and refused as one).
    const labels: Labels = Object.create(null) as Labels;
    for (const label of ts.labels) {
      if (label.name === "__name__") metric = label.value;
      else if (label.name in labels) throw new IngestRefusal(400, `timeseries[${i}] has the label ${JSON.stringify(label.name)} twice`);
      else labels[label.name] = label.value;
    }
    if (metric === undefined) throw new IngestRefusal(400, `timeseries[${i}] has no __name__ label`);
    const times = new Array<number>(ts.samples.length);
    // A Float64Array keeps the staleness marker's NaN payload (see BatchSeries).
    const values = new Float64Array(ts.samples.length);
    ts.samples.forEach((sample, k) => {
      times[k] = Number(sample.timestamp);
      values[k] = sample.value;
    });
    batch.push({ metric, labels, kind: kindOfName(metric), times, values });
  });
  return batch;
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
