/**
 * What bench:ingest and bench:query share: the node_exporter-like load (hosts × 200 series,
 * points every 10 s, one request = one host × 6 timestamps), encoded once before the clock
 * starts so that the load generator costs little, sent over 4 connections; a Specta daemon on
 * its embedded PostgreSQL and VictoriaMetrics (Debian's package) side by side; CPU read from
 * /proc, disk and WAL from PostgreSQL.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs";
import { connect, type ClientHttp2Session } from "node:http2";
import { request as httpRequest, Agent } from "node:http";
import { createServer as createNetServer, type AddressInfo } from "node:net";
import { cpus, totalmem, tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import pg from "pg";
import { Kind, PushRequestSchema, SeriesSchema } from "../gen/metrics/metrics_pb.js";
import { createLogger } from "../src/shared/log.js";
import { openTsdb } from "../src/tsdb/index.js";
import { blockMs } from "../src/tsdb/partitions.js";
import { remoteWriteBody } from "../test/support/remote-write.js";
import { hostSeries } from "./node-exporter-like.js";
import { listeningUrl, startSpecta } from "./specta-process.js";

export const intervalMs = 10_000;
export const timestampsPerRequest = 6;
export const connections = 4;

export function machine(): string {
  return `machine: ${cpus()[0]?.model} x${cpus().length}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.versions.node}`;
}

/**
 * One request of the load: its Push body (protobuf), its VictoriaMetrics import body (JSON
 * lines) and, when asked for, its remote-write 1.0 body (snappy-compressed WriteRequest).
 */
export interface LoadRequest {
  push: Buffer;
  vm: Buffer;
  remoteWrite?: Buffer;
  samples: number;
}

/**
 * The requests for `hosts` hosts' `series` (default: all 200 of each) over `points` timestamps
 * ending at `endMs`, time-major (every host's first minute, then the second, …), as agents send.
 */
export function buildLoad(
  hosts: number,
  points: number,
  endMs: number,
  pick: (metric: string) => boolean = () => true,
  withRemoteWrite = false,
): LoadRequest[] {
  const startMs = endMs - (points - 1) * intervalMs;
  const perHost = Array.from({ length: hosts }, (_, h) => hostSeries(h).filter((s) => pick(s.metric)));
  const out: LoadRequest[] = [];
  for (let first = 0; first < points; first += timestampsPerRequest) {
    const n = Math.min(timestampsPerRequest, points - first);
    const times = Array.from({ length: n }, (_, k) => startMs + (first + k) * intervalMs);
    for (const series of perHost) {
      const push = create(PushRequestSchema, {
        series: series.map((s) =>
          create(SeriesSchema, {
            metric: s.metric,
            labels: s.labels,
            kind: s.kind === "counter" ? Kind.COUNTER : Kind.GAUGE,
            times,
            values: times.map((_, k) => s.valueAt(first + k)),
          }),
        ),
      });
      const vm = series
        .map((s) =>
          JSON.stringify({ metric: { __name__: s.metric, ...s.labels }, values: times.map((_, k) => s.valueAt(first + k)), timestamps: times }),
        )
        .join("\n");
      const remoteWrite = withRemoteWrite
        ? remoteWriteBody(
            series.map((s) => ({
              labels: { __name__: s.metric, ...s.labels },
              samples: times.map((timestamp, k) => ({ timestamp, value: s.valueAt(first + k) })),
            })),
          )
        : undefined;
      out.push({
        push: Buffer.from(toBinary(PushRequestSchema, push)),
        vm: Buffer.from(`${vm}\n`),
        ...(remoteWrite ? { remoteWrite } : {}),
        samples: series.length * n,
      });
    }
  }
  return out;
}

/** Sends every request over `connections` workers; returns the wall time in seconds. */
export async function send(requests: LoadRequest[], post: (worker: number, r: LoadRequest) => Promise<void>): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: connections }, async (_, worker) => {
      while (next < requests.length) await post(worker, requests[next++]!);
    }),
  );
  return (performance.now() - started) / 1000;
}

/** CPU seconds a process used so far; with `children`, its live children and waited-for children too. */
export function cpuSeconds(pid: number, children = false): number {
  const ticks = (p: number, withWaited: boolean): number => {
    try {
      const fields = readFileSync(`/proc/${p}/stat`, "utf8").split(") ")[1]!.split(" ");
      // After "pid (comm) ": state is field 0; utime 11, stime 12, cutime 13, cstime 14.
      return Number(fields[11]) + Number(fields[12]) + (withWaited ? Number(fields[13]) + Number(fields[14]) : 0);
    } catch {
      return 0; // exited meanwhile
    }
  };
  let total = ticks(pid, children);
  if (children) {
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const fields = readFileSync(`/proc/${entry}/stat`, "utf8").split(") ")[1]!.split(" ");
        if (Number(fields[1]) === pid) total += ticks(Number(entry), false);
      } catch {
        // exited meanwhile
      }
    }
  }
  return total / 100; // USER_HZ
}

/** A Specta daemon on its own embedded PostgreSQL in a temporary data directory. */
export interface SpectaUnderTest {
  url: string;
  pid: number;
  token: string;
  dataDir: string;
  /** The embedded PostgreSQL's postmaster. */
  postgresPid: number;
  db: pg.Client;
  /** Daemon and PostgreSQL CPU seconds. */
  cpu(): { daemon: number; postgres: number };
  /** Bytes of every table and index of the store (series and the tsdb tables, all partitions). */
  storeBytes(): Promise<number>;
  /** The same, per table (partitions summed under their parent's name). */
  storeTables(): Promise<Map<string, number>>;
  walLsn(): Promise<string>;
  walBytesSince(lsn: string): Promise<number>;
  /** POSTs a request body to a path over session `worker`: Connect, binary, unless `headers` say otherwise. */
  post(worker: number, path: string, body: Buffer, headers?: Record<string, string>): Promise<Buffer>;
}

export async function startSpectaUnderTest(): Promise<SpectaUnderTest> {
  const dataDir = mkdtempSync(join(tmpdir(), "specta-bench-"));
  chmodSync(dataDir, 0o711);
  const { child, line } = await startSpecta(
    ["daemon", "--addr", "127.0.0.1:0", "--data-dir", dataDir, "--log-level", "info"],
    /"daemon listening"/,
    (process.env.BENCH_DAEMON_NODE_ARGS ?? "").split(" ").filter(Boolean),
  );
  const url = listeningUrl(line);
  const token = readFileSync(join(dataDir, "admin.token"), "utf8").trim();
  const postgresPid = Number(readFileSync(join(dataDir, "postgres", "postmaster.pid"), "utf8").split("\n")[0]);
  const db = new pg.Client({ host: join(dataDir, "postgres"), user: "postgres", database: "specta" });
  await db.connect();
  const sessions: ClientHttp2Session[] = Array.from({ length: connections }, () => connect(url));
  const specta: SpectaUnderTest = {
    url,
    pid: child.pid!,
    token,
    dataDir,
    postgresPid,
    db,
    cpu: () => ({ daemon: cpuSeconds(child.pid!), postgres: cpuSeconds(postgresPid, true) }),
    async storeBytes() {
      let total = 0;
      for (const bytes of (await specta.storeTables()).values()) total += bytes;
      return total;
    },
    async storeTables() {
      const { rows } = await db.query<{ name: string; bytes: string }>(`
        SELECT coalesce(substring(c.relname FROM '^(tsdb_[a-z0-9]+(?:_5m|_1h)?)_[0-9]'), c.relname) AS name, sum(pg_total_relation_size(c.oid)) AS bytes
        FROM pg_class c
        WHERE c.relkind = 'r' AND (c.relname IN ('series', 'tsdb_compacted') OR c.relname ~ '^tsdb_(head|chunks|rollups_5m|rollups_1h)_')
        GROUP BY 1 ORDER BY 1`);
      return new Map(rows.map((r) => [r.name, Number(r.bytes)]));
    },
    async walLsn() {
      return (await db.query<{ lsn: string }>("SELECT pg_current_wal_lsn()::text AS lsn")).rows[0]!.lsn;
    },
    async walBytesSince(lsn) {
      return Number((await db.query<{ n: string }>("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn) AS n", [lsn])).rows[0]!.n);
    },
    post(worker, path, body, headers = { "content-type": "application/proto", "connect-protocol-version": "1" }) {
      return new Promise((resolve, reject) => {
        const stream = sessions[worker % sessions.length]!.request({
          ":method": "POST",
          ":path": path,
          authorization: `Bearer ${token}`,
          ...headers,
        });
        const chunks: Buffer[] = [];
        let status = 0;
        stream.on("response", (h) => (status = Number(h[":status"])));
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("end", () =>
          status >= 200 && status < 300
            ? resolve(Buffer.concat(chunks))
            : reject(new Error(`${path}: HTTP ${status} ${Buffer.concat(chunks).toString()}`)),
        );
        stream.on("error", reject);
        stream.end(body);
      });
    },
  };
  return specta;
}

/**
 * Compacts every closed block of the daemon's store, as its leader-only job does once the blocks
 * are closed: here in this process, with the store's clock moved past `endMs`'s block; then
 * VACUUM ANALYZE, so that reads are planned on what is there.
 */
export async function compactStore(specta: SpectaUnderTest, endMs: number): Promise<void> {
  const day = 86_400_000;
  const pool = new pg.Pool({ host: `${specta.dataDir}/postgres`, user: "postgres", database: "specta", max: 4 });
  const tsdb = await openTsdb(pool, {
    limits: { perMetric: 1, perAgent: 1 },
    retention: { rawMs: 30 * day, rollups5mMs: 90 * day, rollups1hMs: 730 * day },
    now: () => endMs + 2 * blockMs,
    log: createLogger("warn"),
  });
  await tsdb.compact();
  await pool.end();
  await specta.db.query("VACUUM ANALYZE");
}

/** VictoriaMetrics from Debian's package on a free port, in a temporary directory; undefined when it is not installed. */
export interface VictoriaUnderTest {
  url: string;
  pid: number;
  dataDir: string;
  cpu(): number;
  /** Bytes under its data directory, after a flush. */
  diskBytes(): Promise<number>;
  post(path: string, body: Buffer): Promise<void>;
  get(path: string): Promise<string>;
  stop(): Promise<void>;
}

const victoriaBinary = "/usr/bin/victoria-metrics";

export async function startVictoria(): Promise<VictoriaUnderTest | undefined> {
  if (!existsSync(victoriaBinary)) return undefined;
  const dataDir = mkdtempSync(join(tmpdir(), "specta-bench-vm-"));
  const port = await freePort();
  const child: ChildProcess = spawn(
    victoriaBinary,
    [`-storageDataPath=${dataDir}`, `-httpListenAddr=127.0.0.1:${port}`, "-retentionPeriod=100y", "-loggerLevel=ERROR"],
    { stdio: "ignore" },
  );
  const url = `http://127.0.0.1:${port}`;
  const agent = new Agent({ keepAlive: true, maxSockets: connections });
  const call = (method: string, path: string, body?: Buffer) =>
    new Promise<string>((resolve, reject) => {
      const req = httpRequest(`${url}${path}`, { method, agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          (res.statusCode ?? 0) < 300 ? resolve(Buffer.concat(chunks).toString()) : reject(new Error(`${path}: HTTP ${res.statusCode}`)),
        );
      });
      req.on("error", reject);
      req.end(body);
    });
  for (let i = 0; ; i++) {
    try {
      await call("GET", "/health");
      break;
    } catch (err) {
      if (i > 100) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    url,
    pid: child.pid!,
    dataDir,
    cpu: () => cpuSeconds(child.pid!),
    async diskBytes() {
      await call("GET", "/internal/force_flush");
      await new Promise((r) => setTimeout(r, 3_000));
      return duBytes(dataDir);
    },
    post: (path, body) => call("POST", path, body).then(() => undefined),
    get: (path) => call("GET", path),
    async stop() {
      agent.destroy();
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    },
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createNetServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

function duBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    try {
      total += statSync(join(entry.parentPath, entry.name)).size;
    } catch {
      // removed by a merge meanwhile
    }
  }
  return total;
}

/** p50 and p90 in ms of `runs` sequential calls (after 3 warm-up calls). */
export async function latency(runs: number, call: () => Promise<unknown>): Promise<{ p50: number; p90: number }> {
  for (let i = 0; i < 3; i++) await call();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await call();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { p50: times[Math.floor(runs * 0.5)]!, p90: times[Math.floor(runs * 0.9)]! };
}

export const fmt = (n: number, digits = 0): string => n.toLocaleString("en", { maximumFractionDigits: digits, minimumFractionDigits: digits });
