import { describe, expect, it } from "vitest";
import { Kind } from "../../gen/metrics/metrics_pb.js";
import { Batch } from "./agent.js";

describe("Batch", () => {
  it("groups samples by series whatever their labels' order, with the extra labels, which override the measurement's", () => {
    const batch = new Batch({ host: "web-1" });
    batch.addAll(
      [
        { metric: "node_disk_io_now", labels: { device: "sda", x: "1" }, kind: "gauge", value: 1 },
        { metric: "node_load1", labels: {}, kind: "gauge", value: 0.5 },
      ],
      1_000,
    );
    batch.addAll(
      [
        { metric: "node_disk_io_now", labels: { x: "1", device: "sda" }, kind: "gauge", value: 2 },
        { metric: "node_load1", labels: { host: "elsewhere" }, kind: "gauge", value: 0.7 },
        { metric: "node_load1", labels: {}, kind: "gauge", value: 0.9 }, // the same time: the later value is kept
      ],
      2_000,
    );
    const closed = batch.close();
    expect(closed?.points).toBe(4);
    expect(closed?.request.series.map(({ metric, labels, kind, times, values }) => ({ metric, labels, kind, times, values }))).toEqual([
      { metric: "node_disk_io_now", labels: { device: "sda", x: "1", host: "web-1" }, kind: Kind.GAUGE, times: [1_000, 2_000], values: [1, 2] },
      { metric: "node_load1", labels: { host: "web-1" }, kind: Kind.GAUGE, times: [1_000, 2_000], values: [0.5, 0.9] },
    ]);
    expect(batch.close()).toBeUndefined();
  });
});
