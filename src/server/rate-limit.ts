import { isIPv6 } from "node:net";
import type { RateLimit } from "../config/config.js";

/** Addresses tracked at most; beyond, the longest-tracked one is forgotten (it starts again with a full bucket). */
const maxTrackedAddresses = 100_000;
/** How often buckets that have filled up again (the same as untracked) are forgotten. */
const sweepEveryMs = 10_000;

interface Bucket {
  tokens: number;
  /** When `tokens` was last brought up to date. */
  at: number;
}

/**
 * A token bucket per client address (see clientKey): each address may spend `burst` at once and
 * gets `perSecond` back. Memory stays bounded: full buckets are forgotten, and at most
 * maxTrackedAddresses are kept.
 */
export class AddressBuckets {
  private readonly buckets = new Map<string, Bucket>();
  private lastSweep: number;

  constructor(
    readonly limit: RateLimit,
    private readonly now: () => number = Date.now,
  ) {
    this.lastSweep = now();
  }

  /** Spends one token of `address`; returns undefined when it had one, else the seconds until it has. */
  take(address: string): number | undefined {
    const wait = this.wait(address);
    if (wait !== undefined) return wait;
    if (this.limit.perSecond > 0) this.bucket(address).tokens -= 1;
    return undefined;
  }

  /**
   * Spends one token of `address` for something that has already happened (a failed
   * authentication), into debt if need be: attempts that were in flight when the bucket ran dry
   * still count, and the address waits until they are paid back.
   */
  charge(address: string): void {
    if (this.limit.perSecond === 0) return;
    const bucket = this.bucket(address);
    this.refill(bucket);
    bucket.tokens -= 1;
  }

  /** Seconds until `address` has a token to spend, or undefined when it has one now. Spends nothing. */
  wait(address: string): number | undefined {
    if (this.limit.perSecond === 0) return undefined;
    const bucket = this.buckets.get(address);
    if (!bucket) return undefined;
    this.refill(bucket);
    return bucket.tokens >= 1 ? undefined : (1 - bucket.tokens) / this.limit.perSecond;
  }

  /** How many addresses are tracked (for tests of the memory bound). */
  get size(): number {
    return this.buckets.size;
  }

  private refill(bucket: Bucket): void {
    const now = this.now();
    bucket.tokens = Math.min(this.limit.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.limit.perSecond);
    bucket.at = now;
  }

  private bucket(address: string): Bucket {
    let bucket = this.buckets.get(address);
    if (bucket) return bucket;
    this.sweep();
    if (this.buckets.size >= maxTrackedAddresses) this.buckets.delete(this.buckets.keys().next().value!);
    bucket = { tokens: this.limit.burst, at: this.now() };
    this.buckets.set(address, bucket);
    return bucket;
  }

  private sweep(): void {
    const now = this.now();
    if (now - this.lastSweep < sweepEveryMs) return;
    this.lastSweep = now;
    for (const [address, bucket] of this.buckets) {
      this.refill(bucket);
      if (bucket.tokens >= this.limit.burst) this.buckets.delete(address);
    }
  }
}

/**
 * The key a client's calls are counted under: its IPv4 address, or the /64 prefix of its IPv6
 * address, since one IPv6 host usually holds a whole /64 and could otherwise use a new address
 * for every call.
 */
export function clientKey(address: string | undefined): string {
  if (!address) return "unknown";
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!isIPv6(address)) return address;
  const [head = "", tail = ""] = address.split("::");
  const headGroups = head === "" ? [] : head.split(":");
  const tailGroups = tail === "" ? [] : tail.split(":");
  const groups = address.includes("::")
    ? [...headGroups, ...Array<string>(8 - headGroups.length - tailGroups.length).fill("0"), ...tailGroups]
    : headGroups;
  return `${groups
    .slice(0, 4)
    .map((group) => parseInt(group, 16).toString(16))
    .join(":")}::/64`;
}
