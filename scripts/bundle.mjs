// The bundles of `npm run build` (esbuild), next to what tsc compiles into dist/src:
// - dist/dashboard: the web page (src/dashboard/web): one script and one stylesheet (uPlot's
//   included) next to index.html; nothing is loaded from elsewhere.
// - dist/agent.mjs: `specta agent` in one file (src/cli/agent-main.ts), which bin/specta.js runs
//   for the agent: one file instead of hundreds of modules keeps the agent's memory low.
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { build } from "esbuild";

const dashboard = "dist/dashboard";
rmSync(dashboard, { recursive: true, force: true });
mkdirSync(dashboard, { recursive: true });
await build({
  entryPoints: { app: "src/dashboard/web/main.ts", style: "src/dashboard/web/style.css" },
  outdir: dashboard,
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2022"],
  platform: "browser",
  legalComments: "none",
  logLevel: "warning",
});
copyFileSync("src/dashboard/web/index.html", `${dashboard}/index.html`);

await build({
  entryPoints: ["src/cli/agent-main.ts"],
  outfile: "dist/agent.mjs",
  bundle: true,
  // Smaller source to keep in memory; names stay, so that stack traces still read.
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: true,
  format: "esm",
  platform: "node",
  target: ["node20"],
  // Only the inventory outside Linux uses it, loaded on demand from node_modules.
  external: ["systeminformation"],
  // Connect's Headers without loading undici: see src/agent/headers.ts.
  inject: ["src/agent/headers.ts"],
  // Bundled CommonJS packages (pino) call require().
  banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
  legalComments: "none",
  logLevel: "warning",
});
