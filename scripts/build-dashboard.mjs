// Builds the dashboard (src/dashboard/web) into dist/dashboard: one bundled, minified script and
// one stylesheet (uPlot's included), next to index.html. Nothing is loaded from elsewhere.
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { build } from "esbuild";

const out = "dist/dashboard";
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: { app: "src/dashboard/web/main.ts", style: "src/dashboard/web/style.css" },
  outdir: out,
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2022"],
  platform: "browser",
  legalComments: "none",
  logLevel: "warning",
});
copyFileSync("src/dashboard/web/index.html", `${out}/index.html`);
