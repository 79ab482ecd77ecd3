/**
 * Issue 10, item 10: with a certificate and key the daemon serves TLS on its one port (HTTP/1.1
 * and h2 by ALPN) for every protocol and page, with the listener's deadlines; the agent and the
 * CLI verify it with --ca; plaintext clients of a TLS port get an answer, not a hang; a daemon
 * given half a pair or a bad file does not start; SIGHUP reloads the pair.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { execFile } from "node:child_process";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { get } from "node:https";
import { connect } from "node:net";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { Aggregation, API as MetricsAPI } from "../gen/metrics/metrics_pb.js";
import { startAgent } from "../src/agent/agent.js";
import { readEnrollToken } from "../src/fleet/enroll-token.js";
import { createLogger } from "../src/shared/log.js";
import { runSpecta, spawnDaemon, tempDir, useDaemon } from "./support/daemon.js";
import { bearer, codeOf } from "./support/rpc.js";
import { makeTestCertificates } from "./support/tls.js";

const certs = makeTestCertificates();
// The daemon serves copies, so that the reload test can replace them.
const served = tempDir("specta-tls-served-");
const certFile = join(served.path, "cert.pem");
const keyFile = join(served.path, "key.pem");
copyFileSync(certs.cert, certFile);
copyFileSync(certs.key, keyFile);
afterAll(() => {
  certs.remove();
  served.remove();
});

const headersTimeoutMs = 1_000;
const daemon = useDaemon({
  flags: { tlsCert: certFile, tlsKey: keyFile },
  env: { SPECTA_ENVIRONMENT: "testing", SPECTA_HEADERS_TIMEOUT: `${headersTimeoutMs}ms` },
});
const ca = readFileSync(certs.ca);
const histogram = { action: [{ metric: "page_ready_duration_seconds", number: 0.5 }] };

/** GET over HTTPS (HTTP/1.1), trusting `trusted`. */
function httpsGet(path: string, trusted: Buffer = ca): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    // A connection of its own: a pooled one would keep the certificate it was opened with.
    get(`${daemon().url}${path}`, { ca: trusted, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, type: String(res.headers["content-type"]), body }));
    }).on("error", reject);
  });
}

describe("a daemon serving TLS", () => {
  it("says https:// and serves Connect over HTTP/1.1", async () => {
    expect(daemon().url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const metrics = createClient(MetricsAPI, createConnectTransport({ baseUrl: daemon().url, httpVersion: "1.1", nodeOptions: { ca } }));
    expect((await metrics.histogram(histogram)).result).toEqual([expect.objectContaining({ status: "success" })]);
  });

  it("serves gRPC, gRPC-Web and Connect over h2", async () => {
    const grpc = createGrpcTransport({ baseUrl: daemon().url, nodeOptions: { ca } });
    expect((await createClient(Health, grpc).check({})).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    expect((await createClient(MetricsAPI, grpc).histogram(histogram)).result[0]!.status).toBe("success");
    const grpcWeb = createGrpcWebTransport({ baseUrl: daemon().url, httpVersion: "2", nodeOptions: { ca } });
    expect((await createClient(MetricsAPI, grpcWeb).histogram(histogram)).result[0]!.status).toBe("success");
    const connect2 = createConnectTransport({ baseUrl: daemon().url, httpVersion: "2", nodeOptions: { ca } });
    expect((await createClient(MetricsAPI, connect2).histogram(histogram)).result[0]!.status).toBe("success");
  });

  it("serves the plain HTTP routes and the dashboard", async () => {
    expect(await httpsGet("/health/live")).toMatchObject({ status: 200, body: '{"status":"live"}' });
    expect(await httpsGet("/metrics")).toMatchObject({ status: 200, body: expect.stringContaining("specta_rpc_requests_total") });
    expect(await httpsGet("/")).toMatchObject({ status: 200, type: expect.stringContaining("text/html") });
  });

  it("answers the README's curl over TLS (h2 by ALPN) and Twirp", async () => {
    const curl = (args: string[]) =>
      new Promise<string>((resolve, reject) =>
        execFile("curl", ["-s", "--cacert", certs.ca, "-w", " %{http_version}", ...args], (err, stdout) => (err ? reject(err) : resolve(stdout))),
      );
    const body = '{"action":[{"metric":"page_ready_duration_seconds","number":47}]}';
    expect(await curl(["-H", "Content-Type: application/json", "-d", body, `${daemon().url}/metrics.API/Histogram`])).toBe(
      '{"result":[{"status":"success"}]} 2',
    );
    expect(await curl(["--http1.1", "-H", "Content-Type: application/json", "-d", body, `${daemon().url}/twirp/metrics.API/Histogram`])).toBe(
      '{"result":[{"status":"success"}]} 1.1',
    );
  });

  it("is refused by clients that do not trust its certificate's CA", async () => {
    const untrusting = createClient(MetricsAPI, createGrpcTransport({ baseUrl: daemon().url, nodeOptions: { ca: readFileSync(certs.otherCa) } }));
    const error = await untrusting.histogram(histogram).catch((err: unknown) => ConnectError.from(err));
    expect(error).toBeInstanceOf(ConnectError);
    expect(String((error as ConnectError).cause)).toMatch(/self-signed certificate in certificate chain|unable to (get|verify)/);
    await expect(httpsGet("/health/live", readFileSync(certs.otherCa))).rejects.toThrow(/certificate/);
  });

  it("answers a plaintext HTTP/1.1 client in plain text, and an h2c client gets an error, not a hang", async () => {
    const plain = daemon().url.replace("https://", "http://");
    const res = await fetch(`${plain}/health/live`);
    expect(res.status).toBe(400);
    expect(await res.text()).toContain("This port speaks TLS");
    const h2c = createClient(Health, createGrpcTransport({ baseUrl: plain }));
    const code = await codeOf(h2c.check({}, { timeoutMs: 10_000 }));
    expect(code).not.toBe("ok");
    expect(code).not.toBe(Code.DeadlineExceeded);
  });

  it("closes a connection whose TLS handshake stalls within the headers timeout", async () => {
    const socket = connect(daemon().port, "127.0.0.1");
    socket.on("error", () => undefined);
    // The first bytes of a TLS record header, and then nothing.
    socket.write(Buffer.from([0x16, 0x03, 0x01]));
    const started = Date.now();
    await new Promise((resolve) => socket.once("close", resolve));
    expect(Date.now() - started).toBeLessThan(headersTimeoutMs + 2_000);
  });

  it("takes an agent's enrolment and pushes, over gRPC and Connect, verified with --ca", async () => {
    const dirs = [tempDir("specta-agent-"), tempDir("specta-agent-")];
    const log = createLogger("silent");
    const agents = await Promise.all(
      (["grpc", "connect"] as const).map((protocol, i) =>
        startAgent({
          server: daemon().url,
          ca: certs.ca,
          protocol,
          stateDir: dirs[i]!.path,
          enrollToken: readEnrollToken(daemon().dataDir)!,
          hostname: `tls-${protocol}`,
          labels: {},
          log,
          collectors: [{ name: "tls", intervalMs: 100, collect: async () => [{ metric: "tls_agent_up", labels: {}, kind: "gauge", value: 1 }] }],
          flushIntervalMs: 100,
        }),
      ),
    );
    try {
      const metrics = createClient(
        MetricsAPI,
        createGrpcTransport({ baseUrl: daemon().url, nodeOptions: { ca }, interceptors: [bearer(daemon().adminToken())] }),
      );
      await expect
        .poll(async () => (await metrics.query({ metric: "tls_agent_up", aggregation: Aggregation.LAST })).series.map((s) => s.labels.host).sort(), {
          timeout: 10_000,
        })
        .toEqual(["tls-connect", "tls-grpc"]);
    } finally {
      await Promise.all(agents.map((a) => a.stop()));
      dirs.forEach((d) => d.remove());
    }
  });

  it("refuses to enrol an agent whose --ca did not sign the daemon's certificate, saying so", async () => {
    const dir = tempDir("specta-agent-");
    try {
      const started = startAgent({
        server: daemon().url,
        ca: certs.otherCa,
        protocol: "grpc",
        stateDir: dir.path,
        enrollToken: readEnrollToken(daemon().dataDir)!,
        hostname: "tls-untrusting",
        labels: {},
        log: createLogger("silent"),
        collectors: [],
      });
      await expect(started).rejects.toThrow(
        /^the daemon at https:\/\/127\.0\.0\.1:\d+ has a certificate this agent does not trust \(.+\): give the CA that signed it with --ca or SPECTA_CA$/,
      );
    } finally {
      dir.remove();
    }
  });

  it("is called by a CLI command with --ca (or SPECTA_CA); without it the command says why it refuses", async () => {
    const listed = await runSpecta(["agents", "--server", daemon().url, "--ca", certs.ca, "--token", daemon().adminToken()]);
    expect(listed.stderr).toBe("");
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain("tls-grpc");
    const fromEnv = await runSpecta(["agents", "--server", daemon().url, "--token", daemon().adminToken()], { SPECTA_CA: certs.ca });
    expect(fromEnv.code).toBe(0);
    const refused = await runSpecta(["agents", "--server", daemon().url, "--token", daemon().adminToken()]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      /^specta: \w+: the daemon at https:\/\/127\.0\.0\.1:\d+ has a certificate this command does not trust \(.+\): give the CA that signed it with --ca or SPECTA_CA\n$/,
    );
    const wrongCa = await runSpecta(["agents", "--server", daemon().url, "--ca", certs.otherCa, "--token", daemon().adminToken()]);
    expect(wrongCa.code).toBe(1);
    expect(wrongCa.stderr).toContain("does not trust");
    const notPem = await runSpecta(["agents", "--server", daemon().url, "--ca", keyFile]);
    expect(notPem.stderr).toBe(`specta: the CA file ${keyFile} holds no PEM certificate\n`);
  });

  // Last: it replaces the daemon's certificate.
  it("serves a new certificate after reloadTls (SIGHUP) to new connections; a bad one is refused and the current one kept", async () => {
    writeFileSync(certFile, "not a certificate");
    expect(() => daemon().reloadTls()).toThrow(`the TLS certificate ${certFile} is not a PEM certificate`);
    expect((await httpsGet("/health/live")).status).toBe(200);

    copyFileSync(certs.otherCert, certFile);
    copyFileSync(certs.otherKey, keyFile);
    daemon().reloadTls();
    expect((await httpsGet("/health/live", readFileSync(certs.otherCa))).status).toBe(200);
    await expect(httpsGet("/health/live")).rejects.toThrow(/certificate/);
  });
});

describe("a daemon given a bad TLS configuration does not start", () => {
  const dataDir = tempDir();
  afterAll(() => dataDir.remove());
  const start = (args: string[]) =>
    runSpecta(["daemon", "--addr", "127.0.0.1:0", "--data-dir", dataDir.path, ...args], { SPECTA_ENVIRONMENT: "testing" });

  it.each([
    [["--tls-cert", "cert.pem"], /^specta: TLS needs the certificate .* and its private key .*: only the certificate cert\.pem is given\n$/],
    [["--tls-key", "key.pem"], /^specta: TLS needs the certificate .* and its private key .*: only the key key\.pem is given\n$/],
  ])("%j: exit 2 with a clear message", async (args, message) => {
    const run = await start(args);
    expect(run.code).toBe(2);
    expect(run.stderr.replace(new RegExp(`${process.cwd()}/`, "g"), "")).toMatch(message);
  });

  it("an unreadable file, a file that is no certificate and a key that is not the certificate's: exit 2, each said", async () => {
    const missing = await start(["--tls-cert", join(dataDir.path, "nope.pem"), "--tls-key", certs.key]);
    expect(missing).toMatchObject({ code: 2, stderr: expect.stringMatching(/^specta: cannot read the TLS certificate .*nope\.pem: ENOENT/) });
    const notPem = await start(["--tls-cert", certs.key, "--tls-key", certs.key]);
    expect(notPem).toMatchObject({ code: 2, stderr: expect.stringMatching(/^specta: the TLS certificate .* is not a PEM certificate/) });
    const mismatch = await start(["--tls-cert", certs.cert, "--tls-key", certs.otherKey]);
    expect(mismatch).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/^specta: the TLS key .*other\.key cannot serve the certificate .*server\.pem: .*key values mismatch/),
    });
  });

  it("the environment and the config file name the pair too, and SIGHUP reloads it in the running process", async () => {
    const configDir = tempDir();
    const pairDir = tempDir();
    try {
      copyFileSync(certs.cert, join(pairDir.path, "cert.pem"));
      copyFileSync(certs.key, join(pairDir.path, "key.pem"));
      const config = join(configDir.path, "specta.json");
      writeFileSync(config, JSON.stringify({ tls: { cert: join(pairDir.path, "cert.pem") } }));
      const daemon = await spawnDaemon(["--config", config], { SPECTA_TLS_KEY: join(pairDir.path, "key.pem") });
      try {
        expect(daemon.url).toMatch(/^https:/);
        copyFileSync(certs.otherCert, join(pairDir.path, "cert.pem"));
        copyFileSync(certs.otherKey, join(pairDir.path, "key.pem"));
        daemon.child.kill("SIGHUP");
        await daemon.waitForLog((line) => line.message === "TLS certificate reloaded");
        const health = createClient(Health, createGrpcTransport({ baseUrl: daemon.url, nodeOptions: { ca: readFileSync(certs.otherCa) } }));
        expect((await health.check({})).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
      } finally {
        await daemon.cleanup();
      }
    } finally {
      configDir.remove();
      pairDir.remove();
    }
  });
});
