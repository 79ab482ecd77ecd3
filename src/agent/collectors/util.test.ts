import { describe, expect, it } from "vitest";
import { FieldScanner } from "./util.js";

describe("FieldScanner", () => {
  it("reads a line's blank-separated fields as numbers, NaN for one that is not a plain decimal", () => {
    const scan = new FieldScanner("cpu0 12 \t 0 345.5 1e3 -4 7x 18446744073709551615\nnext 1");
    expect(scan.word()).toBe("cpu0");
    const into: number[] = [];
    expect(scan.numbers(into, 10)).toBe(7);
    expect(into).toEqual([12, 0, 345.5, Number.NaN, Number.NaN, Number.NaN, Number("18446744073709551615")]);
    // At the line's end there is nothing more to read on it.
    expect(scan.numbers(into, 10)).toBe(0);
    expect(scan.word()).toBe("");
    expect(scan.nextLine()).toBe(true);
    expect(scan.word()).toBe("next");
    expect(scan.numbers(into, 10)).toBe(1);
    expect(scan.nextLine()).toBe(false);
  });

  it("reads at most as many fields as asked, and skips fields", () => {
    const scan = new FieldScanner("  1 2 3 4\n");
    const into: number[] = [];
    scan.skip();
    expect(scan.numbers(into, 2)).toBe(2);
    expect(into.slice(0, 2)).toEqual([2, 3]);
    expect(scan.lineEnd()).toBe(9);
    expect(scan.nextLine()).toBe(false);
  });

  it("rounds a fraction as Number does", () => {
    const into: number[] = [];
    new FieldScanner("0.52 0.1 3.").numbers(into, 3);
    expect(into).toEqual([0.52, 0.1, 3]);
  });
});
