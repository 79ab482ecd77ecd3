import { createServer, type Server } from "node:http";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestDaemon } from "../../test/support/daemon.js";
import { endpointProbe } from "./endpoint-probe.js";

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
    // A generous timeout: the first fetch of a fresh test process loads its HTTP client first.
    const probe = endpointProbe({ urls: [ok, broken, refused], intervalMs: 1_000, timeoutMs: 10_000 }, registry);
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
