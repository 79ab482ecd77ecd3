/** Measuring a daemon child process, and driving many small requests at it. */
import { readFileSync } from "node:fs";
import { connect } from "node:http2";

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
