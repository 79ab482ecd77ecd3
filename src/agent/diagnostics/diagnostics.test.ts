import { create, type JsonObject } from "@bufbuild/protobuf";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DiagnosticSchema, Severity, type Diagnostic } from "../../../gen/commands/commands_pb.js";
import { parseSyslogLine } from "./logs.js";
import { findProgram } from "./process.js";
import { runDiagnostic } from "./run.js";
import { parseProcAddress } from "./system.js";

type Kind = Diagnostic["kind"];

function diagnostic(kind: Kind): Diagnostic {
  return create(DiagnosticSchema, { kind });
}

function data(result: { output: { data?: JsonObject } }): Record<string, unknown> {
  expect(result.output.data).toBeDefined();
  return result.output.data as Record<string, unknown>;
}

/** This process's children, from /proc (pid → command name). */
function children(): Map<number, string> {
  const found = new Map<number, string>();
  for (const task of readdirSync(`/proc/${process.pid}/task`)) {
    let list = "";
    try {
      list = readFileSync(`/proc/${process.pid}/task/${task}/children`, "utf8");
    } catch {
      continue;
    }
    for (const pid of list.trim().split(/\s+/).filter(Boolean).map(Number)) {
      let comm = "";
      try {
        comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
      } catch {
        // gone
      }
      found.set(pid, comm);
    }
  }
  return found;
}

let dir: string;
let server: Server;
let openPort: number;
let closedPort: number;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "specta-diag-"));
  server = createServer((socket) => socket.end());
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  openPort = (server.address() as { port: number }).port;
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  closedPort = (probe.address() as { port: number }).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

describe("hostile arguments are refused and nothing runs", () => {
  const marker = () => join(dir, "pwned");
  const hostile = (m: string) => [
    "; rm -rf /",
    `; touch ${m}`,
    `$(touch ${m})`,
    `\`touch ${m}\``,
    `127.0.0.1; touch ${m}`,
    `127.0.0.1 && touch ${m}`,
    `127.0.0.1\ntouch ${m}`,
    "-oProxyCommand=x",
    `-oProxyCommand=touch ${m}`,
    "--help",
    "a b",
    "../../etc/shadow",
  ];
  const cases = (m: string): [string, Kind][] => [
    ...hostile(m).map((h): [string, Kind] => [`ping ${JSON.stringify(h)}`, { case: "ping", value: { host: h } } as Kind]),
    ...hostile(m).map((h): [string, Kind] => [`traceroute ${JSON.stringify(h)}`, { case: "traceroute", value: { host: h } } as Kind]),
    ...hostile(m).map((h): [string, Kind] => [`tcp_connect ${JSON.stringify(h)}`, { case: "tcpConnect", value: { host: h, port: 80 } } as Kind]),
    ...hostile(m).map((h): [string, Kind] => [`logs unit ${JSON.stringify(h)}`, { case: "logs", value: { unit: h } } as Kind]),
    ...[...hostile(m), "relative/path", "/etc/../etc/shadow", `/tmp/$(touch ${m})/..`].map((p): [string, Kind] => [
      `disk_usage ${JSON.stringify(p)}`,
      { case: "diskUsage", value: { path: p } } as Kind,
    ]),
    ["ping count 21", { case: "ping", value: { host: "127.0.0.1", count: 21 } } as Kind],
    ["traceroute max_hops 65", { case: "traceroute", value: { host: "127.0.0.1", maxHops: 65 } } as Kind],
    ["tcp_connect port 0", { case: "tcpConnect", value: { host: "127.0.0.1", port: 0 } } as Kind],
    ["tcp_connect port 65536", { case: "tcpConnect", value: { host: "127.0.0.1", port: 65536 } } as Kind],
    ["disk_usage top 1001", { case: "diskUsage", value: { path: "/tmp", top: 1001 } } as Kind],
    ["logs limit 10001", { case: "logs", value: { limit: 10001 } } as Kind],
    ["logs severity 99", { case: "logs", value: { minSeverity: 99 as Severity } } as Kind],
  ];

  it("refuses each one before starting any process", async () => {
    const before = children();
    for (const [label, kind] of cases(marker())) {
      const started = Date.now();
      const result = await runDiagnostic(diagnostic(kind), { timeoutMs: 5_000 });
      expect(result.state, label).toBe("failed");
      expect(result.output.error, label).toMatch(/^invalid \w+ arguments: /);
      expect(result.output.text, label).toBe("");
      // Far below the 5 s timeout: refused up front, not run until killed.
      expect(Date.now() - started, label).toBeLessThan(2_000);
      // No child was started along the way.
      expect(
        [...children().keys()].filter((pid) => !before.has(pid)),
        label,
      ).toEqual([]);
    }
    expect(existsSync(marker())).toBe(false);
  });
});

describe("diagnostics on this host", () => {
  it("ping 127.0.0.1", async () => {
    const result = await runDiagnostic(diagnostic({ case: "ping", value: { host: "127.0.0.1", count: 2 } } as Kind), { timeoutMs: 10_000 });
    if (!(await findProgram("ping"))) {
      expect(result).toMatchObject({ state: "failed", output: { error: "ping is not installed" } });
      return;
    }
    expect(result.state).toBe("succeeded");
    expect(data(result)).toMatchObject({ host: "127.0.0.1", transmitted: 2, received: 2, lossPercent: 0 });
    expect(data(result).rttAvgMs).toEqual(expect.any(Number));
    expect(result.output.text).toContain("2 packets transmitted");
  });

  it("times out: ping with count 20 and a 1 s timeout is killed", async () => {
    if (!(await findProgram("ping"))) return;
    const started = Date.now();
    const result = await runDiagnostic(diagnostic({ case: "ping", value: { host: "127.0.0.1", count: 20 } } as Kind), { timeoutMs: 1_000 });
    expect(result.state).toBe("timed_out");
    expect(result.output.error).toMatch(/timeout|within/);
    expect(result.output.text).toContain("PING 127.0.0.1");
    expect(Date.now() - started).toBeLessThan(2_500);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect([...children().values()]).not.toContain("ping");
  });

  it("cuts the output at the cap and stops the program", async () => {
    if (!(await findProgram("ping"))) return;
    const started = Date.now();
    const result = await runDiagnostic(diagnostic({ case: "ping", value: { host: "127.0.0.1", count: 10 } } as Kind), {
      timeoutMs: 15_000,
      outputCapBytes: 100,
    });
    expect(result.state).toBe("succeeded");
    expect(result.output.truncated).toBe(true);
    expect(Buffer.byteLength(result.output.text)).toBeLessThanOrEqual(100);
    // Killed at the cap, not after its ten seconds.
    expect(Date.now() - started).toBeLessThan(5_000);

    const sockets = await runDiagnostic(diagnostic({ case: "connections", value: { listening: true, established: true } } as Kind), {
      timeoutMs: 5_000,
      outputCapBytes: 300,
    });
    expect(sockets.output.truncated).toBe(true);
    expect(Buffer.byteLength(sockets.output.text)).toBeLessThanOrEqual(300);
  });

  it("tcp_connect to a listening port and to a closed one", async () => {
    const open = await runDiagnostic(diagnostic({ case: "tcpConnect", value: { host: "127.0.0.1", port: openPort } } as Kind), { timeoutMs: 5_000 });
    expect(open.state).toBe("succeeded");
    expect(data(open)).toMatchObject({ connected: true, address: "127.0.0.1", port: openPort });
    expect(data(open).timeMs).toEqual(expect.any(Number));

    const byName = await runDiagnostic(diagnostic({ case: "tcpConnect", value: { host: "localhost", port: openPort } } as Kind), {
      timeoutMs: 5_000,
    });
    expect(["succeeded", "failed"]).toContain(byName.state); // localhost may resolve to ::1 first

    const closed = await runDiagnostic(diagnostic({ case: "tcpConnect", value: { host: "127.0.0.1", port: closedPort } } as Kind), {
      timeoutMs: 5_000,
    });
    expect(closed.state).toBe("failed");
    expect(data(closed)).toMatchObject({ connected: false });
    expect(closed.output.error).toContain("ECONNREFUSED");
  });

  it("connections sees the listening port", async () => {
    const result = await runDiagnostic(diagnostic({ case: "connections", value: { listening: true } } as Kind), { timeoutMs: 5_000 });
    expect(result.state).toBe("succeeded");
    const list = data(result).connections as { protocol: string; localAddress: string; localPort: number; state: string; uid: number }[];
    expect(list).toContainEqual(
      expect.objectContaining({ protocol: "tcp", localAddress: "127.0.0.1", localPort: openPort, state: "LISTEN", uid: process.getuid!() }),
    );
    expect(list.every((c) => c.state === "LISTEN")).toBe(true);
    expect(result.output.text).toContain(`127.0.0.1:${openPort}`);
  });

  it("decodes /proc/net addresses", () => {
    expect(parseProcAddress("0100007F:1F90")).toEqual(["127.0.0.1", 8080]);
    expect(parseProcAddress("00000000000000000000000001000000:0016")).toEqual(["::1", 22]);
    expect(parseProcAddress("0000000000000000FFFF00000100007F:0050")).toEqual(["::ffff:127.0.0.1", 80]);
  });

  it("disk_usage finds the largest files and folders of a tree", async () => {
    const root = join(dir, "tree");
    mkdirSync(join(root, "a", "b"), { recursive: true });
    mkdirSync(join(root, "c"));
    writeFileSync(join(root, "a", "big.bin"), Buffer.alloc(300_000));
    writeFileSync(join(root, "a", "b", "mid.bin"), Buffer.alloc(200_000));
    writeFileSync(join(root, "c", "small.bin"), Buffer.alloc(1_000));
    writeFileSync(join(root, "top.txt"), Buffer.alloc(50_000));
    symlinkSync("/usr", join(root, "usr-link")); // not followed
    const result = await runDiagnostic(diagnostic({ case: "diskUsage", value: { path: root, top: 3 } } as Kind), { timeoutMs: 10_000 });
    expect(result.state).toBe("succeeded");
    expect(data(result).files).toEqual([
      { path: join(root, "a", "big.bin"), size: 300_000 },
      { path: join(root, "a", "b", "mid.bin"), size: 200_000 },
      { path: join(root, "top.txt"), size: 50_000 },
    ]);
    expect(data(result).folders).toEqual([
      { path: root, size: 551_000 },
      { path: join(root, "a"), size: 500_000 },
      { path: join(root, "a", "b"), size: 200_000 },
    ]);
    expect(data(result)).toMatchObject({ complete: true, errors: 0 });
    expect(result.output.truncated).toBe(false);

    const budget = await runDiagnostic(diagnostic({ case: "diskUsage", value: { path: root } } as Kind), { timeoutMs: 10_000, maxEntries: 2 });
    expect(budget.state).toBe("succeeded");
    expect(budget.output.truncated).toBe(true);
    expect(data(budget)).toMatchObject({ complete: false });

    const missing = await runDiagnostic(diagnostic({ case: "diskUsage", value: { path: join(root, "nope") } } as Kind), { timeoutMs: 10_000 });
    expect(missing).toMatchObject({ state: "failed", output: { error: `${join(root, "nope")} does not exist` } });
  });

  it("mounts lists / with its size", async () => {
    const result = await runDiagnostic(diagnostic({ case: "mounts", value: {} } as Kind), { timeoutMs: 5_000 });
    expect(result.state).toBe("succeeded");
    const mounts = data(result).mounts as { mountPoint: string; fstype: string; size: number | null; options: string[] }[];
    const root = mounts.find((m) => m.mountPoint === "/");
    expect(root).toBeDefined();
    expect(root!.size).toBeGreaterThan(0);
    expect(root!.options.length).toBeGreaterThan(0);
  });

  it("traceroute 127.0.0.1", async () => {
    const result = await runDiagnostic(diagnostic({ case: "traceroute", value: { host: "127.0.0.1", maxHops: 3 } } as Kind), { timeoutMs: 20_000 });
    if (!(await findProgram("traceroute")) && !(await findProgram("tracepath"))) {
      expect(result).toMatchObject({ state: "failed", output: { error: expect.stringContaining("traceroute is not installed") } });
      return;
    }
    expect(result.state).toBe("succeeded");
    expect((data(result).hops as { address: string }[])[0]).toMatchObject({ hop: 1, address: "127.0.0.1" });
  });

  it("logs from a syslog file: by severity, since, unit and limit", async () => {
    const file = join(dir, "syslog");
    const now = Date.now();
    const iso = (ago: number) => new Date(now - ago).toISOString();
    writeFileSync(
      file,
      [
        `${iso(7_200_000)} host sshd[1]: too old`,
        `${iso(600_000)} host sshd[12]: Accepted publickey for root`,
        `<11>${iso(500_000)} host nginx[3]: upstream failed`, // err
        `<15>${iso(400_000)} host nginx[3]: debug chatter`, // debug
        `${iso(300_000)} host kernel: eth0 link up`,
        "garbage line",
        `${iso(200_000)} host nginx[3]: reloaded`,
        "",
      ].join("\n"),
    );
    const run = (value: Record<string, unknown>) =>
      runDiagnostic(diagnostic({ case: "logs", value } as Kind), { timeoutMs: 5_000, journalctl: false, logFiles: [join(dir, "missing"), file] });

    const all = await run({});
    expect(all.state).toBe("succeeded");
    const entries = data(all).entries as { message: string; severity: string | null; unit: string }[];
    expect(data(all).source).toBe(file);
    // Newest last; the debug line is below the default (info); the old one is before `since`.
    expect(entries.map((e) => e.message)).toEqual(["Accepted publickey for root", "upstream failed", "eth0 link up", "reloaded"]);
    expect(entries[1]).toMatchObject({ severity: "error", unit: "nginx" });
    expect(entries[0]).toMatchObject({ severity: null, unit: "sshd" });

    const errors = await run({ minSeverity: Severity.ERROR, unit: "nginx.service" });
    expect((data(errors).entries as { message: string }[]).map((e) => e.message)).toEqual(["upstream failed", "reloaded"]);

    const last = await run({ limit: 1, minSeverity: Severity.DEBUG });
    expect((data(last).entries as { message: string }[]).map((e) => e.message)).toEqual(["reloaded"]);

    const missing = await runDiagnostic(diagnostic({ case: "logs", value: {} } as Kind), {
      timeoutMs: 5_000,
      journalctl: false,
      logFiles: [join(dir, "missing")],
    });
    expect(missing.state).toBe("failed");
    expect(missing.output.error).toContain("no system log found");
  });

  it("parses BSD syslog lines", () => {
    const entry = parseSyslogLine("Mar  3 12:34:56 web cron[42]: (root) CMD (run-parts)", new Date(2024, 5, 1));
    expect(entry).toMatchObject({ unit: "cron", message: "(root) CMD (run-parts)", severity: null });
    expect(new Date(entry!.ms).getMonth()).toBe(2);
  });

  it("logs from the journal through journalctl, with its arguments as given", async () => {
    // A stand-in for journalctl: records its arguments and prints journal JSON.
    const fake = join(dir, "journalctl");
    const argsFile = join(dir, "journalctl.args");
    const micros = (Date.now() - 60_000) * 1000;
    const lines = [
      JSON.stringify({ __REALTIME_TIMESTAMP: String(micros), PRIORITY: "3", _SYSTEMD_UNIT: "nginx.service", MESSAGE: "upstream failed" }),
      JSON.stringify({ __REALTIME_TIMESTAMP: String(micros + 1000), PRIORITY: "4", SYSLOG_IDENTIFIER: "kernel", MESSAGE: [104, 105] }),
    ];
    writeFileSync(fake, `#!/bin/sh\nprintf '%s\\n' "$@" > '${argsFile}'\ncat <<'EOF'\n${lines.join("\n")}\nEOF\n`);
    chmodSync(fake, 0o755);
    const result = await runDiagnostic(
      diagnostic({ case: "logs", value: { minSeverity: Severity.WARNING, limit: 50, unit: "nginx.service" } } as Kind),
      {
        timeoutMs: 5_000,
        journalctl: fake,
      },
    );
    expect(result.state).toBe("succeeded");
    expect(data(result).source).toBe("journal");
    expect(data(result).entries).toEqual([
      { time: new Date(micros / 1000).toISOString(), severity: "error", unit: "nginx.service", message: "upstream failed" },
      { time: new Date(micros / 1000 + 1).toISOString(), severity: "warning", unit: "kernel", message: "hi" },
    ]);
    const argv = readFileSync(argsFile, "utf8").trim().split("\n");
    expect(argv).toEqual(expect.arrayContaining(["--no-pager", "-o", "json", "-p", "4", "-n", "50", "-u", "nginx.service"]));
    expect(argv[argv.indexOf("--since") + 1]).toMatch(/^@\d+$/);
  });

  it("logs from this host's real journal or syslog", async () => {
    if (!(await findProgram("journalctl")) && !existsSync("/var/log/syslog") && !existsSync("/var/log/messages")) return;
    const result = await runDiagnostic(diagnostic({ case: "logs", value: { limit: 5 } } as Kind), { timeoutMs: 10_000 });
    expect(result.state).toBe("succeeded");
    expect(Array.isArray(data(result).entries)).toBe(true);
  });
});

describe("allow", () => {
  it("refuses a diagnostic that is not allowed, without running it", async () => {
    const result = await runDiagnostic(diagnostic({ case: "ping", value: { host: "127.0.0.1" } } as Kind), {
      timeoutMs: 5_000,
      allow: ["connect", "mounts"],
    });
    expect(result).toEqual({
      state: "failed",
      output: { text: "", truncated: false, error: "diagnostic ping is not allowed on this agent (--allow connect,mounts)" },
    });
    const allowed = await runDiagnostic(diagnostic({ case: "tcpConnect", value: { host: "127.0.0.1", port: openPort } } as Kind), {
      timeoutMs: 5_000,
      allow: ["connect", "mounts"],
    });
    expect(allowed.state).toBe("succeeded");
    const all = await runDiagnostic(diagnostic({ case: "mounts", value: {} } as Kind), { timeoutMs: 5_000, allow: [] });
    expect(all.state).toBe("succeeded");
  });

  it("fails a command without a diagnostic", async () => {
    const result = await runDiagnostic(create(DiagnosticSchema, {}), { timeoutMs: 1_000 });
    expect(result.state).toBe("failed");
  });
});
