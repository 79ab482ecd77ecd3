// The import boundaries of ARCHITECTURE.md, checked in CI (`npm run lint`): layers import only
// downwards (cli → server → features → tsdb, storage → shared), and the agent and the daemon share
// nothing but src/shared/. Tests are exempt: like the CLI, a test may put a daemon and an agent
// together.

/** Folders that are not features; every other folder of src/ is one (metrics, fleet, commands, tokens, promql, promapi, …). */
const notFeatures = ["cli", "server", "storage", "tsdb", "worker", "shared", "agent", "config", "dashboard"];
const feature = `^src/(?!(?:${notFeatures.join("|")})/)[^/]+/`;
const test = "\\.test\\.ts$";

/** A rule over the non-test modules of `from`, forbidding imports of `to`. */
const forbid = (name, comment, from, to) => ({
  name,
  comment,
  severity: "error",
  from: { path: from, pathNot: test },
  to,
});

module.exports = {
  forbidden: [
    forbid("features-not-server", "Features are served by server/ and started by cli/; they never import either.", feature, {
      path: "^src/(server|cli)/",
    }),
    forbid("store-no-feature", "storage/ and tsdb/ sit below the features: they import no feature, no server, no agent.", "^src/(storage|tsdb)/", {
      path: [feature, "^src/(server|cli|agent|dashboard)/"],
    }),
    forbid("tsdb-no-worker", "The store hands its jobs to the worker engine as plain objects; it does not import the engine.", "^src/tsdb/", {
      path: "^src/worker/",
    }),
    forbid(
      "store-no-connect",
      "storage/ and tsdb/ return their own errors; RPC code maps them (the server's CallLog, the features).",
      "^src/(storage|tsdb)/",
      { path: "node_modules/@connectrpc/" },
    ),
    forbid("worker-no-feature", "worker/ is the engine and leader election; jobs live with their features and are handed to it.", "^src/worker/", {
      path: [feature, "^src/(server|cli|agent|dashboard)/"],
    }),
    forbid("agent-only-shared", "The host agent shares only src/shared/ (and the contracts in gen/) with the daemon.", "^src/agent/", {
      path: "^src/",
      pathNot: "^src/(agent|shared)/",
    }),
    forbid("daemon-not-agent", "The daemon's code does not import the host agent's; only cli/ puts both in one command.", "^src/(?!(?:agent|cli)/)", {
      path: "^src/agent/",
    }),
    forbid("dashboard-only-shared", "The dashboard is a web page: it bundles its own code, the contracts and src/shared/ only.", "^src/dashboard/web/", {
      path: "^src/",
      pathNot: "^src/(dashboard/web|shared)/",
    }),
    forbid("shared-is-the-bottom", "src/shared/ is what everything may use, so it uses nothing of the rest.", "^src/shared/", {
      path: "^src/",
      pathNot: "^src/shared/",
    }),
    forbid("no-circular", "An import loop makes a module's parts impossible to load, test or read one at a time.", "^src/", {
      path: "^src/",
      circular: true,
    }),
  ],
  options: {
    // Type-only imports count: they tie the layers together as much as values do.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    doNotFollow: { path: "node_modules" },
    exclude: { path: "^(dist|gen)/" },
  },
};
