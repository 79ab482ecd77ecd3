/**
 * `specta agent` on its own: the entry of dist/agent.mjs, one bundled file that bin/specta.js
 * runs for the agent. The agent runs on every monitored host, so it loads only what it needs,
 * in one file: about 10 MiB less resident memory than the whole CLI (npm run bench:agent).
 */
import { Command } from "commander";
import { versionInfo } from "../shared/version.js";
import { agentCommand } from "./agent.js";

const program = new Command().name("specta").version(versionInfo.ver, "-V, --version", "print the version number").showHelpAfterError();
agentCommand(program);
await program.parseAsync(process.argv);
