/**
 * connect-node clients over every protocol the daemon serves on its one port:
 * gRPC (h2c), Connect over HTTP/1.1 (JSON) and HTTP/2 (binary), gRPC-Web over HTTP/1.1.
 */
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { describe, expect, it } from "vitest";
import { API as CommandsAPI } from "../gen/commands/commands_pb.js";
import { API as MetricsAPI } from "../gen/metrics/metrics_pb.js";
import { testInstruments, useDaemon } from "./support/daemon.js";
import { sampleValue, scrape } from "./support/prometheus.js";

const daemon = useDaemon({ config: { instruments: testInstruments }, env: { SPECTA_ENVIRONMENT: "testing" } });

/** Each transport, named by the `transport` label value the gauge test records under. */
const transports: [name: string, make: (baseUrl: string) => Transport][] = [
  ["grpc", (baseUrl) => createGrpcTransport({ baseUrl })],
  ["connect-1.1", (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1" })],
  ["connect-2", (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true })],
  ["grpc-web", (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: "1.1" })],
];

async function expectCode(call: Promise<unknown>, code: Code): Promise<ConnectError> {
  const error = await call.then(
    () => undefined,
    (err: unknown) => ConnectError.from(err),
  );
  expect(error, `expected the call to fail with ${Code[code]}`).toBeInstanceOf(ConnectError);
  expect(Code[error!.code]).toBe(Code[code]);
  return error!;
}

describe.each(transports)("connect-node client over %s", (name, make) => {
  const client = () => createClient(MetricsAPI, make(daemon().url));

  it("calls Histogram", async () => {
    const res = await client().histogram({
      action: [
        { metric: "page_ready_duration_seconds", number: 47 },
        { metric: "upload_size_bytes", labels: { kind: "image" }, number: 2048 },
      ],
    });
    expect(res.result.map((r) => r.status)).toEqual(["success", "success"]);
    expect(res.result.every((r) => r.reason === undefined)).toBe(true);
  });

  it("calls Counter", async () => {
    const res = await client().counter({ action: [{ metric: "jobs_done_total", labels: { queue: "mail", priority: "high" }, number: 1 }] });
    expect(res.result).toHaveLength(1);
    expect(res.result[0]!.status).toBe("success");
  });

  it("calls Gauge, and the value shows in /metrics", async () => {
    const value = 10 + transports.findIndex(([n]) => n === name);
    const res = await client().gauge({ action: [{ metric: "queue_depth", labels: { queue: "video", transport: name }, number: value }] });
    expect(res.result[0]!.status).toBe("success");
    const samples = await scrape(daemon().url);
    expect(sampleValue(samples, "queue_depth", { queue: "video", transport: name, env: "testing" })).toBe(value);
  });

  it("gets a failure result, not an error, for a bad action", async () => {
    const res = await client().counter({
      action: [
        { metric: "jobs_done_total", labels: { queue: "mail" }, number: 1 },
        { metric: "jobs_done_total", labels: { queue: "nowhere" }, number: 1 },
      ],
    });
    expect(res.result[0]!.status).toBe("success");
    expect(res.result[1]!.status).toBe("failure");
    expect(res.result[1]!.reason?.kind).toBe("undeclared_label");
  });

  it("gets InvalidArgument for a call without actions", async () => {
    await expectCode(client().histogram({ action: [] }), Code.InvalidArgument);
  });

  // Errors of RPCs that need a credential travel the same way: unauthenticated without one,
  // permission denied for a credential of the wrong role, invalid argument for a bad request.
  it("gets Unauthenticated, then InvalidArgument, from commands.API/Submit", async () => {
    const commands = createClient(CommandsAPI, make(daemon().url));
    await expectCode(commands.submit({}), Code.Unauthenticated);
    const headers = { authorization: `Bearer ${daemon().adminToken()}` };
    const submit = await expectCode(commands.submit({}, { headers }), Code.InvalidArgument);
    expect(submit.rawMessage).toMatch(/diagnostic/);
  });
});

describe("all transports together", () => {
  it("add up in one counter series", async () => {
    const labels = { queue: "video", priority: "low" };
    const before = sampleValue(await scrape(daemon().url), "jobs_done_total", { ...labels, env: "testing" }) ?? 0;
    await Promise.all(
      transports.map(([, make], i) =>
        createClient(MetricsAPI, make(daemon().url)).counter({ action: [{ metric: "jobs_done_total", labels, number: i + 1 }] }),
      ),
    );
    const after = sampleValue(await scrape(daemon().url), "jobs_done_total", { ...labels, env: "testing" });
    expect(after).toBe(before + 1 + 2 + 3 + 4);
  });
});
