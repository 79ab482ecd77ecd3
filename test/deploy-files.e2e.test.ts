/**
 * The deployment files (Dockerfile, deploy/systemd/*.service, deploy/kubernetes/specta.yaml,
 * deploy/haproxy.cfg) checked against the daemon they start: the image's start command runs as a
 * non-root user on a read-only root filesystem with only its data volume writable (there is no
 * Docker engine here, so the command runs in a private mount namespace instead), every health path
 * that a probe or check names answers on the port they name, and every flag and SPECTA_* variable
 * they pass is one the CLI accepts. YAML is parsed by Debian's python3-yaml, the units checked by
 * `systemd-analyze verify`, the HAProxy configuration by `haproxy -c`; each is skipped with a
 * message when missing, except in CI (CI=true).
 */
import { execFile, spawn, spawnSync } from "node:child_process";
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, repoRoot, requireBuild, runSpecta, tempDir } from "./support/daemon.js";

const run = promisify(execFile);
const inCI = process.env.CI === "true";
const python = "/usr/bin/python3";
const hasYaml = existsSync(python) && spawnSync(python, ["-c", "import yaml"]).status === 0;
const systemdAnalyze = "/usr/bin/systemd-analyze";
const haproxy = "/usr/sbin/haproxy";
const isRoot = process.getuid?.() === 0;

function skipping(what: string, available: boolean): boolean {
  if (available) return false;
  const message = `deploy-files: ${what} is missing`;
  if (inCI) throw new Error(`${message} (CI=true: not skipping)`);
  console.warn(`SKIPPED: ${message}`);
  return true;
}

const deploy = (...parts: string[]) => join(repoRoot, "deploy", ...parts);

/** The Dockerfile's final stage: its ENV, USER, VOLUME, EXPOSE, HEALTHCHECK command and start command. */
function finalStage(): { env: Record<string, string>; user: string; volume: string; expose: number; healthcheck: string; command: string[] } {
  const text = readFileSync(join(repoRoot, "Dockerfile"), "utf8").replace(/\\\n/g, " ");
  const lines = text.split("\n");
  const from = lines.map((l, i) => (/^FROM /.test(l) ? i : -1)).filter((i) => i >= 0);
  const stage = lines.slice(from.at(-1));
  const instruction = (name: string) => stage.filter((l) => l.startsWith(`${name} `)).map((l) => l.slice(name.length + 1).trim());
  const env: Record<string, string> = {};
  for (const line of instruction("ENV")) for (const [, key, value] of line.matchAll(/(\w+)=(\S+)/g)) env[key!] = value!;
  const json = (name: string) => JSON.parse(instruction(name).at(-1)!) as string[];
  const healthcheck = instruction("HEALTHCHECK").at(-1)!;
  return {
    env,
    user: instruction("USER").at(-1)!,
    volume: json("VOLUME")[0]!,
    expose: Number(instruction("EXPOSE").at(-1)),
    healthcheck: JSON.parse(healthcheck.slice(healthcheck.indexOf("CMD ") + 4)).join(" "),
    command: [...json("ENTRYPOINT"), ...json("CMD")],
  };
}

/** The long flags `specta <command> --help` lists. */
async function flagsOf(command: string): Promise<Set<string>> {
  const { stdout, code } = await runSpecta([command, "--help"]);
  expect(code).toBe(0);
  return new Set(stdout.match(/--[a-z][a-z-]*/g));
}

/** The SPECTA_* variables the daemon's and the agent's code read. */
function knownVariables(): Set<string> {
  const names = new Set<string>();
  for (const dir of ["src/config", "src/cli"]) {
    for (const file of readdirSync(join(repoRoot, dir)).filter((f) => f.endsWith(".ts"))) {
      for (const [name] of readFileSync(join(repoRoot, dir, file), "utf8").matchAll(/SPECTA_[A-Z_]+/g)) names.add(name);
    }
  }
  return names;
}

/** The flags of a command line (`--name value` or `--name=value`). */
const flagsIn = (args: string[]) => args.filter((a) => a.startsWith("--")).map((a) => a.split("=")[0]!);

const image = finalStage();

// As root the command runs as nobody, from the code bound at a directory of the test's own: that
// needs a clone whose own directory others may enter (a clone made right in `mktemp -d` is 0700).
const codeHiddenFromNobody = isRoot && (statSync(repoRoot).mode & 0o005) !== 0o005;
if (codeHiddenFromNobody)
  console.warn(`SKIPPED: deploy-files: ${repoRoot} is closed to other users (chmod o+rx it to run the image's command as nobody)`);

describe.skipIf(codeHiddenFromNobody)("the Dockerfile's start command", () => {
  const dir = tempDir("specta-image-");
  const dataDir = join(dir.path, "data");
  let port = 0;
  let child: ReturnType<typeof spawn> | undefined;
  let output = "";

  beforeAll(async () => {
    requireBuild();
    port = await freePort();
    mkdirSync(dataDir);
    // Not root in the image: as root here, run it as nobody, the owner of its volume only.
    const uid = isRoot ? 65534 : process.getuid!();
    if (isRoot) chownSync(dataDir, uid, uid);
    const env: Record<string, string> = {
      ...image.env,
      SPECTA_DATA_DIR: dataDir,
      SPECTA_ADDR: image.env.SPECTA_ADDR!.replace(/:\d+$/, `:${port}`),
      HOME: dataDir,
      PATH: process.env.PATH ?? "/usr/bin:/bin",
    };
    // As root the code is bound at a directory of the test's own (as the image copies it to /app),
    // so that nobody reaches it even when the clone lies under a directory only root may enter.
    const appDir = isRoot ? join(dir.path, "app") : repoRoot;
    const [program, ...args] = image.command.map((part) => part.replace(/^\/app\//, `${appDir}/`));
    const command = [program === "node" ? process.execPath : program!, ...args];
    if (isRoot) {
      mkdirSync(appDir);
      // docker run --read-only -v …:/var/lib/specta, without Docker: a private mount namespace whose
      // root is remounted read-only, with the code bound read-only and the data directory bound
      // writable on top.
      const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
      const script = [
        "mount --rbind / /",
        `mount --bind ${quote(repoRoot)} ${quote(appDir)}`,
        "mount -o remount,bind,ro /",
        `mount -o remount,bind,ro ${quote(appDir)}`,
        `mount --bind ${quote(dataDir)} ${quote(dataDir)}`,
        `mount -o remount,bind,rw ${quote(dataDir)}`,
        `cd ${quote(appDir)}`,
        `exec setpriv --reuid=${uid} --regid=${uid} --clear-groups -- ${command.map(quote).join(" ")}`,
      ].join(" && ");
      child = spawn("unshare", ["--mount", "--propagation", "private", "sh", "-c", script], { cwd: repoRoot, env });
    } else {
      console.warn("deploy-files: not root, so the root filesystem stays writable (the user is already not root)");
      child = spawn(command[0]!, command.slice(1), { cwd: repoRoot, env });
    }
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
    const deadline = Date.now() + 60_000;
    while (!output.includes('"daemon listening"')) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`the image's command did not start:\n${output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }, 90_000);

  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child!.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
    // As root the data belongs to nobody; rm as root removes it anyway.
    dir.remove();
  });

  it("runs as a non-root user, exposes the port it listens on and keeps its data in its volume", () => {
    expect(image.user).not.toMatch(/^(root|0)$/);
    expect(image.env.SPECTA_DATA_DIR).toBe(image.volume);
    expect(Number(image.env.SPECTA_ADDR!.split(":").at(-1))).toBe(image.expose);
    expect(readdirSync(dataDir).sort()).toEqual(expect.arrayContaining(["admin.token", "postgres"]));
    if (isRoot) expect(output).not.toMatch(/EROFS|read-only file system/);
  });

  it("serves the HEALTHCHECK's URL and the health paths", async () => {
    const url = /http:\/\/127\.0\.0\.1:(\d+)(\/[\w/]+)/.exec(image.healthcheck);
    expect(url).not.toBeNull();
    expect(Number(url![1])).toBe(image.expose);
    for (const path of [url![2]!, "/health/live", "/health/ready", "/version"]) {
      const res = await fetch(`http://127.0.0.1:${port}${path}`);
      expect(res.status, path).toBe(200);
    }
  });

  it("stops cleanly on SIGTERM (what docker stop sends)", async () => {
    const exited = new Promise<number | null>((r) => child!.once("exit", (code) => r(code)));
    child!.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(output).toContain('"daemon stopped"');
  });
});

type K8sObject = { kind: string; metadata: { name: string }; spec: Record<string, unknown> };
type Probe = { httpGet: { path: string; port: string | number } };
type Container = {
  args: string[];
  env?: { name: string }[];
  ports?: { name: string; containerPort: number }[];
  startupProbe?: Probe;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  securityContext?: { readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean; runAsUser?: number };
  volumeMounts?: { mountPath: string; readOnly?: boolean }[];
};
type PodSpec = {
  containers: Container[];
  hostPID?: boolean;
  hostNetwork?: boolean;
  securityContext?: { runAsUser?: number; runAsNonRoot?: boolean };
};

describe.skipIf(skipping("python3-yaml (Debian package)", hasYaml))("the Kubernetes example", () => {
  let objects: K8sObject[] = [];
  const byKind = (kind: string) => objects.find((o) => o.kind === kind)!;
  const podOf = (kind: string) => (byKind(kind).spec.template as { spec: PodSpec }).spec;

  beforeAll(async () => {
    const { stdout } = await run(python, [
      "-c",
      "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
      deploy("kubernetes", "specta.yaml"),
    ]);
    objects = JSON.parse(stdout) as K8sObject[];
  });

  it("is valid YAML holding the daemons' Deployment and Service and the agents' DaemonSet", () => {
    expect(objects.map((o) => o.kind)).toEqual(["Deployment", "Service", "DaemonSet"]);
  });

  it("probes paths the daemon serves, on the port it listens on, and the Service targets that port", async () => {
    const pod = podOf("Deployment");
    const [daemon] = pod.containers;
    const addr = daemon!.args[daemon!.args.indexOf("--addr") + 1]!;
    const port = daemon!.ports!.find((p) => p.name === "rpc")!;
    expect(port.containerPort).toBe(Number(addr.split(":").at(-1)));
    expect(port.containerPort).toBe(image.expose);
    const probes = [daemon!.startupProbe!, daemon!.livenessProbe!, daemon!.readinessProbe!];
    for (const probe of probes) expect(probe.httpGet.port).toBe("rpc");
    expect(daemon!.readinessProbe!.httpGet.path).toBe("/health/ready");
    const service = byKind("Service").spec as { ports: { port: number; targetPort: string }[] };
    expect(service.ports[0]!.targetPort).toBe("rpc");
    // Each path on a real daemon.
    const { spawnDaemon } = await import("./support/daemon.js");
    const d = await spawnDaemon();
    try {
      for (const probe of probes) expect((await fetch(`${d.url}${probe.httpGet.path}`)).status, probe.httpGet.path).toBe(200);
    } finally {
      await d.cleanup();
    }
  });

  it("passes only flags and variables the CLI accepts, and runs as the image's user on a read-only root", async () => {
    const known = knownVariables();
    for (const [kind, command] of [
      ["Deployment", "daemon"],
      ["DaemonSet", "agent"],
    ] as const) {
      const pod = podOf(kind);
      const container = pod.containers[0]!;
      expect(container.args[0]).toBe(command);
      const accepted = await flagsOf(command);
      for (const flag of flagsIn(container.args)) expect(accepted, `${kind}: ${flag}`).toContain(flag);
      for (const { name } of container.env ?? []) if (name.startsWith("SPECTA_")) expect(known, `${kind}: ${name}`).toContain(name);
      expect(container.securityContext?.readOnlyRootFilesystem).toBe(true);
      expect(container.securityContext?.allowPrivilegeEscalation).toBe(false);
    }
    const daemon = podOf("Deployment");
    expect(daemon.securityContext?.runAsNonRoot).toBe(true);
    expect(String(daemon.securityContext?.runAsUser)).toBe(/--uid (\d+)/.exec(readFileSync(join(repoRoot, "Dockerfile"), "utf8"))![1]);
    expect(daemon.containers[0]!.volumeMounts!.map((m) => m.mountPath)).toContain(image.volume);
  });

  it("runs the agent in the host's PID and network namespaces, so its /proc and /sys are the host's", () => {
    const agent = podOf("DaemonSet");
    expect(agent.hostPID).toBe(true);
    expect(agent.hostNetwork).toBe(true);
    const container = agent.containers[0]!;
    const stateDir = container.args[container.args.indexOf("--state-dir") + 1];
    expect(container.volumeMounts!.find((m) => m.mountPath === stateDir)?.readOnly).not.toBe(true);
  });
});

/** A unit's settings of its [Service] section, by key (repeated keys joined by a space). */
function unitSettings(file: string): Map<string, string> {
  const settings = new Map<string, string>();
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const match = /^(\w+)=(.*)$/.exec(line);
    if (match) settings.set(match[1]!, settings.has(match[1]!) ? `${settings.get(match[1]!)} ${match[2]}` : match[2]!);
  }
  return settings;
}

describe("the systemd units", () => {
  const units = [
    { file: deploy("systemd", "specta-daemon.service"), command: "daemon", dirFlag: "--data-dir" },
    { file: deploy("systemd", "specta-agent.service"), command: "agent", dirFlag: "--state-dir" },
  ];

  it.skipIf(skipping("systemd-analyze (Debian package systemd)", existsSync(systemdAnalyze)))(
    "pass systemd-analyze verify without a warning",
    async () => {
      const { stdout, stderr } = await run(systemdAnalyze, ["verify", ...units.map((u) => u.file)]);
      expect(stderr + stdout).toBe("");
    },
  );

  it("are hardened, writable only in their state directory, and start the CLI with flags it accepts", async () => {
    const known = knownVariables();
    for (const unit of units) {
      const s = unitSettings(unit.file);
      expect(s.get("NoNewPrivileges")).toBe("yes");
      expect(s.get("ProtectSystem")).toBe("strict");
      expect(s.get("User")).not.toBe("root");
      const argv = s.get("ExecStart")!.split(/\s+/);
      expect(argv.slice(0, 3)).toEqual(["/usr/bin/node", "/opt/specta/bin/specta.js", unit.command]);
      const stateDir = argv[argv.indexOf(unit.dirFlag) + 1]!;
      expect(s.get("ReadWritePaths")).toBe(stateDir);
      expect(`/var/lib/${s.get("StateDirectory")}`).toBe(stateDir);
      const accepted = await flagsOf(unit.command);
      for (const flag of flagsIn(argv)) expect(accepted, `${unit.file}: ${flag}`).toContain(flag);
      for (const [name] of (s.get("Environment") ?? "").matchAll(/SPECTA_[A-Z_]+/g)) expect(known, `${unit.file}: ${name}`).toContain(name);
    }
  });
});

describe("the HAProxy example", () => {
  const file = deploy("haproxy.cfg");

  it.skipIf(skipping("haproxy (Debian package)", existsSync(haproxy)))("is a valid configuration", async () => {
    const { stdout } = await run(haproxy, ["-c", "-f", file]);
    expect(stdout).toContain("Configuration file is valid");
  });

  it("checks the daemons' readiness path on the port they listen on", () => {
    const text = readFileSync(file, "utf8");
    expect(text).toMatch(/option httpchk GET \/health\/ready\n/);
    const ports = [...text.matchAll(/^\s+server \S+ \S+:(\d+) check$/gm)].map((m) => Number(m[1]));
    expect(ports.length).toBeGreaterThan(1);
    for (const port of ports) expect(port).toBe(image.expose);
  });
});
