import type { DescFile, DescService } from "@bufbuild/protobuf";
import { createServiceImplSpec, type ConnectRouter, type ServiceImpl } from "@connectrpc/connect";
import { API as AgentAPI, file_agent_agent } from "../../gen/agent/agent_pb.js";
import { API as AuditAPI, file_audit_audit } from "../../gen/audit/audit_pb.js";
import { API as AlertsAPI, file_alerts_alerts } from "../../gen/alerts/alerts_pb.js";
import { API as CommandsAPI, file_commands_commands } from "../../gen/commands/commands_pb.js";
import { Health, file_grpc_health_v1_health } from "../../gen/grpc/health/v1/health_pb.js";
import { ServerReflection as ReflectionV1, file_grpc_reflection_v1_reflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ReflectionV1alpha, file_grpc_reflection_v1alpha_reflection } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { API as MetricsAPI, file_metrics_metrics } from "../../gen/metrics/metrics_pb.js";
import {
  MetricsService as OtlpMetricsService,
  file_opentelemetry_proto_collector_metrics_v1_metrics_service,
} from "../../gen/opentelemetry/proto/collector/metrics/v1/metrics_service_pb.js";
import { API as ReleasesAPI, file_releases_releases } from "../../gen/releases/releases_pb.js";
import { API as TokensAPI, file_tokens_tokens } from "../../gen/tokens/tokens_pb.js";
import type { ServiceAudit } from "../audit/declare.js";
import { auditAccess, auditService, type AuditDeps } from "../audit/service.js";
import { agentService, fleetAccess, fleetAudit, type AgentDeps } from "../fleet/service.js";
import { commandsAccess, commandsAudit, commandsService, type CommandsDeps } from "../commands/service.js";
import { otlpAccess, otlpAudit, otlpMetricsService } from "../ingest/service.js";
import { metricsAccess, metricsAudit, metricsService, type MetricsDeps } from "../metrics/service.js";
import { alertsAccess, alertsAudit } from "../alerts/access.js";
import { alertsService, type AlertsDeps } from "../alerts/service.js";
import { releasesAccess, releasesAudit, releasesService, type ReleasesDeps } from "../releases/service.js";
import { accessOf, callerOf, type Access, type ServiceRules } from "../tokens/access.js";
import { tokensAccess, tokensAudit, tokensService, type TokensDeps } from "../tokens/service.js";
import { healthAccess, healthService } from "./health.js";
import { signedProcedures } from "../shared/signing.js";
import { requestLimit } from "./request-limits.js";
import type { Readiness } from "./readiness.js";
import { reflectionRegistry, reflectionV1, reflectionV1Access, reflectionV1alpha, reflectionV1alphaAccess } from "./reflection.js";
import type { RequestSigning } from "./signing.js";
import { unparsableAsInvalidArgument } from "./unparsable.js";

export interface RouteDeps extends MetricsDeps {
  /** With a signing key: the signed procedures' handlers check and sign (signing.ts). */
  signing?: RequestSigning;
  readiness: Readiness;
  /** Aborted when the daemon begins to stop: long-lived streams end on it. */
  shutdown: AbortSignal;
  agents: AgentDeps;
  commands: Omit<CommandsDeps, "shutdown">;
  tokens: TokensDeps;
  audit: AuditDeps;
  alerts: AlertsDeps;
  releases: ReleasesDeps;
}

const servedFiles: DescFile[] = [
  file_metrics_metrics,
  file_agent_agent,
  file_commands_commands,
  file_tokens_tokens,
  file_audit_audit,
  file_alerts_alerts,
  file_releases_releases,
  file_opentelemetry_proto_collector_metrics_v1_metrics_service,
  file_grpc_health_v1_health,
  file_grpc_reflection_v1_reflection,
  file_grpc_reflection_v1alpha_reflection,
];

const servedServices: DescService[] = [
  MetricsAPI,
  AgentAPI,
  CommandsAPI,
  TokensAPI,
  AuditAPI,
  AlertsAPI,
  ReleasesAPI,
  OtlpMetricsService,
  Health,
  ReflectionV1,
  ReflectionV1alpha,
];

/** The access rules of the served services, each declared next to its service. */
const servedRules: readonly ServiceRules[] = [
  metricsAccess,
  otlpAccess,
  fleetAccess,
  commandsAccess,
  tokensAccess,
  auditAccess,
  alertsAccess,
  releasesAccess,
  healthAccess,
  reflectionV1Access,
  reflectionV1alphaAccess,
];

/** The writes of the served services, each service's declared next to it: every call of them is audited (server/audit-calls.ts). */
export const servedAudits: readonly ServiceAudit[] = [metricsAudit, otlpAudit, fleetAudit, commandsAudit, tokensAudit, alertsAudit, releasesAudit];

/** A served procedure: its name ("metrics.API/Push") and who may call it. */
export interface ServedProcedure {
  name: string;
  access: Access;
}

/**
 * Every served procedure by its path ("/metrics.API/Push"). Throws MissingAccessRule when a served
 * method has no rule among `declared` (the daemon's own, unless a test says otherwise): the daemon
 * asks first, and refuses to start.
 */
export function servedProcedures(declared: readonly ServiceRules[] = servedRules): Map<string, ServedProcedure> {
  const procedures = new Map<string, ServedProcedure>();
  for (const [name, access] of accessOf(servedServices, declared)) procedures.set(`/${name}`, { name, access });
  return procedures;
}

/**
 * Registers each RPC of a service with its own request size limit (Connect's readMaxBytes holds
 * for one registration, and router.service registers a whole service at once), its handler
 * wrapped by unparsableAsInvalidArgument and, for signed procedures, by `signing`. Adapters such
 * as connectNodeAdapter serve router.handlers as they are once the routes function returns.
 */
function serve<S extends DescService>(router: ConnectRouter, service: S, impl: ServiceImpl<S>, signing: RequestSigning | undefined): void {
  for (const spec of Object.values(createServiceImplSpec(service, impl).methods)) {
    const procedure = `${service.typeName}/${spec.method.name}`;
    router.rpc(spec.method, spec.impl, { readMaxBytes: requestLimit(procedure) });
    const handler = unparsableAsInvalidArgument(router.handlers.pop()!);
    router.handlers.push(signing && signedProcedures.has(procedure) ? signing.handler(handler, requestLimit(procedure)) : handler);
  }
}

/** Every service of the daemon, in one place. */
export function routes(deps: RouteDeps) {
  const serviceNames = servedServices.map((s) => s.typeName);
  const registry = reflectionRegistry(servedFiles);
  return (router: ConnectRouter) => {
    serve(router, MetricsAPI, metricsService(deps), deps.signing);
    serve(router, AgentAPI, agentService(deps.agents), deps.signing);
    serve(router, CommandsAPI, commandsService({ ...deps.commands, shutdown: deps.shutdown }), deps.signing);
    serve(router, TokensAPI, tokensService(deps.tokens), deps.signing);
    serve(router, AuditAPI, auditService(deps.audit), deps.signing);
    serve(router, AlertsAPI, alertsService(deps.alerts), deps.signing);
    serve(router, ReleasesAPI, releasesService(deps.releases), deps.signing);
    serve(router, OtlpMetricsService, otlpMetricsService({ push: deps.push, caller: callerOf }), deps.signing);
    serve(router, Health, healthService(deps.readiness, serviceNames, deps.shutdown), deps.signing);
    serve(router, ReflectionV1, reflectionV1(registry, serviceNames), deps.signing);
    serve(router, ReflectionV1alpha, reflectionV1alpha(registry, serviceNames), deps.signing);
  };
}
