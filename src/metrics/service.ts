import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { InstrumentKind } from "../config/config.js";
import { API as MetricsAPI, ResultSchema, type Action, type Result } from "../../gen/metrics/metrics_pb.js";
import { unimplemented } from "../server/unimplemented.js";
import type { Instruments } from "./instruments.js";

/** Specta's limit on actions per Counter, Gauge or Histogram call. */
export const maxActionsPerCall = 100;

export interface MetricsDeps {
  instruments: Instruments;
}

export function metricsService({ instruments }: MetricsDeps): ServiceImpl<typeof MetricsAPI> {
  const recordAll = (kind: InstrumentKind, actions: Action[]): { result: Result[] } => {
    if (actions.length === 0 || actions.length > maxActionsPerCall) {
      throw new ConnectError(
        `a call takes 1 to ${maxActionsPerCall} actions, got ${actions.length}`,
        Code.InvalidArgument,
      );
    }
    return {
      result: actions.map((action) => {
        const refused = instruments.record(kind, action);
        return refused
          ? create(ResultSchema, { status: "failure", reason: refused })
          : create(ResultSchema, { status: "success" });
      }),
    };
  };
  return {
    counter: (req) => recordAll("counter", req.action),
    gauge: (req) => recordAll("gauge", req.action),
    histogram: (req) => recordAll("histogram", req.action),
    push: () => unimplemented("metrics.API/Push"),
    query: () => unimplemented("metrics.API/Query"),
    list: () => unimplemented("metrics.API/List"),
  };
}
