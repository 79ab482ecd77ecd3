import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { create, toBinary } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import { Kind, PushRequestSchema } from "../../gen/metrics/metrics_pb.js";
import { createLogger } from "../shared/log.js";
import { decodeBatch, encodeBatch, pushRequestBytes } from "./batch.js";
import { Spool } from "./spool.js";

const log = createLogger("silent");
const dirs: string[] = [];
const tempSpoolDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "specta-spool-"));
  dirs.push(dir);
  return join(dir, "spool");
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A batch named n with `points` points. */
const batch = (n: number, points = 10) =>
  encodeBatch({
    series: [{ metric: `m${n}`, kind: Kind.GAUGE, times: Array.from({ length: points }, (_, i) => i), values: new Array<number>(points).fill(n) }],
  });

/** Takes everything out of the spool, oldest first, as the sender does after each acknowledgement. */
function drain(spool: Spool): number[] {
  const out: number[] = [];
  for (let e = spool.peek(); e; e = spool.peek()) {
    out.push(Number(decodeBatch(e).series[0]!.metric.slice(1)));
    spool.remove(e.seq);
  }
  return out;
}

describe("the agent's spool", () => {
  it("keeps order across memory and disk, and across a restart", () => {
    const dir = tempSpoolDir();
    const spool = new Spool(dir, { memoryPoints: 25, diskBytes: 10_000 }, log);
    for (let i = 1; i <= 5; i++) spool.add(batch(i));
    expect(readdirSync(dir).length).toBe(3); // two in memory, then the rest on disk
    expect(spool.stats()).toMatchObject({ batches: 5, points: 50 });
    spool.persist(); // as at shutdown
    const reopened = new Spool(dir, { memoryPoints: 25, diskBytes: 10_000 }, log);
    reopened.add(batch(6));
    expect(drain(reopened)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("keeps a batch larger than its memory bound in memory when it holds nothing else", () => {
    const dir = tempSpoolDir();
    const spool = new Spool(dir, { memoryPoints: 25, diskBytes: 10_000 }, log);
    spool.add(batch(1, 40));
    expect(readdirSync(dir)).toEqual([]);
    spool.add(batch(2));
    expect(readdirSync(dir).length).toBe(1);
    expect(drain(spool)).toEqual([1, 2]);
  });

  it("drops the oldest batches beyond its disk bound, and counts what it dropped", () => {
    // Each batch takes 136 bytes on disk (124 encoded, 12 of header): three fit in 420.
    const spool = new Spool(tempSpoolDir(), { memoryPoints: 0, diskBytes: 420 }, log);
    for (let i = 1; i <= 5; i++) spool.add(batch(i, 7));
    expect(spool.stats()).toMatchObject({ batches: 3, droppedPoints: 14 });
    expect(drain(spool)).toEqual([3, 4, 5]);
  });

  it("sets a corrupted file aside, reports it and goes on with the next", () => {
    const dir = tempSpoolDir();
    const spool = new Spool(dir, { memoryPoints: 0, diskBytes: 10_000 }, log);
    for (let i = 1; i <= 3; i++) spool.add(batch(i));
    const [first, second] = readdirSync(dir).sort();
    writeFileSync(join(dir, second!), "garbage that is not a batch");
    writeFileSync(join(dir, "0000000000000099.batch"), Buffer.alloc(3));

    const reopened = new Spool(dir, { memoryPoints: 0, diskBytes: 10_000 }, log);
    expect(drain(reopened)).toEqual([1, 3]);
    expect(reopened.stats().corruptFiles).toBe(2);
    expect(readdirSync(dir).sort()).toEqual([`${second}.corrupt`, "0000000000000099.batch.corrupt"].sort());
    expect(first).toBeDefined();
  });

  it("reads a batch spooled by an agent that kept PushRequest messages (before encoded batches): the file format is the same", () => {
    const dir = tempSpoolDir();
    mkdirSync(dir, { recursive: true });
    // As src/agent/spool.ts wrote it then: magic, crc32 of the rest, point count, toBinary(PushRequest).
    const request = toBinary(
      PushRequestSchema,
      create(PushRequestSchema, {
        series: [
          { metric: "m1", labels: { host: "h", cpu: "0" }, kind: Kind.COUNTER, times: [1, 2], values: [3, 4] },
          { metric: "m2", kind: Kind.GAUGE, times: [5], values: [0.5] },
        ],
      }),
    );
    const header = Buffer.alloc(12);
    header.writeUInt32BE(0x5350_4c31, 0);
    header.writeUInt32BE(3, 8);
    const body = Buffer.concat([header.subarray(8), request]);
    header.writeUInt32BE(crc32(body), 4);
    writeFileSync(join(dir, "0000000000000001.batch"), Buffer.concat([header.subarray(0, 8), body]));

    const spool = new Spool(dir, { memoryPoints: 0, diskBytes: 10_000 }, log);
    const entry = spool.peek()!;
    expect(entry.points).toBe(3);
    expect(pushRequestBytes(entry.series)).toEqual(request);
    expect(decodeBatch(entry).series.map((x) => [x.metric, x.times])).toEqual([
      ["m1", [1, 2]],
      ["m2", [5]],
    ]);
  });
});
