/**
 * Every bad input of issue 2, item 4: a bad action fails alone with a Reason (kind, info)
 * while the others of the call succeed; a call with 0 or more than 100 actions is refused
 * with InvalidArgument. The instruments come from a config file passed with `config`.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { describe, expect, it } from "vitest";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { API as MetricsAPI, type ActionSchema, type Result } from "../gen/metrics/metrics_pb.js";
import { testInstruments, useDaemon } from "./support/daemon.js";
import { findSamples, sampleValue, scrape } from "./support/prometheus.js";

const daemon = useDaemon({ config: { instruments: testInstruments }, env: { SPECTA_ENVIRONMENT: "testing" } });

/** gRPC: binary on the wire, so NaN and the infinities travel as the doubles they are. */
const grpc = () => createClient(MetricsAPI, createGrpcTransport({ baseUrl: daemon().url }));
const connectJson = () => createClient(MetricsAPI, createConnectTransport({ baseUrl: daemon().url, httpVersion: "1.1" }));

type Rpc = "counter" | "gauge" | "histogram";
type PlainAction = { metric: string; number: number; labels?: Record<string, string> };

/** A good action for each RPC, sent around each bad one. */
const good: Record<Rpc, PlainAction> = {
  counter: { metric: "jobs_done_total", labels: { queue: "mail", priority: "high" }, number: 1 },
  gauge: { metric: "queue_depth", labels: { queue: "mail", transport: "grpc" }, number: 3 },
  histogram: { metric: "page_ready_duration_seconds", number: 0.3 },
};

/** Sends [good, bad, good] and checks that only the middle one failed; returns its result. */
async function oneBad(rpc: Rpc, bad: PlainAction): Promise<Result> {
  const res = await grpc()[rpc]({ action: [good[rpc], bad, good[rpc]] });
  expect(res.result.map((r) => r.status)).toEqual(["success", "failure", "success"]);
  expect(res.result[0]!.reason).toBeUndefined();
  expect(res.result[2]!.reason).toBeUndefined();
  const failed = res.result[1]!;
  expect(failed.reason).toBeDefined();
  expect(failed.reason!.info).not.toBe("");
  return failed;
}

async function expectInvalidArgument(call: Promise<unknown>): Promise<void> {
  const error = await call.then(
    () => undefined,
    (err: unknown) => ConnectError.from(err),
  );
  expect(error, "expected InvalidArgument").toBeInstanceOf(ConnectError);
  expect(Code[error!.code]).toBe(Code[Code.InvalidArgument]);
}

describe("undeclared instruments and labels", () => {
  it.each(["counter", "gauge", "histogram"] as const)("%s: an undeclared metric fails alone", async (rpc) => {
    const failed = await oneBad(rpc, { metric: "not_declared_anywhere", number: 1 });
    expect(failed.reason!.kind).toBe("undeclared_metric");
    expect(failed.reason!.info).toContain("not_declared_anywhere");
  });

  it("an undeclared label key fails alone", async () => {
    const failed = await oneBad("counter", { metric: "jobs_done_total", labels: { queue: "mail", color: "red" }, number: 1 });
    expect(failed.reason!.kind).toBe("undeclared_label");
    expect(failed.reason!.info).toContain("color");
  });

  it("an undeclared label value fails alone", async () => {
    const failed = await oneBad("gauge", { metric: "queue_depth", labels: { queue: "sms" }, number: 1 });
    expect(failed.reason!.kind).toBe("undeclared_label");
    expect(failed.reason!.info).toContain("sms");
  });

  it("a histogram label key that is declared for another instrument fails", async () => {
    const failed = await oneBad("histogram", { metric: "page_ready_duration_seconds", labels: { queue: "mail" }, number: 1 });
    expect(failed.reason!.kind).toBe("undeclared_label");
  });

  it("the caller cannot set env itself", async () => {
    const failed = await oneBad("gauge", { metric: "queue_depth", labels: { env: "production" }, number: 1 });
    expect(failed.reason!.kind).toBe("undeclared_label");
  });
});

describe("numbers", () => {
  it("a negative histogram number fails alone", async () => {
    const failed = await oneBad("histogram", { metric: "page_ready_duration_seconds", number: -0.5 });
    expect(failed.reason!.kind).toBe("invalid_number");
  });

  it("a negative counter number fails alone", async () => {
    const failed = await oneBad("counter", { metric: "jobs_done_total", number: -1 });
    expect(failed.reason!.kind).toBe("invalid_number");
  });

  it("a negative gauge number is fine", async () => {
    const res = await grpc().gauge({ action: [{ metric: "queue_depth", labels: { queue: "video" }, number: -4 }] });
    expect(res.result[0]!.status).toBe("success");
  });

  it("zero is fine for counters and histograms", async () => {
    expect((await grpc().counter({ action: [{ metric: "jobs_done_total", number: 0 }] })).result[0]!.status).toBe("success");
    expect((await grpc().histogram({ action: [{ metric: "page_ready_duration_seconds", number: 0 }] })).result[0]!.status).toBe("success");
  });

  describe.each(["counter", "gauge", "histogram"] as const)("%s over binary (gRPC)", (rpc) => {
    it.each([
      ["NaN", NaN],
      ["Infinity", Infinity],
      ["-Infinity", -Infinity],
    ])("%s fails alone", async (_, number) => {
      const failed = await oneBad(rpc, { ...good[rpc], number });
      expect(failed.reason!.kind).toBe("invalid_number");
    });
  });

  it.each(["NaN", "Infinity", "-Infinity"])("JSON %s (proto3 JSON's string form) fails alone", async (text) => {
    const res = await fetch(`${daemon().url}/metrics.API/Gauge`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: `{"action":[{"metric":"queue_depth","number":1},{"metric":"queue_depth","number":"${text}"}]}`,
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { result: { status: string; reason?: { kind: string; info: string } }[] };
    expect(body.result[0]).toEqual({ status: "success" });
    expect(body.result[1]).toEqual({ status: "failure", reason: { kind: "invalid_number", info: expect.stringContaining(text) } });
  });
});

describe("metric names", () => {
  it("an empty name fails alone", async () => {
    const failed = await oneBad("gauge", { metric: "", number: 1 });
    expect(failed.reason!.kind).toBe("invalid_metric");
  });

  it("a name of 256 characters fails alone", async () => {
    const failed = await oneBad("gauge", { metric: "m".repeat(256), number: 1 });
    expect(failed.reason!.kind).toBe("invalid_metric");
    expect(failed.reason!.info).toContain("255");
  });

  it("a name of 255 characters is accepted when declared", async () => {
    const res = await grpc().gauge({ action: [{ metric: "m".repeat(255), number: 1 }] });
    expect(res.result[0]!.status).toBe("success");
  });

  it("a name of 256 characters fails over JSON too", async () => {
    const res = await fetch(`${daemon().url}/metrics.API/Histogram`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ action: [{ metric: "x".repeat(256), number: 1 }] }),
    });
    const body = (await res.json()) as { result: { status: string; reason?: { kind: string } }[] };
    expect(body.result[0]!.status).toBe("failure");
    expect(body.result[0]!.reason!.kind).toBe("invalid_metric");
  });
});

describe("kinds", () => {
  it.each([
    ["gauge", "jobs_done_total"],
    ["counter", "queue_depth"],
    ["histogram", "jobs_done_total"],
    ["counter", "page_ready_duration_seconds"],
  ] as const)("%s on %s fails alone with wrong_kind", async (rpc, metric) => {
    const failed = await oneBad(rpc, { metric, number: 1 });
    expect(failed.reason!.kind).toBe("wrong_kind");
    expect(failed.reason!.info).toContain(metric);
  });
});

describe("number of actions", () => {
  it.each([
    ["gRPC", grpc],
    ["Connect JSON", connectJson],
  ] as const)("0 actions: InvalidArgument (%s)", async (_, client) => {
    await expectInvalidArgument(client().histogram({ action: [] }));
    await expectInvalidArgument(client().counter({ action: [] }));
    await expectInvalidArgument(client().gauge({ action: [] }));
  });

  it.each([
    ["gRPC", grpc],
    ["Connect JSON", connectJson],
  ] as const)("101 actions: InvalidArgument (%s)", async (_, client) => {
    const action: MessageInitShape<typeof ActionSchema>[] = Array.from({ length: 101 }, () => ({ metric: "page_ready_duration_seconds", number: 1 }));
    await expectInvalidArgument(client().histogram({ action }));
  });

  it("100 actions: 100 results, in order", async () => {
    const action = Array.from({ length: 100 }, (_, i) =>
      i % 10 === 9 ? { metric: `undeclared_${i}`, number: 1 } : { metric: "page_ready_duration_seconds", number: i },
    );
    const res = await grpc().histogram({ action });
    expect(res.result).toHaveLength(100);
    res.result.forEach((r, i) => {
      expect(r.status, `action ${i}`).toBe(i % 10 === 9 ? "failure" : "success");
      if (i % 10 === 9) expect(r.reason!.info).toContain(`undeclared_${i}`);
    });
  });

  it("101 actions over Twirp JSON: invalid_argument with code and msg, nothing recorded", async () => {
    const count = async () => sampleValue(await scrape(daemon().url), "upload_size_bytes_count", { kind: "video", env: "testing" }) ?? 0;
    const before = await count();
    const action = Array.from({ length: 101 }, () => ({ metric: "upload_size_bytes", labels: { kind: "video" }, number: 1 }));
    const res = await fetch(`${daemon().url}/metrics.API/Histogram`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ action }),
    });
    expect(res.status).toBe(400);
    const error = (await res.json()) as { code: string; msg: string };
    expect(error.code).toBe("invalid_argument");
    expect(error.msg).toContain("101");
    expect(await count()).toBe(before);
  });
});

describe("what is recorded", () => {
  it("failed actions record nothing; the good ones of the same call do", async () => {
    const series = { queue: "video", priority: "high" };
    const value = async () => sampleValue(await scrape(daemon().url), "jobs_done_total", { ...series, env: "testing" }) ?? 0;
    const before = await value();
    const res = await grpc().counter({
      action: [
        { metric: "jobs_done_total", labels: series, number: 2 },
        { metric: "jobs_done_total", labels: series, number: -5 },
        { metric: "jobs_done_total", labels: series, number: NaN },
        { metric: "jobs_done_total", labels: series, number: Infinity },
        { metric: "jobs_done_total", labels: { ...series, color: "red" }, number: 100 },
        { metric: "jobs_done_total", labels: series, number: 3 },
      ],
    });
    expect(res.result.map((r) => r.status)).toEqual(["success", "failure", "failure", "failure", "failure", "success"]);
    expect((await value()) - before).toBe(5);
    const samples = await scrape(daemon().url);
    expect(findSamples(samples, "jobs_done_total").filter((s) => "color" in s.labels)).toEqual([]);
    expect(findSamples(samples, "not_declared_anywhere")).toEqual([]);
  });
});
