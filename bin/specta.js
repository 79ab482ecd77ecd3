#!/usr/bin/env node
// The `specta` command. `npm ci` builds dist/ (the "prepare" script); `npm run build` rebuilds it.
// The agent, which runs on every monitored host, has a bundle of its own that starts lighter.
import { existsSync } from "node:fs";
import { setFlagsFromString } from "node:v8";

const agent = process.argv[2] === "agent";
const main = new URL(agent ? "../dist/agent.mjs" : "../dist/src/cli/main.js", import.meta.url);
if (!existsSync(main)) {
  process.stderr.write("specta: dist/ is missing; run `npm run build` in the package folder first\n");
  process.exit(1);
}
// The agent is a small, long-running process: it runs without V8's optimising compiler
// (TurboFan), whose code and own pages cost about 5 MiB more resident memory for work (a few
// short collections every few seconds) that the interpreter and the baseline compiler do well
// within the agent's CPU budget; and its heap is kept small (collected in steps of about 2 MiB,
// not 8), so that RSS stays flat instead of growing for tens of minutes between collections
// (npm run bench:agent). Set here, before the agent's code is loaded: later, --no-opt has no effect.
if (agent) setFlagsFromString("--no-opt --optimize-for-size");
await import(main.href);
