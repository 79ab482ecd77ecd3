// V8 flags of `specta agent`, set by bin/specta.js before the agent's code is loaded; checked on
// every supported Node line by test/node-lines.e2e.test.ts. Every flag exists on Node 20, 22 and 24
// (V8 11.3 to 13.6); Maglev is off by default on 20 and on from 22, so --no-maglev matters there.
export const agentV8Flags = "--no-opt --no-maglev --optimize-for-size";
