/**
 * The `Headers` of dist/agent.mjs: esbuild's `inject` (scripts/bundle.mjs) puts it in place of
 * the global one there, which only Connect uses. Node's own `Headers` belongs to undici, its
 * fetch: the first touch loads all of undici and compiles its WebAssembly HTTP parser, about
 * 12 MiB of resident memory that the agent, which never fetches, would pay for nothing.
 *
 * node-fetch's `Headers` (its module alone, without its fetch and Blob) differs from undici's in
 * ways Connect does not notice: values are checked with Node's own http rules, which refuse
 * control characters that undici lets through; surrounding spaces are kept; and get() lowercases
 * content-encoding. Values from the network have passed Node's HTTP parsers, which refuse those
 * characters first (unless node runs with --insecure-http-parser, which the agent must not).
 */
import Headers from "node-fetch/src/headers.js";

export { Headers };
