/** The agent's V8 flags: see agent-v8-flags.js. */
export declare const agentV8Flags: string;
