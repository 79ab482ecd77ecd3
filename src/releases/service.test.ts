import { randomBytes, randomUUID, createHash, generateKeyPairSync } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { API as ReleasesAPI, UpdateStep } from "../../gen/releases/releases_pb.js";
import { inMemoryClient, storagePerFile } from "../../test/support/in-memory.js";
import { signRelease } from "../cli/release.js";
import { insertAgent, listAgents, type Inventory } from "../fleet/inventory.js";
import { createLogger } from "../shared/log.js";
import type { Principal } from "../tokens/tokens.js";
import { releasesService } from "./service.js";
import { assignedRelease } from "./store.js";

const admin: Principal = { tokenId: randomUUID(), name: "admin", role: "admin", agentId: null, agentHostname: null };
const { privateKey } = generateKeyPairSync("ed25519");
const expires = "2099-01-01T00:00:00.000Z";
const signed = (bundle: Buffer, version: string) => ({ ...signRelease(bundle, privateKey, { version, minVersion: "0.0.0", expires }), bundle });

const host = (hostname: string, labels: Record<string, string>): Inventory => ({
  hostname,
  os: "linux",
  os_version: "",
  kernel: "",
  arch: "x64",
  cpu_model: "",
  cpu_count: 1,
  memory_bytes: "1",
  boot_time: null,
  labels: JSON.stringify(labels),
  agent_version: "0.1.0",
  machine_id: null,
});

async function codeOf(call: Promise<unknown>): Promise<Code | undefined> {
  try {
    await call;
    return undefined;
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

describe("releases.API", () => {
  const storage = storagePerFile();
  const service = () => releasesService({ db: storage().db, log: createLogger("silent") });
  const as = (caller: Principal) => inMemoryClient(ReleasesAPI, service(), caller);
  const agent = (agentId: string, hostname: string): Principal => ({
    tokenId: randomUUID(),
    name: hostname,
    role: "agent",
    agentId,
    agentHostname: hostname,
  });

  it("publishes a release once, only with a readable manifest that names the bundle's size and SHA-512", async () => {
    const bundle = randomBytes(1000);
    const good = signed(bundle, "0.5.0");
    expect(await codeOf(as(admin).publish({ ...good, manifest: Buffer.from("{") }))).toBe(Code.InvalidArgument);
    expect(await codeOf(as(admin).publish({ ...good, signature: good.signature.subarray(1) }))).toBe(Code.InvalidArgument);
    expect(await codeOf(as(admin).publish({ ...good, bundle: Buffer.concat([bundle, Buffer.from("x")]) }))).toBe(Code.InvalidArgument);
    const altered = Buffer.from(bundle);
    altered[0] = altered[0]! ^ 1;
    expect(await codeOf(as(admin).publish({ ...good, bundle: altered }))).toBe(Code.InvalidArgument);

    const res = await as(admin).publish(good);
    expect(res.release).toMatchObject({
      version: "0.5.0",
      sha512: createHash("sha512").update(bundle).digest("hex"),
      size: 1000n,
      minVersion: "0.0.0",
    });
    expect(res.release?.rollout).toBeUndefined();
    expect(await codeOf(as(admin).publish(good))).toBe(Code.AlreadyExists);
    expect((await as(admin).list({})).releases.map((r) => r.version)).toContain("0.5.0");
  });

  it("gives a release to the agents its rollout picks: by labels, the newest version, its bundle in pieces", async () => {
    const db = storage().db;
    const dbId = await insertAgent(db, host("rel-db", { role: "db" }));
    const webId = await insertAgent(db, host("rel-web", { role: "web" }));
    const bundle = randomBytes(2.5 * 1024 * 1024);
    await as(admin).publish(signed(bundle, "0.10.0"));
    await as(admin).publish(signed(randomBytes(10), "0.9.0"));
    expect(await codeOf(as(admin).setRollout({ version: "7.7.7", rollout: { percent: 100 } }))).toBe(Code.NotFound);
    expect(await codeOf(as(admin).setRollout({ version: "0.10.0", rollout: { percent: 101 } }))).toBe(Code.InvalidArgument);
    await as(admin).setRollout({ version: "0.10.0", rollout: { labels: { role: "db" }, percent: 100 } });
    await as(admin).setRollout({ version: "0.9.0", rollout: { percent: 100 } });

    const db1 = as(agent(dbId, "rel-db"));
    const offer = await db1.check({});
    expect(JSON.parse(Buffer.from(offer.manifest).toString()).version).toBe("0.10.0");
    const chunks: Uint8Array[] = [];
    for await (const { chunk } of db1.fetch({ version: "0.10.0" })) chunks.push(chunk);
    expect(chunks.map((c) => c.length)).toEqual([1024 * 1024, 1024 * 1024, 0.5 * 1024 * 1024]);
    expect(Buffer.concat(chunks).equals(bundle)).toBe(true);

    const web = as(agent(webId, "rel-web"));
    expect(JSON.parse(Buffer.from((await web.check({})).manifest).toString()).version).toBe("0.9.0");
    // Only its own release: another's is not for it.
    expect(await codeOf(drain(web.fetch({ version: "0.10.0" })))).toBe(Code.NotFound);
    await as(admin).setRollout({ version: "0.9.0", rollout: { percent: 0 } });
    expect((await web.check({})).manifest).toHaveLength(0);
  });

  it("picks the same agents for a percentage every time, and more of them for a larger one", async () => {
    await as(admin).publish(signed(randomBytes(10), "3.0.0"));
    const ids = Array.from({ length: 200 }, () => randomUUID());
    const picked = async (percent: number) => {
      await as(admin).setRollout({ version: "3.0.0", rollout: { labels: { pct: "x" }, percent } });
      const got = await Promise.all(ids.map((id) => assignedRelease(storage().db, id, { pct: "x" })));
      return new Set(ids.filter((_, i) => got[i]?.version === "3.0.0"));
    };
    const ten = await picked(10);
    const half = await picked(50);
    expect(await picked(10)).toEqual(ten);
    for (const id of ten) expect(half.has(id)).toBe(true);
    expect(ten.size).toBeGreaterThan(5);
    expect(ten.size).toBeLessThan(40);
    expect(half.size).toBeGreaterThan(70);
    expect(half.size).toBeLessThan(130);
    expect((await picked(100)).size).toBe(200);
  });

  it("records an agent's own update steps in the inventory", async () => {
    const db = storage().db;
    const id = await insertAgent(db, host("rel-report", {}));
    const client = as(agent(id, "rel-report"));
    await client.reportUpdate({ version: "0.5.0", step: UpdateStep.REFUSED, reason: "not signed by a trusted key" });
    const row = (await listAgents(db, {})).find((a) => a.id === id);
    expect(row).toMatchObject({ update_version: "0.5.0", update_step: "REFUSED", update_reason: "not signed by a trusted key" });
    expect(await codeOf(client.reportUpdate({ version: "0.5.0", step: UpdateStep.UNSPECIFIED }))).toBe(Code.InvalidArgument);
    expect(await codeOf(client.reportUpdate({ version: "0.5.0", step: UpdateStep.HEALTHY, reason: "x".repeat(1001) }))).toBe(Code.InvalidArgument);
    expect(await codeOf(client.reportUpdate({ version: "latest", step: UpdateStep.HEALTHY }))).toBe(Code.InvalidArgument);
    expect(await codeOf(as(admin).reportUpdate({ version: "0.5.0", step: UpdateStep.HEALTHY }))).toBe(Code.PermissionDenied);
  });
});

async function drain(stream: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of stream);
}
