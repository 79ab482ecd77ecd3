import { createServer, type Server } from "node:http";
import { Writable } from "node:stream";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestDaemon } from "../../test/support/daemon.js";
import { createLogger } from "../log.js";
import { endpointProbe } from "./endpoint-probe.js";
import { Engine, type Handler } from "./engine.js";

/** A logger whose JSON lines are kept for the test to read. */
function capturedLogger() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split("\n").filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: createLogger("info", sink), lines };
}

describe("the worker engine", () => {
  it("runs each handler in its own loop, logs a failure with the handler's name, retries it after its cooler, and stops cleanly", async () => {
    const { log, lines } = capturedLogger();
    let failing = 0;
    let healthy = 0;
    const handlers: Handler[] = [
      {
        name: "always-fails",
        coolerMs: 20,
        async ensure() {
          failing++;
          throw new Error("boom");
        },
      },
      {
        name: "counts",
        coolerMs: 10,
        async ensure() {
          healthy++;
        },
      },
    ];
    const engine = new Engine(handlers, log);
    engine.start();
    await expect.poll(() => failing, { timeout: 2_000 }).toBeGreaterThanOrEqual(3);
    expect(healthy).toBeGreaterThan(failing); // the failing handler never stopped the other
    const started = Date.now();
    await engine.stop();
    expect(Date.now() - started).toBeLessThan(2_000);
    const ranAtStop = healthy;
    await new Promise((r) => setTimeout(r, 50));
    expect(healthy).toBe(ranAtStop);
    const errors = lines.filter((l) => l.level === "error");
    expect(errors.length).toBeGreaterThanOrEqual(3);
    expect(errors[0]).toMatchObject({ handler: "always-fails", err: expect.objectContaining({ message: "boom" }) });
  });
});

describe("the endpoint probe", () => {
  const servers: Server[] = [];
  const serve = async (status: number) => {
    const server = createServer((_req, res) => res.writeHead(status).end("x"));
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(server.address() as { port: number }).port}/`;
  };
  let ok: string;
  let broken: string;
  const refused = "http://127.0.0.1:1/";
  beforeAll(async () => {
    ok = await serve(204);
    broken = await serve(503);
  });
  afterAll(() => servers.forEach((s) => s.close()));

  it("sets http_endpoint_health to 1 for a 2xx answer, else 0", async () => {
    const registry = new Registry();
    const probe = endpointProbe({ urls: [ok, broken, refused], intervalMs: 1_000, timeoutMs: 1_000 }, registry);
    await probe.ensure(new AbortController().signal);
    const text = await registry.metrics();
    expect(text).toContain(`http_endpoint_health{url="${ok}"} 1`);
    expect(text).toContain(`http_endpoint_health{url="${broken}"} 0`);
    expect(text).toContain(`http_endpoint_health{url="${refused}"} 0`);
  });

  it("runs in the daemon for the URLs given with --probe, and shows in /metrics", async () => {
    const daemon = await startTestDaemon({ flags: { probe: [ok, broken] } });
    try {
      await expect
        .poll(async () => (await (await fetch(`${daemon.url}/metrics`)).text()).includes(`http_endpoint_health{url="${ok}"} 1`), { timeout: 10_000 })
        .toBe(true);
      expect(await (await fetch(`${daemon.url}/metrics`)).text()).toContain(`http_endpoint_health{url="${broken}"} 0`);
    } finally {
      await daemon.stop();
    }
  });
});
