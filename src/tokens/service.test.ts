import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { beforeAll, describe, expect, it } from "vitest";
import { Role, API as TokensAPI } from "../../gen/tokens/tokens_pb.js";
import { inMemoryClient, storagePerFile } from "../../test/support/in-memory.js";
import { codeOf } from "../../test/support/rpc.js";
import type { Principal } from "./tokens.js";
import { TokenStore } from "./tokens.js";
import { maxTokenNameLength, tokensService } from "./service.js";

describe("tokens.API's handlers, in memory", () => {
  const storage = storagePerFile();
  let tokens: TokenStore;
  let admin: Principal;
  const as = (caller: Principal | undefined) => inMemoryClient(TokensAPI, tokensService({ tokens }), caller);
  /** A verified caller with a new credential of `role`. */
  const caller = async (role: "admin" | "viewer", name: string = role): Promise<Principal> =>
    (await tokens.verify((await tokens.create(role, name)).token))!;

  beforeAll(async () => {
    tokens = new TokenStore(storage().db);
    admin = await caller("admin", "first admin");
  });

  it("creates admin and viewer tokens, named without surrounding space, whose secret stands for their role", async () => {
    const created = await as(admin).create({ role: Role.VIEWER, name: "  grafana  " });
    expect(created.info).toMatchObject({ name: "grafana", role: Role.VIEWER, agentId: "" });
    expect(created.info?.revoked).toBeUndefined();
    expect(await tokens.verify(created.token)).toMatchObject({ tokenId: created.info?.id, role: "viewer", name: "grafana" });
    const another = await as(admin).create({ role: Role.ADMIN, name: "ops" });
    expect((await tokens.verify(another.token))?.role).toBe("admin");
  });

  it("refuses an agent or unset role and a name that is empty, too long or not printable, creating nothing", async () => {
    const before = (await tokens.list({ includeRevoked: true, includeAgents: true })).length;
    const refused = [
      { role: Role.AGENT, name: "agent" },
      { role: Role.UNSPECIFIED, name: "none" },
      { role: Role.VIEWER, name: "   " },
      { role: Role.VIEWER, name: "x".repeat(maxTokenNameLength + 1) },
      { role: Role.VIEWER, name: "bell\u0007" },
    ];
    for (const req of refused) expect(await codeOf(as(admin).create(req)), JSON.stringify(req)).toBe(Code.InvalidArgument);
    expect(await tokens.list({ includeRevoked: true, includeAgents: true })).toHaveLength(before);
  });

  it("refuses to mint with a credential revoked since it was verified", async () => {
    const minter = await caller("admin", "leaving");
    expect(await tokens.revokeOne(minter.tokenId)).toHaveProperty("revoked");
    expect(await codeOf(as(minter).create({ role: Role.VIEWER, name: "late" }))).toBe(Code.Unauthenticated);
  });

  it("lists valid people's tokens by default, and revoked ones and agents' on request", async () => {
    const viewer = await caller("viewer", "to revoke");
    await as(admin).revoke({ id: viewer.tokenId });
    const agent = await tokens.create("agent", "host-1", randomUUID());
    const ids = async (req: { includeRevoked?: boolean; includeAgents?: boolean }) => (await as(admin).list(req)).tokens.map((t) => t.id);
    expect(await ids({})).not.toContain(viewer.tokenId);
    expect(await ids({})).not.toContain(agent.id);
    expect(await ids({})).toContain(admin.tokenId);
    expect(await ids({ includeRevoked: true })).toContain(viewer.tokenId);
    expect(await ids({ includeAgents: true })).toContain(agent.id);
    const listed = (await as(admin).list({ includeRevoked: true })).tokens.find((t) => t.id === viewer.tokenId);
    expect(listed?.revoked).toBeDefined();
  });

  it("answers a revocation it cannot make with the reason: not an id, unknown, an agent's, already revoked", async () => {
    const error = (call: Promise<unknown>) =>
      call.then(
        () => undefined,
        (err: unknown) => ConnectError.from(err),
      );
    expect((await error(as(admin).revoke({ id: "not-a-uuid" })))?.code).toBe(Code.InvalidArgument);
    expect((await error(as(admin).revoke({ id: randomUUID() })))?.code).toBe(Code.NotFound);
    const agent = await tokens.create("agent", "host-2", randomUUID());
    expect(await error(as(admin).revoke({ id: agent.id }))).toMatchObject({
      code: Code.FailedPrecondition,
      rawMessage: expect.stringContaining("agent.API/Deregister"),
    });
    const viewer = await caller("viewer");
    expect((await as(admin).revoke({ id: viewer.tokenId })).token?.revoked).toBeDefined();
    expect(await error(as(admin).revoke({ id: viewer.tokenId }))).toMatchObject({
      code: Code.FailedPrecondition,
      rawMessage: expect.stringContaining("already revoked"),
    });
  });

  it("never revokes the last valid admin token", async () => {
    const admins = (await tokens.list()).filter((t) => t.role === "admin");
    for (const other of admins.slice(1)) await as(admin).revoke({ id: other.id });
    expect(await codeOf(as(admin).revoke({ id: admins[0]!.id }))).toBe(Code.FailedPrecondition);
    expect((await tokens.get(admins[0]!.id))?.revoked).toBeNull();
  });

  it("tells any caller what its credential is, and refuses one revoked since it was verified", async () => {
    const viewer = await caller("viewer", "who");
    expect((await as(viewer).whoami({})).token).toMatchObject({ id: viewer.tokenId, name: "who", role: Role.VIEWER });
    await tokens.revokeOne(viewer.tokenId);
    expect(await codeOf(as(viewer).whoami({}))).toBe(Code.Unauthenticated);
    expect(await codeOf(as(undefined).whoami({}))).toBe(Code.Unauthenticated);
  });
});
