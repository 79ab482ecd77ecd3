const MiB = 1024 * 1024;

/**
 * Byte limits of the ingest protocols: a body larger than `body` is refused from its
 * Content-Length before it is read (or as soon as it grows past it), and one whose decoded form
 * would exceed `decoded` is refused before it is decoded (snappy's declared length) or while it
 * is (gzip). The samples they hold are then bounded by Push's limits (pushLimits: 10,000 series
 * and 50,000 points a request).
 */
export const ingestLimits = {
  /** Prometheus sends up to max_samples_per_send (500 to 2,000) samples a request: far below Push's 16 MiB. */
  remoteWrite: { body: 16 * MiB, decoded: 16 * MiB },
  /** OTLP protobuf, over HTTP (body possibly gzip) and gRPC (readMaxBytes, after decompression). */
  otlpProtobuf: { body: 16 * MiB, decoded: 16 * MiB },
  /** OTLP JSON spells every attribute key and number out: room for the same batches. */
  otlpJson: { body: 32 * MiB, decoded: 32 * MiB },
};
