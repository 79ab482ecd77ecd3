import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { Command } from "commander";
import { resolve } from "node:path";
import { defaultDataDir } from "../config/config.js";
import { localAdminTokenFile, readLocalAdminToken } from "../tokens/local-admin.js";

/** Where client commands find the daemon when neither --server nor SPECTA_SERVER says. */
export const defaultServer = "http://127.0.0.1:7777";

/** The options every client command takes (see addClientOptions). */
export interface ClientFlags {
  server?: string;
  token?: string;
  dataDir?: string;
}

/** Where to call and with which credential. */
export interface Connection {
  server: string;
  token?: string;
  /** Where the token came from, for the hint when the daemon refuses it. */
  tokenSource: string;
}

/** A problem a client command reports as one line (`specta: <message>`, exit 1). */
export class ClientError extends Error {
  override name = "ClientError";
}

/** Adds --server, --token and --data-dir to a client command. */
export function addClientOptions(command: Command): Command {
  return command
    .option("--server <url>", `the daemon's URL (env SPECTA_SERVER, default ${defaultServer})`)
    .option("--token <token>", "credential to call with (env SPECTA_TOKEN; default: the local daemon's admin token from --data-dir)")
    .option("--data-dir <dir>", "the local daemon's data directory, for its admin token (env SPECTA_DATA_DIR, the daemon's default)");
}

/**
 * Resolves the server and the token: flags, then SPECTA_SERVER / SPECTA_TOKEN, then the local
 * daemon's admin token in its data directory, so that commands on the daemon's host just work.
 */
export function resolveConnection(flags: ClientFlags, env: NodeJS.ProcessEnv = process.env): Connection {
  const fromEnv = (name: string) => (env[name] === undefined || env[name] === "" ? undefined : env[name]);
  const server = (flags.server ?? fromEnv("SPECTA_SERVER") ?? defaultServer).replace(/\/+$/, "");
  if (!/^https?:\/\/[^/]/.test(server)) throw new ClientError(`--server "${server}" must be an http:// or https:// URL, e.g. ${defaultServer}`);
  if (flags.token !== undefined) return { server, token: flags.token, tokenSource: "--token" };
  const envToken = fromEnv("SPECTA_TOKEN");
  if (envToken !== undefined) return { server, token: envToken, tokenSource: "SPECTA_TOKEN" };
  const dataDir = resolve(flags.dataDir ?? fromEnv("SPECTA_DATA_DIR") ?? defaultDataDir(env));
  const token = readLocalAdminToken(dataDir);
  return { server, ...(token ? { token } : {}), tokenSource: localAdminTokenFile(dataDir) };
}

/** Sends `Authorization: Bearer <token>` with every call. */
function bearer(token: string): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}

/** A Connect transport to the daemon over HTTP/1.1 (passes any proxy), sending the credential. */
export function createDaemonTransport(connection: Connection): Transport {
  return createConnectTransport({
    baseUrl: connection.server,
    httpVersion: "1.1",
    interceptors: connection.token ? [bearer(connection.token)] : [],
  });
}

/** A typed client of `service` on the daemon. */
export function daemonClient<T extends DescService>(service: T, connection: Connection): Client<T> {
  return createClient(service, createDaemonTransport(connection));
}

/** One line that says what went wrong, for the errors of a call to the daemon. */
export function describeCallError(err: unknown, connection: Connection): string {
  if (err instanceof ClientError) return err.message;
  const ce = ConnectError.from(err);
  const code = codeToString(ce.code);
  if (ce.code === Code.Unavailable && isUnreachable(ce)) {
    return `${code}: cannot reach the daemon at ${connection.server}: is it running?`;
  }
  if (ce.code === Code.Unauthenticated && !connection.token) {
    return `${code}: ${ce.rawMessage} (no --token or SPECTA_TOKEN given, and no readable admin token at ${connection.tokenSource})`;
  }
  if (ce.code === Code.Unauthenticated || ce.code === Code.PermissionDenied) {
    return `${code}: ${ce.rawMessage} (token from ${connection.tokenSource})`;
  }
  return `${code}: ${ce.rawMessage}`;
}

/** Whether the call never reached a daemon: refused, unresolvable, timed out or reset before an answer. */
function isUnreachable(err: ConnectError): boolean {
  const codes = ["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ECONNRESET"];
  let e: unknown = err;
  // A bounded walk down the causes: a chain may loop.
  for (let depth = 0; depth < 10 && e instanceof Error; depth++, e = e.cause) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code && codes.includes(code)) return true;
  }
  return false;
}

/**
 * Runs a client command's body: any failure becomes one line on stderr, `specta: <code>:
 * <message>`, and exit code 1, never a stack trace.
 */
export async function runClient(flags: ClientFlags, body: (connection: Connection) => Promise<void>): Promise<void> {
  let connection: Connection | undefined;
  try {
    connection = resolveConnection(flags);
    await body(connection);
  } catch (err) {
    const line = connection ? describeCallError(err, connection) : err instanceof Error ? err.message : String(err);
    process.stderr.write(`specta: ${line}\n`);
    process.exit(1);
  }
}
