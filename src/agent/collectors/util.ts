/**
 * Small helpers shared by the collectors: reading /proc and /sys files cheaply, running a
 * foreign tool, and bounded concurrency.
 */
import { execFile } from "node:child_process";
import { close, open, read, readdir } from "node:fs";
import { UnsupportedError } from "./collector.js";

/**
 * Clock ticks per second of the times in /proc/stat and /proc/[pid]/stat (USER_HZ). It is 100 on
 * every Linux architecture Node runs on; Node has no sysconf(_SC_CLK_TCK) to ask.
 */
export const USER_HZ = 100;

/** Error codes that mean "this file or process is gone", not "something is broken". */
export function isGone(error: unknown): boolean {
  const code = errorCode(error);
  return code === "ENOENT" || code === "ESRCH" || code === "ENOTDIR";
}

export function errorCode(error: unknown): string | undefined {
  if (typeof error === "object" && error !== null && "code" in error) {
    const code = (error as { code: unknown }).code;
    return typeof code === "string" ? code : undefined;
  }
  return undefined;
}

/**
 * Reads a whole (small) file as latin1 text with open/read/close on the callback API: for
 * /proc files this costs about half the CPU of `fs.promises.readFile` (which stats, reads in
 * 64 KiB chunks and goes through FileHandle promises) and does not block the event loop like
 * `readFileSync`. A short read is end of file (true for regular files, seq_file and sysfs).
 */
export function readText(path: string, signal?: AbortSignal, sizeHint = 4096): Promise<string> {
  signal?.throwIfAborted();
  return new Promise<string>((resolve, reject) => {
    open(path, "r", (openError, fd) => {
      if (openError) {
        reject(openError);
        return;
      }
      let buffer = Buffer.allocUnsafe(sizeHint);
      let length = 0;
      const finish = (error: Error | null): void => {
        close(fd, () => {
          if (error) reject(error);
          else if (signal?.aborted) reject(signal.reason);
          else resolve(buffer.toString("latin1", 0, length));
        });
      };
      const next = (): void => {
        if (length === buffer.length) {
          const grown = Buffer.allocUnsafe(buffer.length * 4);
          buffer.copy(grown, 0, 0, length);
          buffer = grown;
        }
        const wanted = buffer.length - length;
        read(fd, buffer, length, wanted, length, (readError, bytesRead) => {
          if (readError) {
            finish(readError);
            return;
          }
          length += bytesRead;
          if (bytesRead < wanted || bytesRead === 0) finish(null);
          else next();
        });
      };
      next();
    });
  });
}

/** Reads a file, or returns undefined when it does not exist. */
export async function readOptional(path: string, signal?: AbortSignal): Promise<string | undefined> {
  try {
    return await readText(path, signal);
  } catch (error) {
    if (isGone(error)) return undefined;
    throw error;
  }
}

/** Lists a directory's entry names, or returns undefined when it does not exist. */
export function listDir(path: string): Promise<string[] | undefined> {
  return new Promise((resolve, reject) => {
    readdir(path, (error, names) => {
      if (!error) resolve(names);
      else if (isGone(error)) resolve(undefined);
      else reject(error);
    });
  });
}

/** Runs `fn` over `items` with at most `concurrency` calls in flight; results keep input order. */
export async function mapPool<T, R>(items: readonly T[], concurrency: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let nextIndex = 0;
  const worker = async (): Promise<void> => {
    while (nextIndex < items.length) {
      const index = nextIndex++;
      results[index] = await fn(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return results;
}

/** Parses a decimal field, or returns undefined for anything that is not a finite number. */
export function toNumber(text: string | undefined): number | undefined {
  if (text === undefined || text === "") return undefined;
  const value = Number(text);
  return Number.isFinite(value) ? value : undefined;
}

export interface ToolOptions {
  /** Killed (SIGTERM) after this long; default 20 s. */
  timeoutMs?: number;
  /** Largest stdout (or stderr) kept; more fails the run. Default 4 MiB. */
  maxBytes?: number;
  /** Exit codes that still mean "here is the output" (smartctl's status bits). */
  okExitCodes?: readonly number[];
  env?: Record<string, string>;
}

/**
 * Runs a foreign tool (execFile: no shell, arguments never parsed), with a timeout and a cap on
 * its output, in the C locale. A missing program is an UnsupportedError (the host lacks the
 * tool); a failure names the program and its stderr.
 */
export function runTool(file: string, args: readonly string[], signal: AbortSignal, options: ToolOptions = {}): Promise<string> {
  const { timeoutMs = 20_000, maxBytes = 4 * 2 ** 20, okExitCodes = [] } = options;
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { signal, timeout: timeoutMs, maxBuffer: maxBytes, env: { ...process.env, LC_ALL: "C", ...options.env }, windowsHide: true },
      (error, stdout, stderr) => {
        if (!error) {
          resolve(stdout);
          return;
        }
        const code = (error as { code?: unknown }).code;
        if (typeof code === "number" && okExitCodes.includes(code)) resolve(stdout);
        else if (errorCode(error) === "ENOENT") reject(new UnsupportedError(`${file} not found`, { cause: error }));
        else if (signal.aborted) reject(signal.reason);
        else
          reject(new Error(`${file} ${args[0] ?? ""} failed: ${(stderr.trim() || stdout.trim()).slice(0, 500) || error.message}`, { cause: error }));
      },
    );
  });
}

/** Narrowing of parsed JSON (a tool's or an API's answer): a plain object, or undefined. */
export function jsonRecord(value: unknown): Record<string, unknown> | undefined {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

export function jsonArray(value: unknown): unknown[] | undefined {
  return Array.isArray(value) ? value : undefined;
}

export function jsonNumber(value: unknown): number | undefined {
  return typeof value === "number" && Number.isFinite(value) ? value : undefined;
}

export function jsonString(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}
