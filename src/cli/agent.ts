import type { Command } from "commander";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { AgentError, startAgent } from "../agent/agent.js";
import { DiagnosticError, parseAllow } from "../shared/diagnostics.js";
import type { Protocol } from "../agent/sender.js";
import { ConfigError } from "../config/config.js";
import { createLogger, logLevels, type LogLevel } from "../shared/log.js";
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
}

/** The agent's default state directory: /var/lib/specta-agent for root, else under XDG_STATE_HOME. */
export function defaultAgentStateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (process.getuid?.() === 0) return "/var/lib/specta-agent";
  return join(env.XDG_STATE_HOME || join(homedir(), ".local", "state"), "specta-agent");
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
          return {
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
    });
}
