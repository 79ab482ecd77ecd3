import type { Command } from "commander";
import { join } from "node:path";
import type { RunningAgent } from "../agent/agent.js";
import { resolveDaemonConfig, type DaemonFlags } from "../config/config.js";
import { createLogger } from "../shared/log.js";
import { collect, exitOnSignals, fail } from "./util.js";

export function daemonCommand(program: Command): void {
  program
    .command("daemon")
    .description("run the Specta daemon: Connect, gRPC and gRPC-Web on one port, plus /health, /version and /metrics")
    .option("--addr <host:port>", "address to listen on (env SPECTA_ADDR, default 127.0.0.1:7777)")
    .option(
      "--tls-cert <file>",
      "serve TLS (HTTP/1.1 and h2) with this PEM certificate chain; needs --tls-key; re-read on SIGHUP (env SPECTA_TLS_CERT)",
    )
    .option("--tls-key <file>", "the PEM private key of --tls-cert (env SPECTA_TLS_KEY)")
    .option(
      "--signing-key-file <file>",
      "require instrument calls and Push to be signed with this shared key (HashSHA256 header), and sign their answers (env SPECTA_SIGNING_KEY_FILE)",
    )
    .option("--data-dir <dir>", "where the daemon keeps its state (env SPECTA_DATA_DIR)")
    .option(
      "--database-url <url>",
      "postgres:// URL of the PostgreSQL to use (env SPECTA_DATABASE_URL; default: an embedded PostgreSQL in the data directory)",
    )
    .option(
      "--database-replica-url <url>",
      "postgres:// URL of a streaming replica of --database-url that queries read from (repeatable; env SPECTA_DATABASE_REPLICA_URLS, comma-separated)",
      collect,
      undefined,
    )
    .option("--retention <duration>", "how long raw samples are kept, e.g. 30d (env SPECTA_RETENTION)")
    .option("--config <file>", "JSON configuration file (env SPECTA_CONFIG, default <data-dir>/specta.json)")
    .option("--environment <name>", "development, testing, staging or production (env SPECTA_ENVIRONMENT)")
    .option("--log-level <level>", "fatal, error, warn, info, debug, trace or silent (env SPECTA_LOG_LEVEL)")
    .option("--audit-file <file>", "also append the audit trail to this file, one JSON event a line, rotated by size (env SPECTA_AUDIT_FILE)")
    .option("--audit-url <url>", "also POST the audit trail to this URL, in batches of JSON events, retried (env SPECTA_AUDIT_URL)")
    .option(
      "--archive-dir <dir>",
      "keep every accepted Push and instrument call as JSON lines in zstd files here (batches-<UTC time>.jsonl.zst; env SPECTA_ARCHIVE_DIR)",
    )
    .option("--with-agent", "also run a host agent for this host, enrolled with this daemon (state in <data-dir>/agent)")
    .option("--probe <url>", "probe this URL and record http_endpoint_health (repeatable)", collect, undefined)
    .action(async (flags: DaemonFlags & { withAgent?: boolean }) => {
      const config = (() => {
        try {
          return resolveDaemonConfig(flags);
        } catch (err) {
          return fail(err);
        }
      })();
      const log = createLogger(config.logLevel);
      // Loaded here, not at the top: every `specta` command loads this file, and most need none of it.
      const { startDaemon } = await import("../server/daemon.js");
      // Listened for before the port opens: a SIGHUP without a listener ends the process. One that
      // comes while the daemon starts is acted on once it has.
      let reload: (() => void) | undefined;
      let reloadWhenStarted = false;
      if (config.tls) process.on("SIGHUP", () => (reload ? reload() : (reloadWhenStarted = true)));
      const daemon = await startDaemon(config, log).catch((err: unknown) => fail(err, log));
      reload = () => {
        try {
          daemon.reloadTls();
        } catch (err) {
          log.error({ err: (err as Error).message }, "SIGHUP: the TLS certificate was not reloaded; keeping the current one");
        }
      };
      if (reloadWhenStarted) reload();

      let agent: RunningAgent | undefined;
      const stop = async () => {
        await agent?.stop();
        await daemon.stop();
      };
      exitOnSignals(stop, log);
      // Its embedded PostgreSQL is gone for good: exit non-zero, so that a supervisor starts it afresh.
      void daemon.failed.then((err) =>
        stop().then(
          () => fail(err, log),
          () => fail(err, log),
        ),
      );
      if (!flags.withAgent) return;
      const { startAgent } = await import("../agent/agent.js");
      const { ensureEnrollToken } = await import("../fleet/enroll-token.js");
      agent = await startAgent({
        server: daemon.url,
        // Its own certificate stands for a self-signed one; a CA-signed one needs SPECTA_CA.
        ...(config.tls ? { ca: process.env.SPECTA_CA || config.tls.certFile } : {}),
        ...(config.signingKeyFile !== undefined ? { signingKeyFile: config.signingKeyFile } : {}),
        protocol: "grpc",
        stateDir: join(config.dataDir, "agent"),
        enrollToken: ensureEnrollToken(config.dataDir, config.enrollToken),
        labels: {},
        log: log.child({ component: "agent" }),
      }).catch((err: unknown) => fail(err, log));
    });
}
