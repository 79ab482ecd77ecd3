import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { logLevels, type LogLevel } from "../shared/log.js";
import { parseDuration } from "../shared/duration.js";

/** A configuration problem, reported to the operator as one line. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

export const environments = ["development", "testing", "staging", "production"] as const;
export type Environment = (typeof environments)[number];

export const instrumentKinds = ["counter", "gauge", "histogram"] as const;
export type InstrumentKind = (typeof instrumentKinds)[number];

/** An application metric that Counter, Gauge or Histogram may record. */
export interface InstrumentDeclaration {
  name: string;
  kind: InstrumentKind;
  help: string;
  /** Upper bounds of the histogram's buckets, increasing (histograms only). */
  buckets?: number[];
  /** Allowed label keys, each with its allowed values. */
  labels: Record<string, string[]>;
}

export interface ProbeConfig {
  urls: string[];
  intervalMs: number;
  timeoutMs: number;
}

/** How long data is kept. */
export interface RetentionConfig {
  /** Raw samples (chunks; whole days are dropped). */
  samplesMs: number;
  /** 5-minute rollups. */
  rollups5mMs: number;
  /** Hourly rollups. */
  rollups1hMs: number;
}

/** How long each stage of a connection may take, and how many connections are open at most. */
export interface ConnectionsConfig {
  /** Open connections at most (connections.max / SPECTA_MAX_CONNECTIONS). */
  max: number;
  /** A new connection's first bytes, and an HTTP/1 request's headers, must arrive within this. */
  headersTimeoutMs: number;
  /** A whole request (headers and body) must arrive within this. */
  requestTimeoutMs: number;
  /** An HTTP/1 keep-alive connection or an HTTP/2 session without a call open is closed after this. */
  idleTimeoutMs: number;
  /** HTTP/2 sessions with calls open (agents' command streams) are pinged this often; a peer that has not answered by the next ping is gone. */
  pingIntervalMs: number;
}

/** A token bucket per client address: `burst` calls at once, refilled at `perSecond`; perSecond 0 means no limit. */
export interface RateLimit {
  perSecond: number;
  burst: number;
}

export interface RateLimitsConfig {
  /** The public instrument calls (metrics.API/Counter, Gauge, Histogram). */
  instrumentCalls: RateLimit;
  /** Refused credentials: wrong bearer tokens and wrong enrolment tokens. */
  failedAuth: RateLimit;
}

/** The certificate (PEM, the leaf first, then any intermediates) and private key the daemon serves TLS with. */
export interface TlsConfig {
  certFile: string;
  keyFile: string;
}

/** The audit trail's sinks besides the database (src/audit/). */
export interface AuditSettings {
  /** NDJSON appended here (--audit-file), rotated once it would pass maxBytes; `keep` rotated files are kept. */
  file?: { path: string; maxBytes: number; keep: number };
  /** Batches of events POSTed here as JSON arrays (--audit-url). */
  url?: string;
  /** Events waiting per sink at most (audit.queue); beyond, new ones are dropped and counted. */
  queueCapacity: number;
  /** How long the database keeps events (audit.retention). */
  retentionMs: number;
}

/** The raw archive of accepted writes (src/archive/), off unless a directory is given. */
export interface ArchiveSettings {
  dir: string;
  retentionMs: number;
  flushBytes: number;
  flushIntervalMs: number;
}

/** Alert evaluation (src/alerts/rules/): its timings and the configuration file's rules. */
export interface AlertsConfig {
  /** How often the rules are evaluated (alerts.evaluationInterval, default 15s). */
  evaluationIntervalMs: number;
  /** One rule's evaluation may take this long, from the cycle's start (its rules are evaluated together), before it counts as failed (alerts.ruleTimeout, default 10s). */
  ruleTimeoutMs: number;
  /** alerts.rules: alerts.Rule objects as protobuf JSON, validated by the alerts feature when the daemon starts. */
  rules: unknown[];
}

export interface DaemonConfig {
  environment: Environment;
  /** postgres:// URL; undefined: the embedded PostgreSQL in `<dataDir>/postgres`. */
  databaseUrl?: string;
  /** Streaming replicas of that PostgreSQL (postgres:// URLs) that read-only work goes to. */
  databaseReplicaUrls: string[];
  /** A replica further behind the primary than this is skipped until it has caught up. */
  replicaMaxLagMs: number;
  retention: RetentionConfig;
  /** New series of a metric beyond this many are refused. */
  maxSeriesPerMetric: number;
  /** New series created by one agent beyond this many are refused. */
  maxSeriesPerAgent: number;
  host: string;
  port: number;
  /** TLS on the port (--tls-cert and --tls-key); undefined: plain HTTP. */
  tls?: TlsConfig;
  /** The file of the key that signed calls are signed with (src/shared/signing.ts); undefined: no signing. */
  signingKeyFile?: string;
  dataDir: string;
  logLevel: LogLevel;
  instruments: InstrumentDeclaration[];
  probes: ProbeConfig;
  /** How long a shutdown waits for in-flight calls before closing connections. */
  shutdownTimeoutMs: number;
  /**
   * How long a shutdown keeps serving, with /health/ready answering 503, before it starts closing:
   * long enough for a load balancer's or Kubernetes' readiness checks to stop sending new calls.
   */
  shutdownDrainMs: number;
  connections: ConnectionsConfig;
  rateLimits: RateLimitsConfig;
  /** The agents' enrolment token (SPECTA_ENROLL_TOKEN / enrollToken); undefined: generated in `<dataDir>/enroll.token`. */
  enrollToken?: string;
  audit: AuditSettings;
  /** --archive-dir; undefined: no archive. */
  archive?: ArchiveSettings;
  alerts: AlertsConfig;
  /** Where the configuration file was read from, if one was. */
  configFile?: string;
}

/** Command-line flags of `specta daemon`; undefined when not given. */
export interface DaemonFlags {
  addr?: string;
  dataDir?: string;
  config?: string;
  environment?: string;
  logLevel?: string;
  probe?: string[];
  databaseUrl?: string;
  databaseReplicaUrl?: string[];
  retention?: string;
  tlsCert?: string;
  tlsKey?: string;
  signingKeyFile?: string;
  auditFile?: string;
  auditUrl?: string;
  archiveDir?: string;
}

/** The instrument Specta's documentation uses as its example; declared when a configuration declares none. */
export const defaultInstruments: InstrumentDeclaration[] = [
  {
    name: "page_ready_duration_seconds",
    kind: "histogram",
    help: "Time from navigation until a page is ready for the user, in seconds.",
    buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100],
    labels: {},
  },
];

export const metricNamePattern = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
export const labelKeyPattern = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** The label every instrument carries, holding SPECTA_ENVIRONMENT. */
export const environmentLabel = "env";

/** The data directory of a daemon run as root. */
export const rootDataDir = "/var/lib/specta";

/** The default data directory: /var/lib/specta for root (the embedded PostgreSQL's own user must reach it), else under XDG_DATA_HOME. */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  if (process.getuid?.() === 0) return rootDataDir;
  const base = env.XDG_DATA_HOME || join(homedir(), ".local", "share");
  return join(base, "specta");
}

function positiveInteger(value: unknown, name: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) throw new ConfigError(`${name} must be a positive whole number`);
  return value;
}

/** Resolves the daemon's configuration: flags > environment (SPECTA_*) > config file > defaults. */
export function resolveDaemonConfig(flags: DaemonFlags, env: NodeJS.ProcessEnv = process.env): DaemonConfig {
  const fromEnv = (name: string) => {
    const value = env[name];
    return value === undefined || value === "" ? undefined : value;
  };

  let dataDir = resolve(flags.dataDir ?? fromEnv("SPECTA_DATA_DIR") ?? defaultDataDir(env));
  const explicitFile = flags.config ?? fromEnv("SPECTA_CONFIG");
  const configFile = explicitFile ? resolve(explicitFile) : join(dataDir, "specta.json");
  const file = readConfigFile(configFile, explicitFile !== undefined);
  if (file?.dataDir !== undefined && flags.dataDir === undefined && fromEnv("SPECTA_DATA_DIR") === undefined) {
    dataDir = resolve(expectString(file.dataDir, "dataDir"));
  }

  const environment = flags.environment ?? fromEnv("SPECTA_ENVIRONMENT") ?? optionalString(file?.environment, "environment") ?? "development";
  if (!(environments as readonly string[]).includes(environment)) {
    throw new ConfigError(`SPECTA_ENVIRONMENT is "${environment}"; it must be one of ${environments.join(", ")}`);
  }

  const addr = flags.addr ?? fromEnv("SPECTA_ADDR") ?? optionalString(file?.addr, "addr") ?? "127.0.0.1:7777";
  const { host, port } = parseAddr(addr);

  const tls = parseTls(flags, fromEnv, file?.tls);
  const signingKeyFile =
    flags.signingKeyFile ?? fromEnv("SPECTA_SIGNING_KEY_FILE") ?? optionalString(objectSetting(file?.signing, "signing").keyFile, "signing.keyFile");

  const logLevel = flags.logLevel ?? fromEnv("SPECTA_LOG_LEVEL") ?? optionalString(file?.logLevel, "logLevel") ?? "info";
  if (!(logLevels as readonly string[]).includes(logLevel)) {
    throw new ConfigError(`log level "${logLevel}" is not one of ${logLevels.join(", ")}`);
  }

  const instruments = file?.instruments === undefined ? defaultInstruments : parseInstruments(file.instruments);
  const probes = parseProbes(file?.probes, flags.probe ?? fromEnv("SPECTA_PROBE_URLS")?.split(","));

  const databaseUrl = flags.databaseUrl ?? fromEnv("SPECTA_DATABASE_URL") ?? optionalString(file?.databaseUrl, "databaseUrl");
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError("the database URL must start with postgres:// or postgresql:// (for example postgres://user:password@host:5432/specta)");
  }
  const databaseReplicaUrls =
    flags.databaseReplicaUrl ??
    fromEnv("SPECTA_DATABASE_REPLICA_URLS")
      ?.split(",")
      .map((u) => u.trim())
      .filter((u) => u !== "") ??
    stringList(file?.databaseReplicaUrls, "databaseReplicaUrls");
  for (const url of databaseReplicaUrls) {
    if (!/^postgres(ql)?:\/\//.test(url)) throw new ConfigError("a database replica URL must start with postgres:// or postgresql://");
  }
  if (databaseReplicaUrls.length > 0 && databaseUrl === undefined) {
    throw new ConfigError("read replicas (--database-replica-url) need the primary's --database-url: the embedded PostgreSQL has no replicas");
  }
  const replicaMaxLagMs = durationSetting(
    fromEnv("SPECTA_REPLICA_MAX_LAG") ?? optionalString(file?.replicaMaxLag, "replicaMaxLag") ?? "10s",
    "replicaMaxLag",
  );
  const retentionSection = (file?.retention ?? {}) as Record<string, unknown>;
  // rollups5m and rollups1h were named minuteRollups and hourRollups before the store kept 5-minute rollups; both names are read.
  const retention: RetentionConfig = {
    samplesMs: durationSetting(
      flags.retention ?? fromEnv("SPECTA_RETENTION") ?? optionalString(retentionSection.samples, "retention.samples") ?? "30d",
      "retention",
    ),
    rollups5mMs: durationSetting(
      optionalString(retentionSection.rollups5m, "retention.rollups5m") ??
        optionalString(retentionSection.minuteRollups, "retention.minuteRollups") ??
        "90d",
      "retention.rollups5m",
    ),
    rollups1hMs: durationSetting(
      optionalString(retentionSection.rollups1h, "retention.rollups1h") ??
        optionalString(retentionSection.hourRollups, "retention.hourRollups") ??
        "730d",
      "retention.rollups1h",
    ),
  };
  if (retention.samplesMs < 86_400_000) throw new ConfigError("retention must be at least 1d (samples are kept in day partitions)");
  const limits = (file?.limits ?? {}) as Record<string, unknown>;
  const maxSeriesPerMetric = positiveInteger(limits.seriesPerMetric ?? 500_000, "limits.seriesPerMetric");
  const maxSeriesPerAgent = positiveInteger(limits.seriesPerAgent ?? 20_000, "limits.seriesPerAgent");

  const enrollToken = fromEnv("SPECTA_ENROLL_TOKEN") ?? optionalString(file?.enrollToken, "enrollToken");
  if (enrollToken !== undefined && (enrollToken.trim() !== enrollToken || enrollToken.length < 16 || enrollToken.length > 200)) {
    throw new ConfigError("the enrolment token (SPECTA_ENROLL_TOKEN / enrollToken) must be 16 to 200 characters without surrounding spaces");
  }

  const shutdown = fromEnv("SPECTA_SHUTDOWN_TIMEOUT") ?? optionalString(file?.shutdownTimeout, "shutdownTimeout") ?? "10s";
  const drain = fromEnv("SPECTA_SHUTDOWN_DRAIN") ?? optionalString(file?.shutdownDrain, "shutdownDrain") ?? "0s";
  const connections = parseConnections(file?.connections, fromEnv);
  const rateLimits = parseRateLimits(file?.rateLimits, fromEnv);
  const audit = parseAudit(flags, fromEnv, file?.audit);
  const archive = parseArchive(flags, fromEnv, file?.archive);
  const alerts = parseAlerts(file?.alerts);

  return {
    environment: environment as Environment,
    ...(databaseUrl ? { databaseUrl } : {}),
    databaseReplicaUrls,
    replicaMaxLagMs,
    retention,
    maxSeriesPerMetric,
    maxSeriesPerAgent,
    host,
    port,
    ...(tls ? { tls } : {}),
    ...(signingKeyFile !== undefined ? { signingKeyFile: resolve(signingKeyFile) } : {}),
    dataDir,
    logLevel: logLevel as LogLevel,
    instruments,
    probes,
    shutdownTimeoutMs: durationSetting(shutdown, "shutdownTimeout"),
    shutdownDrainMs: durationSetting(drain, "shutdownDrain"),
    connections,
    rateLimits,
    alerts,
    ...(enrollToken ? { enrollToken } : {}),
    audit,
    ...(archive ? { archive } : {}),
    ...(file ? { configFile } : {}),
  };
}

function parseAlerts(value: unknown): AlertsConfig {
  const section = objectSetting(value, "alerts");
  const evaluationIntervalMs = positiveDuration(
    optionalString(section.evaluationInterval, "alerts.evaluationInterval") ?? "15s",
    "alerts.evaluationInterval",
  );
  const ruleTimeoutMs = positiveDuration(optionalString(section.ruleTimeout, "alerts.ruleTimeout") ?? "10s", "alerts.ruleTimeout");
  if (section.rules !== undefined && !Array.isArray(section.rules)) throw new ConfigError("alerts.rules must be a list of rules");
  return { evaluationIntervalMs, ruleTimeoutMs, rules: (section.rules as unknown[] | undefined) ?? [] };
}

/** Parses "host:port", "[v6]:port" or ":port". */
export function parseAddr(addr: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(addr.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    throw new ConfigError(`address "${addr}" is not host:port (for example 127.0.0.1:7777 or [::1]:7777)`);
  }
  return { host: match[1] ?? (match[2] || "0.0.0.0"), port };
}

type FileConfig = Record<string, unknown>;

function readConfigFile(path: string, required: boolean): FileConfig | undefined {
  if (!existsSync(path)) {
    if (required) throw new ConfigError(`config file ${path} does not exist`);
    return undefined;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`config file ${path} must hold a JSON object`);
  }
  return parsed as FileConfig;
}

function expectString(value: unknown, where: string): string {
  if (typeof value !== "string") throw new ConfigError(`${where} must be a string`);
  return value;
}

function stringList(value: unknown, where: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new ConfigError(`${where} must be a list of strings`);
  return value.map((v, i) => expectString(v, `${where}[${i}]`));
}

function optionalString(value: unknown, where: string): string | undefined {
  return value === undefined ? undefined : expectString(value, where);
}

function durationSetting(text: string, where: string): number {
  const ms = parseDuration(text);
  if (ms === undefined) throw new ConfigError(`${where} "${text}" is not a duration such as 500ms, 30s or 5m`);
  return ms;
}

/** Validates instrument declarations from the config file. */
export function parseInstruments(value: unknown): InstrumentDeclaration[] {
  if (!Array.isArray(value)) throw new ConfigError("instruments must be a list");
  const seen = new Set<string>();
  return value.map((raw: unknown, i): InstrumentDeclaration => {
    const where = `instruments[${i}]`;
    if (typeof raw !== "object" || raw === null) throw new ConfigError(`${where} must be an object`);
    const decl = raw as Record<string, unknown>;
    const name = expectString(decl.name, `${where}.name`);
    if (name.length > 255 || !metricNamePattern.test(name)) {
      throw new ConfigError(`${where}.name "${name}" must match ${metricNamePattern.source} and be at most 255 characters`);
    }
    if (seen.has(name)) throw new ConfigError(`instrument ${name} is declared twice`);
    seen.add(name);
    const kind = expectString(decl.kind, `${where}.kind`);
    if (!(instrumentKinds as readonly string[]).includes(kind)) {
      throw new ConfigError(`${where}.kind "${kind}" must be one of ${instrumentKinds.join(", ")}`);
    }
    const help = decl.help === undefined ? name : expectString(decl.help, `${where}.help`);
    let buckets: number[] | undefined;
    if (decl.buckets !== undefined) {
      if (kind !== "histogram") throw new ConfigError(`${where}: only histograms have buckets`);
      if (!Array.isArray(decl.buckets) || decl.buckets.length === 0 || !decl.buckets.every((b) => typeof b === "number" && Number.isFinite(b))) {
        throw new ConfigError(`${where}.buckets must be a non-empty list of finite numbers`);
      }
      buckets = decl.buckets as number[];
      if (buckets.some((b, j) => j > 0 && b <= buckets![j - 1]!)) throw new ConfigError(`${where}.buckets must increase`);
    }
    const labels: Record<string, string[]> = {};
    if (decl.labels !== undefined) {
      if (typeof decl.labels !== "object" || decl.labels === null || Array.isArray(decl.labels)) {
        throw new ConfigError(`${where}.labels must map each label key to its allowed values`);
      }
      for (const [key, values] of Object.entries(decl.labels)) {
        if (!labelKeyPattern.test(key) || key.startsWith("__")) throw new ConfigError(`${where}.labels: "${key}" is not a valid label key`);
        if (key === environmentLabel || (kind === "histogram" && key === "le")) {
          throw new ConfigError(`${where}.labels: "${key}" is reserved`);
        }
        if (!Array.isArray(values) || values.length === 0 || !values.every((v) => typeof v === "string")) {
          throw new ConfigError(`${where}.labels.${key} must be a non-empty list of allowed values`);
        }
        labels[key] = values as string[];
      }
    }
    return { name, kind: kind as InstrumentKind, help, labels, ...(buckets ? { buckets } : {}) };
  });
}

/** TLS needs both files; each comes from its flag, else the environment, else the config file. Their contents are checked at start (src/server/tls.ts). */
function parseTls(flags: DaemonFlags, fromEnv: (name: string) => string | undefined, value: unknown): TlsConfig | undefined {
  const file = objectSetting(value, "tls");
  const certFile = flags.tlsCert ?? fromEnv("SPECTA_TLS_CERT") ?? optionalString(file.cert, "tls.cert");
  const keyFile = flags.tlsKey ?? fromEnv("SPECTA_TLS_KEY") ?? optionalString(file.key, "tls.key");
  if (certFile === undefined && keyFile === undefined) return undefined;
  const cert = "the certificate (--tls-cert, SPECTA_TLS_CERT or tls.cert)";
  const key = "its private key (--tls-key, SPECTA_TLS_KEY or tls.key)";
  if (certFile === undefined) throw new ConfigError(`TLS needs ${cert} and ${key}: only the key ${keyFile} is given`);
  if (keyFile === undefined) throw new ConfigError(`TLS needs ${cert} and ${key}: only the certificate ${certFile} is given`);
  return { certFile: resolve(certFile), keyFile: resolve(keyFile) };
}

function objectSetting(value: unknown, where: string): Record<string, unknown> {
  if (value === undefined) return {};
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new ConfigError(`${where} must be an object`);
  return value as Record<string, unknown>;
}

function positiveDuration(text: string, where: string): number {
  const ms = durationSetting(text, where);
  if (ms <= 0) throw new ConfigError(`${where} must be longer than 0`);
  return ms;
}

/**
 * The default connection cap: 10,000, or fewer when the process may open fewer files (every
 * connection is one), keeping 128 for the database pool, logs and the data directory. At the file
 * limit accepting fails (EMFILE) without a log line, and every new client is locked out.
 */
export function defaultMaxConnections(limitsFile = "/proc/self/limits"): number {
  let openFiles = Infinity;
  try {
    const soft = /^Max open files\s+(\d+)/m.exec(readFileSync(limitsFile, "utf8"))?.[1];
    if (soft !== undefined) openFiles = Number(soft);
  } catch {
    // Not Linux: no way to read the limit without a native call; keep the fixed default.
  }
  return Math.max(16, Math.min(10_000, openFiles - 128));
}

function parseConnections(value: unknown, fromEnv: (name: string) => string | undefined): ConnectionsConfig {
  const file = objectSetting(value, "connections");
  const timeout = (key: string, env: string, fallback: string) =>
    positiveDuration(fromEnv(env) ?? optionalString(file[key], `connections.${key}`) ?? fallback, `connections.${key} (${env})`);
  const maxText = fromEnv("SPECTA_MAX_CONNECTIONS");
  const max = maxText !== undefined ? Number(maxText) : (file.max ?? defaultMaxConnections());
  if (typeof max !== "number" || !Number.isInteger(max) || max < 1) {
    throw new ConfigError("connections.max (SPECTA_MAX_CONNECTIONS) must be a positive whole number");
  }
  const connections = {
    max,
    headersTimeoutMs: timeout("headersTimeout", "SPECTA_HEADERS_TIMEOUT", "10s"),
    requestTimeoutMs: timeout("requestTimeout", "SPECTA_REQUEST_TIMEOUT", "5m"),
    idleTimeoutMs: timeout("idleTimeout", "SPECTA_IDLE_TIMEOUT", "65s"),
    pingIntervalMs: timeout("pingInterval", "SPECTA_PING_INTERVAL", "60s"),
  };
  if (connections.headersTimeoutMs > connections.requestTimeoutMs) {
    throw new ConfigError("connections.headersTimeout must not be longer than connections.requestTimeout (the headers are part of the request)");
  }
  return connections;
}

/** Reads a rate limit from `{ "perSecond": 1000, "burst": 2000 }` in the file or "1000,2000" in the environment. */
function rateLimitSetting(fileValue: unknown, envText: string | undefined, fallback: RateLimit, where: string): RateLimit {
  let limit: { perSecond?: unknown; burst?: unknown } = { ...fallback, ...objectSetting(fileValue, where) };
  if (envText !== undefined) {
    const [perSecond, burst] = envText.split(",").map((part) => Number(part.trim()));
    limit = { perSecond, burst: burst ?? fallback.burst };
  }
  const { perSecond, burst } = limit;
  if (
    typeof perSecond !== "number" ||
    !Number.isFinite(perSecond) ||
    perSecond < 0 ||
    typeof burst !== "number" ||
    !Number.isInteger(burst) ||
    burst < 1
  ) {
    throw new ConfigError(`${where} must be a rate per second (0: no limit) and a whole burst of at least 1, e.g. 1000,2000`);
  }
  return { perSecond, burst };
}

function parseRateLimits(value: unknown, fromEnv: (name: string) => string | undefined): RateLimitsConfig {
  const file = objectSetting(value, "rateLimits");
  return {
    instrumentCalls: rateLimitSetting(
      file.instrumentCalls,
      fromEnv("SPECTA_RATE_INSTRUMENT_CALLS"),
      { perSecond: 1_000, burst: 2_000 },
      "rateLimits.instrumentCalls (SPECTA_RATE_INSTRUMENT_CALLS)",
    ),
    failedAuth: rateLimitSetting(
      file.failedAuth,
      fromEnv("SPECTA_RATE_FAILED_AUTH"),
      { perSecond: 10, burst: 50 },
      "rateLimits.failedAuth (SPECTA_RATE_FAILED_AUTH)",
    ),
  };
}

/** --audit-file, --audit-url (or SPECTA_AUDIT_FILE, SPECTA_AUDIT_URL, audit.file, audit.url) and the audit section's other settings. */
function parseAudit(flags: DaemonFlags, fromEnv: (name: string) => string | undefined, value: unknown): AuditSettings {
  const section = objectSetting(value, "audit");
  const path = flags.auditFile ?? fromEnv("SPECTA_AUDIT_FILE") ?? optionalString(section.file, "audit.file");
  const url = flags.auditUrl ?? fromEnv("SPECTA_AUDIT_URL") ?? optionalString(section.url, "audit.url");
  if (url !== undefined && !/^https?:\/\/[^/]/.test(url)) throw new ConfigError(`the audit URL "${url}" must be an http:// or https:// URL`);
  const keep = section.fileKeep ?? 5;
  if (typeof keep !== "number" || !Number.isInteger(keep) || keep < 0)
    throw new ConfigError("audit.fileKeep must be a whole number of files, 0 or more");
  return {
    ...(path !== undefined
      ? { file: { path: resolve(path), maxBytes: positiveInteger(section.fileMaxBytes ?? 100 * 1024 * 1024, "audit.fileMaxBytes"), keep } }
      : {}),
    ...(url !== undefined ? { url } : {}),
    queueCapacity: positiveInteger(section.queue ?? 10_000, "audit.queue"),
    retentionMs: positiveDuration(optionalString(section.retention, "audit.retention") ?? "90d", "audit.retention"),
  };
}

/** --archive-dir (or SPECTA_ARCHIVE_DIR, archive.dir) turns the archive on; its section's other settings. */
function parseArchive(flags: DaemonFlags, fromEnv: (name: string) => string | undefined, value: unknown): ArchiveSettings | undefined {
  const section = objectSetting(value, "archive");
  const dir = flags.archiveDir ?? fromEnv("SPECTA_ARCHIVE_DIR") ?? optionalString(section.dir, "archive.dir");
  if (dir === undefined) return undefined;
  return {
    dir: resolve(dir),
    retentionMs: positiveDuration(optionalString(section.retention, "archive.retention") ?? "30d", "archive.retention"),
    flushBytes: positiveInteger(section.flushBytes ?? 10 * 1024 * 1024, "archive.flushBytes"),
    flushIntervalMs: positiveDuration(optionalString(section.flushInterval, "archive.flushInterval") ?? "60s", "archive.flushInterval"),
  };
}

function parseProbes(value: unknown, urlsOverride: string[] | undefined): ProbeConfig {
  const section = (value ?? {}) as Record<string, unknown>;
  if (typeof section !== "object" || Array.isArray(section)) throw new ConfigError("probes must be an object");
  const rawUrls = urlsOverride ?? (section.urls === undefined ? [] : section.urls);
  if (!Array.isArray(rawUrls)) throw new ConfigError("probes.urls must be a list");
  const urls = rawUrls.map((u) => expectString(u, "probes.urls[]").trim()).filter((u) => u !== "");
  for (const url of urls) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new ConfigError(`probe URL "${url}" is not a URL`);
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new ConfigError(`probe URL "${url}" must be http or https`);
  }
  return {
    urls,
    intervalMs: durationSetting(optionalString(section.interval, "probes.interval") ?? "30s", "probes.interval"),
    timeoutMs: durationSetting(optionalString(section.timeout, "probes.timeout") ?? "5s", "probes.timeout"),
  };
}
