import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { Command } from "commander";
import { Agent as HttpsAgent } from "node:https";
import { resolve } from "node:path";
import type { SecureContext } from "node:tls";
import { defaultDataDir } from "../config/config.js";
import { causeWithCode, TrustError, trustForServer, untrustedCertificate } from "../shared/trust.js";
import { localAdminTokenFile, readLocalAdminToken } from "../tokens/local-admin.js";

/** Where client commands find the daemon when neither --server nor SPECTA_SERVER says. */
export const defaultServer = "http://127.0.0.1:7777";

/** The options every client command takes (see addClientOptions). */
export interface ClientFlags {
  server?: string;
  token?: string;
  dataDir?: string;
  ca?: string;
}

/** Where to call and with which credential. */
export interface Connection {
  server: string;
  /** For an https:// server: the CAs its certificate must be signed by (--ca, else the system's). */
  trust?: SecureContext;
  token?: string;
  /** Where the token came from, for the hint when the daemon refuses it. */
  tokenSource: string;
}

/** A problem a client command reports as one line (`specta: <message>`, exit 1). */
export class ClientError extends Error {
  override name = "ClientError";
}

/** Adds --server, --ca, --token and --data-dir to a client command. */
export function addClientOptions(command: Command): Command {
  return command
    .option("--server <url>", `the daemon's URL (env SPECTA_SERVER, default ${defaultServer}); https:// for a daemon that serves TLS`)
    .option("--ca <file>", "the CA certificate (PEM) that signed an https:// daemon's certificate (env SPECTA_CA; default: the system's trusted CAs)")
    .option("--token <token>", "credential to call with (env SPECTA_TOKEN; default: the local daemon's admin token from --data-dir)")
    .option("--data-dir <dir>", "the local daemon's data directory, for its admin token (env SPECTA_DATA_DIR, the daemon's default)");
}

/**
 * Resolves the server, what to trust of it, and the token: flags, then SPECTA_SERVER / SPECTA_CA /
 * SPECTA_TOKEN, then the local daemon's admin token in its data directory, so that commands on the
 * daemon's host just work.
 */
export function resolveConnection(flags: ClientFlags, env: NodeJS.ProcessEnv = process.env): Connection {
  const fromEnv = (name: string) => (env[name] === undefined || env[name] === "" ? undefined : env[name]);
  const server = (flags.server ?? fromEnv("SPECTA_SERVER") ?? defaultServer).replace(/\/+$/, "");
  if (!/^https?:\/\/[^/]/.test(server)) throw new ClientError(`--server "${server}" must be an http:// or https:// URL, e.g. ${defaultServer}`);
  const where = { server, ...trustFor(server, flags.ca ?? fromEnv("SPECTA_CA")) };
  if (flags.token !== undefined) return { ...where, token: flags.token, tokenSource: "--token" };
  const envToken = fromEnv("SPECTA_TOKEN");
  if (envToken !== undefined) return { ...where, token: envToken, tokenSource: "SPECTA_TOKEN" };
  const dataDir = localDataDir(flags.dataDir, env);
  const token = readLocalAdminToken(dataDir);
  return { ...where, ...(token ? { token } : {}), tokenSource: localAdminTokenFile(dataDir) };
}

/** The data directory of the daemon on this host: --data-dir, else SPECTA_DATA_DIR, else the daemon's default. */
export function localDataDir(dataDir: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return resolve(dataDir ?? (env.SPECTA_DATA_DIR || undefined) ?? defaultDataDir(env));
}

/** trustForServer, its refusals as ClientError. */
function trustFor(server: string, caFile: string | undefined): { trust?: SecureContext } {
  try {
    const trust = trustForServer(server, caFile);
    return trust ? { trust } : {};
  } catch (err) {
    throw err instanceof TrustError ? new ClientError(err.message) : err;
  }
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
    ...(connection.trust ? { nodeOptions: { agent: new HttpsAgent({ secureContext: connection.trust }) } } : {}),
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
  const untrusted = untrustedCertificate(ce);
  if (untrusted) {
    return `${code}: the daemon at ${connection.server} has a certificate this command does not trust (${untrusted.message}): give the CA that signed it with --ca or SPECTA_CA`;
  }
  if (ce.code === Code.Unavailable && causeWithCode(ce, unreachableCodes)) {
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

/** Error codes of a call that never reached a daemon: refused, unresolvable, timed out or reset before an answer. */
const unreachableCodes: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ECONNRESET",
]);

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
