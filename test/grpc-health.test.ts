/** grpc.health.v1.Health over connect-node's gRPC transport (h2c). */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { useDaemon } from "./support/daemon.js";

const daemon = useDaemon();
const health = () => createClient(Health, createGrpcTransport({ baseUrl: daemon().url }));

describe("gRPC health", () => {
  it.each(["", "metrics.API", "agent.API", "commands.API"])('Check("%s") is SERVING', async (service) => {
    const res = await health().check({ service });
    expect(ServingStatus[res.status]).toBe("SERVING");
  });

  it("Check of an unknown service answers NOT_FOUND, as the health protocol says", async () => {
    const error = await health()
      .check({ service: "no.such.Service" })
      .then(
        () => undefined,
        (err: unknown) => ConnectError.from(err),
      );
    expect(error).toBeInstanceOf(ConnectError);
    expect(Code[error!.code]).toBe("NotFound");
  });

  it("Watch sends SERVING first", async () => {
    const abort = new AbortController();
    const stream = health().watch({ service: "metrics.API" }, { signal: abort.signal });
    try {
      for await (const res of stream) {
        expect(ServingStatus[res.status]).toBe("SERVING");
        break;
      }
    } finally {
      abort.abort();
    }
  });
});
