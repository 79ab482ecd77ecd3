/**
 * Plain HTTP/1.1 as curl and Specta's existing (Twirp) clients speak it: fetch, no Connect
 * client, no Connect-Protocol-Version header. Also the plain routes next to the RPCs.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { readFileSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { HistogramRequestSchema, HistogramResponseSchema } from "../gen/metrics/metrics_pb.js";
import { repoRoot, useDaemon } from "./support/daemon.js";
import { findSamples, parsePrometheus, sampleValue, scrape } from "./support/prometheus.js";

// The shipped defaults (no config file): Specta's example instrument must be declared by them.
const daemon = useDaemon({ env: { SPECTA_ENVIRONMENT: "testing" } });

/** POSTs like `curl -H 'Content-Type: application/json' -d BODY URL`. */
function postJson(path: string, body: string): Promise<Response> {
  return fetch(`${daemon().url}${path}`, { method: "POST", headers: { "Content-Type": "application/json" }, body });
}

function postProtobuf(path: string, body: Uint8Array): Promise<Response> {
  return fetch(`${daemon().url}${path}`, { method: "POST", headers: { "Content-Type": "application/protobuf" }, body });
}

/** A GET with the path sent as is (fetch would normalise "..", curl --path-as-is does not). */
function rawGet(path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: daemon().port, path, method: "GET" }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("Specta's curl example over HTTP/1.1 JSON", () => {
  it('answers exactly {"result":[{"status":"success"}]}', async () => {
    const res = await postJson("/metrics.API/Histogram", '{"action":[{"metric":"page_ready_duration_seconds","number":47}]}');
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(await res.text()).toBe('{"result":[{"status":"success"}]}');
  });

  it("accepts Twirp's /twirp prefix on the same paths", async () => {
    const res = await postJson("/twirp/metrics.API/Histogram", '{"action":[{"metric":"page_ready_duration_seconds","number":0.2}]}');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ result: [{ status: "success" }] });
  });

  it("gives a failed action its reason in Specta's JSON shape, next to the successful ones", async () => {
    const res = await postJson(
      "/metrics.API/Histogram",
      JSON.stringify({
        action: [
          { metric: "no_such_metric", number: 1 },
          { metric: "page_ready_duration_seconds", number: 3 },
        ],
      }),
    );
    expect(res.status).toBe(200);
    const body = (await res.json()) as { result: { status: string; reason?: { kind: string; info: string } }[] };
    expect(body.result).toHaveLength(2);
    expect(body.result[0]).toEqual({ status: "failure", reason: { kind: "undeclared_metric", info: expect.stringContaining("no_such_metric") } });
    expect(body.result[1]).toEqual({ status: "success" });
    // No field beyond Specta's: existing clients reject JSON with fields they do not know.
    expect(Object.keys(body.result[0]!).sort()).toEqual(["reason", "status"]);
    expect(Object.keys(body.result[0]!.reason!).sort()).toEqual(["info", "kind"]);
  });
});

describe("Twirp binary protobuf", () => {
  it("answers application/protobuf to a request sent as application/protobuf", async () => {
    const body = toBinary(
      HistogramRequestSchema,
      create(HistogramRequestSchema, {
        action: [
          { metric: "page_ready_duration_seconds", number: 1.5 },
          { metric: "page_ready_duration_seconds", number: -1 },
        ],
      }),
    );
    const res = await postProtobuf("/metrics.API/Histogram", body);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/protobuf");
    const answer = fromBinary(HistogramResponseSchema, new Uint8Array(await res.arrayBuffer()));
    expect(answer.result.map((r) => r.status)).toEqual(["success", "failure"]);
    expect(answer.result[0]!.reason).toBeUndefined();
    expect(answer.result[1]!.reason?.kind).toBe("invalid_number");
  });

  it("answers a binary request's error as Twirp JSON", async () => {
    const res = await postProtobuf("/metrics.API/Histogram", toBinary(HistogramRequestSchema, create(HistogramRequestSchema)));
    expect(res.status).toBe(400);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    const error = (await res.json()) as { code: string; msg: string };
    expect(error.code).toBe("invalid_argument");
    expect(error.msg).toMatch(/1 to 100 actions/);
  });
});

describe("Twirp errors", () => {
  it("carry code and msg for a refused call", async () => {
    const res = await postJson("/metrics.API/Histogram", '{"action":[]}');
    expect(res.status).toBe(400);
    const error = (await res.json()) as Record<string, unknown>;
    expect(error.code).toBe("invalid_argument");
    expect(error.msg).toEqual(expect.stringMatching(/1 to 100 actions, got 0/));
  });

  it("carry code and msg for a body that is not JSON", async () => {
    const res = await postJson("/metrics.API/Histogram", '{"action":');
    expect(res.status).toBe(400);
    const error = (await res.json()) as Record<string, unknown>;
    expect(error.code).toBe("invalid_argument");
    expect(error.msg).toEqual(expect.any(String));
    expect(error.msg).not.toBe("");
  });

  it("carry code and msg for an RPC that needs a credential", async () => {
    const res = await fetch(`${daemon().url}/commands.API/Submit`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: "{}",
    });
    expect(res.status).toBe(401);
    const error = (await res.json()) as Record<string, unknown>;
    expect(error.code).toBe("unauthenticated");
    expect(error.msg).toEqual(expect.stringContaining("commands.API/Submit"));
  });

  it("carry code bad_route and msg for a method that does not exist", async () => {
    const res = await postJson("/metrics.API/NoSuchMethod", "{}");
    expect(res.status).toBe(404);
    const error = (await res.json()) as Record<string, unknown>;
    expect(error.code).toBe("bad_route");
    expect(error.msg).toEqual(expect.stringContaining("NoSuchMethod"));
  });

  it("name the forms that work when a streaming method is called with plain JSON or protobuf", async () => {
    for (const [path, type] of [
      ["/commands.API/Watch", "application/json"],
      ["/twirp/commands.API/Watch", "application/json"],
      ["/commands.API/Watch", "application/protobuf"],
    ] as const) {
      const res = await fetch(`${daemon().url}${path}`, {
        method: "POST",
        headers: { "Content-Type": type, Authorization: `Bearer ${daemon().adminToken()}` },
        body: type === "application/json" ? '{"commandId":"00000000-0000-4000-8000-000000000000"}' : new Uint8Array(),
      });
      expect(res.status).toBe(400);
      const error = (await res.json()) as Record<string, string>;
      expect(error.code).toBe("invalid_argument");
      expect(error.msg).toBe(
        "commands.API/Watch is a streaming method, which plain application/json or application/protobuf cannot call: " +
          "send Content-Type application/connect+json with the request in a Connect envelope (5-byte prefix), " +
          "or call it over gRPC or gRPC-Web, or use the CLI (specta run watches its command to the end)",
      );
      expect(error.message).toBe(error.msg);
    }
  });

  it("are left in Connect's shape for a Connect client (Connect-Protocol-Version set)", async () => {
    const res = await fetch(`${daemon().url}/metrics.API/Histogram`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Connect-Protocol-Version": "1" },
      body: '{"action":[]}',
    });
    expect(res.status).toBe(400);
    const error = (await res.json()) as Record<string, unknown>;
    expect(error.code).toBe("invalid_argument");
    expect(error.message).toEqual(expect.stringMatching(/1 to 100 actions/));
    expect(error).not.toHaveProperty("msg");
  });
});

describe("plain HTTP routes", () => {
  it("GET /version answers Specta's fields plus node", async () => {
    const res = await fetch(`${daemon().url}/version`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    const version = (await res.json()) as Record<string, unknown>;
    expect(Object.keys(version).sort()).toEqual(["arc", "gos", "node", "sha", "src", "tag", "ver"]);
    const pkg = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as { version: string };
    expect(version.ver).toBe(pkg.version);
    expect(version.tag).toBe(`v${pkg.version}`);
    expect(version.node).toBe(process.versions.node);
    expect(version.gos).toBe(process.platform);
    expect(version.arc).toBe(process.arch);
    expect(version.sha).toEqual(expect.stringMatching(/^([0-9a-f]{7,40}|unknown)$/));
    expect(version.src).toEqual(expect.any(String));
  });

  it("GET /health/live and /health/ready answer 200", async () => {
    const live = await fetch(`${daemon().url}/health/live`);
    expect(live.status).toBe(200);
    expect(await live.json()).toEqual({ status: "live" });
    const ready = await fetch(`${daemon().url}/health/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: "ready" });
  });

  it("GET /metrics exposes recorded values with the env label, process metrics and RPC counts", async () => {
    const before = await scrape(daemon().url);
    const count = (s: typeof before) => sampleValue(s, "page_ready_duration_seconds_count", { env: "testing" }) ?? 0;
    const sum = (s: typeof before) => sampleValue(s, "page_ready_duration_seconds_sum", { env: "testing" }) ?? 0;
    const rpcs = (s: typeof before) => sampleValue(s, "specta_rpc_requests_total", { procedure: "metrics.API/Histogram", code: "ok" }) ?? 0;

    const res = await postJson("/metrics.API/Histogram", '{"action":[{"metric":"page_ready_duration_seconds","number":47}]}');
    expect(await res.text()).toBe('{"result":[{"status":"success"}]}');

    const metricsRes = await fetch(`${daemon().url}/metrics`);
    expect(metricsRes.status).toBe(200);
    expect(metricsRes.headers.get("content-type")).toMatch(/^text\/plain/);
    const text = await metricsRes.text();
    expect(text).toContain("# TYPE page_ready_duration_seconds histogram");
    const after = parsePrometheus(text);

    expect(count(after) - count(before)).toBe(1);
    expect(sum(after) - sum(before)).toBe(47);
    // 47 falls in the bucket le=50, not le=25.
    const bucket = (s: typeof before, le: string) => sampleValue(s, "page_ready_duration_seconds_bucket", { le, env: "testing" }) ?? 0;
    expect(bucket(after, "50") - bucket(before, "50")).toBe(1);
    expect(bucket(after, "25") - bucket(before, "25")).toBe(0);
    // Every series of the instrument carries env="testing" (SPECTA_ENVIRONMENT).
    for (const s of findSamples(after, "page_ready_duration_seconds_bucket")) expect(s.labels.env).toBe("testing");

    expect(findSamples(after, "process_cpu_seconds_total")).toHaveLength(1);
    expect(findSamples(after, "process_resident_memory_bytes")).toHaveLength(1);
    expect(rpcs(after) - rpcs(before)).toBe(1);
    expect(findSamples(after, "specta_rpc_duration_seconds_count", { procedure: "metrics.API/Histogram" })).toHaveLength(1);
  });

  it("GET /proto/ lists the contracts and /proto/metrics/metrics.proto serves the file", async () => {
    const index = await fetch(`${daemon().url}/proto/`);
    expect(index.status).toBe(200);
    const { files } = (await index.json()) as { files: string[] };
    expect(files).toEqual(expect.arrayContaining(["metrics/metrics.proto", "agent/agent.proto", "commands/commands.proto"]));

    const file = await fetch(`${daemon().url}/proto/metrics/metrics.proto`);
    expect(file.status).toBe(200);
    expect(file.headers.get("content-type")).toMatch(/^text\/plain/);
    expect(await file.text()).toBe(readFileSync(join(repoRoot, "proto", "metrics", "metrics.proto"), "utf8"));
  });

  it("serves nothing outside proto/ and answers 404 to unknown paths", async () => {
    for (const path of ["/proto/../package.json", "/proto/%2e%2e/package.json", "/proto/metrics/nope.proto", "/nope"]) {
      const res = await rawGet(path);
      expect(res.status, path).toBe(404);
      expect(res.body, path).not.toContain('"name": "specta"');
    }
  });
});
