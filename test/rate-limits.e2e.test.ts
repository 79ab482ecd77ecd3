/**
 * Issue 10, item 8: per-address token buckets for failed authentication (wrong bearer tokens,
 * wrong enrolment tokens) and for the anonymous instrument calls. The flooding address gets
 * ResourceExhausted with a retry hint after its burst; another address is not affected. Every
 * address used is on the loopback network (127.0.0.0/8), so each test floods from its own.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { request } from "node:http";
import { connect } from "node:net";
import { describe, expect, it } from "vitest";
import { API as AgentAPI, HostSchema } from "../gen/agent/agent_pb.js";
import { API as MetricsAPI } from "../gen/metrics/metrics_pb.js";
import { API as TokensAPI } from "../gen/tokens/tokens_pb.js";
import { readEnrollToken } from "../src/fleet/enroll-token.js";
import { useDaemon } from "./support/daemon.js";
import { bearer, codeOf } from "./support/rpc.js";

// Instrument calls: lowered to 50/s, burst 100, so that a flood is short. Failed authentication: the defaults, 10/s, burst 50.
const daemon = useDaemon({ env: { SPECTA_ENVIRONMENT: "testing", SPECTA_RATE_INSTRUMENT_CALLS: "50,100" } });
const failedAuth = { perSecond: 10, burst: 50 };
const instrumentCalls = { perSecond: 50, burst: 100 };

/** A gRPC transport whose connections come from `address`. */
const from = (address: string, token?: string) =>
  createGrpcTransport({
    baseUrl: daemon().url,
    nodeOptions: { createConnection: () => connect({ host: "127.0.0.1", port: daemon().port, localAddress: address }) },
    interceptors: token ? [bearer(token)] : [],
  });

/**
 * Repeats `call`, `concurrency` at a time, until `refusal` finds the bucket's refusal in an answer
 * (each attempt spends from the bucket); returns it. Not one by one: on a loaded machine a call
 * can take longer than the bucket takes to refill (20 ms for 50/s), and none would be refused.
 */
async function untilRefused<T, R>(call: () => Promise<T>, refusal: (answer: T) => R | undefined): Promise<R> {
  for (let round = 0; round < 50; round++) {
    for (const answer of await Promise.all(Array.from({ length: concurrency }, call))) {
      const refused = refusal(answer);
      if (refused !== undefined) return refused;
    }
  }
  throw new Error(`never refused in 50 rounds of ${concurrency}`);
}

/** untilRefused for a Connect call: its ResourceExhausted error. */
const untilThrottled = (call: () => Promise<unknown>): Promise<ConnectError> =>
  untilRefused(
    () =>
      call().then(
        () => undefined,
        (err: unknown) => ConnectError.from(err),
      ),
    (error) => (error?.code === Code.ResourceExhausted ? error : undefined),
  );

/** untilRefused's refusal of a plain HTTP call: a 429. */
const tooMany = <A extends { status: number }>(answer: A): A | undefined => (answer.status === 429 ? answer : undefined);

/** A curl-style Connect JSON call from `address`: status, headers and body. */
function curlFrom(address: string, path: string, body: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; retryAfter: string | undefined; body: { code?: string; message?: string } }>((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port: daemon().port,
        localAddress: address,
        path,
        method: "POST",
        headers: { "content-type": "application/json", "connect-protocol-version": "1", ...headers },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8").on("data", (c: string) => (text += c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, retryAfter: res.headers["retry-after"], body: JSON.parse(text) as { code?: string } }),
        );
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** Calls at once in a flood. */
const concurrency = 20;

/** Runs `count` calls, `concurrency` at a time; returns how many ended with each code ("ok" for success) and the seconds it took. */
async function flood(count: number, call: (n: number) => Promise<unknown>) {
  const codes: Partial<Record<Code | "ok", number>> = {};
  const started = Date.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const code = await codeOf(call(next++));
        codes[code] = (codes[code] ?? 0) + 1;
      }
    }),
  );
  return { codes, seconds: (Date.now() - started) / 1000 };
}

/** The most calls a bucket lets through in `seconds`: its burst and what it refills meanwhile (one more for rounding). */
const allowance = (limit: { perSecond: number; burst: number }, seconds: number) => limit.burst + Math.ceil(limit.perSecond * seconds) + 1;
/**
 * Failed authentications are counted once they have failed: the attempts in flight when the
 * bucket runs dry (at most the flood's concurrency) still get their answer, and put the address in
 * debt for as long.
 */
const failedAllowance = (seconds: number) => allowance(failedAuth, seconds) + concurrency;

describe("failed authentication", () => {
  it("3,000 wrong bearer tokens from one address get ResourceExhausted after the burst; another address is unaffected", async () => {
    const tokens = createClient(TokensAPI, from("127.0.0.1"));
    const { codes, seconds } = await flood(3_000, (n) => tokens.whoami({}, { headers: { authorization: `Bearer specta_wrong_${n}` } }));
    console.log(`3,000 wrong bearer tokens in ${seconds.toFixed(1)} s: ${JSON.stringify(codes)}`);
    expect(codes[Code.Unauthenticated]).toBeGreaterThanOrEqual(failedAuth.burst);
    expect(codes[Code.Unauthenticated]).toBeLessThanOrEqual(failedAllowance(seconds));
    expect((codes[Code.Unauthenticated] ?? 0) + (codes[Code.ResourceExhausted] ?? 0)).toBe(3_000);

    // The refusal's hint, for gRPC (metadata) and curl (a header and the message).
    const error = await untilThrottled(() => tokens.whoami({}, { headers: { authorization: "Bearer specta_wrong" } }));
    expect(error.metadata.get("retry-after")).toMatch(/^[1-9]\d*$/);
    const curl = () => curlFrom("127.0.0.1", "/tokens.API/Whoami", "{}", { authorization: "Bearer specta_wrong" });
    const refused = await untilRefused(curl, tooMany);
    expect(Number(refused.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(refused.body).toMatchObject({
      code: "resource_exhausted",
      message: expect.stringMatching(/too many failed authentications from this address; retry after \d+ s/),
    });

    // Another address: its own budget.
    expect(await codeOf(createClient(TokensAPI, from("127.0.0.2", daemon().adminToken())).whoami({}))).toBe("ok");
    expect(await codeOf(createClient(TokensAPI, from("127.0.0.2", "specta_wrong")).whoami({}))).toBe(Code.Unauthenticated);
  });

  it("wrong enrolment tokens (agent.API/Register) count too", async () => {
    const agents = createClient(AgentAPI, from("127.0.0.3"));
    const host = create(HostSchema, { hostname: "intruder", os: "linux" });
    const { codes, seconds } = await flood(300, (n) => agents.register({ enrollToken: `specta_enroll_wrong_${n}`, host }));
    console.log(`300 wrong enrolment tokens in ${seconds.toFixed(1)} s: ${JSON.stringify(codes)}`);
    expect(codes[Code.Unauthenticated]).toBeLessThanOrEqual(failedAllowance(seconds));
    expect(codes[Code.ResourceExhausted]).toBeGreaterThan(0);
    // The right token from another address enrols.
    const enrolled = await createClient(AgentAPI, from("127.0.0.2")).register({ enrollToken: readEnrollToken(daemon().dataDir)!, host });
    expect(enrolled.credential).not.toBe("");
  });
});

describe("instrument calls", () => {
  it("a flood from one address is limited to its bucket; another address is unaffected", async () => {
    const metrics = createClient(MetricsAPI, from("127.0.0.4"));
    const action = [{ metric: "page_ready_duration_seconds", number: 0.2 }];
    const { codes, seconds } = await flood(1_000, () => metrics.histogram({ action }));
    console.log(`1,000 instrument calls in ${seconds.toFixed(1)} s at 50/s, burst 100: ${JSON.stringify(codes)}`);
    expect(codes.ok).toBeGreaterThanOrEqual(instrumentCalls.burst);
    expect(codes.ok).toBeLessThanOrEqual(allowance(instrumentCalls, seconds));
    expect((codes.ok ?? 0) + (codes[Code.ResourceExhausted] ?? 0)).toBe(1_000);

    const error = await untilThrottled(() => metrics.histogram({ action }));
    expect(error.metadata.get("retry-after")).toMatch(/^[1-9]\d*$/);
    const curl = () => curlFrom("127.0.0.4", "/metrics.API/Histogram", JSON.stringify({ action }));
    const refused = await untilRefused(curl, tooMany);
    expect(Number(refused.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(refused.body.message).toMatch(/too many instrument calls from this address; retry after \d+ s/);

    const other = await createClient(MetricsAPI, from("127.0.0.2")).histogram({ action });
    expect(other.result.map((r) => r.status)).toEqual(["success"]);
  });
});
