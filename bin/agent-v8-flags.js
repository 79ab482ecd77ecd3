// V8 flags of `specta agent`, set by bin/specta.js before the agent's code is loaded; checked on
// every supported Node line by test/node-lines.e2e.test.ts. Every flag exists on Node 20, 22 and 24
// (V8 11.3 to 13.6); Maglev is off by default on 20 and on from 22, so --no-maglev matters there.
// The --no-parallel-* and --no-concurrent-* flags keep garbage collection on the main thread: on
// an agent's heap of ~15 MiB each collection is short, and waking V8's four helper threads for it
// cost more CPU than the work they took over (28 % of the agent's CPU; npm run bench:agent).
// Parallel marking stays on: turned off this late, V8 aborts at the next collection.
export const agentV8Flags =
  "--no-opt --no-maglev --optimize-for-size --no-parallel-scavenge --no-concurrent-sweeping --no-parallel-compaction --no-concurrent-marking --no-concurrent-array-buffer-sweeping --no-parallel-pointer-update --semi-space-growth-factor=1";
