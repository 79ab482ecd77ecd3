/**
 * Issue 10, item 3, against a whole daemon: a flood of silent sockets above the connection cap
 * neither locks out new clients (curl-style HTTP/1.1, gRPC) nor stays (it is shed within the
 * headers timeout), and an agent's command stream outlives every idle timeout. The deadlines one
 * by one are tested in src/server/listener.test.ts.
 */
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { connect, type Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { API as CommandsAPI, DiagnosticSchema } from "../gen/commands/commands_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { useDaemon } from "./support/daemon.js";
import { FakeAgent } from "./support/fake-agent.js";
import { bearer } from "./support/rpc.js";

const cap = 200;
const headersTimeoutMs = 2_000;
const idleTimeoutMs = 1_000;
const daemon = useDaemon({
  env: {
    SPECTA_ENVIRONMENT: "testing",
    SPECTA_MAX_CONNECTIONS: String(cap),
    SPECTA_HEADERS_TIMEOUT: `${headersTimeoutMs}ms`,
    SPECTA_IDLE_TIMEOUT: `${idleTimeoutMs}ms`,
    SPECTA_PING_INTERVAL: "500ms",
  },
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("a flood of silent sockets above the connection cap", () => {
  it("lets curl-style and gRPC clients through at once and is shed within the headers timeout", async () => {
    const sockets: Socket[] = [];
    let closed = 0;
    const started = Date.now();
    await Promise.all(
      Array.from(
        { length: cap + 100 },
        () =>
          new Promise<void>((resolve) => {
            const socket = connect(daemon().port, "127.0.0.1", resolve);
            socket.on("error", () => undefined);
            socket.once("close", () => closed++).resume();
            sockets.push(socket);
          }),
      ),
    );

    const live = await fetch(`${daemon().url}/health/live`);
    expect(live.status).toBe(200);
    const histogram = await fetch(`${daemon().url}/metrics.API/Histogram`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: '{"action":[{"metric":"page_ready_duration_seconds","number":47}]}',
    });
    expect(await histogram.text()).toBe('{"result":[{"status":"success"}]}');
    const health = await createClient(Health, createGrpcTransport({ baseUrl: daemon().url })).check({});
    expect(health.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    const clientsMs = Date.now() - started;

    while (closed < sockets.length) await sleep(20);
    console.log(
      `${sockets.length} silent sockets, cap ${cap}: clients answered after ${clientsMs} ms, all sockets shed after ${Date.now() - started} ms`,
    );
  });
});

describe("an agent's command stream", () => {
  it("stays open past the idle timeouts (pinged, not closed) and still delivers a command", async () => {
    const agent = await FakeAgent.enrol(daemon().url, daemon().dataDir, "long-lived");
    await agent.open();
    await sleep(4 * idleTimeoutMs);
    expect(agent.ended).toBeUndefined();
    const admin = createClient(CommandsAPI, createGrpcTransport({ baseUrl: daemon().url, interceptors: [bearer(daemon().adminToken())] }));
    const diagnostic = create(DiagnosticSchema, { kind: { case: "ping", value: { host: "127.0.0.1", count: 1 } } });
    const { commands } = await admin.submit({ target: { case: "agent", value: agent.agentId }, diagnostic });
    await agent.nextCommand(commands[0]!.commandId);
    agent.close();
  });
});
