import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, type Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API as AgentAPI, HostSchema } from "../../gen/agent/agent_pb.js";
import { API as CommandsAPI, DiagnosticSchema, State, type Diagnostic, type StreamResponse } from "../../gen/commands/commands_pb.js";
import { inMemoryClient, storagePerFile } from "../../test/support/in-memory.js";
import { codeOf } from "../../test/support/rpc.js";
import { enrollTokenChecker } from "../fleet/enroll-token.js";
import { AgentLiveness } from "../fleet/liveness.js";
import { agentService } from "../fleet/service.js";
import { createLogger } from "../shared/log.js";
import type { Principal } from "../tokens/tokens.js";
import { TokenStore } from "../tokens/tokens.js";
import { startCommands, type CommandsRuntime } from "./hub.js";
import { commandLimits } from "./validate.js";
import { commandsService } from "./service.js";

const enrollToken = "specta_enroll_service_test";
const ping = (host = "127.0.0.1"): Diagnostic => create(DiagnosticSchema, { kind: { case: "ping", value: { host, count: 1 } } });
const mounts = (): Diagnostic => create(DiagnosticSchema, { kind: { case: "mounts", value: {} } });

describe("commands.API's handlers, in memory", () => {
  const storage = storagePerFile();
  const log = createLogger("silent");
  const shutdown = new AbortController();
  let tokens: TokenStore;
  let runtime: CommandsRuntime;
  let admin: Principal;
  let hostCount = 0;
  const as = (caller: Principal | undefined): Client<typeof CommandsAPI> =>
    inMemoryClient(CommandsAPI, commandsService({ db: storage().db, hub: runtime.hub, shutdown: shutdown.signal }), caller);

  /** Enrols a new agent through agent.API (in memory too); its credential's principal. */
  const enrol = async (labels: Record<string, string> = {}): Promise<Principal & { hostname: string }> => {
    const fleet = inMemoryClient(
      AgentAPI,
      agentService({ db: storage().db, tokens, checkEnrollToken: enrollTokenChecker(enrollToken), liveness: new AgentLiveness(), log }),
    );
    const hostname = `host-${++hostCount}`;
    const { credential } = await fleet.register({ enrollToken, host: create(HostSchema, { hostname }), labels });
    return { ...(await tokens.verify(credential))!, hostname };
  };

  /** An agent's open stream: take() answers its next message; close() ends it as the agent would. */
  const openStream = (agent: Principal, allow: string[] = []) => {
    const left = new AbortController();
    const messages = as(agent).stream({ allow }, { signal: left.signal })[Symbol.asyncIterator]();
    return {
      take: async (): Promise<StreamResponse["event"]> => (await messages.next()).value?.event,
      /** The next command, past keepalives. */
      async command() {
        for (;;) {
          const event = await this.take();
          if (event?.case === "command") return event.value;
          if (event === undefined) throw new Error("the stream ended");
        }
      },
      close: () => left.abort(),
    };
  };

  beforeAll(async () => {
    tokens = new TokenStore(storage().db);
    runtime = await startCommands(storage().db, storage().pool, log, tokens, { keepaliveMs: 200, recheckMs: 30_000 });
    admin = (await tokens.verify((await tokens.create("admin", "admin")).token))!;
  });
  afterAll(async () => {
    shutdown.abort();
    await runtime?.stop();
  });

  it("refuses a submission without a target or agents to reach, with a bad diagnostic or timing, and queues nothing", async () => {
    const agent = await enrol({ role: "web" });
    const refused: [string, () => Promise<unknown>, Code][] = [
      ["no target", () => as(admin).submit({ diagnostic: ping() }), Code.InvalidArgument],
      ["an empty agent", () => as(admin).submit({ target: { case: "agent", value: "  " }, diagnostic: ping() }), Code.InvalidArgument],
      [
        "an empty selector",
        () => as(admin).submit({ target: { case: "selector", value: { labels: {} } }, diagnostic: ping() }),
        Code.InvalidArgument,
      ],
      ["an unknown agent", () => as(admin).submit({ target: { case: "agent", value: "no-such-host" }, diagnostic: ping() }), Code.NotFound],
      [
        "a selector nobody matches",
        () => as(admin).submit({ target: { case: "selector", value: { labels: { role: "none" } } }, diagnostic: ping() }),
        Code.NotFound,
      ],
      ["no diagnostic", () => as(admin).submit({ target: { case: "agent", value: agent.hostname } }), Code.InvalidArgument],
      [
        "a hostile host",
        () => as(admin).submit({ target: { case: "agent", value: agent.hostname }, diagnostic: ping("; rm -rf /") }),
        Code.InvalidArgument,
      ],
      [
        "a timeout over the limit",
        () =>
          as(admin).submit({
            target: { case: "agent", value: agent.hostname },
            diagnostic: ping(),
            timeout: durationFromMs(commandLimits.maxTimeoutMs + 1000),
          }),
        Code.InvalidArgument,
      ],
    ];
    for (const [what, call, code] of refused) expect(await codeOf(call()), what).toBe(code);
    const stream = openStream(agent);
    expect((await stream.take())?.case).toBe("keepalive");
    // Nothing was queued: the next event is a keepalive, not a command.
    expect((await stream.take())?.case).toBe("keepalive");
    stream.close();
  });

  it("sends a keepalive due within half an interval with an answer to its agent, and takes no command for it", async () => {
    // A hub of its own with a longer interval, so that "early" is clear of the scheduler's jitter.
    const keepaliveMs = 3_000;
    const own = await startCommands(storage().db, storage().pool, log, tokens, { keepaliveMs, recheckMs: 30_000 });
    const { hub } = own;
    const agent = await enrol();
    const left = new AbortController();
    const service = commandsService({ db: storage().db, hub, shutdown: shutdown.signal });
    const messages = inMemoryClient(CommandsAPI, service, agent).stream({ allow: [] }, { signal: left.signal })[Symbol.asyncIterator]();
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms, "quiet"));
    try {
      expect((await messages.next()).value?.event.case).toBe("keepalive");
      const next = messages.next();
      // Just after a keepalive, an answer brings nothing forward.
      hub.answering(agent.agentId!);
      expect(await Promise.race([next.then(() => "keepalive"), sleep(keepaliveMs * 0.6)])).toBe("quiet");
      const asked = Date.now();
      hub.answering(agent.agentId!);
      expect((await next).value?.event.case).toBe("keepalive");
      // The timer's keepalive would have come 0.4 of an interval later.
      expect(Date.now() - asked).toBeLessThan(keepaliveMs * 0.3);
    } finally {
      left.abort();
      await own.stop();
    }
  });

  it("queues for an agent by id or hostname and for every agent a selector matches, each its own command", async () => {
    const [a, b] = [await enrol({ team: "db" }), await enrol({ team: "db" })];
    const byHostname = await as(admin).submit({ target: { case: "agent", value: a.hostname }, diagnostic: ping() });
    const byId = await as(admin).submit({ target: { case: "agent", value: b.agentId!.toUpperCase() }, diagnostic: ping() });
    expect(byHostname.commands.map((c) => [c.agentId, c.agentOnline])).toEqual([[a.agentId, false]]);
    expect(byId.commands.map((c) => c.agentId)).toEqual([b.agentId]);
    const bySelector = await as(admin).submit({ target: { case: "selector", value: { labels: { team: "db" } } }, diagnostic: ping() });
    expect(bySelector.commands.map((c) => c.agentId).sort()).toEqual([a.agentId, b.agentId].sort());
    expect(new Set(bySelector.commands.map((c) => c.commandId)).size).toBe(2);
    for (const { commandId } of [...byHostname.commands, ...bySelector.commands]) {
      expect((await as(admin).get({ commandId })).command?.state).toBe(State.QUEUED);
    }
  });

  it("delivers a command on its agent's stream, and records the agent's reports until it ends", async () => {
    const agent = await enrol();
    const stream = openStream(agent);
    expect((await stream.take())?.case).toBe("keepalive");
    const [submitted] = (await as(admin).submit({ target: { case: "agent", value: agent.hostname }, diagnostic: ping() })).commands;
    expect(submitted?.agentOnline).toBe(true);
    const commandId = submitted!.commandId;
    const delivered = await stream.command();
    expect(delivered).toMatchObject({ id: commandId, agentId: agent.agentId, state: State.DELIVERED, diagnostic: ping() });

    const watched: State[] = [];
    const watching = (async () => {
      for await (const { command } of as(admin).watch({ commandId })) watched.push(command!.state);
    })();
    await as(agent).report({ commandId, state: State.RUNNING });
    expect((await as(admin).get({ commandId })).command?.state).toBe(State.RUNNING);
    await as(agent).report({ commandId, state: State.SUCCEEDED, output: { text: "1 packets transmitted, 1 received" } });
    expect((await as(admin).get({ commandId })).command).toMatchObject({
      state: State.SUCCEEDED,
      output: { text: "1 packets transmitted, 1 received", truncated: false },
    });
    await watching;
    expect(watched.at(-1)).toBe(State.SUCCEEDED);
    // An ended command takes no more reports.
    expect(await codeOf(as(agent).report({ commandId, state: State.FAILED }))).toBe(Code.FailedPrecondition);
    stream.close();
  });

  it("refuses reports that are not an agent's, of unknown or undelivered commands, or of a state an agent cannot set", async () => {
    const agent = await enrol();
    const other = await enrol();
    const [queued] = (await as(admin).submit({ target: { case: "agent", value: agent.hostname }, diagnostic: ping() })).commands;
    const commandId = queued!.commandId;
    expect(await codeOf(as(admin).report({ commandId, state: State.RUNNING }))).toBe(Code.PermissionDenied);
    expect(await codeOf(as(agent).report({ commandId: "not-an-id", state: State.RUNNING }))).toBe(Code.InvalidArgument);
    expect(await codeOf(as(agent).report({ commandId, state: State.QUEUED }))).toBe(Code.InvalidArgument);
    expect(await codeOf(as(agent).report({ commandId, state: State.RUNNING }))).toBe(Code.FailedPrecondition);
    // Another agent's command is none of its business.
    expect(await codeOf(as(other).report({ commandId, state: State.RUNNING }))).toBe(Code.NotFound);
  });

  it("cuts an agent's output at the contract's limit and says so", async () => {
    const agent = await enrol();
    const stream = openStream(agent);
    const [submitted] = (await as(admin).submit({ target: { case: "agent", value: agent.hostname }, diagnostic: mounts() })).commands;
    const { id } = await stream.command();
    await as(agent).report({ commandId: id, state: State.SUCCEEDED, output: { text: "é".repeat(commandLimits.maxOutputBytes), error: "" } });
    const { command } = await as(admin).get({ commandId: submitted!.commandId });
    expect(command?.output?.truncated).toBe(true);
    expect(Buffer.byteLength(command!.output!.text)).toBe(commandLimits.maxOutputBytes);
    stream.close();
  });

  it("fails at once, without sending it, a command that the agent's stream does not allow", async () => {
    const agent = await enrol();
    const stream = openStream(agent, ["ping"]);
    const [refused] = (await as(admin).submit({ target: { case: "agent", value: agent.hostname }, diagnostic: mounts() })).commands;
    const [allowed] = (await as(admin).submit({ target: { case: "agent", value: agent.hostname }, diagnostic: ping() })).commands;
    expect((await stream.command()).id).toBe(allowed!.commandId);
    expect((await as(admin).get({ commandId: refused!.commandId })).command?.state).toBe(State.FAILED);
    stream.close();
    expect(
      await codeOf(
        as(agent)
          .stream({ allow: ["shell"] })
          [Symbol.asyncIterator]()
          .next(),
      ),
    ).toBe(Code.InvalidArgument);
  });

  it("cancels a queued command, and answers NotFound for one that does not exist", async () => {
    const agent = await enrol();
    const [queued] = (await as(admin).submit({ target: { case: "agent", value: agent.hostname }, diagnostic: ping() })).commands;
    expect((await as(admin).cancel({ commandId: queued!.commandId })).command?.state).toBe(State.CANCELLED);
    const unknown = "00000000-0000-4000-8000-000000000000";
    expect(await codeOf(as(admin).get({ commandId: unknown }))).toBe(Code.NotFound);
    expect(await codeOf(as(admin).cancel({ commandId: unknown }))).toBe(Code.NotFound);
    expect(await codeOf(as(admin).get({ commandId: "42" }))).toBe(Code.InvalidArgument);
  });
});
