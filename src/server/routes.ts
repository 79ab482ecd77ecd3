import type { DescFile } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { API as AgentAPI, file_agent_agent } from "../../gen/agent/agent_pb.js";
import { API as CommandsAPI, file_commands_commands } from "../../gen/commands/commands_pb.js";
import { Health, file_grpc_health_v1_health } from "../../gen/grpc/health/v1/health_pb.js";
import { ServerReflection as ReflectionV1, file_grpc_reflection_v1_reflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  ServerReflection as ReflectionV1alpha,
  file_grpc_reflection_v1alpha_reflection,
} from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { API as MetricsAPI, file_metrics_metrics } from "../../gen/metrics/metrics_pb.js";
import { API as TokensAPI, file_tokens_tokens } from "../../gen/tokens/tokens_pb.js";
import { agentService, type AgentDeps } from "../agents/service.js";
import { commandsService, type CommandsDeps } from "../commands/service.js";
import { metricsService, type MetricsDeps } from "../metrics/service.js";
import { tokensService, type TokensDeps } from "../tokens/service.js";
import { healthService } from "./health.js";
import type { Readiness } from "./readiness.js";
import { reflectionRegistry, reflectionV1, reflectionV1alpha } from "./reflection.js";

export interface RouteDeps extends MetricsDeps {
  readiness: Readiness;
  /** Aborted when the daemon begins to stop: long-lived streams end on it. */
  shutdown: AbortSignal;
  agents: AgentDeps;
  commands: Omit<CommandsDeps, "shutdown">;
  tokens: TokensDeps;
}

const servedFiles: DescFile[] = [
  file_metrics_metrics,
  file_agent_agent,
  file_commands_commands,
  file_tokens_tokens,
  file_grpc_health_v1_health,
  file_grpc_reflection_v1_reflection,
  file_grpc_reflection_v1alpha_reflection,
];

/** Every service of the daemon, in one place. */
export function routes(deps: RouteDeps) {
  const serviceNames = [MetricsAPI, AgentAPI, CommandsAPI, TokensAPI, Health, ReflectionV1, ReflectionV1alpha].map((s) => s.typeName);
  const registry = reflectionRegistry(servedFiles);
  return (router: ConnectRouter) => {
    router.service(MetricsAPI, metricsService(deps));
    router.service(AgentAPI, agentService(deps.agents));
    router.service(CommandsAPI, commandsService({ ...deps.commands, shutdown: deps.shutdown }));
    router.service(TokensAPI, tokensService(deps.tokens));
    router.service(Health, healthService(deps.readiness, serviceNames, deps.shutdown));
    router.service(ReflectionV1, reflectionV1(registry, serviceNames));
    router.service(ReflectionV1alpha, reflectionV1alpha(registry, serviceNames));
  };
}
