import type { JsonValue } from "@bufbuild/protobuf";
import type { Rule } from "../../../gen/alerts/alerts_pb.js";
import { ConfigError } from "../../config/config.js";
import { defaultRules, RuleError, ruleFromJson } from "./rules.js";

/** The configuration file's alerts.rules, validated as PutRule validates; a bad one stops the daemon with a ConfigError. */
export function configuredRules(raw: readonly unknown[]): Rule[] {
  const names = new Set(defaultRules.map((r) => r.name));
  return raw.map((json, i) => {
    let rule: Rule;
    try {
      rule = ruleFromJson(json as JsonValue, `alerts.rules[${i}]`);
    } catch (err) {
      if (err instanceof RuleError) throw new ConfigError(err.message);
      throw err;
    }
    if (names.has(rule.name)) {
      throw new ConfigError(`alerts.rules[${i}]: ${rule.name} is already the name of a default or an earlier rule (change a default with PutRule)`);
    }
    names.add(rule.name);
    return rule;
  });
}
