#!/usr/bin/env node
// The `specta` command. `npm ci` builds dist/ (the "prepare" script); `npm run build` rebuilds it.
// The agent, which runs on every monitored host, has a bundle of its own that starts lighter.
import { existsSync } from "node:fs";

const main = new URL(process.argv[2] === "agent" ? "../dist/agent.mjs" : "../dist/src/cli/main.js", import.meta.url);
if (!existsSync(main)) {
  process.stderr.write("specta: dist/ is missing; run `npm run build` in the package folder first\n");
  process.exit(1);
}
await import(main.href);
