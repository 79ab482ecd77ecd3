import { describe, expect, it } from "vitest";
import { formatValue } from "../promql/values.js";
import { parseDuration, parseTime } from "./params.js";

describe("Prometheus' parameter formats", () => {
  it.each([
    ["1435781451.781", 1435781451781],
    ["1435781451", 1435781451000],
    ["1435781451.7815", 1435781451782],
    ["-1.5", -1500],
    ["2015-07-01T20:10:51.781Z", 1435781451781],
    ["2015-07-01T22:10:51+02:00", 1435781451000],
  ])("reads the time %s", (text, ms) => {
    expect(parseTime(text)).toBe(ms);
  });

  it.each(["", "yesterday", "2015-07-01", "1h"])("refuses the time %j", (text) => {
    expect(parseTime(text)).toBeUndefined();
  });

  it.each([
    ["15", 15_000],
    ["0.5", 500],
    ["1m30s", 90_000],
    ["2h", 7_200_000],
  ])("reads the duration %s", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it("refuses what is not a duration", () => {
    expect(parseDuration("soon")).toBeUndefined();
    expect(parseDuration("30s1m")).toBeUndefined();
  });
});

describe("values as Prometheus writes them (Go's FormatFloat(f, 'f', -1, 64))", () => {
  it.each([
    [1, "1"],
    [0.1, "0.1"],
    [-2.5, "-2.5"],
    [1e21, "1000000000000000000000"],
    [1.5e22, "15000000000000000000000"],
    [1e-7, "0.0000001"],
    [-1.25e-10, "-0.000000000125"],
    [0.30000000000000004, "0.30000000000000004"],
    [9.98846567431158e307, "998846567431158" + "0".repeat(293)],
    [-0, "-0"],
    [Number.NaN, "NaN"],
    [Infinity, "+Inf"],
    [-Infinity, "-Inf"],
  ])("%d is %s", (value, text) => {
    expect(formatValue(value)).toBe(text);
  });
});
