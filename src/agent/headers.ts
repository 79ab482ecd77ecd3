/**
 * The `Headers` of dist/agent.mjs: esbuild's `inject` (scripts/bundle.mjs) puts it in place of
 * the global one there. Node's own `Headers` belongs to undici, its fetch: the first touch loads
 * all of undici and compiles its WebAssembly HTTP parser, about 12 MiB of resident memory that
 * the host agent, which needs headers for Connect over Node's http2 and never fetches, would
 * pay for nothing. node-fetch's `Headers` implements the same Fetch standard class; its module
 * is taken alone, without node-fetch's fetch and Blob.
 */
import Headers from "node-fetch/src/headers.js";

export { Headers };
