import type { ServiceImpl } from "@connectrpc/connect";
import type { API as AgentAPI } from "../../gen/agent/agent_pb.js";
import { unimplemented } from "../server/unimplemented.js";

/** agent.API: enrolment and inventory arrive with the agent issue. */
export function agentService(): ServiceImpl<typeof AgentAPI> {
  return {
    register: () => unimplemented("agent.API/Register"),
    list: () => unimplemented("agent.API/List"),
    deregister: () => unimplemented("agent.API/Deregister"),
  };
}
