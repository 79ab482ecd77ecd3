import { createReadStream, readdirSync, statSync } from "node:fs";
import { join, relative, sep } from "node:path";
import type { NodeRequest as Request, NodeResponse as Response } from "./listener.js";
import type { Registry } from "prom-client";
import { packageRoot, versionInfo } from "../shared/version.js";
import type { dashboard } from "./dashboard.js";
import type { Readiness } from "./readiness.js";

const protoRoot = join(packageRoot, "proto");

/** Plain HTTP next to the RPCs: /version, /health/*, /metrics, the contracts under /proto/ and the dashboard. */
export function httpRoutes(registry: Registry, readiness: Readiness, site: ReturnType<typeof dashboard>) {
  const protoFiles = listProtoFiles();
  return async (req: Request, res: Response): Promise<void> => {
    const path = (req.url ?? "/").split("?")[0]!;
    if (req.method !== "GET" && req.method !== "HEAD") {
      return sendJson(res, 404, { code: "not_found", message: `no route for ${req.method} ${path}` });
    }
    switch (path) {
      case "/version":
        return sendJson(res, 200, versionInfo);
      case "/health/live": {
        const dead = readiness.deadReason();
        return dead === undefined ? sendJson(res, 200, { status: "live" }) : sendJson(res, 503, { status: "dead", reason: dead });
      }
      case "/health/ready": {
        const failing = readiness.failing();
        return failing.length === 0 ? sendJson(res, 200, { status: "ready" }) : sendJson(res, 503, { status: "not ready", failing });
      }
      case "/metrics": {
        const text = await registry.metrics();
        res.writeHead(200, { "content-type": registry.contentType });
        res.end(text);
        return;
      }
      case "/proto":
      case "/proto/":
        return sendJson(res, 200, { files: protoFiles });
    }
    if (site.handle(req, res, path)) return;
    const protoFile = path.startsWith("/proto/") ? path.slice("/proto/".length) : undefined;
    if (protoFile !== undefined && protoFiles.includes(protoFile)) {
      res.writeHead(200, { "content-type": "text/plain; charset=utf-8" });
      createReadStream(join(protoRoot, protoFile)).pipe(res as NodeJS.WritableStream);
      return;
    }
    sendJson(res, 404, { code: "not_found", message: `no route for GET ${path}` });
  };
}

function sendJson(res: Response, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/** The .proto files shipped with the package, as paths relative to proto/ (the only files served). */
function listProtoFiles(): string[] {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const full = join(dir, name);
      if (statSync(full).isDirectory()) walk(full);
      else if (name.endsWith(".proto")) files.push(relative(protoRoot, full).split(sep).join("/"));
    }
  };
  walk(protoRoot);
  return files.sort();
}
