/**
 * A client in another language: Python grpcio (Debian's python3-grpcio) with stubs generated
 * from proto/ by test/interop/python/generate.sh (Debian's protoc and grpc_python_plugin),
 * calling Histogram and the gRPC health check over h2c.
 *
 * .ci/run generates the stubs once and names the folder in SPECTA_TEST_PYTHON_STUBS; without
 * it the test generates them into a temp dir. Without Debian's packages the test is skipped
 * with a message, except in CI (CI=true), where it fails.
 */
import { execFile, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { repoRoot, tempDir, useDaemon } from "./support/daemon.js";

const run = promisify(execFile);
const python = "/usr/bin/python3";
const scripts = join(repoRoot, "test", "interop", "python");
const presetStubs = process.env.SPECTA_TEST_PYTHON_STUBS || undefined;
const inCI = process.env.CI === "true";

/** What this machine lacks for the test, as Debian package names with the reason. */
function missingPrerequisites(): string[] {
  const missing: string[] = [];
  if (!existsSync(python)) {
    missing.push(`${python} (Debian package python3)`);
  } else {
    const probe = spawnSync(python, ["-c", "import grpc, google.protobuf"], { encoding: "utf8" });
    if (probe.status !== 0)
      missing.push(`python modules grpc and google.protobuf (Debian packages python3-grpcio, python3-protobuf): ${probe.stderr.trim()}`);
  }
  if (presetStubs) {
    if (!existsSync(join(presetStubs, "metrics", "metrics_pb2.py"))) missing.push(`generated stubs in SPECTA_TEST_PYTHON_STUBS=${presetStubs}`);
    return missing;
  }
  const which = (cmd: string) => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;
  if (!which("protoc")) missing.push("protoc (Debian package protobuf-compiler)");
  if (!which("grpc_python_plugin")) missing.push("grpc_python_plugin (Debian package protobuf-compiler-grpc)");
  if (!existsSync("/usr/share/grpc-proto/grpc/health/v1/health.proto")) missing.push("grpc/health/v1/health.proto (Debian package grpc-proto)");
  return missing;
}

const missing = missingPrerequisites();
const daemon = useDaemon();

describe("Python grpcio client", () => {
  const generated = tempDir("specta-pystubs-");
  afterAll(() => generated.remove());

  it("calls Histogram and the health check over h2c", async (ctx) => {
    if (missing.length > 0) {
      const message =
        `Python interop needs: ${missing.join("; ")}. ` +
        "Install Debian's grpc-proto python3-grpcio python3-grpc-tools python3-protobuf protobuf-compiler protobuf-compiler-grpc " +
        "(.ci/run does), or unset SPECTA_TEST_PYTHON_STUBS to generate the stubs here";
      if (inCI) throw new Error(`${message} (CI=true: not skipping)`);
      console.warn(`SKIPPED: ${message}`);
      ctx.skip(message);
    }

    let stubs = presetStubs;
    if (!stubs) {
      stubs = generated.path;
      await run("bash", [join(scripts, "generate.sh"), stubs], { timeout: 60_000 });
    }

    const { stdout } = await run(python, [join(scripts, "client.py"), daemon().address, stubs], {
      timeout: 30_000,
      // No bytecode next to shared stubs; Debian's packages only, not the user's site-packages.
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1", PYTHONNOUSERSITE: "1" },
    });
    const out = JSON.parse(stdout) as Record<string, unknown>;
    expect(out.histogram).toEqual([
      { status: "success", has_reason: false },
      { status: "failure", has_reason: true, reason: { kind: "undeclared_metric", info: expect.stringContaining("no_such_metric") } },
    ]);
    expect(out.empty_call).toBe("INVALID_ARGUMENT");
    expect(out.health).toEqual({ "": "SERVING", "metrics.API": "SERVING" });
  });
});
