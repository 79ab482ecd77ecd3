/** Measuring a daemon child process, and driving many small requests at it. */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { connect } from "node:http2";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);
/** WebSocket is Node's own from 22; Node 20 has it behind a flag. */
const websocketFlag = typeof WebSocket === "undefined" ? ["--experimental-websocket"] : [];

/** A process's resident memory now (VmRSS) and at its peak so far (VmHWM), in MB (Linux). */
export function memoryOf(pid: number): { rssMB: number; peakMB: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kB = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  return { rssMB: kB("VmRSS") / 1024, peakMB: kB("VmHWM") / 1024 };
}

export interface PlainRequest {
  path: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
}

/**
 * Sends `count` requests (the n-th is `make(n)`) over one h2c session, `concurrency` at a time,
 * and returns how many got each status. h2c because thousands of requests a second on one
 * connection cost the test little; the daemon's handlers are the same for HTTP/1.1.
 */
export async function sendMany(baseUrl: string, count: number, make: (n: number) => PlainRequest, concurrency = 64): Promise<Record<number, number>> {
  const session = connect(baseUrl);
  const statuses: Record<number, number> = {};
  let next = 0;
  const one = (request: PlainRequest) =>
    new Promise<void>((resolve, reject) => {
      const stream = session.request({ ":method": request.method ?? "POST", ":path": request.path, ...request.headers });
      stream.on("response", (headers) => {
        const status = Number(headers[":status"]);
        statuses[status] = (statuses[status] ?? 0) + 1;
      });
      stream.on("error", reject);
      stream.on("end", resolve);
      stream.resume();
      stream.end(request.body);
    });
  try {
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < count) await one(make(next++));
      }),
    );
  } finally {
    session.close();
  }
  return statuses;
}

/** Node's option that starts a spawned process's inspector on a free port, for liveHeapOf. */
export const inspectOnFreePort = "--inspect=127.0.0.1:0";

/**
 * The heap (MB) a process started with inspectOnFreePort keeps: its used heap after full
 * collections, read through its inspector. Unlike RSS, it does not depend on when the collector
 * last ran, which on a loaded machine moves RSS by tens of MB.
 */
export async function liveHeapOf(spawned: { stderr(): string }): Promise<number> {
  const address = /Debugger listening on (ws:\/\/\S+)/.exec(spawned.stderr())?.[1];
  if (!address) throw new Error(`no inspector address on the process's stderr:\n${spawned.stderr()}`);
  const { stdout } = await execFileAsync(
    process.execPath,
    [...websocketFlag, fileURLToPath(new URL("heap-after-gc.mjs", import.meta.url)), address],
    {
      timeout: 60_000,
    },
  );
  return Number(stdout) / 2 ** 20;
}
