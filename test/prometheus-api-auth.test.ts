/**
 * The Prometheus API's credentials under the daemon's limit of failed authentications: a client
 * that keeps presenting unknown tokens is refused with 429 before they are looked at, as the
 * front door refuses RPCs.
 */
import { describe, expect, it } from "vitest";
import { useDaemon } from "./support/daemon.js";

// A burst of 3 failed authentications, then one every 100 s.
const daemon = useDaemon({ env: { SPECTA_ENVIRONMENT: "testing", SPECTA_RATE_FAILED_AUTH: "0.01,3" } });

describe("failed authentications on /api/v1/", () => {
  it("answers 401 for unknown tokens until the address's budget is spent, then 429 with Retry-After, even for a valid token", async () => {
    const query = (token: string) =>
      fetch(`${daemon().url}/api/v1/query?query=1`, { headers: { authorization: `Basic ${Buffer.from(`x:${token}`).toString("base64")}` } });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await query(`specta_unknown${i}`)).status);
    expect(statuses).toEqual([401, 401, 401, 429]);
    const refused = await query(daemon().adminToken());
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(await refused.json()).toMatchObject({ status: "error", errorType: "too_many_requests" });
    // A request without credentials spends nothing: it is told what to send.
    expect((await fetch(`${daemon().url}/api/v1/query?query=1`)).status).toBe(401);
  });
});
