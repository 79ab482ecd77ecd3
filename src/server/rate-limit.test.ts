/** The token buckets per client address (issue 10, item 8): refill, retry hints, bounded memory, IPv6 /64 keys. */
import { describe, expect, it } from "vitest";
import { AddressBuckets, clientKey } from "./rate-limit.js";

function clock(start = 0) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

describe("AddressBuckets", () => {
  it("lets a burst through, then one call per 1/perSecond, and says how long to wait", () => {
    const time = clock();
    const buckets = new AddressBuckets({ perSecond: 10, burst: 5 }, time.now);
    for (let i = 0; i < 5; i++) expect(buckets.take("a")).toBeUndefined();
    expect(buckets.take("a")).toBeCloseTo(0.1);
    time.advance(50);
    expect(buckets.take("a")).toBeCloseTo(0.05);
    time.advance(50);
    expect(buckets.take("a")).toBeUndefined();
    // Another address has its own bucket.
    expect(buckets.take("b")).toBeUndefined();
  });

  it("wait() spends nothing", () => {
    const buckets = new AddressBuckets({ perSecond: 1, burst: 1 }, clock().now);
    expect(buckets.wait("a")).toBeUndefined();
    expect(buckets.wait("a")).toBeUndefined();
    expect(buckets.take("a")).toBeUndefined();
    expect(buckets.wait("a")).toBeCloseTo(1);
  });

  it("charge() counts what already happened, into debt: the address waits until it is paid back", () => {
    const time = clock();
    const buckets = new AddressBuckets({ perSecond: 10, burst: 2 }, time.now);
    for (let i = 0; i < 7; i++) buckets.charge("a");
    expect(buckets.wait("a")).toBeCloseTo(0.6);
    time.advance(500);
    expect(buckets.wait("a")).toBeCloseTo(0.1);
    time.advance(100);
    expect(buckets.wait("a")).toBeUndefined();
  });

  it("never limits with perSecond 0, and tracks nobody", () => {
    const buckets = new AddressBuckets({ perSecond: 0, burst: 1 }, clock().now);
    for (let i = 0; i < 100; i++) expect(buckets.take("a")).toBeUndefined();
    buckets.charge("a");
    expect(buckets.size).toBe(0);
  });

  it("forgets addresses whose bucket has filled up again, and never tracks more than 100,000", () => {
    const time = clock();
    const buckets = new AddressBuckets({ perSecond: 10, burst: 50 }, time.now);
    for (let i = 0; i < 150_000; i++) buckets.take(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`);
    expect(buckets.size).toBe(100_000);
    // Every bucket is full again after 5 s; sweeps run at most every 10 s, at the next new address.
    time.advance(10_000);
    buckets.take("192.0.2.1");
    expect(buckets.size).toBe(1);
  });
});

describe("clientKey", () => {
  // IPv4 (also IPv4-mapped) by address, IPv6 by its /64.
  it.each([
    ["192.0.2.7", "192.0.2.7"],
    ["::ffff:192.0.2.7", "192.0.2.7"],
    ["2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"],
    ["2001:db8:1:2:bbbb:cccc:dddd:eeee", "2001:db8:1:2::/64"],
    ["2001:db8::1", "2001:db8:0:0::/64"],
    ["::1", "0:0:0:0::/64"],
    [undefined, "unknown"],
  ])("%s → %s", (address, key) => {
    expect(clientKey(address)).toBe(key);
  });
});
