/**
 * A fake host agent for the command tests: enrols through agent.API/Register with the daemon's
 * enrolment token, opens commands.API/Stream with its own credential and reports what the test
 * tells it to.
 */
import { create } from "@bufbuild/protobuf";
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { API as AgentAPI, HostSchema } from "../../gen/agent/agent_pb.js";
import { API as CommandsAPI, type Command, type Output, type State, type StreamResponse } from "../../gen/commands/commands_pb.js";
import { readEnrollToken } from "../../src/fleet/enroll-token.js";
import { bearer } from "./rpc.js";

/** Enrols an agent; returns its id and credential. */
export async function enrolAgent(
  url: string,
  enrollToken: string,
  hostname: string,
  labels: Record<string, string> = {},
  transport?: Transport,
): Promise<{ agentId: string; credential: string }> {
  const agents = createClient(AgentAPI, transport ?? createGrpcTransport({ baseUrl: url }));
  return agents.register({ enrollToken, host: create(HostSchema, { hostname, os: "linux" }), labels, agentVersion: "test" });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class FakeAgent {
  readonly events: { at: number; event: StreamResponse }[] = [];
  /** Set when the stream ended (undefined error: ended cleanly). */
  ended: { error: unknown } | undefined;
  private controller: AbortController | undefined;
  readonly commands: Client<typeof CommandsAPI>;

  constructor(
    readonly url: string,
    readonly agentId: string,
    readonly credential: string,
    transport?: Transport,
  ) {
    this.commands = createClient(CommandsAPI, transport ?? createGrpcTransport({ baseUrl: url, interceptors: [bearer(credential)] }));
  }

  static async enrol(url: string, dataDir: string, hostname: string, labels: Record<string, string> = {}): Promise<FakeAgent> {
    const { agentId, credential } = await enrolAgent(url, readEnrollToken(dataDir)!, hostname, labels);
    return new FakeAgent(url, agentId, credential);
  }

  /** The same agent (same credential) talking to another daemon. */
  on(url: string): FakeAgent {
    return new FakeAgent(url, this.agentId, this.credential);
  }

  /** Opens the stream; resolves at its first keepalive (the daemon has registered it). */
  async open(allow: string[] = [], headers?: Record<string, string>): Promise<void> {
    this.controller = new AbortController();
    this.ended = undefined;
    const stream = this.commands.stream({ allow }, { signal: this.controller.signal, ...(headers ? { headers } : {}) });
    const first = this.events.length;
    void (async () => {
      try {
        for await (const event of stream) this.events.push({ at: Date.now(), event });
        this.ended = { error: undefined };
      } catch (error) {
        this.ended = { error };
      }
    })();
    await this.until(() => this.events.length > first || this.ended !== undefined, 10_000, "the stream's first keepalive");
    const ended = this.ended as { error: unknown } | undefined;
    if (ended) throw (ended.error as Error | undefined) ?? new Error("the stream ended at once");
  }

  close(): void {
    this.controller?.abort();
  }

  received(): Command[] {
    return this.events.flatMap((e) => (e.event.event.case === "command" ? [e.event.event.value] : []));
  }

  keepalives(): number {
    return this.events.filter((e) => e.event.event.case === "keepalive").length;
  }

  /** Waits for a command with this id (or any new one) on the stream. */
  async nextCommand(id?: string, timeoutMs = 5_000): Promise<{ command: Command; at: number }> {
    let found: { command: Command; at: number } | undefined;
    await this.until(
      () => {
        for (const e of this.events) {
          if (e.event.event.case === "command" && (id === undefined || e.event.event.value.id === id)) {
            found = { command: e.event.event.value, at: e.at };
            return true;
          }
        }
        return false;
      },
      timeoutMs,
      `command ${id ?? "(any)"}`,
    );
    return found!;
  }

  report(commandId: string, state: State, output?: Partial<Omit<Output, "$typeName">>) {
    return this.commands.report({ commandId, state, ...(output ? { output } : {}) });
  }

  async until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!check()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await sleep(5);
    }
  }
}
