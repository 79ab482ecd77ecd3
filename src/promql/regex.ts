import type { Matcher } from "./ast.js";

/**
 * PromQL's regular expressions are Go's RE2, anchored at both ends, with `.` matching newlines
 * (Prometheus compiles "^(?s:" + pattern + ")$"). Where the evaluator itself matches (label_replace,
 * metric names of `{__name__=~…}`) they run as JavaScript regexes, which agree with RE2 on the
 * syntax metrics use; the RE2 forms JavaScript spells differently are translated, and those it
 * cannot express are refused rather than matched differently.
 */

const cache = new Map<string, RegExp>();
const maxCached = 1_000;

/** Compiles an RE2 pattern, anchored, for label values; throws when JavaScript cannot match it as RE2 would. */
export function compileRegex(pattern: string): RegExp {
  const hit = cache.get(pattern);
  if (hit) return hit;
  let source = pattern;
  let flags = "s";
  // A leading (?i) is RE2's only inline flag that label matchers commonly use.
  const leading = /^\(\?i\)/.exec(source);
  if (leading) {
    flags += "i";
    source = source.slice(leading[0].length);
  }
  if (/\(\?[a-zA-Z]+[:)]/.test(source.replace(/\\./g, ""))) throw new Error("inline flags other than a leading (?i) are not supported");
  if (/\\[pPCzAQE]/.test(source.replace(/\\\\/g, ""))) throw new Error("Unicode classes, \\C, \\z, \\A and \\Q…\\E are not supported");
  source = source.replace(/\(\?P</g, "(?<").replace(/\[\[:(\w+):\]\]/g, (whole, name: string) => posixClasses[name] ?? whole);
  const regex = new RegExp(`^(?:${source})$`, flags);
  if (cache.size >= maxCached) cache.clear();
  cache.set(pattern, regex);
  return regex;
}

/** Whether a label value (or metric name) satisfies a matcher, evaluated here rather than by the store. */
export function matchesValue(m: Matcher, value: string): boolean {
  switch (m.op) {
    case "=":
      return value === m.value;
    case "!=":
      return value !== m.value;
    case "=~":
      return compileRegex(m.value).test(value);
    case "!~":
      return !compileRegex(m.value).test(value);
  }
}

const posixClasses: Record<string, string> = {
  alnum: "[0-9A-Za-z]",
  alpha: "[A-Za-z]",
  digit: "[0-9]",
  lower: "[a-z]",
  upper: "[A-Z]",
  space: "[\\t\\n\\v\\f\\r ]",
  word: "[0-9A-Za-z_]",
  xdigit: "[0-9A-Fa-f]",
  punct: "[!-/:-@[-`{-~]",
};

/**
 * Go's Regexp.ExpandString: `$1`, `${1}`, `$name`, `${name}` and `$$` in `template`, from the
 * groups of `match`. A name is the longest run of letters, digits and underscores after `$`
 * (so `$1x` names group "1x", which does not exist); an unknown group expands to "".
 */
export function expandTemplate(template: string, match: RegExpExecArray): string {
  let out = "";
  for (let i = 0; i < template.length; i++) {
    const c = template[i]!;
    if (c !== "$" || i === template.length - 1) {
      out += c;
      continue;
    }
    const next = template[i + 1]!;
    if (next === "$") {
      out += "$";
      i++;
      continue;
    }
    let name: string;
    if (next === "{") {
      const close = template.indexOf("}", i + 2);
      const inner = close < 0 ? "" : template.slice(i + 2, close);
      if (!/^\w+$/.test(inner)) {
        // Not a valid reference: Go copies the "$" and goes on.
        out += c;
        continue;
      }
      name = inner;
      i = close;
    } else {
      const run = /^\w+/.exec(template.slice(i + 1));
      if (!run) {
        out += c;
        continue;
      }
      name = run[0];
      i += run[0].length;
    }
    out += /^\d+$/.test(name) ? (match[Number(name)] ?? "") : (match.groups?.[name] ?? "");
  }
  return out;
}
