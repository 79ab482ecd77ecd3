import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { MetricsService } from "../../gen/opentelemetry/proto/collector/metrics/v1/metrics_service_pb.js";
import { agentWriter, type PushDeps } from "../metrics/push.js";
import { audited } from "../audit/declare.js";
import { rules } from "../tokens/access.js";
import type { Principal } from "../tokens/tokens.js";
import { exportMetrics, otlpMetricNames } from "./otlp.js";

export interface OtlpServiceDeps {
  push: PushDeps;
  /** The caller the front door admitted (the daemon passes its callerOf). */
  caller(ctx: HandlerContext): Principal;
}

/** Writes, as Push: agents and admins. */
export const otlpAccess = rules(MetricsService, { export: ["agent", "admin"] });

/** Export writes, audited with the metrics' names as sent (before the mapping to Prometheus' names). */
export const otlpAudit = audited(MetricsService, { export: { metrics: otlpMetricNames } });

/** OTLP/gRPC: opentelemetry.proto.collector.metrics.v1.MetricsService/Export, served by the Connect router like Specta's own services. */
export function otlpMetricsService(deps: OtlpServiceDeps): ServiceImpl<typeof MetricsService> {
  return {
    export: (req, ctx) => exportMetrics(req, deps.push, agentWriter(deps.caller(ctx))),
  };
}
