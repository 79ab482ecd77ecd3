import { toJson } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Command } from "commander";
import { API as TokensAPI, CreateResponseSchema, ListResponseSchema, RevokeResponseSchema, Role, type Token } from "../../gen/tokens/tokens_pb.js";
import { roleNames } from "../shared/roles.js";
import { addClientOptions, ClientError, daemonClient, runClient, type ClientFlags } from "./client.js";
import { formatTable } from "./util.js";

interface JsonFlags extends ClientFlags {
  json?: boolean;
}

/** `specta token create|list|revoke`: the command-line face of tokens.API. */
export function tokenCommand(program: Command): void {
  const token = program.command("token").description("manage admin and viewer tokens (tokens.API): for people, the dashboard and other programs");

  addClientOptions(
    token
      .command("create")
      .description("create a token and print it once (the daemon keeps only its hash)")
      .requiredOption("--role <role>", "admin (everything) or viewer (read only: no commands, no tokens)")
      .option("--name <name>", "a name for people, e.g. alice or grafana", "unnamed")
      .option("--json", "print the CreateResponse as JSON"),
  ).action((flags: JsonFlags & { role: string; name: string }) =>
    runClient(flags, async (connection) => {
      const role = new Map([
        ["admin", Role.ADMIN],
        ["viewer", Role.VIEWER],
      ]).get(flags.role);
      if (role === undefined) throw new ClientError(`--role must be admin or viewer, not "${flags.role}"`);
      const response = await daemonClient(TokensAPI, connection).create({ role, name: flags.name });
      if (flags.json) {
        process.stdout.write(JSON.stringify(toJson(CreateResponseSchema, response)) + "\n");
        return;
      }
      process.stdout.write(response.token + "\n");
      process.stderr.write(`created ${roleNames[role]} token "${response.info?.name}" (id ${response.info?.id}); it is shown only now\n`);
    }),
  );

  addClientOptions(
    token
      .command("list")
      .description("list the valid admin and viewer tokens (never their secrets)")
      .option("--all", "also revoked tokens and the agents' credentials")
      .option("--json", "print the ListResponse as JSON"),
  ).action((flags: JsonFlags & { all?: boolean }) =>
    runClient(flags, async (connection) => {
      const all = flags.all === true;
      const response = await daemonClient(TokensAPI, connection).list({ includeRevoked: all, includeAgents: all });
      process.stdout.write(flags.json ? JSON.stringify(toJson(ListResponseSchema, response)) + "\n" : formatTokens(response.tokens));
    }),
  );

  addClientOptions(
    token
      .command("revoke")
      .description("revoke a token by its id (see specta token list); the last admin token cannot be revoked")
      .argument("<id>", "the token's id")
      .option("--json", "print the RevokeResponse as JSON"),
  ).action((id: string, flags: JsonFlags) =>
    runClient(flags, async (connection) => {
      const response = await daemonClient(TokensAPI, connection).revoke({ id });
      process.stdout.write(flags.json ? JSON.stringify(toJson(RevokeResponseSchema, response)) + "\n" : `revoked ${response.token?.name} (${id})\n`);
    }),
  );
}

/** A table: id, name, role, created, revoked. */
export function formatTokens(tokens: Token[]): string {
  if (tokens.length === 0) return "(no tokens)\n";
  const when = (t: Token["created"]) =>
    t
      ? timestampDate(t)
          .toISOString()
          .replace(/\.\d+Z$/, "Z")
      : "";
  return formatTable([
    ["ID", "NAME", "ROLE", "CREATED", "REVOKED"],
    ...tokens.map((t) => [t.id, t.name, roleNames[t.role], when(t.created), when(t.revoked)]),
  ]);
}
