/**
 * Runs a program with an argument array (never a shell) in its own process group, with a
 * timeout and an output cap: past the timeout or the cap the whole group is killed.
 */
import { spawn } from "node:child_process";
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { delimiter, join } from "node:path";

export interface ProgramResult {
  /** Exit code, or null when killed by a signal. */
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** Stdout reached the cap; the program was stopped there. */
  truncated: boolean;
  /** The run was aborted through the signal. */
  aborted: boolean;
}

const extraDirs = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/** The absolute path of an executable found in PATH or the usual system folders, or undefined. */
export async function findProgram(name: string): Promise<string | undefined> {
  const dirs = [...(process.env.PATH ?? "").split(delimiter).filter((d) => d.startsWith("/")), ...extraDirs];
  for (const dir of new Set(dirs)) {
    const candidate = join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  return undefined;
}

export interface RunProgramOptions {
  timeoutMs: number;
  capBytes: number;
  signal?: AbortSignal;
}

const stderrCap = 64 * 1024;

export function runProgram(file: string, args: string[], options: RunProgramOptions): Promise<ProgramResult> {
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) {
      resolve({ code: null, stdout: "", stderr: "", timedOut: false, truncated: false, aborted: true });
      return;
    }
    const child = spawn(file, args, {
      shell: false,
      detached: true, // its own process group, so that the whole group can be killed
      stdio: ["ignore", "pipe", "pipe"],
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", LC_ALL: "C", LANG: "C" },
    });
    const out: Buffer[] = [];
    let outBytes = 0;
    let errText = "";
    let timedOut = false;
    let truncated = false;
    let aborted = false;
    let settled = false;

    const killGroup = () => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        try {
          child.kill("SIGKILL");
        } catch {
          // already gone
        }
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, options.timeoutMs);
    const onAbort = () => {
      aborted = true;
      killGroup();
    };
    options.signal?.addEventListener("abort", onAbort, { once: true });

    child.stdout.on("data", (chunk: Buffer) => {
      if (truncated) return;
      const room = options.capBytes - outBytes;
      if (chunk.length > room) {
        if (room > 0) out.push(chunk.subarray(0, room));
        outBytes = options.capBytes;
        truncated = true;
        child.stdout.destroy();
        killGroup();
        return;
      }
      out.push(chunk);
      outBytes += chunk.length;
    });
    child.stderr.on("data", (chunk: Buffer) => {
      if (errText.length < stderrCap) errText += chunk.toString("utf8").slice(0, stderrCap - errText.length);
    });
    const finish = (code: number | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
      resolve({ code, stdout: Buffer.concat(out).toString("utf8"), stderr: errText, timedOut, truncated, aborted });
    };
    child.on("error", (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
      reject(err);
    });
    child.on("close", (code) => finish(code));
  });
}
