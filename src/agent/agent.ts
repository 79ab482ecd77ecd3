import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { setMaxListeners } from "node:events";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { API as AgentAPI, type RegisterRequestSchema } from "../../gen/agent/agent_pb.js";
import type { Logger } from "../shared/log.js";
import { readSigningKey, SigningKeyError } from "../shared/signing.js";
import { TrustError, trustForServer, untrustedCertificate } from "../shared/trust.js";
import { versionInfo } from "../shared/version.js";
import { Batch } from "./batch.js";
import { UnsupportedError, type Collector, type Measurement } from "./collectors/collector.js";
import { defaultCollectors } from "./collectors/defaults.js";
import { hostInventory, machineId } from "./collectors/inventory.js";
import { installedPackages } from "./collectors/packages.js";
import { runCommandLoop } from "./commands.js";
import { backoffMs, daemonConnection, retryBackoff, Sender, type CallSecurity, type Protocol } from "./sender.js";
import { Schedule, type Run } from "./schedule.js";
import { Spool, type SpoolLimits } from "./spool.js";
import { runUpdateLoop, type UpdateOptions } from "./updates.js";

export interface AgentOptions {
  /** The daemon, e.g. http://127.0.0.1:7777, or https://… for one that serves TLS. */
  server: string;
  /** For an https:// daemon: the CA certificate file (PEM) that signed its certificate; unset: the system's trusted CAs. */
  ca?: string;
  /** The file of the key shared with the daemon for signed calls (Push); unset: calls are not signed. */
  signingKeyFile?: string;
  protocol: Protocol;
  /** Where the credential and the spool live. */
  stateDir: string;
  /** Needed at first start only. */
  enrollToken?: string;
  hostname?: string;
  labels: Record<string, string>;
  collectors?: Collector[];
  /** How often collected samples are closed into a batch (default 10 s). */
  flushIntervalMs?: number;
  /** A batch is closed early when it holds this many points. */
  maxBatchPoints?: number;
  spool?: SpoolLimits;
  /** How often the installed packages are read and sent again (default: daily). */
  packagesIntervalMs?: number;
  /** Diagnostics this agent runs on request (e.g. "ping", "connect"); empty or unset: all. */
  allow?: string[];
  /** Self-updates from the daemon (updates.ts); unset: none. */
  updates?: UpdateOptions;
  log: Logger;
}

export interface RunningAgent {
  agentId(): string | undefined;
  /**
   * Resolves once the agent has stopped by itself, because the daemon refused its credential
   * (deregistered, revoked): with that reason, after collection and sending have stopped and
   * unsent batches are on disk. Resolves undefined when stop() is called instead. Never rejects.
   */
  stopped: Promise<AgentError | undefined>;
  /** Closes the current batch into the spool, keeps unsent batches on disk and stops. */
  stop(): Promise<void>;
  /** Resolves with the version of a release switched to, once the agent has stopped for it to start; undefined when it stops otherwise. */
  switched: Promise<string | undefined>;
}

/** A problem that stops the agent, reported as one line. */
export class AgentError extends Error {
  override name = "AgentError";
}

interface StoredCredential {
  server: string;
  agentId: string;
  credential: string;
}

// In memory a point costs about 65 bytes of heap, its batch kept encoded (bench/agent-spool.ts):
// 15,000 points (15 minutes of a typical host's samples: a daemon restart, a network blip) take
// about 1 MiB; longer outages go to disk, where a point takes about 55 bytes.
export const defaultSpool: SpoolLimits = { memoryPoints: 15_000, diskBytes: 256 * 2 ** 20 };

/**
 * The host agent: enrols once (keeping its credential, mode 0600, in the state directory), runs
 * each collector on its own interval, closes samples into batches, and hands them to a spool
 * that a sender empties into metrics.API/Push. Collection never waits for the daemon.
 */
export async function startAgent(options: AgentOptions): Promise<RunningAgent> {
  const { log } = options;
  mkdirSync(options.stateDir, { recursive: true, mode: 0o700 });
  const credentialFile = join(options.stateDir, "credential.json");
  let stored = readCredential(credentialFile);
  if (stored && stored.server !== options.server) {
    log.warn({ enrolledWith: stored.server, server: options.server }, "the credential was issued by another daemon URL; using it anyway");
  }
  if (!stored && !options.enrollToken) {
    throw new AgentError(`this agent is not enrolled yet: pass --enroll-token (the daemon keeps it in its data directory as enroll.token)`);
  }

  const credentialRefused = (error: ConnectError) =>
    new AgentError(
      `the daemon refused this agent's credential (${error.rawMessage}); if it was deregistered, delete ${credentialFile} and enrol again with --enroll-token`,
    );
  const { transport, push } = daemonConnection(options.server, options.protocol, () => stored?.credential, security(options));
  const inventory = await hostInventory();
  const hostname = options.hostname ?? inventory.hostname;
  const registration: Omit<MessageInitShape<typeof RegisterRequestSchema>, "enrollToken" | "$typeName"> = {
    host: { ...inventory, hostname, memoryBytes: BigInt(Math.round(inventory.memoryBytes)), bootTime: timestampFromDate(inventory.bootTime) },
    labels: options.labels,
    agentVersion: versionInfo.ver,
    machineId: await machineId(),
    ...(await readPackages(log)),
  };
  const controller = new AbortController();
  const { signal } = controller;
  // Every collector loop and the sender wait on this one signal: more than Node's default of 10.
  setMaxListeners(64, signal);

  /** Registers (or, with a credential, updates the inventory); retries while the daemon is away. */
  const register = async (onFirstFailure: () => void) => {
    const agents = createClient(AgentAPI, transport);
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await agents.register({ ...registration, enrollToken: stored ? "" : (options.enrollToken ?? "") }, { signal, timeoutMs: 15_000 });
        if (!stored) {
          stored = { server: options.server, agentId: res.agentId, credential: res.credential };
          writeFileSync(credentialFile, JSON.stringify(stored, null, 2) + "\n", { mode: 0o600 });
          log.info({ agentId: res.agentId, hostname }, "enrolled");
        }
        return;
      } catch (err) {
        const error = ConnectError.from(err);
        if (signal.aborted) return;
        // Another agent has this hostname, or this machine's agent is running: the operator decides.
        if (error.code === Code.AlreadyExists) throw new AgentError(`registration refused: ${error.rawMessage}`);
        if (error.code === Code.Unauthenticated || error.code === Code.PermissionDenied || error.code === Code.InvalidArgument) {
          throw stored ? credentialRefused(error) : new AgentError(`enrolment refused: ${error.rawMessage}`);
        }
        // At first start that is a mistake to say at once; once enrolled, the daemon's certificate may come good again (a renewal).
        const untrusted = untrustedCertificate(error);
        if (untrusted && !stored) {
          throw new AgentError(
            `the daemon at ${options.server} has a certificate this agent does not trust (${untrusted.message}): give the CA that signed it with --ca or SPECTA_CA`,
          );
        }
        if (attempt === 0) {
          log.warn({ server: options.server, code: Code[error.code], reason: error.rawMessage }, "cannot register yet; retrying");
          onFirstFailure();
        }
        await sleep(backoffMs(attempt, retryBackoff), undefined, { signal }).catch(() => undefined);
      }
    }
  };

  // Without a credential nothing can be sent: enrol first. With one, a refusal stops the agent
  // at once, but a daemon that is away does not: collection starts and registration retries.
  await new Promise<void>((resolve, reject) => {
    register(() => {
      if (stored) resolve();
    }).then(resolve, (err: unknown) => {
      log.error({ err: (err as Error).message }, "registration failed");
      reject(err);
    });
  });

  const spool = new Spool(join(options.stateDir, "spool"), options.spool ?? defaultSpool, log);
  const sender = new Sender(push, spool, log);
  const batch = new Batch({ host: hostname });
  const maxBatchPoints = options.maxBatchPoints ?? 5_000;
  // Set once stop() has closed the last batch and persisted the spool: a close queued before it (setImmediate) then does nothing.
  let spoolPersisted = false;
  const closeBatch = () => {
    if (spoolPersisted) return;
    batch.addAll(agentMeasurements(spool, sender), Date.now());
    const closed = batch.close();
    if (!closed) return;
    spool.add(closed);
    sender.notify();
  };

  const sending = sender.run(signal);
  const updating = options.updates
    ? runUpdateLoop({ ...options.updates, transport, stateDir: options.stateDir, running: versionInfo.ver, log, signal })
    : Promise.resolve(undefined);
  const loops = [sending, updating, runCommandLoop({ transport, allow: options.allow ?? [], log, signal })];
  const schedule = new Schedule();
  for (const collector of options.collectors ?? defaultCollectors({})) {
    schedule.every(
      collector.intervalMs,
      collectorRun(collector, signal, log, (measurements, at) => {
        batch.addAll(measurements, at);
        if (batch.points >= maxBatchPoints) closeBatch();
      }),
    );
  }
  // Closed in the check phase of the same turn, after what the turn's collectors read (from
  // /proc and /sys, synchronously) has landed in the batch: one wakeup collects and sends.
  schedule.every(options.flushIntervalMs ?? 10_000, () => {
    setImmediate(closeBatch);
    return undefined;
  });
  // The installed packages, nightly: registering again with them updates the daemon's inventory.
  const packagesTimer = setInterval(() => {
    void (async () => {
      const packages = await readPackages(log);
      if (!packages.packages || signal.aborted) return;
      registration.packages = packages.packages;
      await register(() => undefined);
    })().catch((err: unknown) => log.warn({ err: (err as Error).message }, "updating the installed packages failed; trying again tomorrow"));
  }, options.packagesIntervalMs ?? packagesIntervalMs);
  // The first samples go out at once, so that a new host shows up within a second.
  const firstFlush = setTimeout(closeBatch, 1_000);
  log.info({ server: options.server, protocol: options.protocol, hostname, agentId: stored?.agentId }, "agent running");

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      clearInterval(packagesTimer);
      clearTimeout(firstFlush);
      controller.abort();
      await Promise.all([schedule.stop(), ...loops]);
      closeBatch();
      spool.persist();
      spoolPersisted = true;
      log.info({ spooled: spool.stats() }, "agent stopped");
    })());
  // A refused credential cannot come good by retrying: the whole agent stops rather than
  // collect into a spool that nothing empties, and says what to do.
  const stopped = sending.then(async (refusal) => {
    if (!refusal) return undefined;
    const error = credentialRefused(refusal);
    log.error({ code: Code[refusal.code], spooled: spool.stats() }, `${error.message}; the agent stops, keeping its unsent batches`);
    await stop().catch((err: unknown) => log.error({ err: (err as Error).message }, "stopping the agent failed"));
    return error;
  });

  const switched = updating.then(async (version) => {
    if (version) await stop().catch((err: unknown) => log.error({ err: (err as Error).message }, "stopping the agent failed"));
    return version;
  });

  return { agentId: () => stored?.agentId, stopped, stop, switched };
}

/** How often a collector whose hardware or tool this host lacks is asked again (a disk, a GPU, Docker may come later). */
export const unsupportedRetryMs = 10 * 60_000;

/**
 * One collector's runs on the schedule (which never overlaps them): a failure is logged once (and
 * again only after a success). A collector the host cannot support is logged once at info level
 * and asked again only every unsupportedRetryMs, so that a missing tool is not looked for every
 * few seconds.
 */
function collectorRun(collector: Collector, signal: AbortSignal, log: Logger, deliver: (measurements: Measurement[], at: number) => void): Run {
  let failing = false;
  let notBefore = 0;
  return (at) => {
    // On the monotonic clock, so that a wall clock set back does not hold a retry off.
    if (performance.now() < notBefore || signal.aborted) return undefined;
    // A collect() that throws rather than rejects fails the same way.
    return new Promise<Measurement[]>((resolve) => resolve(collector.collect(signal))).then(
      (measurements) => {
        deliver(measurements, at);
        if (failing) log.info({ collector: collector.name }, "collector works again");
        failing = false;
      },
      (err: unknown) => {
        if (signal.aborted) return;
        const unsupported = err instanceof UnsupportedError;
        // Half an interval early, so that the turn 10 minutes on is not missed by a millisecond.
        if (unsupported) notBefore = performance.now() + unsupportedRetryMs - collector.intervalMs / 2;
        if (!failing) {
          if (unsupported)
            log.info({ collector: collector.name, reason: err.message }, "collector not supported on this host; asked again every 10 minutes");
          else log.warn({ collector: collector.name, reason: (err as Error).message }, "collector failed; the others go on");
        }
        failing = true;
      },
    );
  };
}

/** The installed packages are read at start and then daily. */
export const packagesIntervalMs = 24 * 60 * 60_000;

/** The installed packages for Register (nothing when the host has no package manager the agent knows, or it failed: the daemon keeps its list). */
async function readPackages(log: Logger): Promise<Pick<MessageInitShape<typeof RegisterRequestSchema>, "packages">> {
  try {
    const found = await installedPackages(AbortSignal.timeout(120_000));
    return found ? { packages: { manager: found.manager, packages: found.packages, collected: timestampFromDate(new Date()) } } : {};
  } catch (err) {
    log.warn({ err: (err as Error).message }, "cannot read the installed packages");
    return {};
  }
}

/** The agent's own health as samples: what is waiting, and what was lost. */
function agentMeasurements(spool: Spool, sender: Sender): Measurement[] {
  const s = spool.stats();
  return [
    { metric: "specta_agent_spool_batches", labels: {}, kind: "gauge", value: s.batches },
    { metric: "specta_agent_spool_points", labels: {}, kind: "gauge", value: s.points },
    { metric: "specta_agent_spool_disk_bytes", labels: {}, kind: "gauge", value: s.diskBytes },
    { metric: "specta_agent_spool_dropped_points_total", labels: {}, kind: "counter", value: s.droppedPoints },
    { metric: "specta_agent_spool_corrupt_files_total", labels: {}, kind: "counter", value: s.corruptFiles },
    { metric: "specta_agent_rejected_points_total", labels: {}, kind: "counter", value: sender.rejectedPoints },
    { metric: "specta_agent_failed_pushes_total", labels: {}, kind: "counter", value: sender.failedPushes },
  ];
}

/** What protects the agent's calls (AgentOptions.ca, signingKeyFile); their files' problems as AgentError. */
function security({ server, ca, signingKeyFile }: AgentOptions): CallSecurity {
  try {
    const trust = trustForServer(server, ca);
    return { ...(trust ? { trust } : {}), ...(signingKeyFile !== undefined ? { signingKey: readSigningKey(signingKeyFile) } : {}) };
  } catch (err) {
    throw err instanceof TrustError || err instanceof SigningKeyError ? new AgentError(err.message) : err;
  }
}

function readCredential(file: string): StoredCredential | undefined {
  if (!existsSync(file)) return undefined;
  try {
    const parsed = JSON.parse(readFileSync(file, "utf8")) as Partial<StoredCredential>;
    if (typeof parsed.agentId === "string" && typeof parsed.credential === "string" && typeof parsed.server === "string") {
      return parsed as StoredCredential;
    }
  } catch {
    // fall through
  }
  throw new AgentError(`${file} is not a valid credential file; delete it and enrol again with --enroll-token`);
}
