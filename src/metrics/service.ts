import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { Kysely } from "kysely";
import type { InstrumentKind, RetentionConfig } from "../config/config.js";
import { API as MetricsAPI, ResultSchema, type Action, type Result } from "../../gen/metrics/metrics_pb.js";
import { toConnectError } from "../storage/errors.js";
import type { Database } from "../storage/schema.js";
import type { InstrumentStore } from "./instrument-store.js";
import type { Instruments } from "./instruments.js";
import { list } from "./list.js";
import { push, type PushDeps } from "./push.js";
import { query } from "./query.js";

/** Specta's limit on actions per Counter, Gauge or Histogram call. */
export const maxActionsPerCall = 100;

export interface MetricsDeps {
  instruments: Instruments;
  instrumentStore: InstrumentStore;
  push: PushDeps;
  /** The database Query and List read. */
  db: Kysely<Database>;
  /** Retention of each tier: Query picks raw samples or rollups by it. */
  retention: RetentionConfig;
}

export function metricsService({ instruments, instrumentStore, push: pushDeps, db, retention }: MetricsDeps): ServiceImpl<typeof MetricsAPI> {
  const recordAll = async (kind: InstrumentKind, actions: Action[]): Promise<{ result: Result[] }> => {
    if (actions.length === 0 || actions.length > maxActionsPerCall) {
      throw new ConnectError(
        `a call takes 1 to ${maxActionsPerCall} actions, got ${actions.length}`,
        Code.InvalidArgument,
      );
    }
    const refusals = actions.map((action) => instruments.check(kind, action));
    const accepted = actions.filter((_, i) => refusals[i] === undefined);
    try {
      await instrumentStore.persist(kind, accepted);
    } catch (err) {
      throw toConnectError(err, `recording ${kind} actions`);
    }
    for (const action of accepted) instruments.apply(action);
    return {
      result: refusals.map((refused) =>
        refused
          ? create(ResultSchema, { status: "failure", reason: refused })
          : create(ResultSchema, { status: "success" }),
      ),
    };
  };
  return {
    counter: (req) => recordAll("counter", req.action),
    gauge: (req) => recordAll("gauge", req.action),
    histogram: (req) => recordAll("histogram", req.action),
    async push(req) {
      try {
        return await push(req, pushDeps);
      } catch (err) {
        throw toConnectError(err, "storing the batch");
      }
    },
    async query(req) {
      try {
        return await query(req, { db, retention });
      } catch (err) {
        throw toConnectError(err, `querying metric ${req.metric}`);
      }
    },
    async list(req) {
      try {
        return await list(req, { db, declaration: (name) => instruments.declaration(name) });
      } catch (err) {
        throw toConnectError(err, "listing metrics");
      }
    },
  };
}
