/**
 * Daemons behind a load balancer, proven (issue 16): three `specta daemon` processes on one
 * PostgreSQL behind Debian's HAProxy, configured from deploy/haproxy.cfg. Real `specta agent`
 * processes, agents counting their acknowledged samples (the agent's own spool and sender), a
 * Submit client and query clients all go through the balancer. One daemon is killed with -9 and
 * started again; another is stopped with SIGTERM and drains. Checked: the agents' command streams
 * resume on another daemon, commands submitted meanwhile arrive, no acknowledged sample is lost
 * or doubled, the runs of each leader-only job never overlap across daemons and go on while one is
 * dead, and a draining daemon answers 503 on /health/ready while still serving until HAProxy has
 * taken it out, so that no query through the balancer fails.
 *
 * Skipped (with a message) without /usr/sbin/haproxy, except in CI (CI=true).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API as CommandsAPI, State } from "../gen/commands/commands_pb.js";
import { API as MetricsAPI } from "../gen/metrics/metrics_pb.js";
import { createLogger } from "../src/shared/log.js";
import { adminTokenOf, freePort, repoRoot, RestartableDaemon, spawnSpecta, tempDir, type LogLine, type SpectaProcess } from "./support/daemon.js";
import { enrolAgent } from "./support/fake-agent.js";
import { CountingAgent, countStored, until } from "./support/faults.js";
import { createTestDatabase, type TestDatabase } from "./support/postgres.js";
import { findSamples, scrape } from "./support/prometheus.js";
import { bearer } from "./support/rpc.js";

const haproxyBinary = "/usr/sbin/haproxy";
const missing = !existsSync(haproxyBinary);
if (missing) {
  const message = "the load-balancer test needs /usr/sbin/haproxy (Debian package haproxy; .ci/run installs it)";
  if (process.env.CI === "true") throw new Error(`${message} (CI=true: not skipping)`);
  console.warn(`SKIPPED: ${message}`);
}

const log = createLogger("silent");
/** Long enough for HAProxy (checks every second, down after two failures) to take a draining daemon out. */
const drainMs = 5_000;

/** deploy/haproxy.cfg with the test's listening address, its three daemons and a stats socket. */
function haproxyConfig(lbPort: number, daemonPorts: number[], statsSocket: string): string {
  const template = readFileSync(join(repoRoot, "deploy", "haproxy.cfg"), "utf8");
  const servers = daemonPorts.map((port, i) => `    server specta-${i + 1} 127.0.0.1:${port} check`).join("\n");
  const config = template
    .replace(/^global\n/m, `global\n    stats socket ${statsSocket} mode 600 level admin\n`)
    .replace(/^(\s+)bind :7777$/m, `$1bind 127.0.0.1:${lbPort}`)
    .replace(/(^\s+server specta-\d .*\n)+/m, `${servers}\n`);
  expect(config).toContain(`bind 127.0.0.1:${lbPort}`);
  expect(config.match(/^\s+server /gm)).toHaveLength(daemonPorts.length);
  return config;
}

/** HAProxy's view of each server of the daemons backend (UP, DOWN, …), from `show stat` on its socket. */
function serverStates(statsSocket: string): Promise<Map<string, string>> {
  return new Promise((resolve, reject) => {
    let text = "";
    const socket = connect(statsSocket, () => socket.end("show stat\n"));
    socket.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
    socket.on("error", reject);
    socket.on("close", () => {
      const [header, ...rows] = text.trim().split("\n");
      const columns = header!.replace(/^# /, "").split(",");
      const at = (name: string) => columns.indexOf(name);
      const states = new Map<string, string>();
      for (const row of rows.map((r) => r.split(","))) {
        if (row[at("pxname")] === "daemons" && row[at("svname")] !== "BACKEND") states.set(row[at("svname")]!, row[at("status")]!.split(" ")[0]!);
      }
      resolve(states);
    });
  });
}

/** A loop of calls that records each failure with its time, until stopped. */
class CallLoop {
  readonly failures: { at: number; error: string }[] = [];
  calls = 0;
  private running = true;
  private readonly done: Promise<void>;

  constructor(call: () => Promise<unknown>, everyMs: number) {
    this.done = (async () => {
      while (this.running) {
        try {
          await call();
        } catch (err) {
          this.failures.push({ at: Date.now(), error: ConnectError.from(err).message });
        }
        this.calls++;
        await sleep(everyMs);
      }
    })();
  }

  failuresBetween(from: number, to: number) {
    return this.failures.filter((f) => f.at >= from && f.at <= to);
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }
}

describe.skipIf(missing)("three daemons on one PostgreSQL behind HAProxy", () => {
  const dir = tempDir("specta-lb-");
  const enrollToken = `specta-lb-test-${Date.now()}-enroll`;
  let database: TestDatabase;
  let sql: pg.Client;
  const daemons: RestartableDaemon[] = [];
  /** Every process any daemon ran, killed ones included, for their logs. */
  const incarnations: SpectaProcess[] = [];
  const realAgents: SpectaProcess[] = [];
  let haproxy: ChildProcess | undefined;
  let haproxyOutput = "";
  let lbUrl = "";
  let lbPort = 0;
  let statsSocket = "";
  let commands: Client<typeof CommandsAPI>;

  const start = async (daemon: RestartableDaemon) => incarnations.push(await daemon.start());
  const daemonIdOf = (proc: SpectaProcess) => String(proc.logs().find((l) => l.message === "daemon listening")!.daemonId);
  /** The daemon (index) holding a hostname's command stream now, per agent_streams. */
  const streamHolder = async (hostname: string): Promise<number | undefined> => {
    const { rows } = await sql.query<{ daemon_id: string }>(
      "SELECT s.daemon_id FROM agent_streams s JOIN agents a ON a.id = s.agent_id WHERE a.hostname = $1 AND a.deregistered IS NULL",
      [hostname],
    );
    const id = rows[0]?.daemon_id;
    const index = daemons.findIndex((d) => d.proc.child.exitCode === null && d.proc.child.signalCode === null && daemonIdOf(d.proc) === id);
    return index < 0 ? undefined : index;
  };
  /** Submits a tcp_connect through the balancer, retrying a call cut by a dying daemon (a client's part). */
  const submit = async (hostname: string): Promise<string> => {
    for (let attempt = 1; ; attempt++) {
      try {
        const res = await commands.submit({
          target: { case: "agent", value: hostname },
          diagnostic: { kind: { case: "tcpConnect", value: { host: "127.0.0.1", port: lbPort } } },
          timeout: durationFromMs(10_000),
          ttl: durationFromMs(120_000),
        });
        return res.commands[0]!.commandId;
      } catch (err) {
        // Node's HTTP/2 client ends the streams of a session that dies under them with CANCEL.
        if (![Code.Unavailable, Code.Canceled].includes(ConnectError.from(err).code) || attempt >= 5) throw err;
        await sleep(500);
      }
    }
  };
  const stateOf = async (commandId: string): Promise<State> => {
    const { rows } = await sql.query<{ state: string }>("SELECT state FROM commands WHERE id = $1", [commandId]);
    return { succeeded: State.SUCCEEDED, failed: State.FAILED, expired: State.EXPIRED }[rows[0]?.state ?? ""] ?? State.QUEUED;
  };
  const arrives = (commandId: string) => until(async () => (await stateOf(commandId)) === State.SUCCEEDED, 60_000, `command ${commandId} to succeed`);

  beforeAll(async () => {
    database = await createTestDatabase();
    sql = new pg.Client({ connectionString: database.url });
    await sql.connect();
    const env = {
      SPECTA_DATABASE_URL: database.url,
      SPECTA_ENROLL_TOKEN: enrollToken,
      SPECTA_LOG_LEVEL: "debug",
      SPECTA_SHUTDOWN_DRAIN: `${drainMs}ms`,
    };
    for (let i = 0; i < 3; i++) daemons.push(new RestartableDaemon(join(dir.path, `daemon-${i + 1}`), await freePort(), env));
    // One after the other: the first migrates the new database.
    for (const daemon of daemons) await start(daemon);

    lbPort = await freePort();
    lbUrl = `http://127.0.0.1:${lbPort}`;
    statsSocket = join(dir.path, "haproxy.sock");
    const configFile = join(dir.path, "haproxy.cfg");
    writeFileSync(
      configFile,
      haproxyConfig(
        lbPort,
        daemons.map((d) => d.port),
        statsSocket,
      ),
    );
    haproxy = spawn(haproxyBinary, ["-db", "-f", configFile], { stdio: ["ignore", "pipe", "pipe"] });
    haproxy.stdout!.setEncoding("utf8").on("data", (c: string) => (haproxyOutput += c));
    haproxy.stderr!.setEncoding("utf8").on("data", (c: string) => (haproxyOutput += c));
    await until(
      async () => {
        if (haproxy!.exitCode !== null) throw new Error("HAProxy exited");
        return existsSync(statsSocket) && (await serverStates(statsSocket)).size === 3;
      },
      10_000,
      "HAProxy's stats socket",
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${haproxyOutput}`);
    });
    await until(
      async () => existsSync(statsSocket) && [...(await serverStates(statsSocket)).values()].filter((s) => s === "UP").length === 3,
      20_000,
      "HAProxy to see the three daemons up",
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${haproxyOutput}`);
    });
    commands = createClient(CommandsAPI, createGrpcTransport({ baseUrl: lbUrl, interceptors: [bearer(adminTokenOf(daemons[0]!.dataDir))] }));
  }, 120_000);

  afterAll(async () => {
    for (const agent of realAgents) await agent.cleanup();
    haproxy?.kill("SIGKILL");
    for (const daemon of daemons) await daemon.stop().catch(() => undefined);
    for (const proc of incarnations) await proc.cleanup();
    await sql?.end();
    await database?.drop();
    dir.remove();
  });

  it("keeps agents, commands, samples and leader-only jobs whole across a kill -9 and a drain", async () => {
    // Real agents, through the balancer.
    // Started one after the other before anything else goes through the balancer: with leastconn, one on each daemon.
    const hosts = ["lb-agent-1", "lb-agent-2", "lb-agent-3"];
    for (const hostname of hosts) {
      mkdirSync(join(dir.path, hostname));
      realAgents.push(
        spawnSpecta(["agent", "--server", lbUrl, "--state-dir", join(dir.path, hostname), "--hostname", hostname], {
          SPECTA_ENROLL_TOKEN: enrollToken,
          SPECTA_LOG_LEVEL: "info",
        }),
      );
    }
    for (const hostname of hosts) await until(async () => (await streamHolder(hostname)) !== undefined, 30_000, `${hostname}'s command stream`);
    for (const hostname of hosts) await arrives(await submit(hostname));

    // Agents that count what the daemons acknowledged, through the balancer.
    const t0 = Date.now() - 60_000;
    const counting: CountingAgent[] = [];
    for (let a = 0; a < 3; a++) {
      const host = `lb-counting-${a}`;
      const { credential } = await enrolAgent(lbUrl, enrollToken, host);
      counting.push(new CountingAgent(host, credential, lbUrl, join(dir.path, host), { series: 20, ticksPerBatch: 10, queuedBatches: 2 }, t0, log));
    }
    for (const agent of counting) agent.start();
    const acknowledgedAgain = async (what: string) => {
      const before = counting.map((a) => a.acknowledged);
      await until(() => counting.every((a, i) => a.acknowledged > before[i]!), 60_000, `every counting agent acknowledged ${what}`);
    };
    await acknowledgedAgain("at first");

    // Query clients through the balancer: gRPC on one HTTP/2 session, and Connect over HTTP/1.1.
    const admin = adminTokenOf(daemons[0]!.dataDir);
    const query = (client: Client<typeof MetricsAPI>) => () =>
      client.query({ metric: "faults_points", start: timestampFromMs(t0), end: timestampFromMs(Date.now()), step: { seconds: 3600n } });
    // A stream the server refused unprocessed (REFUSED_STREAM) may be sent again (RFC 9113, 8.7), as
    // HTTP/2 clients do; the daemon's two-step GOAWAY makes it rare, connect-node does not retry it.
    let refusedStreams = 0;
    const grpcQuery = query(createClient(MetricsAPI, createGrpcTransport({ baseUrl: lbUrl, interceptors: [bearer(admin)] })));
    const grpcQueries = new CallLoop(
      () =>
        grpcQuery().catch((err: unknown) => {
          if (!String(err).includes("REFUSED_STREAM")) throw err;
          refusedStreams++;
          return grpcQuery();
        }),
      100,
    );
    const http1Queries = new CallLoop(
      query(createClient(MetricsAPI, createConnectTransport({ baseUrl: lbUrl, httpVersion: "1.1", interceptors: [bearer(admin)] }))),
      100,
    );

    // kill -9 of the daemon that holds a real agent's command stream and takes the most pushes now.
    const holders = new Set<number>();
    for (const hostname of hosts) holders.add((await streamHolder(hostname))!);
    const pushes = async () => {
      const counts: number[] = [];
      for (const d of daemons) {
        const samples = findSamples(await scrape(d.url), "specta_rpc_requests_total", { code: "ok" });
        counts.push(samples.filter((x) => x.labels.procedure?.endsWith("Push")).reduce((n, x) => n + x.value, 0));
      }
      return counts;
    };
    const before = await pushes();
    await sleep(1_000);
    const perDaemon = (await pushes()).map((n, i) => n - before[i]!);
    const victim = [...holders].sort((a, b) => perDaemon[b]! - perDaemon[a]!)[0]!;
    expect(perDaemon[victim]).toBeGreaterThan(0);
    const killedAt = Date.now();
    await daemons[victim]!.kill();
    // Submitted while it is dead: they arrive once each agent's stream is back (on a survivor, through the balancer).
    const meanwhile: string[] = [];
    for (const hostname of hosts) meanwhile.push(await submit(hostname));
    for (const id of meanwhile) await arrives(id);
    const commandsBackMs = Date.now() - killedAt;
    for (const hostname of hosts) {
      const holder = await streamHolder(hostname);
      expect(holder, `${hostname}'s stream`).not.toBeUndefined();
      expect(holder).not.toBe(victim);
    }
    await acknowledgedAgain("with one daemon dead");
    await until(async () => (await serverStates(statsSocket)).get(`specta-${victim + 1}`) === "DOWN", 10_000, "HAProxy to take the dead daemon out");
    // The leader-only jobs go on without it: a command-expiry run on a survivor after the kill.
    await until(() => leaderRuns().some((r) => r.handler === "command-expiry" && r.startedAt > killedAt), 10_000, "a leader-only run on a survivor");

    // Started again: HAProxy sends to it again.
    const restartedAt = Date.now();
    await start(daemons[victim]!);
    await until(async () => (await serverStates(statsSocket)).get(`specta-${victim + 1}`) === "UP", 20_000, "HAProxy to take the daemon back");
    await acknowledgedAgain("after the restart");
    for (const hostname of hosts) await arrives(await submit(hostname));
    // Queries failed, if at all, only while the killed daemon's connections were cut, never after the restart.
    expect(grpcQueries.failuresBetween(restartedAt, Date.now())).toEqual([]);
    expect(http1Queries.failuresBetween(restartedAt, Date.now())).toEqual([]);

    // SIGTERM drains: a daemon holding a real agent's stream stops taking new work but serves until HAProxy has taken it out.
    let drainedHost = "";
    let drained = -1;
    for (const hostname of hosts) {
      const holder = await streamHolder(hostname);
      if (holder !== undefined) [drainedHost, drained] = [hostname, holder];
    }
    const proc = daemons[drained]!.proc;
    const drainStart = Date.now();
    proc.child.kill("SIGTERM");
    const direct = `http://127.0.0.1:${daemons[drained]!.port}`;
    await until(async () => (await fetch(`${direct}/health/ready`)).status === 503, 2_000, "/health/ready to answer 503");
    expect(await (await fetch(`${direct}/health/ready`)).json()).toEqual({ status: "not ready", failing: ["stopping"] });
    expect((await fetch(`${direct}/version`)).status).toBe(200); // still serving
    await until(
      async () => (await serverStates(statsSocket)).get(`specta-${drained + 1}`) === "DOWN",
      drainMs,
      "HAProxy to take the draining daemon out",
    );
    const outOfBalancerMs = Date.now() - drainStart;
    // Its open streams are still served: a command submitted now reaches the agent through it.
    const duringDrain = await submit(drainedHost);
    await arrives(duringDrain);
    expect(proc.logs().some((l) => l.message === "daemon stopping")).toBe(false);
    expect((await proc.exited).code).toBe(0);
    await start(daemons[drained]!);
    await until(
      async () => (await serverStates(statsSocket)).get(`specta-${drained + 1}`) === "UP",
      20_000,
      "HAProxy to take the drained daemon back",
    );
    // The agent's stream moved when the drained daemon closed it, and commands still reach it.
    await arrives(await submit(drainedHost));
    await sleep(500);
    await grpcQueries.stop();
    await http1Queries.stop();
    // Not one query failed from the SIGTERM on: the balancer stopped sending before the port closed.
    expect(grpcQueries.failuresBetween(drainStart, Date.now())).toEqual([]);
    expect(http1Queries.failuresBetween(drainStart, Date.now())).toEqual([]);
    expect(grpcQueries.calls + http1Queries.calls).toBeGreaterThan(20);

    // Every acknowledged sample is stored once.
    await Promise.all(counting.map((a) => a.finish(90_000)));
    const figures = await countStored(lbUrl, admin, counting, t0);
    const generated = counting.reduce((n, a) => n + a.generated, 0);
    expect(counting.reduce((n, a) => n + a.givenUp, 0)).toBe(0);
    expect(figures).toEqual({ stored: generated, lost: 0, doubled: 0, valuesMatch: true });
    // The kill did cut pushes in flight, which were sent again.
    expect(counting.reduce((n, a) => n + a.sender.failedPushes, 0)).toBeGreaterThan(0);
    console.info(
      JSON.stringify({
        samplesStored: figures.stored,
        pushesRetried: counting.reduce((n, a) => n + a.sender.failedPushes, 0),
        queries: grpcQueries.calls + http1Queries.calls,
        queriesFailedAtTheKill: grpcQueries.failures.length + http1Queries.failures.length,
        refusedStreamsSentAgain: refusedStreams,
        commandsBackAfterKillMs: commandsBackMs,
        drainedDaemonOutOfBalancerMs: outOfBalancerMs,
      }),
    );

    // The real agents never stopped: both still stream, from a daemon that runs.
    for (const agent of realAgents) expect(agent.child.exitCode).toBeNull();
    for (const hostname of hosts) expect(await streamHolder(hostname)).not.toBeUndefined();

    // One daemon at a time ran each leader-only job, throughout: their runs never overlap.
    const runs = leaderRuns();
    const handlers = new Set(runs.map((r) => r.handler));
    expect([...handlers].sort()).toEqual(expect.arrayContaining(["command-expiry", "tsdb-compaction", "tsdb-retention"]));
    for (const handler of handlers) {
      const sorted = runs.filter((r) => r.handler === handler).sort((a, b) => a.startedAt - b.startedAt);
      for (let i = 1; i < sorted.length; i++) {
        const [before, after] = [sorted[i - 1]!, sorted[i]!];
        if (after.startedAt < before.endedAt) throw new Error(`${handler} ran on two daemons at once: ${JSON.stringify([before, after])}`);
      }
    }
    // Each daemon took turns: leadership is per run, by whichever daemon's turn finds the lock free.
    const leaders = new Set(runs.filter((r) => r.handler === "command-expiry").map((r) => r.pid));
    expect(leaders.size).toBeGreaterThan(1);
  }, 300_000);

  /** Every "ran as leader" line of every daemon process so far. */
  function leaderRuns(): { handler: string; pid: number; startedAt: number; endedAt: number }[] {
    return incarnations.flatMap((p) =>
      p
        .logs()
        .filter((l: LogLine) => l.message === "ran as leader")
        .map((l) => ({ handler: String(l.handler), pid: Number(l.pid), startedAt: Number(l.startedAt), endedAt: Number(l.endedAt) })),
    );
  }
});
