import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { InstrumentKind } from "../config/config.js";
import { API as MetricsAPI, ResultSchema, type Action, type Result } from "../../gen/metrics/metrics_pb.js";
import { audited } from "../audit/declare.js";
import { callerOf, rules } from "../tokens/access.js";
import type { TsdbReads } from "../tsdb/index.js";
import { InstrumentSeriesRefused, type InstrumentStore } from "./instrument-store.js";
import type { Instruments, Refused } from "./instruments.js";
import { list } from "./list.js";
import { agentWriter, push, type PushDeps } from "./push.js";
import { query } from "./query.js";

/** Who may call metrics.API: anyone may record to the declared instruments; agents push; people read. */
export const metricsAccess = rules(MetricsAPI, {
  counter: "public",
  gauge: "public",
  histogram: "public",
  push: ["agent", "admin"],
  query: ["viewer", "admin"],
  list: ["viewer", "admin"],
});

const actionMetrics = (req: { action: Action[] }) => req.action.map((a) => a.metric);

/** The writes of metrics.API, audited; accepted ones also go to the raw archive (--archive-dir). One Push is one event. */
export const metricsAudit = audited(MetricsAPI, {
  counter: { metrics: actionMetrics, archive: true },
  gauge: { metrics: actionMetrics, archive: true },
  histogram: { metrics: actionMetrics, archive: true },
  push: { metrics: (req) => req.series.map((s) => s.metric), archive: true },
});

/** Specta's limit on actions per Counter, Gauge or Histogram call. */
export const maxActionsPerCall = 100;

export interface MetricsDeps {
  instruments: Instruments;
  instrumentStore: InstrumentStore;
  push: PushDeps;
  /** The store Query and List read (through a read replica when the daemon has usable ones). */
  tsdb: TsdbReads;
}

export function metricsService({ instruments, instrumentStore, push: pushDeps, tsdb }: MetricsDeps): ServiceImpl<typeof MetricsAPI> {
  const recordAll = async (kind: InstrumentKind, actions: Action[]): Promise<{ result: Result[] }> => {
    if (actions.length === 0 || actions.length > maxActionsPerCall) {
      throw new ConnectError(`a call takes 1 to ${maxActionsPerCall} actions, got ${actions.length}`, Code.InvalidArgument);
    }
    const refusals = actions.map((action) => instruments.check(kind, action));
    const checked = actions.flatMap((action, i) => (refusals[i] === undefined ? [{ action, i }] : []));
    let stored: Map<number, Refused>;
    try {
      stored = await instrumentStore.persist(
        kind,
        checked.map((c) => c.action),
      );
    } catch (err) {
      throw err instanceof InstrumentSeriesRefused ? new ConnectError(err.message, Code.FailedPrecondition) : err;
    }
    checked.forEach(({ action, i }, k) => {
      const refused = stored.get(k);
      if (refused) refusals[i] = refused;
      else instruments.apply(action);
    });
    return {
      result: refusals.map((refused) =>
        refused ? create(ResultSchema, { status: "failure", reason: refused }) : create(ResultSchema, { status: "success" }),
      ),
    };
  };
  return {
    counter: (req) => recordAll("counter", req.action),
    gauge: (req) => recordAll("gauge", req.action),
    histogram: (req) => recordAll("histogram", req.action),
    push: (req, ctx) => push(req, pushDeps, agentWriter(callerOf(ctx))),
    query: (req, ctx) => query(req, { tsdb }, ctx.signal),
    list: (req) => list(req, { tsdb, declaration: (name) => instruments.declaration(name) }),
  };
}
