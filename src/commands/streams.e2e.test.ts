/**
 * Load: one daemon holds 1,000 concurrent agent streams (1,000 enrolled agents, each with its own
 * credential, multiplexed over 10 HTTP/2 connections) with bounded memory, and still wakes a
 * random one of them for a command at once (NOTIFY, not the 30 s re-check). `npm run
 * bench:commands` measures the delivery latency itself.
 *
 * The memory figure is process.memoryUsage() of this process, which runs the daemon AND the
 * 1,000 fake agents' client side: it is an upper bound of what the daemon needs.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { create } from "@bufbuild/protobuf";
import { createClient, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API as CommandsAPI, DiagnosticSchema } from "../../gen/commands/commands_pb.js";
import { startTestDaemon, type TestDaemon } from "../../test/support/daemon.js";
import { enrolAgent, FakeAgent } from "../../test/support/fake-agent.js";
import { readEnrollToken } from "../fleet/enroll-token.js";
import { bearer } from "../../test/support/rpc.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const agentCount = 1_000;
const connections = 10;
const mib = (n: number) => Math.round((n / 1024 / 1024) * 10) / 10;

async function settledMemory(): Promise<NodeJS.MemoryUsage> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 50));
  }
  return process.memoryUsage();
}

async function inBatches<T, R>(items: T[], size: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size) out.push(...(await Promise.all(items.slice(i, i + size).map(work))));
  return out;
}

describe("commands.API/Stream under load", () => {
  let daemon: TestDaemon;
  let agents: FakeAgent[] = [];

  beforeAll(async () => {
    daemon = await startTestDaemon({ daemon: { commands: { recheckMs: 30_000 } } });
  });
  afterAll(async () => {
    for (const a of agents) a.close();
    await daemon?.stop();
  });

  it(`holds ${agentCount} concurrent agent streams with bounded memory and wakes the right one at once`, async () => {
    const enrollToken = readEnrollToken(daemon.dataDir)!;
    const registerTransport = createGrpcTransport({ baseUrl: daemon.url });
    const enrolled = await inBatches(
      Array.from({ length: agentCount }, (_, i) => i),
      50,
      (i) => enrolAgent(daemon.url, enrollToken, `load-${i}`, {}, registerTransport),
    );
    const transports: Transport[] = Array.from({ length: connections }, () => createGrpcTransport({ baseUrl: daemon.url }));
    agents = enrolled.map((e, i) => new FakeAgent(daemon.url, e.agentId, e.credential, transports[i % connections]));

    const before = await settledMemory();
    const started = Date.now();
    await inBatches(agents, 100, (a) => a.open([], { authorization: `Bearer ${a.credential}` }));
    const openMs = Date.now() - started;
    const during = await settledMemory();
    expect(agents.every((a) => a.ended === undefined)).toBe(true);

    const admin = createClient(CommandsAPI, createGrpcTransport({ baseUrl: daemon.url, interceptors: [bearer(daemon.adminToken())] }));
    const target = agents[Math.floor(Math.random() * agents.length)]!;
    const sent = Date.now();
    const { commands } = await admin.submit({
      target: { case: "agent", value: target.agentId },
      diagnostic: create(DiagnosticSchema, { kind: { case: "mounts", value: {} } }),
    });
    expect(commands[0]!.agentOnline).toBe(true);
    const { at } = await target.nextCommand(commands[0]!.commandId, 5_000);
    const deliveryMs = at - sent;

    const heapDelta = during.heapUsed - before.heapUsed;
    const rssDelta = during.rss - before.rss;
    const figure = {
      streams: agentCount,
      openMs,
      deliveryMs,
      heapBeforeMiB: mib(before.heapUsed),
      heapWithStreamsMiB: mib(during.heapUsed),
      heapDeltaMiB: mib(heapDelta),
      heapPerStreamKiB: Math.round(heapDelta / agentCount / 102.4) / 10,
      rssBeforeMiB: mib(before.rss),
      rssWithStreamsMiB: mib(during.rss),
      rssDeltaMiB: mib(rssDelta),
    };
    process.stdout.write(`commands streams load: ${JSON.stringify(figure)}\n`);
    expect(deliveryMs).toBeLessThan(5_000);
    expect(heapDelta).toBeLessThan(200 * 1024 * 1024);
    expect(rssDelta).toBeLessThan(200 * 1024 * 1024);
    // Nobody else got the command.
    expect(agents.filter((a) => a.received().length > 0)).toEqual([target]);
  }, 180_000);
});
