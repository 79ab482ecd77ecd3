/**
 * The OpenTelemetry JS SDK (@opentelemetry/sdk-metrics 2.x with the OTLP exporters 0.2xx, the
 * last that run on Node 20) as a real OTLP client: counters, up-down counters, gauges and
 * histograms exported over OTLP/HTTP JSON (gzip), OTLP/HTTP protobuf and OTLP/gRPC into one
 * daemon, with the credential from the exporters' own environment variable, and read back
 * through PromQL under the names and labels Prometheus' OTLP receiver gives them.
 */
import { OTLPMetricExporter as GrpcExporter } from "@opentelemetry/exporter-metrics-otlp-grpc";
import { OTLPMetricExporter as JsonExporter } from "@opentelemetry/exporter-metrics-otlp-http";
import { OTLPMetricExporter as ProtoExporter } from "@opentelemetry/exporter-metrics-otlp-proto";
import { CompressionAlgorithm } from "@opentelemetry/otlp-exporter-base";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { MeterProvider, PeriodicExportingMetricReader, type PushMetricExporter } from "@opentelemetry/sdk-metrics";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { useDaemon } from "./support/daemon.js";

const daemon = useDaemon();
const headersVariable = "OTEL_EXPORTER_OTLP_METRICS_HEADERS";
const savedHeaders = process.env[headersVariable];

beforeAll(() => {
  // As an operator configures an exporter (README): the credential in the OTLP headers variable.
  process.env[headersVariable] = `authorization=Bearer ${daemon().adminToken()}`;
});
afterAll(() => {
  if (savedHeaders === undefined) delete process.env[headersVariable];
  else process.env[headersVariable] = savedHeaders;
});

async function query(expr: string): Promise<{ metric: Record<string, string>; value: number }[]> {
  const res = await fetch(`${daemon().url}/api/v1/query?${new URLSearchParams({ query: expr })}`, {
    headers: { authorization: `Bearer ${daemon().adminToken()}` },
  });
  const body = (await res.json()) as { data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
  return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
}

const transports: { name: string; exporter: () => PushMetricExporter }[] = [
  { name: "http-json", exporter: () => new JsonExporter({ url: `${daemon().url}/v1/metrics`, compression: CompressionAlgorithm.GZIP }) },
  { name: "http-protobuf", exporter: () => new ProtoExporter({ url: `${daemon().url}/v1/metrics` }) },
  { name: "grpc", exporter: () => new GrpcExporter({ url: daemon().url }) },
];

describe.each(transports)("OTLP over $name", ({ name, exporter }) => {
  it("stores counters, up-down counters, gauges and histograms, read back through PromQL", async () => {
    const provider = new MeterProvider({
      resource: resourceFromAttributes({ "service.name": "checkout", "service.namespace": name, "service.instance.id": "pod-1" }),
      // Exported when flushed below, not on a timer.
      readers: [new PeriodicExportingMetricReader({ exporter: exporter(), exportIntervalMillis: 3_600_000 })],
    });
    const meter = provider.getMeter("otlp-sdk-test");
    const orders = meter.createCounter("shop.orders", { unit: "{order}" });
    orders.add(3, { "payment.method": "card" });
    orders.add(2, { "payment.method": "card" });
    orders.add(1, { "payment.method": "cash" });
    meter.createUpDownCounter("queue.jobs").add(7);
    meter.createGauge("room.temperature", { unit: "Cel" }).record(21.5);
    const duration = meter.createHistogram("checkout.duration", { unit: "s", advice: { explicitBucketBoundaries: [0.1, 0.5, 1] } });
    for (const seconds of [0.05, 0.3, 0.4, 2]) duration.record(seconds);
    await provider.forceFlush();
    await provider.shutdown();

    const target = { job: `${name}/checkout`, instance: "pod-1" };
    const where = `{job="${name}/checkout"}`;
    expect(await query(`shop_orders_total${where}`)).toEqual([
      { metric: { __name__: "shop_orders_total", payment_method: "card", ...target }, value: 5 },
      { metric: { __name__: "shop_orders_total", payment_method: "cash", ...target }, value: 1 },
    ]);
    expect(await query(`queue_jobs${where}`)).toEqual([{ metric: { __name__: "queue_jobs", ...target }, value: 7 }]);
    expect(await query(`room_temperature_celsius${where}`)).toEqual([{ metric: { __name__: "room_temperature_celsius", ...target }, value: 21.5 }]);
    const buckets = await query(`checkout_duration_seconds_bucket${where}`);
    expect(buckets.map((b) => [b.metric.le, b.value])).toEqual([
      ["0.1", 1],
      ["0.5", 3],
      ["1", 3],
      ["+Inf", 4],
    ]);
    expect((await query(`checkout_duration_seconds_sum${where}`))[0]!.value).toBeCloseTo(2.75, 12);
    expect((await query(`checkout_duration_seconds_count${where}`))[0]!.value).toBe(4);
    expect((await query(`histogram_quantile(0.5, checkout_duration_seconds_bucket${where})`))[0]!.value).toBeCloseTo(0.3, 12);
  });
});
