// npm's "prepare": builds dist/ after `npm ci` and `npm install`. `npx specta` in this folder
// installs the folder into npx's cache to link its bin (npm exec does that for a project's own
// bin) and runs prepare there too, with npm_command=exec: the whole build again, ~13 s, on the
// first call from every folder. That call runs the dist/ that is already built, as every later
// call does, so it skips the build when there is one (`npm run build` rebuilds).
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";

if (process.env.npm_command === "exec" && existsSync(new URL("../dist/src/cli/main.js", import.meta.url))) process.exit(0);
const build = spawnSync("npm", ["run", "build"], { stdio: "inherit", shell: process.platform === "win32" });
process.exit(build.status ?? 1);
