import { Status } from "../../gen/agent/agent_pb.js";

/** An agent's status as a word: for tables, labels and the dashboard (which bundles this module too). */
export const statusNames: Record<Status, string> = {
  [Status.UNSPECIFIED]: "unknown",
  [Status.ONLINE]: "online",
  [Status.STALE]: "stale",
  [Status.OFFLINE]: "offline",
};
