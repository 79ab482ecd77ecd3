/**
 * The fault suite's harness (issue 10): agents that push countable points through the agent's
 * own Batch, Spool and Sender to a daemon that a scenario hurts (kill -9 of the daemon, of its
 * PostgreSQL), and the count of what was stored, read through metrics.API/Query only: the store
 * behind it is being replaced, so no test here may look at its tables.
 *
 * test/faults.e2e.test.ts runs each scenario briefly in CI; bench/faults.ts (npm run bench:faults)
 * runs them at length and prints their figures.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Aggregation, API as MetricsAPI, MatchOperator } from "../../gen/metrics/metrics_pb.js";
import { defaultSpool } from "../../src/agent/agent.js";
import { Batch } from "../../src/agent/batch.js";
import { daemonConnection, Sender } from "../../src/agent/sender.js";
import { Spool } from "../../src/agent/spool.js";
import { readEnrollToken } from "../../src/fleet/enroll-token.js";
import type { Logger } from "../../src/shared/log.js";
import { adminTokenOf, freePort, RestartableDaemon, type LogLine } from "./daemon.js";
import { enrolAgent } from "./fake-agent.js";
import { bearer } from "./rpc.js";

/** The metric every counting agent writes: one series per (host, s). */
const metric = "faults_points";

export interface LoadShape {
  /** Series per agent; every tick gives each of them one point. */
  series: number;
  /** Ticks per batch: a batch holds series × ticksPerBatch points. */
  ticksPerBatch: number;
  /** The generator waits while this many batches are unsent, so that a run's size stays bounded. */
  queuedBatches: number;
}

/**
 * An agent whose collector is a counter: tick n gives every series the point (t0 + n ms, n). So
 * after n ticks each series must hold exactly n points, of values 0 … n-1, and a count query
 * over [t0, t0 + n) tells what was lost or doubled.
 */
export class CountingAgent {
  readonly spool: Spool;
  readonly sender: Sender;
  ticks = 0;
  private readonly batch: Batch;
  private readonly sending = new AbortController();
  private readonly generating = new AbortController();
  private readonly loops: Promise<unknown>[] = [];

  constructor(
    readonly host: string,
    credential: string,
    url: string,
    stateDir: string,
    readonly shape: LoadShape,
    private readonly t0: number,
    log: Logger,
  ) {
    this.spool = new Spool(join(stateDir, "spool"), defaultSpool, log);
    this.sender = new Sender(daemonConnection(url, "grpc", () => credential).push, this.spool, log);
    this.batch = new Batch({ host });
  }

  get generated(): number {
    return this.ticks * this.shape.series;
  }

  /** Points the daemon acknowledged: those generated that are neither waiting in the spool nor refused nor dropped. */
  get acknowledged(): number {
    const s = this.spool.stats();
    return this.generated - s.points - s.droppedPoints - this.sender.rejectedPoints;
  }

  /** Points the agent gave up on: refused by the daemon, or dropped by a full spool. */
  get givenUp(): number {
    return this.sender.rejectedPoints + this.spool.stats().droppedPoints;
  }

  start(): void {
    this.loops.push(this.sender.run(this.sending.signal), this.generate(this.generating.signal));
  }

  /** Stops generating, waits until every batch is acknowledged (or given up), then stops sending. */
  async finish(timeoutMs: number): Promise<void> {
    this.generating.abort();
    await until(
      () => this.spool.stats().batches === 0,
      timeoutMs,
      `${this.host}'s spool to drain (${this.spool.stats().points} points left)`,
    ).finally(() => {
      this.sending.abort();
    });
    await Promise.all(this.loops);
  }

  private async generate(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      if (this.spool.stats().batches >= this.shape.queuedBatches) {
        await sleep(2, undefined, { signal }).catch(() => undefined);
        continue;
      }
      for (let i = 0; i < this.shape.ticksPerBatch; i++, this.ticks++) {
        const measurements = Array.from({ length: this.shape.series }, (_, s) => ({
          metric,
          labels: { s: String(s) },
          kind: "gauge" as const,
          value: this.ticks,
        }));
        this.batch.addAll(measurements, this.t0 + this.ticks);
      }
      const closed = this.batch.close()!;
      this.spool.add(closed);
      this.sender.notify();
    }
  }
}

/** What a scenario did and what it cost. */
export interface FaultFigures {
  scenario: string;
  faults: number;
  /** Points the agents generated, the daemon acknowledged, and a count query found. */
  generated: number;
  acknowledged: number;
  stored: number;
  /** Generated points missing from the store, and points stored more than once. */
  lost: number;
  doubled: number;
  /** Points the agents gave up on (refused as malformed, or dropped by a full spool). */
  givenUp: number;
  /** Push calls that failed and were sent again. */
  retriedPushes: number;
  /** Whether every series holds exactly the values 0 … n-1 (sum and count agree). */
  valuesMatch: boolean;
  /** Per fault: from the fault until it was over (the daemon listening again, its PostgreSQL restarted). */
  faultMs: number[];
  /** Per fault: from the fault until every agent had a batch acknowledged after it was over. */
  recoveryMs: number[];
  seconds: number;
}

export interface ScenarioOptions {
  /** A folder of its own: the daemon's data directory and the agents' state go below it. */
  dir: string;
  agents: number;
  faults: number;
  /** Ingest between faults (after the agents recovered from the previous one). */
  ingestMs: number;
  shape: LoadShape;
  log: Logger;
}

/** Hurts a running daemon once; resolves when the fault is over (not when ingest recovered). */
export type Fault = (daemon: RestartableDaemon) => Promise<void>;

/** kill -9 the daemon, then start it again on the same data directory and port, as a supervisor would. */
export const killDaemon: Fault = async (daemon) => {
  await daemon.kill();
  await daemon.start();
};

/** kill -9 the embedded PostgreSQL's postmaster (its backends follow); the daemon must bring it back by itself. */
export const killPostmaster: Fault = async (daemon) => {
  const restarts = () => daemon.proc.logs().filter((l) => l.message === "embedded PostgreSQL restarted").length;
  const before = restarts();
  process.kill(postmasterPid(daemon.dataDir), "SIGKILL");
  await until(() => restarts() > before, 90_000, "the daemon to restart its PostgreSQL");
};

/** The pid of the embedded PostgreSQL of a data directory: the first line of postmaster.pid. */
export function postmasterPid(dataDir: string): number {
  return Number(readFileSync(join(dataDir, "postgres", "postmaster.pid"), "utf8").split("\n")[0]);
}

/**
 * Starts a daemon (embedded PostgreSQL) and counting agents, lets them ingest, applies `fault`
 * `faults` times with ingest in between, lets the agents drain and counts what was stored.
 */
export async function runFaultScenario(
  scenario: string,
  fault: Fault,
  options: ScenarioOptions,
): Promise<{ figures: FaultFigures; daemonLogs: LogLine[] }> {
  const started = performance.now();
  const daemon = new RestartableDaemon(join(options.dir, "data"), await freePort());
  await daemon.start();
  const agents: CountingAgent[] = [];
  try {
    // One ms per tick from a minute ago: Push takes points up to 10 minutes ahead, room for
    // 660,000 ticks, over 10 minutes of a run at the benchmark's rate.
    const t0 = Date.now() - 60_000;
    const enrollToken = readEnrollToken(daemon.dataDir)!;
    for (let a = 0; a < options.agents; a++) {
      const host = `faults-${a}`;
      const { credential } = await enrolAgent(daemon.url, enrollToken, host);
      agents.push(new CountingAgent(host, credential, daemon.url, join(options.dir, host), options.shape, t0, options.log));
    }
    for (const agent of agents) agent.start();
    const acknowledged = () => agents.map((a) => a.acknowledged);
    const faultMs: number[] = [];
    const recoveryMs: number[] = [];
    for (let f = 0; f < options.faults; f++) {
      await progress(acknowledged, options.ingestMs, 60_000);
      const at = performance.now();
      await fault(daemon);
      faultMs.push(performance.now() - at);
      // Counted from when the fault is over: a call in flight at the fault may still have been acknowledged.
      const after = acknowledged();
      await until(() => acknowledged().every((n, a) => n > after[a]!), 90_000, `every agent to be acknowledged again after fault ${f + 1}`);
      recoveryMs.push(performance.now() - at);
    }
    await progress(acknowledged, options.ingestMs, 60_000);
    await Promise.all(agents.map((a) => a.finish(90_000)));
    await until(async () => (await fetch(`${daemon.url}/health/ready`)).ok, 30_000, "the daemon to be ready again");

    const counts = await countStored(daemon.url, adminTokenOf(daemon.dataDir), agents, t0);
    const sum = (f: (a: CountingAgent) => number) => agents.reduce((n, a) => n + f(a), 0);
    const figures: FaultFigures = {
      scenario,
      faults: options.faults,
      generated: sum((a) => a.generated),
      acknowledged: sum((a) => a.acknowledged),
      ...counts,
      givenUp: sum((a) => a.givenUp),
      retriedPushes: sum((a) => a.sender.failedPushes),
      faultMs,
      recoveryMs,
      seconds: (performance.now() - started) / 1000,
    };
    return { figures, daemonLogs: daemon.proc.logs() };
  } finally {
    await Promise.all(agents.map((a) => a.finish(0).catch(() => undefined)));
    await daemon.stop();
  }
}

/**
 * Counts each agent's points with Query (COUNT and SUM over [t0, t0 + ticks), one step per hour):
 * series s of an agent after n ticks must hold n points whose values sum to n(n-1)/2.
 */
export async function countStored(
  url: string,
  token: string,
  agents: CountingAgent[],
  t0: number,
): Promise<Pick<FaultFigures, "stored" | "lost" | "doubled" | "valuesMatch">> {
  const metrics = createClient(MetricsAPI, createGrpcTransport({ baseUrl: url, interceptors: [bearer(token)] }));
  const figures = { stored: 0, lost: 0, doubled: 0, valuesMatch: true };
  for (const agent of agents) {
    const n = agent.ticks;
    const perSeries = async (aggregation: Aggregation) => {
      const res = await metrics.query({
        metric,
        matchers: [{ label: "host", operator: MatchOperator.EQUAL, value: agent.host }],
        start: timestampFromMs(t0),
        end: timestampFromMs(t0 + n - 1),
        step: { seconds: 3600n },
        aggregation,
      });
      return new Map(res.series.map((s) => [s.labels.s!, s.points.reduce((total, p) => total + p.value, 0)]));
    };
    const counts = await perSeries(Aggregation.COUNT);
    const sums = await perSeries(Aggregation.SUM);
    for (let s = 0; s < agent.shape.series; s++) {
      const count = counts.get(String(s)) ?? 0;
      figures.stored += count;
      figures.lost += Math.max(0, n - count);
      figures.doubled += Math.max(0, count - n);
      if (count !== n || sums.get(String(s)) !== (n * (n - 1)) / 2) figures.valuesMatch = false;
    }
  }
  return figures;
}

/** Waits at least `ms`, and until every agent has had points acknowledged meanwhile. */
async function progress(acknowledged: () => number[], ms: number, timeoutMs: number): Promise<void> {
  const before = acknowledged();
  await sleep(ms);
  await until(() => acknowledged().every((n, a) => n > before[a]!), timeoutMs, "every agent to make progress");
}

export async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}
