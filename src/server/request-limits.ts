import { ingestLimits } from "../ingest/limits.js";
import { releaseLimits } from "../releases/service.js";

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * The largest request message of each procedure, in bytes after decompression. Connect enforces
 * it while reading (readMaxBytes: on the declared size of each gRPC frame, on the bytes of a unary
 * body, and on gzip or brotli output), and the front door refuses a larger Content-Length before
 * reading anything. Unlisted procedures take defaultRequestLimit.
 */
const requestLimits: Record<string, number> = {
  // Anonymous by design: at most 100 actions of a metric name (≤ 255 characters) and a few declared labels.
  "metrics.API/Counter": 256 * KiB,
  "metrics.API/Gauge": 256 * KiB,
  "metrics.API/Histogram": 256 * KiB,
  // Push's documented limit (README: a batch holds at most 16 MiB).
  "metrics.API/Push": 16 * MiB,
  // OTLP/gRPC, as OTLP/HTTP's protobuf (src/ingest/limits.ts).
  "opentelemetry.proto.collector.metrics.v1.MetricsService/Export": ingestLimits.otlpProtobuf.decoded,
  // An agent's output: text and data of up to 1 MiB each, which the daemon cuts (it says so, truncated) rather than refuses.
  "commands.API/Report": 4 * MiB,
  // A release's bundle (the handler refuses more), its manifest and signature.
  "releases.API/Publish": releaseLimits.maxBundleBytes + releaseLimits.maxManifestBytes + 1 * KiB,
};

/** Queries, enrolment, commands and tokens: small messages, with room for a long label filter or command. */
const defaultRequestLimit = 1 * MiB;

export function requestLimit(procedure: string): number {
  return requestLimits[procedure] ?? defaultRequestLimit;
}
