import type { Command } from "commander";
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { AgentError, startAgent } from "../agent/agent.js";
import { builtInReleaseKeys } from "../agent/release-keys.js";
import { readCurrent } from "../agent/release-state.js";
import { DiagnosticError, parseAllow } from "../shared/diagnostics.js";
import type { Protocol } from "../agent/sender.js";
import { ConfigError } from "../config/config.js";
import { createLogger, logLevels, type LogLevel } from "../shared/log.js";
import { parseReleaseKeys, ReleaseError } from "../shared/release.js";
import { exitWithSupervisor, restartExitCode, supervise, supervisedVariable } from "./agent-supervisor.js";
import { defaultServer } from "./client.js";
import { collect, exitOnSignals, fail } from "./util.js";

interface AgentFlags {
  server?: string;
  ca?: string;
  signingKeyFile?: string;
  enrollToken?: string;
  hostname?: string;
  label?: string[];
  stateDir?: string;
  protocol?: string;
  logLevel?: string;
  allow?: string[];
  releaseKeys?: string;
  updateInterval?: string;
  updateHealthTimeout?: string;
}

/** The agent's default state directory: /var/lib/specta-agent for root, else under XDG_STATE_HOME. */
export function defaultAgentStateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (process.getuid?.() === 0) return "/var/lib/specta-agent";
  return join(env.XDG_STATE_HOME || join(homedir(), ".local", "state"), "specta-agent");
}

/** A number of seconds of a flag, e.g. "300" or "0.5", in milliseconds. */
function seconds(value: string, flag: string): number {
  const n = Number(value);
  if (!(value.trim() !== "" && n > 0 && n <= 86_400 * 30)) throw new ConfigError(`${flag} "${value}" must be a number of seconds, more than 0`);
  return Math.round(n * 1000);
}

/** The release keys of a trust file (--release-keys), besides the built-in ones. */
function releaseKeys(file: string | undefined): string[] {
  if (file === undefined) return [...builtInReleaseKeys];
  try {
    return [...builtInReleaseKeys, ...parseReleaseKeys(readFileSync(file, "utf8"))];
  } catch (err) {
    throw new ConfigError(`--release-keys ${file}: ${err instanceof ReleaseError ? err.message : (err as Error).message}`);
  }
}

/** Parses repeated k=v flags into labels. */
export function parseLabels(pairs: string[] = []): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const pair of pairs) {
    const match = /^([a-zA-Z_][a-zA-Z0-9_]*)=(.*)$/.exec(pair);
    if (!match) throw new ConfigError(`--label "${pair}" is not key=value (keys: letters, digits and _)`);
    labels[match[1]!] = match[2]!;
  }
  return labels;
}

export function agentCommand(program: Command): void {
  program
    .command("agent")
    .description("run the host agent: collect this host's metrics and push them to the daemon, losing nothing while it is away")
    .option("--server <url>", `the daemon's URL (env SPECTA_SERVER, default ${defaultServer}); https:// for a daemon that serves TLS`)
    .option("--ca <file>", "the CA certificate (PEM) that signed an https:// daemon's certificate (env SPECTA_CA; default: the system's trusted CAs)")
    .option(
      "--signing-key-file <file>",
      "sign Push calls with the key the daemon shares (--signing-key-file there) and check its answers (env SPECTA_SIGNING_KEY_FILE)",
    )
    .option("--enroll-token <token>", "the daemon's enrolment token, needed at first start (env SPECTA_ENROLL_TOKEN)")
    .option("--hostname <name>", "name to report for this host (default: the system's host name)")
    .option("--label <key=value>", "label of this agent, e.g. role=db (repeatable)", collect, undefined)
    .option("--state-dir <dir>", "where the credential and unsent batches are kept (env SPECTA_AGENT_STATE_DIR)")
    .option("--protocol <protocol>", "grpc or connect (default grpc)")
    .option(
      "--allow <diagnostics>",
      "diagnostics this agent runs on request, comma separated: logs, disk-usage, mounts, ping, connect, connections, traceroute (repeatable; default all)",
      collect,
      undefined,
    )
    .option(
      "--release-keys <file>",
      "public keys of signed releases to install (specta release keygen), one per line, besides the built-in ones (env SPECTA_RELEASE_KEYS)",
    )
    .option("--update-interval <seconds>", "how often to ask the daemon for a release (env SPECTA_AGENT_UPDATE_INTERVAL, default 300)")
    .option(
      "--update-health-timeout <seconds>",
      "how long a new release has to report healthy before it is rolled back (env SPECTA_AGENT_UPDATE_HEALTH_TIMEOUT, default 60)",
    )
    .option("--log-level <level>", "fatal, error, warn, info, debug, trace or silent (env SPECTA_LOG_LEVEL)")
    .action(async (flags: AgentFlags) => {
      const env = (name: string) => (process.env[name] === "" ? undefined : process.env[name]);
      const options = (() => {
        try {
          const protocol = flags.protocol ?? "grpc";
          if (protocol !== "grpc" && protocol !== "connect") throw new ConfigError(`--protocol must be grpc or connect, got "${protocol}"`);
          const logLevel = flags.logLevel ?? env("SPECTA_LOG_LEVEL") ?? "info";
          if (!(logLevels as readonly string[]).includes(logLevel))
            throw new ConfigError(`log level "${logLevel}" is not one of ${logLevels.join(", ")}`);
          const server = (flags.server ?? env("SPECTA_SERVER") ?? defaultServer).replace(/\/+$/, "");
          if (!/^https?:\/\/[^/]/.test(server)) throw new ConfigError(`--server "${server}" must be an http:// or https:// URL`);
          const enrollToken = flags.enrollToken ?? env("SPECTA_ENROLL_TOKEN");
          const ca = flags.ca ?? env("SPECTA_CA");
          const signingKeyFile = flags.signingKeyFile ?? env("SPECTA_SIGNING_KEY_FILE");
          let allow: string[] = [];
          try {
            allow = parseAllow(flags.allow ?? []);
          } catch (err) {
            throw err instanceof DiagnosticError ? new ConfigError(`--allow: ${err.message}`) : err;
          }
          const keysFile = flags.releaseKeys ?? env("SPECTA_RELEASE_KEYS");
          return {
            updates: {
              keys: releaseKeys(keysFile === undefined ? undefined : resolve(keysFile)),
              intervalMs: seconds(flags.updateInterval ?? env("SPECTA_AGENT_UPDATE_INTERVAL") ?? "300", "--update-interval"),
            },
            healthTimeoutMs: seconds(flags.updateHealthTimeout ?? env("SPECTA_AGENT_UPDATE_HEALTH_TIMEOUT") ?? "60", "--update-health-timeout"),
            allow,
            server,
            protocol: protocol as Protocol,
            stateDir: resolve(flags.stateDir ?? env("SPECTA_AGENT_STATE_DIR") ?? defaultAgentStateDir()),
            labels: parseLabels(flags.label),
            ...(enrollToken ? { enrollToken } : {}),
            ...(ca ? { ca: resolve(ca) } : {}),
            ...(signingKeyFile ? { signingKeyFile: resolve(signingKeyFile) } : {}),
            ...(flags.hostname ? { hostname: flags.hostname } : {}),
            log: createLogger(logLevel as LogLevel),
          };
        } catch (err) {
          return fail(err);
        }
      })();
      // An installed release runs under a supervisor (this process), which can roll it back.
      const supervised = process.env[supervisedVariable] === "1";
      const supervisor = { stateDir: options.stateDir, healthTimeoutMs: options.healthTimeoutMs, log: options.log };
      if (supervised) exitWithSupervisor();
      else if (readCurrent(options.stateDir)) await supervise(supervisor);
      // Enrolment may wait for a daemon that is not up yet; a signal meanwhile has nothing to drain.
      const exitNow = () => process.exit(0);
      process.once("SIGTERM", exitNow).once("SIGINT", exitNow);
      const agent = await startAgent(options).catch((err: unknown) =>
        fail(err instanceof AgentError ? new ConfigError(err.message) : err, options.log),
      );
      process.off("SIGTERM", exitNow).off("SIGINT", exitNow);
      exitOnSignals(() => agent.stop(), options.log);
      // Refused later on (deregistered, revoked): exit as a refusal at start does, with code 2.
      void agent.stopped.then((refusal) => refusal && fail(new ConfigError(refusal.message), options.log));
      // An update installed and switched to: the supervisor starts it (this process becomes one).
      void agent.switched.then((version) => version && (supervised ? process.exit(restartExitCode) : supervise(supervisor)));
    });
}
