import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import type { NodeRequest, NodeResponse } from "./listener.js";
import { packageRoot } from "../shared/version.js";

/** Where `npm run build` puts the dashboard (scripts/bundle.mjs). */
export const dashboardDir = join(packageRoot, "dist", "dashboard");

/**
 * The page may load only its own script and stylesheet and talk only to this daemon; it cannot
 * be framed. Charts set element styles through the CSSOM, which style-src does not restrict.
 */
const contentSecurityPolicy = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

interface StaticFile {
  body: Buffer;
  gzipped: Buffer;
  type: string;
  /** Of the content; the gzipped body's ends in "-gz" (a strong ETag names one exact body). */
  etag: string;
}

/** URL path → built file. */
const served: Record<string, { file: string; type: string }> = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/index.html": { file: "index.html", type: "text/html; charset=utf-8" },
  "/dashboard/app.js": { file: "app.js", type: "text/javascript; charset=utf-8" },
  "/dashboard/style.css": { file: "style.css", type: "text/css; charset=utf-8" },
};

/**
 * The built dashboard, read and compressed once at start and served from memory with ETags.
 * `handle` answers GET and HEAD for its paths and returns false for any other request.
 * Without a build, its paths answer 404 with what to do.
 */
export function dashboard(dir = dashboardDir): { built: boolean; handle(req: NodeRequest, res: NodeResponse, path: string): boolean } {
  const built = existsSync(join(dir, "index.html"));
  const files = new Map<string, StaticFile>();
  if (built) {
    const byName = new Map<string, StaticFile>();
    for (const [path, { file, type }] of Object.entries(served)) {
      let loaded = byName.get(file);
      if (!loaded) {
        const body = readFileSync(join(dir, file));
        byName.set(
          file,
          (loaded = { body, gzipped: gzipSync(body), type, etag: createHash("sha256").update(body).digest("base64url").slice(0, 22) }),
        );
      }
      files.set(path, loaded);
    }
  }
  return {
    built,
    handle(req, res, path) {
      if (!(path in served)) return false;
      const file = files.get(path);
      if (!file) {
        const text = JSON.stringify({ code: "not_found", message: "the dashboard is not built: run `npm run build`" });
        res.writeHead(404, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
        res.end(text);
        return true;
      }
      const gzip = /\bgzip\b/.test(String(req.headers["accept-encoding"] ?? ""));
      const etag = gzip ? `"${file.etag}-gz"` : `"${file.etag}"`;
      const headers: Record<string, string | number> = {
        "content-type": file.type,
        etag,
        "cache-control": "no-cache",
        vary: "accept-encoding",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
      };
      if (file.type.startsWith("text/html")) {
        headers["content-security-policy"] = contentSecurityPolicy;
        headers["x-frame-options"] = "DENY";
      }
      if (req.headers["if-none-match"] === etag) {
        res.writeHead(304, headers);
        res.end();
        return true;
      }
      const body = gzip ? file.gzipped : file.body;
      if (gzip) headers["content-encoding"] = "gzip";
      headers["content-length"] = body.length;
      res.writeHead(200, headers);
      if (req.method === "HEAD") res.end();
      else res.end(body);
      return true;
    },
  };
}
