/** Remote-write requests as a sender builds them: a prometheus.WriteRequest, snappy-compressed. */
import { create, toBinary } from "@bufbuild/protobuf";
import { compress } from "snappyjs";
import { WriteRequestSchema } from "../../gen/prometheus/remote_pb.js";

export interface WrittenSeries {
  /** Labels, __name__ included. */
  labels: Record<string, string>;
  samples: { timestamp: number; value: number }[];
}

/** The body of a remote-write 1.0 request holding `series`. */
export function remoteWriteBody(series: WrittenSeries[]): Buffer {
  const request = create(WriteRequestSchema, {
    timeseries: series.map((s) => ({
      labels: Object.entries(s.labels).map(([name, value]) => ({ name, value })),
      samples: s.samples.map((p) => ({ timestamp: BigInt(p.timestamp), value: p.value })),
    })),
  });
  return Buffer.from(compress(toBinary(WriteRequestSchema, request)));
}

/** The headers Prometheus sends with a remote-write 1.0 request. */
export function remoteWriteHeaders(token: string): Record<string, string> {
  return {
    authorization: `Bearer ${token}`,
    "content-type": "application/x-protobuf",
    "content-encoding": "snappy",
    "x-prometheus-remote-write-version": "0.1.0",
  };
}
