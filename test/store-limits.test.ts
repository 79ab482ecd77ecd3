/**
 * Issue 10, item 6 and the last part of item 8: input the store could not hold, or that would
 * poison it, answers InvalidArgument (or a per-action failure), never Internal; input within the
 * documented limits is stored whatever its size.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { describe, expect, it } from "vitest";
import { API as MetricsAPI, Kind, SeriesSchema } from "../gen/metrics/metrics_pb.js";
import { useDaemon } from "./support/daemon.js";
import { bearer } from "./support/rpc.js";

const daemon = useDaemon();
const client = () =>
  createClient(MetricsAPI, createConnectTransport({ baseUrl: daemon().url, httpVersion: "1.1", interceptors: [bearer(daemon().adminToken())] }));

async function codeOf(call: Promise<unknown>): Promise<string> {
  try {
    await call;
    return "ok";
  } catch (err) {
    return Code[ConnectError.from(err).code]!;
  }
}

const gauge = (labels: Record<string, string>, times = [Date.now()]) =>
  create(SeriesSchema, { metric: "limits_test", labels, kind: Kind.GAUGE, times, values: times.map(() => 1) });

describe("what the store can and cannot hold", () => {
  it("stores three label values of 1,024 random characters", async () => {
    const random = () => Array.from({ length: 1024 }, () => String.fromCharCode(33 + Math.floor(Math.random() * 90))).join("");
    expect(await client().push({ series: [gauge({ a: random(), b: random(), c: random() })] })).toMatchObject({ accepted: 1 });
  });

  it("refuses NUL characters, unpaired surrogates, long label keys and times far out with InvalidArgument", async () => {
    const bad = [gauge({ a: "x\u0000y" }), gauge({ ["k".repeat(129)]: "v" }), gauge({}, [1e300]), gauge({}, [-1e300])];
    for (const series of bad) expect(await codeOf(client().push({ series: [series] }))).toBe("InvalidArgument");
    // An unpaired surrogate reaches the daemon only as a JSON escape (a client's UTF-8 encoder replaces it).
    const res = await fetch(`${daemon().url}/metrics.API/Push`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${daemon().adminToken()}` },
      body: `{"series":[{"metric":"limits_test","labels":{"a":"\\ud800"},"kind":"KIND_GAUGE","times":[${Date.now()}],"values":[1]}]}`,
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: "invalid_argument" });
  });

  it("refuses query times outside 1970 to 9999 and names with NUL with InvalidArgument", async () => {
    expect(await codeOf(client().query({ metric: "limits_test", start: timestampFromMs(-1e15) }))).toBe("InvalidArgument");
    expect(await codeOf(client().query({ metric: "limits_test", end: { seconds: 10n ** 15n, nanos: 0 } }))).toBe("InvalidArgument");
    expect(await codeOf(client().query({ metric: "limits\u0000test" }))).toBe("InvalidArgument");
    expect(await codeOf(client().query({ metric: "limits_test", matchers: [{ label: "a", operator: 1, value: "\u0000" }] }))).toBe("InvalidArgument");
    expect(await codeOf(client().list({ prefix: "\u0000" }))).toBe("InvalidArgument");
  });

  it("refuses a histogram number that would make a stored total infinite, and keeps the total finite", async () => {
    const observe = () => client().histogram({ action: [{ metric: "page_ready_duration_seconds", number: 1e308 }] });
    expect((await observe()).result[0]!.status).toBe("success");
    const second = (await observe()).result[0]!;
    expect(second).toMatchObject({ status: "failure", reason: { kind: "invalid_number" } });
    expect(second.reason!.info).toMatch(/would make the stored total of page_ready_duration_seconds infinite/);
  });
});
