/**
 * npm run bench:commands — two daemons (their own processes) on one PostgreSQL: agents stream
 * commands.API/Stream from daemon B while an admin submits commands on daemon A, one at a time,
 * each to a random agent. Prints the submit-to-delivery latency (A's NOTIFY wakes B's stream)
 * and the full round trip (submit on A, delivery on B, Report on B, Watch on A sees it end).
 *
 * Settings (environment): BENCH_AGENTS (default 100) streaming agents, BENCH_COMMANDS (200),
 * BENCH_DATABASE_URL (default: daemon A's embedded PostgreSQL, which B reaches over its socket).
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, totalmem, tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { API as CommandsAPI, DiagnosticSchema, State } from "../gen/commands/commands_pb.js";
import { enrolAgent, FakeAgent } from "../test/support/fake-agent.js";
import { bearer } from "../test/support/rpc.js";
import { listeningUrl, startSpecta, stopSpecta } from "./specta-process.js";

const agentCount = Number(process.env.BENCH_AGENTS ?? 100);
const commandCount = Number(process.env.BENCH_COMMANDS ?? 200);
const externalUrl = process.env.BENCH_DATABASE_URL;

const dir = mkdtempSync(join(tmpdir(), "specta-bench-cmd-"));
chmodSync(dir, 0o711);

/** Starts a daemon with its own data directory; resolves with its URL once it listens. */
async function startDaemon(name: string, databaseUrl: string | undefined): Promise<{ url: string; dataDir: string }> {
  const dataDir = join(dir, name);
  const args = [
    "daemon",
    "--addr",
    "127.0.0.1:0",
    "--data-dir",
    dataDir,
    "--log-level",
    "info",
    ...(databaseUrl ? ["--database-url", databaseUrl] : []),
  ];
  const { line } = await startSpecta(args, /"daemon listening"/);
  return { url: listeningUrl(line), dataDir };
}

const percentile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
const summary = (values: number[]) => {
  const sorted = [...values].sort((x, y) => x - y);
  return `p50 ${percentile(sorted, 0.5).toFixed(1)} ms, p99 ${percentile(sorted, 0.99).toFixed(1)} ms, max ${sorted.at(-1)!.toFixed(1)} ms`;
};

async function main(): Promise<void> {
  const a = await startDaemon("a", externalUrl);
  // Without an external server, B shares A's embedded PostgreSQL through its unix socket.
  const sharedUrl = externalUrl ?? `postgres://postgres@localhost/specta?host=${encodeURIComponent(join(a.dataDir, "postgres"))}`;
  const b = await startDaemon("b", sharedUrl);
  const adminToken = readFileSync(join(a.dataDir, "admin.token"), "utf8").trim();
  const enrollToken = readFileSync(join(a.dataDir, "enroll.token"), "utf8").trim();

  const onB = createGrpcTransport({ baseUrl: b.url });
  const agents: FakeAgent[] = [];
  for (let i = 0; i < agentCount; i += 50) {
    const batch = await Promise.all(Array.from({ length: Math.min(50, agentCount - i) }, (_, j) => enrolAgent(a.url, enrollToken, `bench-${i + j}`)));
    agents.push(...batch.map((e) => new FakeAgent(b.url, e.agentId, e.credential, onB)));
  }
  await Promise.all(agents.map((agent) => agent.open([], { authorization: `Bearer ${agent.credential}` })));

  const admin = createClient(CommandsAPI, createGrpcTransport({ baseUrl: a.url, interceptors: [bearer(adminToken)] }));
  const diagnostic = create(DiagnosticSchema, { kind: { case: "mounts", value: {} } });
  const delivery: number[] = [];
  const roundTrip: number[] = [];
  for (let i = 0; i < commandCount; i++) {
    const agent = agents[Math.floor(Math.random() * agents.length)]!;
    const sent = performance.now();
    const sentAt = Date.now();
    const { commands } = await admin.submit({ target: { case: "agent", value: agent.agentId }, diagnostic });
    const id = commands[0]!.commandId;
    // Watching from before the delivery, so that the end of the command is seen as it happens.
    const watched = (async () => {
      for await (const change of admin.watch({ commandId: id })) if (change.command?.state === State.SUCCEEDED) return;
      throw new Error(`the watch of ${id} ended before the command succeeded`);
    })();
    watched.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile
    const { at } = await agent.nextCommand(id, 10_000);
    delivery.push(at - sentAt);
    await agent.commands.report(
      { commandId: id, state: State.SUCCEEDED, output: { text: "ok" } },
      { headers: { authorization: `Bearer ${agent.credential}` } },
    );
    await watched;
    roundTrip.push(performance.now() - sent);
  }
  for (const agent of agents) agent.close();

  console.log(`machine: ${cpus()[0]?.model} x${cpus().length}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.versions.node}`);
  console.log(
    `database: ${externalUrl ? "external PostgreSQL" : "daemon A's embedded PostgreSQL"}, shared by daemons A and B; clients on the same machine`,
  );
  console.log(`load: ${agentCount} agents streaming from daemon B, ${commandCount} commands submitted on daemon A one at a time`);
  console.log(`delivery (Submit on A until the command arrives on B's stream): ${summary(delivery)}`);
  console.log(`round trip (Submit on A, Report on B, Watch on A sees SUCCEEDED): ${summary(roundTrip)}`);
  console.log(`within 1 s: ${delivery.filter((ms) => ms < 1_000).length} of ${delivery.length} deliveries`);
}

async function stopAll(): Promise<void> {
  // B first (the last started): A owns the embedded PostgreSQL that B uses.
  await stopSpecta();
  rmSync(dir, { recursive: true, force: true });
}

main().then(stopAll, async (err: unknown) => {
  console.error(err);
  await stopAll();
  process.exit(1);
});
