import { mkdirSync } from "node:fs";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { Archive } from "../archive/archive.js";
import { clientAddressKey } from "../audit/declare.js";
import { AuditTrail, auditRetention } from "../audit/trail.js";
import { collectDefaultMetrics, Gauge, Registry } from "prom-client";
import { configuredRules } from "../alerts/rules/configured.js";
import { alertEvaluator } from "../alerts/rules/evaluator.js";
import { alertMetrics } from "../alerts/rules/metrics.js";
import { lastSeenSeries } from "../fleet/last-seen-series.js";
import { ensureEnrollToken, enrollTokenChecker } from "../fleet/enroll-token.js";
import { fleetGauge } from "../fleet/fleet-metrics.js";
import { agentLiveness, AgentLiveness } from "../fleet/liveness.js";
import { notificationDispatcher } from "../alerts/notifications/dispatcher.js";
import { commandExpiry } from "../commands/expiry.js";
import { startCommands, type CommandsTuning } from "../commands/hub.js";
import { ConfigError, type DaemonConfig } from "../config/config.js";
import { dashboard, dashboardDir } from "./dashboard.js";
import type { Logger } from "../shared/log.js";
import { endpointProbe } from "../metrics/endpoint-probe.js";
import { ingestAccess, ingestHttp } from "../ingest/http.js";
import { InstrumentStore } from "../metrics/instrument-store.js";
import { Instruments } from "../metrics/instruments.js";
import { prometheusApi, prometheusApiAccess, prometheusApiName } from "../promapi/api.js";
import { verifyCaller } from "../tokens/access.js";
import { databaseCheck } from "../storage/database-check.js";
import { claimDataDir } from "../storage/data-dir.js";
import { openStorage } from "../storage/database.js";
import type { EmbeddedPostgresError, SupervisionOptions } from "../storage/embedded.js";
import { ensureLocalAdminToken } from "../tokens/local-admin.js";
import { TokenStore } from "../tokens/tokens.js";
import { versionInfo } from "../shared/version.js";
import { openTsdb, type TsdbReads } from "../tsdb/index.js";
import { replicaCheck, Replicas } from "../storage/replicas.js";
import { replicaReads } from "./replica-reads.js";
import { Engine, type Handler } from "../worker/engine.js";
import { leadership } from "../worker/leader.js";
import { FrontDoor } from "./front-door.js";
import { httpRoutes } from "./http-routes.js";
import { CallLog, observeCalls } from "./interceptors.js";
import { listen } from "./listener.js";
import { AddressBuckets, clientKey } from "./rate-limit.js";
import { Readiness } from "./readiness.js";
import { auditCalls } from "./audit-calls.js";
import { routes, servedAudits, servedProcedures } from "./routes.js";
import { readTlsCertificate, type TlsCertificate } from "./tls.js";
import { readSigningKey, SigningKeyError } from "../shared/signing.js";
import { twirpCompatible } from "./twirp.js";

export interface RunningDaemon {
  /** Base URL, e.g. http://127.0.0.1:7777, or https://… when it serves TLS. */
  url: string;
  port: number;
  /**
   * Resolves if the daemon cannot go on: its embedded PostgreSQL died and could not be
   * restarted. /health/live fails from then on; the caller should stop it and exit non-zero,
   * so that a supervisor (systemd, Kubernetes) starts it afresh. Never resolves otherwise.
   */
  failed: Promise<EmbeddedPostgresError>;
  /**
   * Reads the TLS certificate and key again (on SIGHUP): new connections get them, open ones
   * keep theirs. Throws ConfigError, keeping the current pair, when they cannot be used; does
   * nothing without TLS.
   */
  reloadTls(): void;
  /** Drains and stops everything; in-flight calls get up to the configured shutdown timeout. */
  stop(): Promise<void>;
}

/** Settings that are not configuration: tests shorten the command queue's timings. */
export interface DaemonOptions {
  commands?: Partial<CommandsTuning>;
  /** How the embedded PostgreSQL is watched and restarted. */
  embedded?: Omit<SupervisionOptions, "onGiveUp">;
}

/** The signing key of the file, its problems as ConfigError. */
function signingKeyOf(file: string): Buffer {
  try {
    return readSigningKey(file);
  } catch (err) {
    throw err instanceof SigningKeyError ? new ConfigError(err.message) : err;
  }
}

/** Creates the archive's folder if need be; one that cannot be made is a configuration mistake (one that fills up later is not). */
function archiveDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new ConfigError(`cannot create the archive directory ${dir}: ${(err as Error).message}`);
  }
}

export async function startDaemon(config: DaemonConfig, log: Logger, options: DaemonOptions = {}): Promise<RunningDaemon> {
  // Before anything starts: a served method without an access rule stops the daemon at once.
  const procedures = servedProcedures();
  // Before anything starts: a rule of the configuration file that cannot be used stops the daemon at once.
  const alertRules = configuredRules(config.alerts.rules);
  // Before anything starts: a certificate that cannot be used stops the daemon at once.
  const tls: TlsCertificate | undefined = config.tls && readTlsCertificate(config.tls);
  const signingKey = config.signingKeyFile === undefined ? undefined : signingKeyOf(config.signingKeyFile);
  if (config.archive) archiveDir(config.archive.dir);
  const releaseDataDir = claimDataDir(
    config.dataDir,
    (pid) => `another specta daemon (pid ${pid}) is using the data directory ${config.dataDir}; stop it or choose another --data-dir`,
  );
  let giveUp!: (err: EmbeddedPostgresError) => void;
  const failed = new Promise<EmbeddedPostgresError>((resolve) => (giveUp = resolve));
  const supervise = { ...options.embedded, onGiveUp: giveUp };
  const storage = await openStorage({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, log, supervise }).catch((err: unknown) => {
    releaseDataDir();
    throw err;
  });

  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // Node's nodejs_active_{handles,requests,resources}_total are gauges named like counters, which
  // promtool check metrics flags; each is the sum of its by-type gauge without the suffix.
  for (const kind of ["handles", "requests", "resources"]) registry.removeSingleMetric(`nodejs_active_${kind}_total`);
  const instruments = new Instruments(config.instruments, config.environment, registry);
  const readiness = new Readiness();
  readiness.add("database", () => storage.healthy());
  new Gauge({
    name: "specta_database_up",
    help: "1 while this daemon's database answers its checks (every 5 s), else 0; the default rule DatabaseUnreachable reads it.",
    registers: [registry],
    collect() {
      this.set(storage.healthy() ? 1 : 0);
    },
  });
  void failed.then((err) => readiness.markDead(err.message));
  const shutdown = new AbortController();

  const tokens = new TokenStore(storage.db);
  const adminToken = await ensureLocalAdminToken(tokens, config.dataDir);
  const storeOptions = {
    limits: { perMetric: config.maxSeriesPerMetric, perAgent: config.maxSeriesPerAgent },
    retention: { rawMs: config.retention.samplesMs, rollups5mMs: config.retention.rollups5mMs, rollups1hMs: config.retention.rollups1hMs },
  };
  const tsdb = await openTsdb(storage.pool, { ...storeOptions, log }).catch(async (err: unknown) => {
    await storage.close();
    releaseDataDir();
    throw err;
  });
  const replicas =
    config.databaseReplicaUrls.length > 0
      ? new Replicas(config.databaseReplicaUrls, storage.pool, config.replicaMaxLagMs, log.child({ component: "replicas" }))
      : undefined;
  // Checked once before serving, so that the first queries may use them.
  await replicas?.check();
  const reads: TsdbReads = replicas ? replicaReads(tsdb, replicas, storeOptions, registry) : tsdb;
  const instrumentStore = new InstrumentStore(tsdb, instruments);
  // /metrics shows the instruments as the store keeps them, not from zero after each restart.
  await instrumentStore.restore(storage.db, config.retention.samplesMs).then(
    (series) => log.debug({ series }, "instruments restored from the store"),
    (err: unknown) => log.warn({ err: (err as Error).message }, "the instruments' stored values could not be read: /metrics counts from zero"),
  );
  const liveness = new AgentLiveness();
  const enrollToken = ensureEnrollToken(config.dataDir, config.enrollToken);
  fleetGauge(registry, storage.db, liveness);
  const commands = await startCommands(storage.db, storage.pool, log, tokens, options.commands);

  const calls = new CallLog(registry, log);
  const trail = new AuditTrail(servedAudits, storage.db, config.audit, registry, log);
  const archive = config.archive && new Archive(config.archive, registry, log.child({ component: "archive" }));
  const frontDoor = new FrontDoor({
    procedures,
    tokens,
    rateLimits: config.rateLimits,
    calls,
    onRefused: (procedure, error, req) => trail.refused(procedure, error.code, req.socket.remoteAddress),
    ...(signingKey ? { signingKey } : {}),
  });
  const { signing } = frontDoor;
  // The plain-HTTP features' failed authentications (Prometheus API, remote-write, OTLP/HTTP), limited as the front door limits the RPCs'.
  const promFailedAuth = new AddressBuckets(config.rateLimits.failedAuth);
  const httpFailedAuth = {
    wait: (address: string | undefined) => promFailedAuth.wait(clientKey(address)),
    charge: (address: string | undefined) => promFailedAuth.charge(clientKey(address)),
  };
  const pushDeps = { tsdb, retentionMs: config.retention.samplesMs };
  const site = dashboard();
  if (!site.built) log.warn({ dir: dashboardDir }, "the dashboard is not built (npm run build): / answers 404");
  const handler = connectNodeAdapter({
    routes: routes({
      instruments,
      instrumentStore,
      push: pushDeps,
      tsdb: reads,
      readiness,
      shutdown: shutdown.signal,
      agents: { db: storage.db, tokens, checkEnrollToken: enrollTokenChecker(enrollToken), liveness, log: log.child({ component: "fleet" }) },
      commands: { db: storage.db, hub: commands.hub },
      tokens: { tokens },
      audit: { db: storage.db },
      alerts: { db: storage.db, configuredRules: alertRules },
      releases: { db: storage.db, log: log.child({ component: "releases" }) },
      ...(signing ? { signing } : {}),
    }),
    // Outermost, the audit trail sees the outcome the caller sees.
    interceptors: [
      auditCalls(trail, archive),
      observeCalls(calls),
      frontDoor.interceptor({
        started: (agentId) => liveness.record(agentId),
        answered: (agentId) => commands.hub.answering(agentId),
      }),
    ],
    contextValues: (req) => frontDoor.contextValues(req).set(clientAddressKey, req.socket.remoteAddress),
    fallback: prometheusApi(
      {
        tsdb: reads,
        instruments: config.instruments,
        log,
        authorize: (token) => verifyCaller(prometheusApiName, prometheusApiAccess, token, tokens),
        failedAuth: httpFailedAuth,
      },
      httpRoutes(registry, readiness, site),
    ),
  });

  // Links in notifications point at the daemon, whose URL is known once it listens.
  let externalUrl = "";
  const handlers: Handler[] = [
    databaseCheck(storage, () => readiness.notify()),
    ...tsdb.jobs,
    agentLiveness({ db: storage.db, liveness }),
    commandExpiry({ db: storage.db, log, intervalMs: commands.hub.tuning.expiryIntervalMs, graceMs: commands.hub.tuning.timeoutGraceMs }),
    auditRetention(storage.db, config.audit.retentionMs),
    notificationDispatcher({ db: storage.db, log, externalUrl: () => externalUrl }),
    lastSeenSeries({ db: storage.db, tsdb, liveness }),
    alertEvaluator({
      db: storage.db,
      tsdb,
      log,
      configured: alertRules,
      intervalMs: config.alerts.evaluationIntervalMs,
      ruleTimeoutMs: config.alerts.ruleTimeoutMs,
      observe: alertMetrics(registry, storage.db),
    }),
  ];
  if (archive) handlers.push(archive.retention());
  if (config.probes.urls.length > 0) handlers.push(endpointProbe(config.probes, registry));
  if (replicas) handlers.push(replicaCheck(replicas));
  const engine = new Engine(handlers, log, leadership(storage.db));
  engine.start();

  // Remote-write and OTLP/HTTP ahead of the RPCs: their JSON and protobuf bodies are not Twirp's or Connect's.
  const ingest = ingestHttp(
    {
      push: pushDeps,
      authorize: (procedure, token) => verifyCaller(procedure, ingestAccess, token, tokens),
      failedAuth: httpFailedAuth,
      log,
      audit: (event) => trail.record(event),
    },
    twirpCompatible(frontDoor.handler(handler), signing && ((body) => signing.sign(body))),
  );
  const listener = await listen(ingest, config.host, config.port, config.connections, log, tls).catch(async (err: unknown) => {
    await engine.stop();
    await commands.stop();
    await archive?.stop();
    await trail.stop(0);
    await replicas?.close();
    await storage.close();
    releaseDataDir();
    throw new ConfigError(`cannot listen on ${config.host}:${config.port}: ${(err as Error).message}`);
  });

  const host = config.host.includes(":") ? `[${config.host}]` : config.host;
  const url = `${tls ? "https" : "http"}://${host === "0.0.0.0" || host === "[::]" ? "127.0.0.1" : host}:${listener.port}`;
  externalUrl = url;
  log.info(
    {
      url,
      environment: config.environment,
      dashboard: `${url}/`,
      adminTokenFile: adminToken.file,
      dataDir: config.dataDir,
      database: storage.location,
      // The id agent_streams names a stream's daemon by.
      daemonId: commands.hub.daemonId,
      version: versionInfo.ver,
      ...(tls ? { certificate: { subject: tls.subject, validTo: tls.validTo } } : {}),
    },
    "daemon listening",
  );
  // Where to sign in, once: the file's path, never the token (`specta token show-admin` prints it).
  if (adminToken.created) {
    log.info(
      { dashboard: `${url}/`, adminTokenFile: adminToken.file },
      `first start: open the dashboard at ${url}/ and sign in with the admin token in ${adminToken.file} (\`specta token show-admin\` prints it)`,
    );
  }

  let stopping: Promise<void> | undefined;
  return {
    url,
    port: listener.port,
    failed,
    reloadTls() {
      if (!config.tls) return;
      const certificate = readTlsCertificate(config.tls);
      listener.setCertificate(certificate);
      log.info({ subject: certificate.subject, validTo: certificate.validTo }, "TLS certificate reloaded");
    },
    stop() {
      stopping ??= (async () => {
        readiness.markStopping();
        listener.drain();
        if (config.shutdownDrainMs > 0) {
          // Not ready, still serving: balancers see /health/ready fail and stop sending before the port closes.
          log.info({ drainMs: config.shutdownDrainMs }, "daemon draining: /health/ready answers 503, calls are still served");
          await new Promise((resolve) => setTimeout(resolve, config.shutdownDrainMs));
        }
        log.info({ timeoutMs: config.shutdownTimeoutMs }, "daemon stopping");
        shutdown.abort();
        await Promise.all([listener.close(config.shutdownTimeoutMs), engine.stop()]);
        await commands.stop();
        // After the last call: what it archived and audited is written before the database closes.
        await archive?.stop();
        await trail.stop(config.shutdownTimeoutMs);
        await replicas?.close();
        await storage.close();
        releaseDataDir();
        log.info("daemon stopped");
      })();
      return stopping;
    },
  };
}
