import { describe, expect, it } from "vitest";
import { instantQuery } from "./engine.js";
import { parsePromql } from "./parse.js";
import { compileRegex, expandTemplate } from "./regex.js";

const scalarOf = async (query: string) => {
  const { value } = await instantQuery({ read: async () => [] }, parsePromql(query), 0);
  if (value.type !== "scalar") throw new Error(`${query} is a ${value.type}`);
  return value.value;
};

describe("parsePromql", () => {
  it.each([
    ["-2^2", -4],
    ["-2^-2", -0.25],
    ["-2^3^2", -512],
    ["2 * -2 ^ 2", -8],
    ["1 - -2^2", 5],
    ["10 - 2 * 3 + 1", 5],
    ["2 ^ 3 * 2", 16],
    ["2^3^2", 512],
    ["1 + -2^2", -3],
    ["- - - 1", -1],
    ["0x1F + 1e1", 41],
    ["5m", 300],
    ["1h30m / 60", 90],
    ["Inf", Infinity],
    ["-inf", -Infinity],
    ["7 % 4", 3],
    ["-7 % 4", -3],
    ["1 ^ NaN", 1],
    ["2 > bool 1", 1],
    ["(1 + 2) * 3", 9],
  ])("%s is %d", async (query, want) => {
    expect(await scalarOf(query)).toBe(want);
  });

  it.each([
    ["sum(", /unexpected|end of input/],
    ["rate(x[5m])[10m:1m]", /a subquery is not supported by Specta/],
    ["x @ 100", /the @ modifier is not supported by Specta/],
    ['label_join(x, "a", ",", "b")', /the function label_join is not supported by Specta/],
    ['count_values("v", x)', /the aggregation count_values is not supported by Specta/],
    ["limitk(2, x)", /not supported by Specta/],
    ["atan2(x, y)", /not supported by Specta|unexpected/],
    ["x atan2 y", /the operator atan2 is not supported by Specta/],
    ["x + fill(0) y", /the fill modifier is not supported by Specta/],
    ["x[5m+1m]", /a duration expression is not supported by Specta/],
    ["rate(x)", /expected type range vector in call to function "rate", got instant vector/],
    ["rate(x[5m], 1)", /expected 1 argument\(s\) in call to "rate", got 2/],
    ["round(x, 1, 2)", /expected 1 to 2 argument\(s\)/],
    ["sum(x[5m])", /expected type instant vector in aggregation expression, got range vector/],
    ["topk(x)", /wrong number of arguments for aggregate expression provided, expected 2, got 1/],
    ["1 > 2", /comparisons between scalars must use BOOL modifier/],
    ["x + bool y", /bool modifier can only be used on comparison operators/],
    ["1 and x", /set operator "and" not allowed in binary scalar expression/],
    ["1 + on(a) x", /vector matching only allowed between instant vectors/],
    ["x and on(a) group_left(b) y", /no grouping allowed for "and" operation/],
    ["x + on(a) group_left(a) y", /label "a" must not occur in ON and GROUP clause at once/],
    ["{}", /vector selector must contain at least one non-empty matcher/],
    ['{a=~".*"}', /vector selector must contain at least one non-empty matcher/],
    ['foo{__name__="bar"}', /metric name must not be set twice/],
    ["x offset 5m offset 1m", /offset may not be set multiple times/],
    ["x offset 1m [5m]", /no offset modifiers allowed before range/],
    ["(x)[5m]", /ranges only allowed for vector selectors/],
    ["x[0s]", /must be greater than 0/],
    ['x{a=~"(?i:b)"}', /invalid regular expression/],
    // The grammar reads this as (-x)[5m]; Prometheus as -(x[5m]): refused either way.
    ["-x[5m]", /unary expression only allowed|ranges only allowed for vector selectors/],
    ["sum(x) offset 5m", /offset modifier must be preceded by an instant vector selector/],
    ["", /empty query/],
  ])("refuses %s, naming what is wrong", (query, message) => {
    expect(() => parsePromql(query)).toThrow(message);
  });

  it("gives an offset to the selector before it, whatever follows (the grammar reads a - b offset 5m * 2 as ((a - b) offset 5m) * 2)", () => {
    expect(parsePromql("a - b offset 5m * 2")).toMatchObject({
      op: "-",
      lhs: { kind: "selector", offsetMs: 0 },
      rhs: { op: "*", lhs: { kind: "selector", offsetMs: 300_000, matchers: [{ value: "b" }] }, rhs: { kind: "number", value: 2 } },
    });
    expect(parsePromql("x - x offset 1d")).toMatchObject({ op: "-", lhs: { offsetMs: 0 }, rhs: { offsetMs: 86_400_000 } });
    expect(parsePromql("-x offset 1m")).toMatchObject({ kind: "unary", expr: { offsetMs: 60_000 } });
    expect(parsePromql("a or b and c == d + e * f ^ g")).toMatchObject({
      op: "or",
      rhs: { op: "and", rhs: { op: "==", rhs: { op: "+", rhs: { op: "*", rhs: { op: "^" } } } } },
    });
  });

  it("keeps every matcher kind and the offset of a selector", () => {
    expect(parsePromql('rate(foo{a="1", b!="2", c=~"3|4", d!~"5"}[5m] offset -1m)')).toMatchObject({
      kind: "call",
      func: "rate",
      args: [
        {
          kind: "matrix",
          rangeMs: 300_000,
          selector: {
            offsetMs: -60_000,
            matchers: [
              { label: "__name__", op: "=", value: "foo" },
              { label: "a", op: "=", value: "1" },
              { label: "b", op: "!=", value: "2" },
              { label: "c", op: "=~", value: "3|4" },
              { label: "d", op: "!~", value: "5" },
            ],
          },
        },
      ],
    });
  });

  it("reads quoted names and Go's string escapes", () => {
    expect(parsePromql('{"my.metric", "a.b"="x\\ty\\u00e9", c=`raw\\n`}')).toMatchObject({
      matchers: [
        { label: "__name__", op: "=", value: "my.metric" },
        { label: "a.b", op: "=", value: "x\tyé" },
        { label: "c", op: "=", value: "raw\\n" },
      ],
    });
  });
});

describe("a node-exporter board's queries (Grafana's variables substituted)", () => {
  it.each([
    'count(count(node_cpu_seconds_total{instance="h1",job="node"}) by (cpu))',
    '(1 - (node_memory_MemAvailable_bytes{instance="h1"} / node_memory_MemTotal_bytes{instance="h1"})) * 100',
    '100 * (1 - avg(rate(node_cpu_seconds_total{mode="idle", instance="h1"}[1m0s])))',
    'node_time_seconds{instance="h1"} - node_boot_time_seconds{instance="h1"}',
    'scalar(node_load1{instance="h1"}) * 100 / count(count(node_cpu_seconds_total{instance="h1"}) by (cpu))',
    '100 - ((node_filesystem_avail_bytes{mountpoint="/",fstype!="rootfs"} * 100) / node_filesystem_size_bytes{mountpoint="/",fstype!="rootfs"})',
    'sum by(instance) (irate(node_cpu_seconds_total{mode="system"}[1m])) / on(instance) group_left sum by (instance)((irate(node_cpu_seconds_total[1m])))',
    "irate(node_network_receive_bytes_total{device!~'lo|veth.*'}[1m])*8",
    "node_memory_MemTotal_bytes - node_memory_MemFree_bytes - (node_memory_Cached_bytes + node_memory_Buffers_bytes + node_memory_SReclaimable_bytes)",
    'label_replace(rate(node_disk_io_time_seconds_total{device=~"sd.*"}[1m]), "device", "$1", "device", "^(.*)$")',
    "topk(5, sort_desc(rate(node_disk_read_bytes_total[5m])))",
    "predict_linear(node_filesystem_avail_bytes[6h], 24 * 3600) < 0",
    "max by (instance) (node_hwmon_temp_celsius) > bool 80",
  ])("%s", (query) => {
    expect(() => parsePromql(query)).not.toThrow();
  });
});

describe("RE2 patterns in JavaScript", () => {
  it("anchors, lets . match newlines, and translates RE2's spellings", () => {
    expect(compileRegex("a.c").test("a\nc")).toBe(true);
    expect(compileRegex("b").test("abc")).toBe(false);
    expect(compileRegex("(?i)ABC").test("abc")).toBe(true);
    expect(compileRegex("[[:digit:]]+").test("123")).toBe(true);
    expect(compileRegex("(?P<x>a)").exec("a")?.groups?.x).toBe("a");
    expect(() => compileRegex("\\pL")).toThrow(/not supported/);
  });

  it("expands templates as Go's Regexp.Expand", () => {
    const m = compileRegex("(?P<first>a)(b)").exec("ab")!;
    // biome-ignore lint/suspicious/noTemplateCurlyInString: label_replace's own ${name} references, not a template literal
    expect(expandTemplate("$1-$2-${first}-$first-$$-$3-$1x-${1}x", m)).toBe("a-b-a-a-$---ax");
  });
});
