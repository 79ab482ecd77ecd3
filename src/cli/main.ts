import { Command } from "commander";
import { versionInfo } from "../shared/version.js";
import { agentCommand } from "./agent.js";
import { agentsCommand } from "./agents.js";
import { archiveCommand } from "./archive.js";
import { auditCommand } from "./audit.js";
import { alertsCommand } from "./alerts.js";
import { daemonCommand } from "./daemon.js";
import { migrateCommand } from "./migrate.js";
import { queryCommands } from "./query.js";
import { releaseCommand } from "./release.js";
import { runCommand } from "./run.js";
import { silenceCommand } from "./silence.js";
import { tokenCommand } from "./token.js";

const program = new Command()
  .name("specta")
  .description("Specta: self-hosted, RPC-first monitoring")
  .version(versionInfo.ver, "-V, --version", "print the version number")
  .showHelpAfterError()
  .enablePositionalOptions();

daemonCommand(program);
migrateCommand(program);
queryCommands(program);
agentCommand(program);
agentsCommand(program);
releaseCommand(program);
alertsCommand(program);
runCommand(program);
silenceCommand(program);
tokenCommand(program);
auditCommand(program);
archiveCommand(program);

program
  .command("version")
  .description("print version, git commit, Node.js version, OS and architecture")
  .option("--json", "print JSON (the same as GET /version)")
  .action((flags: { json?: boolean }) => {
    if (flags.json) {
      process.stdout.write(JSON.stringify(versionInfo) + "\n");
    } else {
      const v = versionInfo;
      process.stdout.write(`specta ${v.tag} (${v.sha}) node ${v.node} ${v.gos}/${v.arc}\n`);
    }
  });

await program.parseAsync(process.argv);
