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

// On Node 24 (not 20), importing node:http as an ES module reads every export of it, and its
// lazy exports load undici (12 MiB RSS): the agent requires it instead, which reads none.
const httpByRequire = {
  name: "http-by-require",
  setup(b) {
    b.onResolve({ filter: /^(node:)?http$/ }, (args) =>
      args.namespace === "http-by-require" ? { path: "node:http", external: true } : { path: "http", namespace: "http-by-require" },
    );
    b.onLoad({ filter: /.*/, namespace: "http-by-require" }, () => ({ contents: 'module.exports = require("node:http");', loader: "js" }));
  },
};

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
  plugins: [httpByRequire],
  // Bundled CommonJS packages (pino) call require().
  banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
  legalComments: "none",
  logLevel: "warning",
});
