/**
 * Read replicas (issue 16): a daemon with --database-url on a real PostgreSQL 15 primary and
 * --database-replica-url on a hot standby streaming from it, both started here on free ports
 * (Debian's /usr/lib/postgresql/15/bin; as root, they run as the postgres user). Query reads go to
 * the standby while it keeps up; one whose replay is paused (lagging) or that is stopped (down) is
 * skipped, logged and shown in /metrics, and queries then read the primary and still see every
 * write. Skipped (with a message) without those binaries, except in CI (CI=true).
 */
import { execFile } from "node:child_process";
import { chownSync, existsSync, mkdirSync, appendFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Aggregation, Kind, API as MetricsAPI } from "../gen/metrics/metrics_pb.js";
import { resolveDaemonConfig } from "../src/config/config.js";
import { startDaemon, type RunningDaemon } from "../src/server/daemon.js";
import { createLogger } from "../src/shared/log.js";
import { adminTokenOf, freePort, tempDir } from "./support/daemon.js";
import { until } from "./support/faults.js";
import { scrape, sampleValue } from "./support/prometheus.js";
import { bearer } from "./support/rpc.js";

const bin = "/usr/lib/postgresql/15/bin";
const missing = !existsSync(join(bin, "pg_basebackup"));
if (missing) {
  const message = `the read-replica test needs PostgreSQL 15's server binaries in ${bin} (Debian package postgresql-15)`;
  if (process.env.CI === "true") throw new Error(`${message} (CI=true: not skipping)`);
  console.warn(`SKIPPED: ${message}`);
}
const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
/** PostgreSQL refuses to run as root: as root, its commands run as the postgres user. */
const pgCommand = (program: string, args: string[]) =>
  isRoot ? run("runuser", ["-u", "postgres", "--", join(bin, program), ...args]) : run(join(bin, program), args);

describe.skipIf(missing)("read replicas", () => {
  const dir = tempDir("specta-replicas-");
  const primaryDir = join(dir.path, "primary");
  const standbyDir = join(dir.path, "standby");
  let primaryPort = 0;
  let standbyPort = 0;
  let daemon: RunningDaemon;
  let standby: pg.Client | undefined;
  const logs: { message?: string; replica?: string; reason?: string }[] = [];
  const replicaName = () => `127.0.0.1:${standbyPort}/specta`;

  beforeAll(async () => {
    primaryPort = await freePort();
    standbyPort = await freePort();
    const owner = isRoot ? await run("id", ["-u", "postgres"]).then((r) => Number(r.stdout.trim())) : undefined;
    const group = isRoot ? await run("id", ["-g", "postgres"]).then((r) => Number(r.stdout.trim())) : undefined;
    // Data directories the postgres user owns, mode 0700 as PostgreSQL wants them.
    for (const path of [primaryDir, standbyDir]) {
      mkdirSync(path, { mode: 0o700 });
      if (owner !== undefined) chownSync(path, owner, group!);
    }
    await pgCommand("initdb", ["-D", primaryDir, "-U", "postgres", "--auth=trust", "--no-sync"]);
    appendFileSync(
      join(primaryDir, "postgresql.conf"),
      `\nport = ${primaryPort}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\nwal_level = replica\nfsync = off\n`,
    );
    await pgCommand("pg_ctl", ["-D", primaryDir, "-l", join(primaryDir, "log"), "-w", "start"]);
    const primary = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${primaryPort}/postgres` });
    await primary.connect();
    await primary.query("CREATE DATABASE specta");
    await primary.end();
    // A hot standby streaming from the primary (-R writes its primary_conninfo and standby.signal).
    await pgCommand("pg_basebackup", [
      "-h",
      "127.0.0.1",
      "-p",
      String(primaryPort),
      "-U",
      "postgres",
      "-D",
      standbyDir,
      "-R",
      "-X",
      "stream",
      "--checkpoint=fast",
    ]);
    appendFileSync(join(standbyDir, "postgresql.conf"), `\nport = ${standbyPort}\nhot_standby = on\n`);
    await pgCommand("pg_ctl", ["-D", standbyDir, "-l", join(standbyDir, "log"), "-w", "start"]);
    standby = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${standbyPort}/specta` });
    await standby.connect();

    const config = resolveDaemonConfig(
      {
        addr: "127.0.0.1:0",
        dataDir: join(dir.path, "data"),
        databaseUrl: `postgres://postgres@127.0.0.1:${primaryPort}/specta`,
        databaseReplicaUrl: [`postgres://postgres@127.0.0.1:${standbyPort}/specta`],
      },
      { SPECTA_REPLICA_MAX_LAG: "1s" },
    );
    const log = createLogger("info", { write: (line: string) => void logs.push(JSON.parse(line)) });
    daemon = await startDaemon(config, log);
  }, 120_000);

  afterAll(async () => {
    await standby?.end().catch(() => undefined);
    await daemon?.stop();
    for (const data of [standbyDir, primaryDir]) {
      if (existsSync(join(data, "postmaster.pid"))) await pgCommand("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]).catch(() => undefined);
    }
    dir.remove();
  });

  const metrics = () =>
    createClient(MetricsAPI, createGrpcTransport({ baseUrl: daemon.url, interceptors: [bearer(adminTokenOf(join(dir.path, "data")))] }));
  const t0 = Date.now() - 60_000;
  let pushed = 0;
  const push = async () => {
    await metrics().push({ series: [{ metric: "replica_test", labels: { n: "1" }, kind: Kind.GAUGE, times: [t0 + pushed], values: [pushed] }] });
    pushed++;
  };
  /** Points of replica_test a Query finds. */
  const stored = async () => {
    const res = await metrics().query({
      metric: "replica_test",
      start: timestampFromMs(t0),
      end: timestampFromMs(t0 + 1_000),
      step: { seconds: 3600n },
      aggregation: Aggregation.COUNT,
    });
    return res.series.reduce((n, s) => n + s.points.reduce((m, p) => m + p.value, 0), 0);
  };
  const gauge = async (name: string) => sampleValue(await scrape(daemon.url), name, { replica: replicaName() });
  const reads = async (target: string) => sampleValue(await scrape(daemon.url), "specta_database_reads_total", { target }) ?? 0;

  it("sends queries to a standby that keeps up", async () => {
    await push();
    await until(async () => (await gauge("specta_database_replica_usable")) === 1, 20_000, "the standby to be usable");
    const before = await reads(replicaName());
    // The standby has replayed the push once its lag check says 0; the query sees it there.
    await until(async () => (await gauge("specta_database_replica_lag_seconds")) === 0, 20_000, "the standby to catch up");
    expect(await stored()).toBe(1);
    expect(await reads(replicaName())).toBeGreaterThan(before);
  });

  it("skips a standby that lags beyond the bound, logs it, and reads the primary, which has every write", async () => {
    await standby!.query("SELECT pg_wal_replay_pause()");
    await push();
    await until(async () => (await gauge("specta_database_replica_usable")) === 0, 20_000, "the lagging standby to be skipped");
    expect(await gauge("specta_database_replica_lag_seconds")).toBeGreaterThan(1);
    expect(logs.find((l) => l.message === "database replica skipped: reads go elsewhere")).toMatchObject({
      reason: expect.stringMatching(/behind the primary/),
    });
    const before = await reads("primary");
    expect(await stored()).toBe(2);
    expect(await reads("primary")).toBeGreaterThan(before);

    await standby!.query("SELECT pg_wal_replay_resume()");
    await until(async () => (await gauge("specta_database_replica_usable")) === 1, 20_000, "the standby to be used again");
    expect(logs.some((l) => l.message === "database replica usable: reads go to it again")).toBe(true);
    expect(await stored()).toBe(2);
  });

  it("skips a standby that is down, and queries go on from the primary", async () => {
    await standby!.end();
    standby = undefined;
    await pgCommand("pg_ctl", ["-D", standbyDir, "-m", "immediate", "-w", "stop"]);
    await push();
    await until(async () => (await gauge("specta_database_replica_up")) === 0, 20_000, "the stopped standby to be seen down");
    expect(await gauge("specta_database_replica_usable")).toBe(0);
    expect(logs.filter((l) => l.message === "database replica skipped: reads go elsewhere").at(-1)).toMatchObject({
      reason: expect.stringMatching(/cannot be reached/),
    });
    expect(await stored()).toBe(3);
  });
});
