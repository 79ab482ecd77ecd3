/**
 * The daemon's own API, as every other client sees it: Connect (binary) over fetch to the page's
 * origin, with the signed-in token. No second REST layer.
 */
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { API as AgentAPI } from "../../../gen/agent/agent_pb.js";
import { API as AlertsAPI } from "../../../gen/alerts/alerts_pb.js";
import { API as CommandsAPI } from "../../../gen/commands/commands_pb.js";
import { API as MetricsAPI } from "../../../gen/metrics/metrics_pb.js";
import { API as TokensAPI } from "../../../gen/tokens/tokens_pb.js";
import { personRole } from "../../shared/roles.js";

/** Who is signed in; kept in sessionStorage, so it ends with the browser tab. */
export interface Session {
  token: string;
  name: string;
  role: "admin" | "viewer";
}

export interface Api {
  agents: Client<typeof AgentAPI>;
  alerts: Client<typeof AlertsAPI>;
  metrics: Client<typeof MetricsAPI>;
  commands: Client<typeof CommandsAPI>;
  tokens: Client<typeof TokensAPI>;
}

const sessionKey = "specta.session";

export function loadSession(): Session | undefined {
  try {
    const value = JSON.parse(sessionStorage.getItem(sessionKey) ?? "null") as Session | null;
    return value && typeof value.token === "string" && (value.role === "admin" || value.role === "viewer") ? value : undefined;
  } catch {
    return undefined;
  }
}

export function clearSession(): void {
  sessionStorage.removeItem(sessionKey);
}

/** Clients that send `token`; `onRefused` hears when the daemon no longer accepts it. */
export function createApi(token: string, onRefused: (message: string) => void = () => undefined): Api {
  // Calls run in parallel: several may be refused at once, the page hears of it once.
  let refused = false;
  const auth: Interceptor = (next) => async (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    try {
      return await next(req);
    } catch (err) {
      const error = ConnectError.from(err);
      if (error.code === Code.Unauthenticated && !refused) {
        refused = true;
        onRefused(error.rawMessage);
      }
      throw err;
    }
  };
  const transport = createConnectTransport({ baseUrl: location.origin, useBinaryFormat: true, interceptors: [auth] });
  return {
    agents: createClient(AgentAPI, transport),
    alerts: createClient(AlertsAPI, transport),
    metrics: createClient(MetricsAPI, transport),
    commands: createClient(CommandsAPI, transport),
    tokens: createClient(TokensAPI, transport),
  };
}

/** Checks a token with tokens.API/Whoami and keeps it for this browser session. */
export async function signIn(token: string): Promise<Session> {
  const trimmed = token.trim();
  if (!trimmed) throw new Error("Enter a token.");
  let role: "admin" | "viewer" | undefined;
  let name = "";
  try {
    const { token: info } = await createApi(trimmed).tokens.whoami({});
    role = personRole(info?.role);
    name = info?.name ?? "";
  } catch (err) {
    const error = ConnectError.from(err);
    if (error.code === Code.Unauthenticated) throw new Error("This token is unknown or revoked.");
    throw new Error(`Cannot sign in: ${describeError(err)}`);
  }
  if (!role) throw new Error("Sign in with an admin or viewer token; agent credentials cannot.");
  const session: Session = { token: trimmed, name, role };
  sessionStorage.setItem(sessionKey, JSON.stringify(session));
  return session;
}

/** Whether a call failed only because the page cancelled it (it was left). */
export function isCancel(err: unknown): boolean {
  return (err instanceof DOMException && err.name === "AbortError") || ConnectError.from(err).code === Code.Canceled;
}

/** A one-line description of a failed call, for the page. */
export function describeError(err: unknown): string {
  const error = ConnectError.from(err);
  // fetch() itself failed: nothing answered (connect-web reports it as Unknown).
  if (error.code === Code.Unknown && error.cause instanceof TypeError) return `cannot reach the daemon at ${location.origin}: is it running?`;
  if (error.code === Code.Unavailable) return `the daemon is unavailable: ${error.rawMessage}`;
  return error.rawMessage;
}
