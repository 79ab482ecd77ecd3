import { toJson } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Command } from "commander";
import { API as TokensAPI, CreateResponseSchema, ListResponseSchema, RevokeResponseSchema, Role, type Token } from "../../gen/tokens/tokens_pb.js";
import { readFileSync, statSync } from "node:fs";
import { rootDataDir } from "../config/config.js";
import { enrollTokenFile } from "../fleet/enroll-token.js";
import { roleNames } from "../shared/roles.js";
import { localAdminTokenFile } from "../tokens/local-admin.js";
import { addClientOptions, ClientError, daemonClient, localDataDir, runClient, type ClientFlags } from "./client.js";
import { fail, formatTable, isIdPrefix, minIdPrefix } from "./util.js";

interface JsonFlags extends ClientFlags {
  json?: boolean;
}

/** `specta token create|list|revoke`: the command-line face of tokens.API; `show-admin` and `show-enroll` read the local daemon's files. */
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
      .description("revoke a token by its id or a unique prefix of it (see specta token list); the last admin token cannot be revoked")
      .argument("<id>", "the token's id, or a unique prefix of it (at least 4 characters)")
      .option("--json", "print the RevokeResponse as JSON"),
  ).action((name: string, flags: JsonFlags) =>
    runClient(flags, async (connection) => {
      const client = daemonClient(TokensAPI, connection);
      // A whole id goes as it is, so that the daemon says why it cannot be revoked (already, an agent's, …).
      const id = fullId.test(name.trim()) ? name.trim().toLowerCase() : findToken((await client.list({})).tokens, name).id;
      const response = await client.revoke({ id });
      process.stdout.write(flags.json ? JSON.stringify(toJson(RevokeResponseSchema, response)) + "\n" : `revoked ${response.token?.name} (${id})\n`);
    }),
  );

  for (const [name, what, fileOf] of [
    ["show-admin", "admin token", localAdminTokenFile],
    ["show-enroll", "enrolment token", enrollTokenFile],
  ] as const) {
    token
      .command(name)
      .description(`print the ${what} of the daemon on this host, from its data directory (as root /var/lib/specta, else ~/.local/share/specta)`)
      .option("--data-dir <dir>", "the daemon's data directory (env SPECTA_DATA_DIR, default: the daemon's default for this user)")
      .action((flags: { dataDir?: string }) => {
        try {
          process.stdout.write(
            readLocalSecret(fileOf, localDataDir(flags.dataDir), what, flags.dataDir === undefined && !process.env.SPECTA_DATA_DIR) + "\n",
          );
        } catch (err) {
          fail(err);
        }
      });
  }
}

/** A token id as the daemon makes them: a UUID. */
const fullId = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The one valid token a unique id prefix names; several are refused rather than guessed: revoking is not undone. */
export function findToken(tokens: Token[], name: string): Token {
  const wanted = name.trim().toLowerCase();
  const matches = tokens.filter((t) => isIdPrefix(t.id, wanted));
  const [only, ...others] = matches;
  if (!only) throw new ClientError(`no valid token has an id starting with "${name}" (${minIdPrefix} characters at least; see specta token list)`);
  if (others.length > 0) {
    const listed = matches.map((t) => `${t.id} (${t.name})`).join(", ");
    throw new ClientError(`"${name}" is the start of ${matches.length} token ids: ${listed}; give more of the id`);
  }
  return only;
}

/**
 * A secret the daemon keeps in its data directory (`fileOf(dataDir)`), or a ClientError that says
 * where it looked and what to do: a daemon run as root keeps its files in /var/lib/specta, which
 * another user neither reads nor finds in its own default (`byDefault`: no directory was given).
 */
export function readLocalSecret(fileOf: (dataDir: string) => string, dataDir: string, what: string, byDefault: boolean): string {
  const file = fileOf(dataDir);
  let text: string;
  try {
    text = readFileSync(file, "utf8").trim();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EACCES") throw new ClientError(`cannot read the ${what} in ${file}: run this as the user the daemon runs as (sudo for root)`);
    if (code !== "ENOENT") throw err;
    const asRoot = fileOf(rootDataDir);
    if (byDefault && file !== asRoot && exists(asRoot)) {
      throw new ClientError(`no ${what} in ${file}; the daemon here runs as root and keeps it in ${asRoot}: run this with sudo`);
    }
    throw new ClientError(
      `no ${what} in ${file}: the daemon writes it at its first start in its data directory (${rootDataDir} as root, else ~/.local/share/specta); give --data-dir if it uses another`,
    );
  }
  if (text === "") throw new ClientError(`${file} is empty: restart the daemon to write a new ${what}`);
  return text;
}

/** Whether a file exists, as far as this user can tell: a directory it may not enter counts as holding it. */
function exists(file: string): boolean {
  try {
    statSync(file);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EACCES";
  }
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
