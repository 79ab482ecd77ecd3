/** `specta` processes for the benchmarks: started from bin/specta.js, stopped in reverse order. */
import { spawn, type ChildProcess } from "node:child_process";

const started: ChildProcess[] = [];

/**
 * Starts `node [nodeArgs] bin/specta.js ...args` (`node`: this process's binary unless given) (stderr shown, stdout read) and resolves with
 * the process and its first stdout line matching `ready`; later output is discarded.
 */
export function startSpecta(
  args: string[],
  ready: RegExp,
  nodeArgs: string[] = [],
  node = process.execPath,
): Promise<{ child: ChildProcess; line: string }> {
  const child = spawn(node, [...nodeArgs, "bin/specta.js", ...args], { stdio: ["ignore", "pipe", "inherit"] });
  started.push(child);
  return new Promise((resolve, reject) => {
    let out = "";
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      const line = out.split("\n").find((l) => ready.test(l));
      if (!line) return;
      child.stdout!.off("data", onData);
      child.stdout!.resume();
      resolve({ child, line });
    };
    child.stdout!.on("data", onData);
    child.once("exit", (code) => reject(new Error(`specta ${args[0]} exited with ${code}: ${out.slice(-500)}`)));
  });
}

/** The URL in a daemon's "daemon listening" line. */
export function listeningUrl(line: string): string {
  return (JSON.parse(line) as { url: string }).url;
}

/** SIGTERMs every process started here, the last started first, and waits for each to exit. */
export async function stopSpecta(): Promise<void> {
  for (const child of started.splice(0).reverse()) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    child.kill("SIGTERM");
    await new Promise((resolve) => child.once("exit", resolve));
  }
}
