#!/usr/bin/env node
// The `specta` command. `npm ci` builds dist/ (the "prepare" script); `npm run build` rebuilds it.
// The agent, which runs on every monitored host, has a bundle of its own that starts lighter.
import { existsSync } from "node:fs";
import { setFlagsFromString } from "node:v8";
import { agentV8Flags } from "./agent-v8-flags.js";

const agent = process.argv[2] === "agent";
const main = new URL(agent ? "../dist/agent.mjs" : "../dist/src/cli/main.js", import.meta.url);
if (!existsSync(main)) {
  process.stderr.write("specta: dist/ is missing; run `npm run build` in the package folder first\n");
  process.exit(1);
}
// The agent is a small, long-running process (npm run bench:agent measures it). It runs without
// V8's optimising compilers (TurboFan; and Maglev, on by default from Node 22), whose code and
// own pages cost about 5 MiB of resident memory for work, a few short collections every few
// seconds, that the interpreter and the baseline compiler do within the CPU budget; and in V8's
// small-heap mode, without which the heap grew for half an hour between full collections (the
// agent's own memory from 15 to 22 MiB) where it now stays near 15 MiB. Set here, before the
// agent's code is loaded, where they take effect (--no-opt does not once the bundle is loaded).
// Some flags that change the garbage collector's threads must not be set this late (V8 aborts at
// the next collection): test/node-lines.e2e.test.ts runs every kind of collection under these.
if (agent) setFlagsFromString(agentV8Flags);
await import(main.href);
