// Records the git commit of a build in dist/build-info.json, read by /version.
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";

let sha = process.env.SPECTA_GIT_SHA ?? "";
if (!sha) {
  try {
    sha = execFileSync("git", ["rev-parse", "HEAD"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    sha = "unknown";
  }
}
mkdirSync("dist", { recursive: true });
writeFileSync("dist/build-info.json", JSON.stringify({ sha }) + "\n");
