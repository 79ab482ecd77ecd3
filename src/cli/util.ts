import { ConfigError } from "../config/config.js";
import type { Logger } from "../log.js";

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
