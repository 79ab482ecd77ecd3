import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus, HealthCheckResponseSchema } from "../../gen/grpc/health/v1/health_pb.js";
import { rules } from "../tokens/access.js";
import type { Readiness } from "./readiness.js";

/** Load balancers and orchestrators ask without a credential. */
export const healthAccess = rules(Health, { check: "public", watch: "public" });

/**
 * grpc.health.v1.Health: "" (the whole daemon) and each served service name are SERVING while
 * the daemon is ready, NOT_SERVING while a dependency is down or the daemon is stopping.
 */
export function healthService(readiness: Readiness, serviceNames: string[], shutdown: AbortSignal): ServiceImpl<typeof Health> {
  const known = new Set(["", ...serviceNames]);
  const statusOf = (service: string) => {
    if (!known.has(service)) return ServingStatus.SERVICE_UNKNOWN;
    return readiness.ready() ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
  };
  return {
    check(req) {
      if (!known.has(req.service)) throw new ConnectError(`unknown service ${req.service}`, Code.NotFound);
      return create(HealthCheckResponseSchema, { status: statusOf(req.service) });
    },
    async *watch(req, ctx) {
      let last = statusOf(req.service);
      yield create(HealthCheckResponseSchema, { status: last });
      const signal = AbortSignal.any([ctx.signal, shutdown]);
      while (!signal.aborted) {
        await readiness.changed(signal);
        const now = statusOf(req.service);
        if (now !== last) {
          last = now;
          yield create(HealthCheckResponseSchema, { status: now });
        }
      }
      if (shutdown.aborted) throw new ConnectError("the daemon is shutting down", Code.Unavailable);
    },
  };
}
