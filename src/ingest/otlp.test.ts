import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ExportMetricsServiceRequestSchema } from "../../gen/opentelemetry/proto/collector/metrics/v1/metrics_service_pb.js";
import { AggregationTemporality, type MetricSchema } from "../../gen/opentelemetry/proto/metrics/v1/metrics_pb.js";
import { isStaleMarker } from "../promql/values.js";
import { SeriesKind } from "../tsdb/index.js";
import { labelName, otlpSeries, prometheusName } from "./otlp.js";

describe("prometheusName", () => {
  // Cases of the OpenTelemetry specification's Prometheus compatibility and Prometheus' otlptranslator tests.
  it.each([
    ["http.server.duration", "s", "histogram", "http_server_duration_seconds"],
    ["system.network.io", "By", "counter", "system_network_io_bytes_total"],
    ["requests.total", "{request}", "counter", "requests_total"],
    ["process.cpu.time", "s", "counter", "process_cpu_time_seconds_total"],
    ["throughput", "By/s", "gauge", "throughput_bytes_per_second"],
    ["memory.utilization", "1", "gauge", "memory_utilization_ratio"],
    ["queue.items", "1", "counter", "queue_items_total"],
    ["latency_seconds", "s", "gauge", "latency_seconds"],
    ["disk.usage", "%", "gauge", "disk_usage_percent"],
    ["speed", "m/h", "gauge", "speed_meters_per_hour"],
    ["2xx.responses", "", "counter", "_2xx_responses_total"],
    ["foo::bar", "", "gauge", "foo::bar"],
    ["weird unit", "Widgets", "gauge", "weird_unit_Widgets"],
  ] as const)("%s in %s as a %s is %s", (name, unit, shape, expected) => {
    expect(prometheusName(name, unit, shape)).toBe(expected);
  });
});

describe("labelName", () => {
  it.each([
    ["http.route", "http_route"],
    ["k8s.pod-name", "k8s_pod_name"],
    ["0key", "key_0key"],
    ["_private", "key_private"],
    ["__reserved", "key__reserved"],
    ["plain", "plain"],
  ])("%s is %s", (key, expected) => expect(labelName(key)).toBe(expected));
});

const str = (value: string) => ({ value: { case: "stringValue" as const, value } });

function request(metrics: MessageInitShape<typeof MetricSchema>[], resource = [{ key: "service.name", value: str("svc") }]) {
  return create(ExportMetricsServiceRequestSchema, { resourceMetrics: [{ resource: { attributes: resource }, scopeMetrics: [{ metrics }] }] });
}

describe("otlpSeries", () => {
  const at = 1_700_000_000_000;
  const nanos = BigInt(at) * 1_000_000n + 999_999n;

  it("maps summaries to quantiles, _sum and _count, joins attributes that clean up alike, and marks 'no recorded value' stale", () => {
    const batch = otlpSeries(
      request([
        {
          name: "rpc.latency",
          unit: "ms",
          data: {
            case: "summary",
            value: {
              dataPoints: [
                {
                  timeUnixNano: nanos,
                  count: 3n,
                  sum: 12,
                  quantileValues: [
                    { quantile: 0.5, value: 4 },
                    { quantile: 0.99, value: 7 },
                  ],
                },
              ],
            },
          },
        },
        {
          name: "temp",
          data: {
            case: "gauge",
            value: {
              dataPoints: [
                {
                  timeUnixNano: nanos,
                  attributes: [
                    { key: "a.b", value: str("1") },
                    { key: "a_b", value: str("2") },
                    { key: "empty", value: str("") },
                  ],
                  value: { case: "asDouble", value: 1 },
                },
                { timeUnixNano: nanos + 1_000_000n, flags: 1 },
              ],
            },
          },
        },
      ]),
    );
    expect(batch.refused).toBe(0);
    expect(batch.series.map((s) => [s.metric, s.labels, s.kind, s.times[0]])).toEqual([
      ["rpc_latency_milliseconds", { job: "svc", quantile: "0.5" }, SeriesKind.gauge, at],
      ["rpc_latency_milliseconds", { job: "svc", quantile: "0.99" }, SeriesKind.gauge, at],
      ["rpc_latency_milliseconds_sum", { job: "svc" }, SeriesKind.histogram, at],
      ["rpc_latency_milliseconds_count", { job: "svc" }, SeriesKind.histogram, at],
      ["temp", { a_b: "1;2", job: "svc" }, SeriesKind.gauge, at],
      ["temp", { job: "svc" }, SeriesKind.gauge, at + 1],
    ]);
    expect(isStaleMarker(batch.series[5]!.values[0]!)).toBe(true);
  });

  it("refuses delta sums and histograms, unspecified temporality, exponential histograms and points without a time, saying why", () => {
    const delta = AggregationTemporality.DELTA;
    const metrics: MessageInitShape<typeof MetricSchema>[] = [
      {
        name: "d.sum",
        data: {
          case: "sum",
          value: { aggregationTemporality: delta, isMonotonic: false, dataPoints: [{ timeUnixNano: nanos, value: { case: "asInt", value: 1n } }] },
        },
      },
      { name: "d.hist", data: { case: "histogram", value: { aggregationTemporality: delta, dataPoints: [{ timeUnixNano: nanos, count: 1n }] } } },
      { name: "u.sum", data: { case: "sum", value: { dataPoints: [{ timeUnixNano: nanos }] } } },
      { name: "e.hist", data: { case: "exponentialHistogram", value: { dataPoints: [{}, {}] } } },
      { name: "no.time", data: { case: "gauge", value: { dataPoints: [{ value: { case: "asDouble", value: 1 } }] } } },
      {
        name: "bad.buckets",
        data: {
          case: "histogram",
          value: {
            aggregationTemporality: AggregationTemporality.CUMULATIVE,
            dataPoints: [{ timeUnixNano: nanos, explicitBounds: [1], bucketCounts: [1n] }],
          },
        },
      },
    ];
    const batch = otlpSeries(request(metrics));
    expect(batch.series).toEqual([]);
    expect(batch.refused).toBe(7);
    expect(batch.messages()).toEqual([
      expect.stringMatching(/^2 points of d\.sum, d\.hist: delta temporality is not stored/),
      "1 points of u.sum: aggregation temporality is unspecified",
      expect.stringMatching(/^2 points of e\.hist: exponential histograms are not stored/),
      "1 points of no.time: a point has no time_unix_nano",
      "1 points of bad.buckets: bucket_counts must hold one more count than explicit_bounds",
    ]);
  });

  it("names the job service.namespace/service.name and the instance service.instance.id, over point attributes", () => {
    const resource = [
      { key: "service.name", value: str("api") },
      { key: "service.namespace", value: str("shop") },
      { key: "service.instance.id", value: str("i-7") },
      { key: "host.name", value: str("h") },
    ];
    const points = [{ timeUnixNano: nanos, attributes: [{ key: "job", value: str("mine") }], value: { case: "asInt" as const, value: 5n } }];
    const batch = otlpSeries(request([{ name: "g", data: { case: "gauge", value: { dataPoints: points } } }], resource));
    expect(batch.series.map((s) => [s.labels, s.values[0]])).toEqual([[{ job: "shop/api", instance: "i-7" }, 5]]);
  });
});
