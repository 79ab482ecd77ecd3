import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { arch, platform } from "node:os";

/** The folder holding package.json, found once from this module's location (src/shared/ under tsx, dist/src/shared/ when built, dist/ in the agent's bundle). */
export const packageRoot: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error("specta: cannot find package.json above " + fileURLToPath(import.meta.url));
    dir = parent;
  }
  return dir;
})();

/** What /version answers; Specta's field names (arc gos sha src tag ver), plus Node's version. */
export interface VersionInfo {
  /** Semantic version of this build. */
  ver: string;
  /** Release tag, "v" + ver. */
  tag: string;
  /** Git commit the build was made from, or "unknown". */
  sha: string;
  /** Where the source lives. */
  src: string;
  /** Operating system. */
  gos: string;
  /** CPU architecture. */
  arc: string;
  /** Node.js version running the daemon. */
  node: string;
}

export const versionInfo: VersionInfo = (() => {
  const pkg = JSON.parse(readFileSync(join(packageRoot, "package.json"), "utf8")) as {
    version: string;
    homepage?: string;
  };
  return {
    ver: pkg.version,
    tag: `v${pkg.version}`,
    sha: process.env.SPECTA_GIT_SHA ?? readBuildSha() ?? "unknown",
    src: pkg.homepage ?? "specta",
    gos: platform(),
    arc: arch(),
    node: process.versions.node,
  };
})();

/** `npm run build` records the commit in dist/build-info.json (see scripts/build-info.mjs). */
function readBuildSha(): string | undefined {
  try {
    const info = JSON.parse(readFileSync(join(packageRoot, "dist", "build-info.json"), "utf8")) as { sha?: string };
    return info.sha || undefined;
  } catch {
    return undefined;
  }
}
