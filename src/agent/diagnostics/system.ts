/** mounts and connections: read from /proc and statfs, no process. */
import type { JsonObject } from "@bufbuild/protobuf";
import { readFile, statfs } from "node:fs/promises";
import { humanBytes, succeeded, UnsupportedError, type DiagnosticResult, type RunContext } from "./result.js";
import type { ValidDiagnostic } from "../../shared/diagnostics.js";

async function readProc(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new UnsupportedError(`unsupported on this system: ${path} does not exist`);
    throw err;
  }
}

/** /proc/self/mounts escapes space, tab, newline and backslash as octal. */
function unescapeMount(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

export async function runMounts(ctx: RunContext): Promise<DiagnosticResult> {
  const text = await readProc("/proc/self/mounts");
  const mounts: JsonObject[] = [];
  const lines: string[] = [];
  for (const line of text.split("\n")) {
    const fields = line.split(" ");
    if (fields.length < 4) continue;
    const [device, mountPoint, fstype, options] = fields.map(unescapeMount) as [string, string, string, string];
    if (ctx.signal.aborted) break;
    let size: number | null = null;
    let used: number | null = null;
    let free: number | null = null;
    try {
      // A hung network filesystem must not hold the whole diagnostic: bounded by the deadline.
      const st = await withDeadline(statfs(mountPoint), ctx);
      if (st) {
        size = st.blocks * st.bsize;
        used = (st.blocks - st.bfree) * st.bsize;
        free = st.bavail * st.bsize;
      }
    } catch {
      // not readable: sizes stay null
    }
    mounts.push({ device, mountPoint, fstype, options: options.split(","), size, used, free });
    const usedPct = size ? `${Math.round(((used ?? 0) / size) * 100)}%` : "-";
    lines.push(
      [
        device,
        mountPoint,
        fstype,
        size === null ? "-" : humanBytes(size),
        used === null ? "-" : humanBytes(used),
        free === null ? "-" : humanBytes(free),
        usedPct,
      ].join("\t"),
    );
  }
  if (ctx.signal.aborted && ctx.timedOut())
    return { state: "timed_out", output: { text: lines.join("\n"), data: { mounts }, truncated: false, error: "timed out" } };
  return succeeded(["device\tmount\ttype\tsize\tused\tfree\tuse%", ...lines].join("\n") + "\n", { mounts });
}

function withDeadline<T>(promise: Promise<T>, ctx: RunContext): Promise<T | undefined> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => resolve(undefined), Math.max(1, ctx.deadline - Date.now()));
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

const tcpStates: Record<string, string> = {
  "01": "ESTABLISHED",
  "02": "SYN_SENT",
  "03": "SYN_RECV",
  "04": "FIN_WAIT1",
  "05": "FIN_WAIT2",
  "06": "TIME_WAIT",
  "07": "CLOSE",
  "08": "CLOSE_WAIT",
  "09": "LAST_ACK",
  "0A": "LISTEN",
  "0B": "CLOSING",
  "0C": "NEW_SYN_RECV",
};

/** "0100007F:1F90" → ["127.0.0.1", 8080]; IPv6 as four little-endian 32-bit words. */
export function parseProcAddress(field: string): [string, number] {
  const [hex = "", portHex = "0"] = field.split(":");
  const port = parseInt(portHex, 16);
  const bytes: number[] = [];
  for (let word = 0; word < hex.length / 8; word++) {
    const w = hex.slice(word * 8, word * 8 + 8);
    for (let b = 3; b >= 0; b--) bytes.push(parseInt(w.slice(b * 2, b * 2 + 2), 16));
  }
  if (bytes.length === 4) return [bytes.join("."), port];
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  // IPv4-mapped (::ffff:a.b.c.d) reads better as such.
  if (groups.slice(0, 5).every((g) => g === "0") && groups[5] === "ffff") return [`::ffff:${bytes.slice(12).join(".")}`, port];
  return [compressIPv6(groups), port];
}

function compressIPv6(groups: string[]): string {
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < groups.length; ) {
    if (groups[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < groups.length && groups[j] === "0") j++;
    if (j - i > bestLength && j - i > 1) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  if (bestStart < 0) return groups.join(":");
  return `${groups.slice(0, bestStart).join(":")}::${groups.slice(bestStart + bestLength).join(":")}`;
}

export interface Connection {
  protocol: "tcp" | "tcp6" | "udp" | "udp6";
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  state: string;
  uid: number;
  inode: number;
}

export function parseProcNet(protocol: Connection["protocol"], text: string): Connection[] {
  const out: Connection[] = [];
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const [localAddress, localPort] = parseProcAddress(f[1]!);
    const [remoteAddress, remotePort] = parseProcAddress(f[2]!);
    const code = f[3]!.toUpperCase();
    const udp = protocol.startsWith("udp");
    // An unconnected UDP socket (state 07, no peer) is what listening means for UDP.
    const state = udp
      ? code === "07" && remotePort === 0
        ? "LISTEN"
        : code === "01"
          ? "ESTABLISHED"
          : (tcpStates[code] ?? code)
      : (tcpStates[code] ?? code);
    out.push({ protocol, localAddress, localPort, remoteAddress, remotePort, state, uid: Number(f[7]), inode: Number(f[9]) });
  }
  return out;
}

export async function runConnections(args: Extract<ValidDiagnostic, { kind: "connections" }>, ctx: RunContext): Promise<DiagnosticResult> {
  const sources: Connection["protocol"][] = args.listening ? ["tcp", "tcp6", "udp", "udp6"] : ["tcp", "tcp6"];
  const all: Connection[] = [];
  let found = 0;
  for (const protocol of sources) {
    let text: string;
    try {
      text = await readProc(`/proc/net/${protocol}`);
      found++;
    } catch (err) {
      if (err instanceof UnsupportedError) continue; // e.g. IPv6 disabled
      throw err;
    }
    for (const c of parseProcNet(protocol, text)) {
      const tcp = protocol.startsWith("tcp");
      if (args.listening && c.state === "LISTEN") all.push(c);
      else if (args.established && tcp && c.state === "ESTABLISHED") all.push(c);
    }
  }
  if (found === 0) throw new UnsupportedError("unsupported on this system: /proc/net/tcp does not exist");
  all.sort((a, b) => (a.state === b.state ? a.localPort - b.localPort : a.state === "LISTEN" ? -1 : 1));
  const line = (c: Connection) =>
    `${c.protocol}\t${c.state}\t${fmt(c.localAddress, c.localPort)}\t${c.remotePort === 0 ? "*" : fmt(c.remoteAddress, c.remotePort)}\tuid=${c.uid}\tinode=${c.inode}\n`;
  // Keep within the cap: text and data together.
  let list = all;
  let truncated = false;
  let size = 0;
  for (let i = 0; i < all.length; i++) {
    size += 2 * Buffer.byteLength(line(all[i]!)) + 64;
    if (size > ctx.capBytes) {
      list = all.slice(0, i);
      truncated = true;
      break;
    }
  }
  if (list.length === 0 && all.length === 0) return succeeded("no matching sockets\n", { connections: [] });
  const connections = list.map((c) => ({ ...c }));
  return succeeded("proto\tstate\tlocal\tremote\tuid\tinode\n" + list.map(line).join(""), { connections }, truncated);
}

function fmt(address: string, port: number): string {
  return address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
}
