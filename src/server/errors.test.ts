import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { InvalidInput, LimitExceeded, Overloaded } from "../tsdb/index.js";
import { rpcError } from "./errors.js";

describe("rpcError", () => {
  const refused = new ConnectError("no command 1", Code.NotFound);
  const away = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });
  const bug = Object.assign(new Error('relation "commands" does not exist'), { code: "42P01" });

  it.each([
    ["a feature's ConnectError, as it is", refused, Code.NotFound, "no command 1"],
    ["the store's InvalidInput", new InvalidInput("step must be a whole number"), Code.InvalidArgument, "step must be a whole number"],
    ["the store's LimitExceeded", new LimitExceeded("too many series"), Code.ResourceExhausted, "too many series"],
    [
      "the store's Overloaded",
      new Overloaded("the store is writing behind"),
      Code.ResourceExhausted,
      "metrics.API/Push: the store is writing behind",
    ],
    ["an abort", new DOMException("the operation was aborted", "AbortError"), Code.Canceled, "the operation was aborted"],
    ["a database that is away", away, Code.Unavailable, "metrics.API/Push: the database is unavailable, retry later"],
    ["any other error", bug, Code.Internal, "metrics.API/Push failed"],
  ])("maps %s", (_what, err, code, message) => {
    const error = rpcError(err, "metrics.API/Push");
    expect(error.code).toBe(code);
    expect(error.rawMessage).toBe(message);
  });

  it("keeps a fault's cause for the log, and gives the caller none of its text", () => {
    expect(rpcError(refused, "x")).toBe(refused);
    for (const cause of [away, bug]) {
      const error = rpcError(cause, "commands.API/Submit");
      expect(error.cause).toBe(cause);
      expect(error.rawMessage).not.toContain(cause.message);
    }
  });
});
