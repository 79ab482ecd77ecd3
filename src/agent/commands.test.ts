import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import { createServer, type Server } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  API as CommandsAPI,
  CommandSchema,
  DiagnosticSchema,
  State,
  StreamResponseSchema,
  type Diagnostic,
  type ReportRequest,
  type StreamResponse,
} from "../../gen/commands/commands_pb.js";
import { createLogger } from "../shared/log.js";
import { runCommandLoop } from "./commands.js";

let server: Server;
let port: number;

beforeAll(async () => {
  server = createServer((socket) => socket.end());
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as { port: number }).port;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

function command(id: string, kind: Diagnostic["kind"]): StreamResponse {
  return create(StreamResponseSchema, {
    event: { case: "command", value: create(CommandSchema, { id, diagnostic: create(DiagnosticSchema, { kind }), timeout: { seconds: 5n } }) },
  });
}

const keepalive = () =>
  create(StreamResponseSchema, { event: { case: "keepalive", value: { time: { seconds: BigInt(Math.floor(Date.now() / 1000)) } } } });

/** A minimal in-memory commands.API: Stream yields the given events per connection; Report records. */
function fakeDaemon(connections: (StreamResponse[] | ConnectError)[]) {
  const reports: ReportRequest[] = [];
  const allows: string[][] = [];
  let opened = 0;
  const waiters: (() => void)[] = [];
  const transport = createRouterTransport(({ service }) => {
    service(CommandsAPI, {
      async *stream(req, ctx) {
        allows.push([...req.allow]);
        const plan = connections[Math.min(opened++, connections.length - 1)]!;
        if (plan instanceof ConnectError) throw plan;
        for (const event of plan) yield event;
        // Then stay open, as the daemon does, until the agent goes.
        await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve(), { once: true }));
      },
      report(req) {
        reports.push(req);
        for (const w of waiters.splice(0)) w();
        return {};
      },
      submit() {
        throw new ConnectError("not here", Code.Unimplemented);
      },
      get() {
        throw new ConnectError("not here", Code.Unimplemented);
      },
      // biome-ignore lint/correctness/useYield: a stream that fails before its first message
      async *watch() {
        throw new ConnectError("not here", Code.Unimplemented);
      },
      cancel() {
        throw new ConnectError("not here", Code.Unimplemented);
      },
    });
  });
  const until = async (done: () => boolean, timeoutMs = 10_000) => {
    const end = Date.now() + timeoutMs;
    while (!done()) {
      if (Date.now() > end) throw new Error(`timed out; reports: ${JSON.stringify(reports.map((r) => [r.commandId, State[r.state]]))}`);
      await Promise.race([new Promise<void>((resolve) => waiters.push(resolve)), sleep(50)]);
    }
  };
  return { transport, reports, allows, opened: () => opened, until };
}

const finals = (reports: ReportRequest[]) => reports.filter((r) => r.state !== State.RUNNING);

describe("command loop", () => {
  it("runs each streamed command and reports RUNNING, then the result", async () => {
    const daemon = fakeDaemon([
      [
        keepalive(),
        command("c1", { case: "tcpConnect", value: { host: "127.0.0.1", port } } as Diagnostic["kind"]),
        command("c2", { case: "ping", value: { host: "127.0.0.1" } } as Diagnostic["kind"]),
        command("c1", { case: "tcpConnect", value: { host: "127.0.0.1", port } } as Diagnostic["kind"]), // delivered twice: run once
        command("c3", { case: "tcpConnect", value: { host: "$(id)", port } } as Diagnostic["kind"]),
      ],
    ]);
    const controller = new AbortController();
    const loop = runCommandLoop({
      transport: daemon.transport,
      allow: ["connect", "mounts"],
      log: createLogger("silent"),
      signal: controller.signal,
    });
    await daemon.until(() => finals(daemon.reports).length >= 3);
    controller.abort();
    await loop;

    expect(daemon.allows[0]).toEqual(["tcp_connect", "mounts"]);
    const byId = (id: string) => daemon.reports.filter((r) => r.commandId === id);
    expect(byId("c1").map((r) => r.state)).toEqual([State.RUNNING, State.SUCCEEDED]);
    expect(byId("c1")[1]!.output?.data?.connected).toBe(true);
    expect(byId("c2").map((r) => r.state)).toEqual([State.RUNNING, State.FAILED]);
    expect(byId("c2")[1]!.output?.error).toBe("diagnostic ping is not allowed on this agent (--allow tcp_connect,mounts)");
    expect(byId("c3").map((r) => r.state)).toEqual([State.RUNNING, State.FAILED]);
    expect(byId("c3")[1]!.output?.error).toMatch(/^invalid tcp_connect arguments/);
  });

  it("reconnects after the stream fails and runs at most `concurrency` commands at once", async () => {
    const daemon = fakeDaemon([
      new ConnectError("daemon away", Code.Unavailable),
      [
        command("d1", { case: "mounts", value: {} } as Diagnostic["kind"]),
        command("d2", { case: "mounts", value: {} } as Diagnostic["kind"]),
        command("d3", { case: "mounts", value: {} } as Diagnostic["kind"]),
      ],
    ]);
    const controller = new AbortController();
    const loop = runCommandLoop({
      transport: daemon.transport,
      allow: [],
      log: createLogger("silent"),
      signal: controller.signal,
      concurrency: 1,
      backoff: { initialMs: 10, maxMs: 50 },
    });
    await daemon.until(() => finals(daemon.reports).length >= 3);
    controller.abort();
    await loop;
    expect(daemon.opened()).toBeGreaterThanOrEqual(2);
    expect(daemon.allows[1]).toEqual([]);
    // One at a time: each command finishes before the next one starts.
    expect(daemon.reports.map((r) => `${r.commandId}:${State[r.state]}`)).toEqual([
      "d1:RUNNING",
      "d1:SUCCEEDED",
      "d2:RUNNING",
      "d2:SUCCEEDED",
      "d3:RUNNING",
      "d3:SUCCEEDED",
    ]);
  });

  it("refuses an unknown --allow name at once", async () => {
    const daemon = fakeDaemon([[]]);
    await expect(
      runCommandLoop({ transport: daemon.transport, allow: ["shell"], log: createLogger("silent"), signal: new AbortController().signal }),
    ).rejects.toThrow(/unknown diagnostic "shell"/);
  });
});
