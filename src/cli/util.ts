import { ConfigError } from "../config/config.js";
import type { Logger } from "../shared/log.js";

/** Commander's accumulator for repeatable options. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/**
 * Ends the process after a start-up failure with one clear line on stderr and exit code 2
 * (configuration) or 1 (anything else); the full error goes to the log when there is one.
 */
export function fail(err: unknown, log?: Logger): never {
  const message = err instanceof Error ? err.message : String(err);
  if (log && !(err instanceof ConfigError)) log.fatal({ err }, message);
  process.stderr.write(`specta: ${message}\n`);
  process.exit(err instanceof ConfigError ? 2 : 1);
}

/** Stops gracefully on the first SIGTERM or SIGINT and exits 0; a second signal exits at once. */
export function exitOnSignals(stop: () => Promise<void>, log: Logger): void {
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    if (++signals > 1) {
      log.warn({ signal }, "second signal: exiting at once");
      process.exit(1);
    }
    log.info({ signal }, "signal received; draining");
    stop().then(
      () => process.exit(0),
      (err: unknown) => fail(err, log),
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}

/** Rows as aligned columns, two spaces apart; the last column is not padded. */
export function formatTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const last = widths.length - 1;
  return (
    rows
      .map((r) =>
        r
          .map((cell, i) => (i < last ? cell.padEnd(widths[i]!) : cell))
          .join("  ")
          .trimEnd(),
      )
      .join("\n") + "\n"
  );
}

/** Shortest id prefix that names an agent or a token, as git takes abbreviated hashes. */
export const minIdPrefix = 4;

/** Whether `wanted` (lower case) is a prefix of `id` long enough to name it. */
export function isIdPrefix(id: string, wanted: string): boolean {
  return wanted.length >= minIdPrefix && id.startsWith(wanted);
}
