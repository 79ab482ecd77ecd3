// Preloaded into a child process with `node --require` (NODE_OPTIONS): when the process exits,
// writes the Node built-in modules it loaded, one per line, to the file RECORD_BUILTINS_TO names.
const { writeFileSync } = require("node:fs");

process.once("exit", () => writeFileSync(process.env.RECORD_BUILTINS_TO, process.moduleLoadList.join("\n")));
