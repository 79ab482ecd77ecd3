/**
 * Small helpers shared by the collectors: reading /proc and /sys files cheaply, running a
 * foreign tool, and bounded concurrency.
 */
import { execFile } from "node:child_process";
import { close, closeSync, open, openSync, read, readdirSync, readSync } from "node:fs";
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

/** The buffer every /proc and /sys read goes through (reads are synchronous, so one is enough); grows as needed. */
let readBuffer = Buffer.allocUnsafe(16_384);

/**
 * Reads a whole /proc or /sys file as latin1 text, synchronously (openSync/readSync/closeSync into
 * one shared buffer). These files are made by the kernel in memory, so a read takes a few
 * microseconds of kernel time and blocking the event loop for it costs nothing; the asynchronous
 * API cost about five times the CPU per file (three round trips through libuv's thread pool,
 * a promise and closures per file, and the garbage they leave), which made the processes
 * collector's one read per process the agent's largest cost. A short read is end of file (true
 * for seq_file and sysfs). For files whose driver may be slow (hwmon sensors behind I2C, the
 * Raspberry Pi's firmware mailbox) use readOptional, which does not block.
 */
export function readTextSync(path: string): string {
  const fd = openSync(path, "r");
  try {
    return readFdText(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads an open /proc or /sys file again from its start (readTextSync without the open and
 * close): a read of a /proc file at offset 0 makes the kernel generate it afresh.
 */
export function readFdText(fd: number): string {
  const bytes = readFdBytes(fd);
  return readBuffer.toString("latin1", 0, bytes.length);
}

/**
 * readFdText's bytes, not made a string: a view of the shared read buffer, valid until the next
 * read. For the files read by the hundred (/proc/[pid]/stat), parsed where they lie.
 */
export function readFdBytes(fd: number): Uint8Array {
  let length = 0;
  for (;;) {
    if (length === readBuffer.length) {
      const grown = Buffer.allocUnsafe(readBuffer.length * 4);
      readBuffer.copy(grown, 0, 0, length);
      readBuffer = grown;
    }
    const wanted = readBuffer.length - length;
    const bytesRead = readSync(fd, readBuffer, length, wanted, length);
    length += bytesRead;
    // A Uint8Array, not a Buffer: its indexOf is V8's own, where Buffer's is JavaScript.
    if (bytesRead < wanted || bytesRead === 0) return new Uint8Array(readBuffer.buffer, readBuffer.byteOffset, length);
  }
}

/**
 * readText of a file kept open from one run to the next, for the files the frequent collectors
 * read every few seconds (/proc/stat, /proc/meminfo, …): each read is from offset 0, which makes
 * the kernel generate a /proc file afresh, and saves the open and close (a path lookup in /proc,
 * the seq_file's set-up and teardown), which cost about as much as the read. A read that fails
 * closes the file; the next opens it again. The file stays open for the collector's life, which
 * is the agent process's.
 */
export function heldFile(path: string): (signal?: AbortSignal) => Promise<string> {
  let fd: number | undefined;
  return (signal) => {
    try {
      signal?.throwIfAborted();
      fd ??= openSync(path, "r");
      return Promise.resolve(readFdText(fd));
    } catch (error) {
      if (fd !== undefined && !signal?.aborted) {
        closeSync(fd);
        fd = undefined;
      }
      return Promise.reject(error);
    }
  };
}

/** readTextSync for the collectors' async flow: rejects instead of throwing; nothing is waited for. */
export function readText(path: string, signal?: AbortSignal): Promise<string> {
  try {
    signal?.throwIfAborted();
    return Promise.resolve(readTextSync(path));
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * Reads a whole (small) file as latin1 text without blocking the event loop (open/read/close on
 * the callback API, through libuv's thread pool): for files whose driver may take long to answer.
 */
function readTextAsync(path: string, signal?: AbortSignal, sizeHint = 4096): Promise<string> {
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

/** Reads a file without blocking (readTextAsync), or returns undefined when it does not exist. */
export async function readOptional(path: string, signal?: AbortSignal): Promise<string | undefined> {
  try {
    return await readTextAsync(path, signal);
  } catch (error) {
    if (isGone(error)) return undefined;
    throw error;
  }
}

/**
 * Lists a /proc or /sys directory's entry names, or returns undefined when it does not exist.
 * Synchronous for the reason readTextSync is: the kernel lists these folders from memory, and a
 * trip through libuv's thread pool cost more CPU than the listing (the diskio collector's
 * /sys/block, every 5 s).
 */
export function listDir(path: string): Promise<string[] | undefined> {
  try {
    return Promise.resolve(readdirSync(path));
  } catch (error) {
    return isGone(error) ? Promise.resolve(undefined) : Promise.reject(error);
  }
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

/**
 * Reads the blank-separated fields of a /proc file's lines where they lie, numbers as numbers: the
 * parsers of the files read every few seconds (/proc/stat, /proc/meminfo, /proc/net/dev,
 * /proc/diskstats) make no string of a field they only need as a number. In V8's interpreter, where
 * the agent runs, splitting those files into lines and fields was a fifth of all it allocated,
 * and the scavenger's work grows with that (npm run bench:agent).
 */
export class FieldScanner {
  /** Where the scanner is in `text`. */
  at = 0;

  constructor(readonly text: string) {}

  /** The end of the line the scanner is in (its "\n", or the text's end). */
  lineEnd(): number {
    const end = this.text.indexOf("\n", this.at);
    return end < 0 ? this.text.length : end;
  }

  /** Moves to the start of the next line; false when there is none. */
  nextLine(): boolean {
    const end = this.text.indexOf("\n", this.at);
    this.at = end < 0 ? this.text.length : end + 1;
    return this.at < this.text.length;
  }

  /** Moves past blanks; false at the line's end (or the text's). */
  private toField(): boolean {
    const { text } = this;
    for (; this.at < text.length; this.at++) {
      const c = text.charCodeAt(this.at);
      if (c !== 32 && c !== 9) return c !== 10;
    }
    return false;
  }

  /** The next field of the line as a string ("" at the line's end); moves past it. */
  word(): string {
    if (!this.toField()) return "";
    const start = this.at;
    this.skipField();
    return this.text.slice(start, this.at);
  }

  /** Moves past the next field of the line. */
  skip(): void {
    if (this.toField()) this.skipField();
  }

  /**
   * Reads up to `max` next fields of the line into `into` as non-negative decimals (digits, with
   * an optional fraction), NaN for a field that is not one; returns how many fields there were.
   */
  numbers(into: number[], max: number): number {
    let count = 0;
    while (count < max && this.toField()) into[count++] = this.number();
    return count;
  }

  /** The field at `at` (not a blank) as a non-negative decimal, or NaN; moves past it. */
  private number(): number {
    const { text } = this;
    const start = this.at;
    let value = 0;
    let c = text.charCodeAt(this.at);
    for (; c >= 48 && c <= 57; c = text.charCodeAt(++this.at)) value = value * 10 + (c - 48);
    let fraction = false;
    if (c === 46 && this.at > start) {
      fraction = true;
      for (c = text.charCodeAt(++this.at); c >= 48 && c <= 57; c = text.charCodeAt(++this.at));
    }
    if (this.at > start && (this.at === text.length || c === 32 || c === 9 || c === 10)) {
      // A fraction (loadavg) or a number past 2^53 is left to Number, which rounds it as everyone else does.
      return fraction || value > Number.MAX_SAFE_INTEGER ? Number(text.slice(start, this.at)) : value;
    }
    this.skipField();
    return Number.NaN;
  }

  private skipField(): void {
    const { text } = this;
    for (; this.at < text.length; this.at++) {
      const c = text.charCodeAt(this.at);
      if (c === 32 || c === 9 || c === 10) return;
    }
  }
}
