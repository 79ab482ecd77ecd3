import { describe, expect, it } from "vitest";
import { API as TokensAPI } from "../../gen/tokens/tokens_pb.js";
import { auditAccess } from "../audit/service.js";
import { alertsAccess } from "../alerts/access.js";
import { commandsAccess } from "../commands/service.js";
import { fleetAccess } from "../fleet/service.js";
import { otlpAccess } from "../ingest/service.js";
import { metricsAccess } from "../metrics/service.js";
import { releasesAccess } from "../releases/service.js";
import { MissingAccessRule, rules } from "../tokens/access.js";
import { tokensAccess } from "../tokens/service.js";
import { healthAccess } from "./health.js";
import { reflectionV1Access, reflectionV1alphaAccess } from "./reflection.js";
import { servedAudits, servedProcedures } from "./routes.js";

describe("access rules of the served procedures", () => {
  it("cover every served procedure, with the roles each one admits", () => {
    const procedures = [...servedProcedures()];
    for (const [path, { name }] of procedures) expect(path).toBe(`/${name}`);
    expect(Object.fromEntries(procedures.map(([, { name, access }]) => [name, access]))).toEqual({
      "metrics.API/Counter": "public",
      "metrics.API/Gauge": "public",
      "metrics.API/Histogram": "public",
      "metrics.API/Push": ["agent", "admin"],
      "metrics.API/Query": ["viewer", "admin"],
      "metrics.API/List": ["viewer", "admin"],
      "agent.API/Register": "own-secret",
      "agent.API/List": ["viewer", "admin"],
      "agent.API/Deregister": ["admin"],
      "commands.API/Stream": ["agent"],
      "commands.API/Report": ["agent"],
      "commands.API/Submit": ["admin"],
      "commands.API/Get": ["viewer", "admin"],
      "commands.API/Watch": ["viewer", "admin"],
      "commands.API/Cancel": ["admin"],
      "tokens.API/Create": ["admin"],
      "tokens.API/List": ["admin"],
      "tokens.API/Revoke": ["admin"],
      "tokens.API/Whoami": ["viewer", "admin", "agent"],
      "audit.API/List": ["admin"],
      "alerts.API/ListRules": ["viewer", "admin"],
      "alerts.API/PutRule": ["admin"],
      "alerts.API/DeleteRule": ["admin"],
      "alerts.API/ListAlerts": ["viewer", "admin"],
      "alerts.API/History": ["viewer", "admin"],
      "alerts.API/ListSilences": ["viewer", "admin"],
      "alerts.API/CreateSilence": ["admin"],
      "alerts.API/ExpireSilence": ["admin"],
      "alerts.API/ListChannels": ["viewer", "admin"],
      "alerts.API/PutChannel": ["admin"],
      "alerts.API/DeleteChannel": ["admin"],
      "alerts.API/GetRoutes": ["viewer", "admin"],
      "alerts.API/SetRoutes": ["admin"],
      "alerts.API/ListDeliveries": ["viewer", "admin"],
      "releases.API/Publish": ["admin"],
      "releases.API/List": ["viewer", "admin"],
      "releases.API/SetRollout": ["admin"],
      "releases.API/Check": ["agent"],
      "releases.API/Fetch": ["agent"],
      "releases.API/ReportUpdate": ["agent"],
      "opentelemetry.proto.collector.metrics.v1.MetricsService/Export": ["agent", "admin"],
      "grpc.health.v1.Health/Check": "public",
      "grpc.health.v1.Health/Watch": "public",
      "grpc.reflection.v1.ServerReflection/ServerReflectionInfo": "public",
      "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": "public",
    });
  });

  const others = [
    metricsAccess,
    otlpAccess,
    fleetAccess,
    commandsAccess,
    auditAccess,
    alertsAccess,
    releasesAccess,
    healthAccess,
    reflectionV1Access,
    reflectionV1alphaAccess,
  ];

  it("are refused when a served service has none: the daemon would not start", () => {
    expect(() => servedProcedures(others)).toThrow(MissingAccessRule);
    expect(() => servedProcedures(others)).toThrow(
      "no access rule says who may call tokens.API/Create, tokens.API/List, tokens.API/Revoke, tokens.API/Whoami",
    );
  });

  it("are refused when a served method has none", () => {
    // What the types refuse to compile, as a stale build or a cast could still make it.
    const { whoami: _, ...rest } = tokensAccess.methods;
    const incomplete = rules(TokensAPI, rest as typeof tokensAccess.methods);
    expect(() => servedProcedures([...others, incomplete])).toThrow(/who may call tokens\.API\/Whoami: /);
  });

  it("audit every write: instrument calls, Push, OTLP export, enrolment, commands, tokens, alerting and releases", () => {
    const audited = servedAudits.flatMap(({ service, methods }) =>
      service.methods.filter((m) => (methods as Record<string, unknown>)[m.localName] !== undefined).map((m) => `${service.typeName}/${m.name}`),
    );
    expect(audited.sort()).toEqual(
      [
        "metrics.API/Counter",
        "metrics.API/Gauge",
        "metrics.API/Histogram",
        "metrics.API/Push",
        "opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        "agent.API/Register",
        "agent.API/Deregister",
        "commands.API/Submit",
        "commands.API/Cancel",
        "tokens.API/Create",
        "tokens.API/Revoke",
        "alerts.API/PutRule",
        "alerts.API/DeleteRule",
        "alerts.API/CreateSilence",
        "alerts.API/ExpireSilence",
        "alerts.API/PutChannel",
        "alerts.API/DeleteChannel",
        "alerts.API/SetRoutes",
        "releases.API/Publish",
        "releases.API/SetRollout",
        "releases.API/ReportUpdate",
      ].sort(),
    );
  });
});
