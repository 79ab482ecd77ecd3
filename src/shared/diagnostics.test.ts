import { describe, expect, it } from "vitest";
import { DiagnosticError, parseAllow, validateHost, validatePath, validateUnit } from "./diagnostics.js";

describe("validation", () => {
  it("accepts host names and plain IP addresses", () => {
    expect(validateHost("example.com")).toBe("example.com");
    expect(validateHost("db-1.internal.")).toBe("db-1.internal");
    expect(validateHost("127.0.0.1")).toBe("127.0.0.1");
    expect(validateHost("::1")).toBe("::1");
    expect(validateHost("2001:db8::8a2e:370:7334")).toBe("2001:db8::8a2e:370:7334");
  });

  it.each([
    "",
    "; rm -rf /",
    "$(id)",
    "`id`",
    "-oProxyCommand=x",
    "--help",
    "a b",
    "host\nname",
    "-x.com",
    "x-.com",
    "a..b",
    "999.1.1.1",
    "fe80::1%eth0",
    "a".repeat(64) + ".com",
    "a.".repeat(127) + "aa",
  ])("refuses host %j", (host) => {
    expect(() => validateHost(host)).toThrow(DiagnosticError);
  });

  it("accepts absolute normalized paths", () => {
    expect(validatePath("/")).toBe("/");
    expect(validatePath("/var/log/")).toBe("/var/log");
    expect(validatePath("/home/a b")).toBe("/home/a b");
  });

  it.each([
    "",
    "../../etc/shadow",
    "relative/path",
    "/etc/../etc/shadow",
    "/etc/..",
    "-rf",
    "/tmp/a\nb",
    "/tmp/a\u0000b",
    "//etc",
    "/etc/./shadow",
    "$(id)",
  ])("refuses path %j", (path) => {
    expect(() => validatePath(path)).toThrow(DiagnosticError);
  });

  it("accepts unit names", () => {
    for (const unit of ["", "nginx", "nginx.service", "getty@tty1.service", "systemd-journald.socket", "user-1000.slice"])
      expect(validateUnit(unit)).toBe(unit);
  });

  it.each(["-oProxyCommand=x", "--help", "; rm -rf /", "$(id)", "a b", "nginx.service\n", "../../etc/shadow", "nginx.conf"])(
    "refuses unit %j",
    (unit) => {
      expect(() => validateUnit(unit)).toThrow(DiagnosticError);
    },
  );

  it("parses --allow names", () => {
    expect(parseAllow(["ping,connect", "disk-usage", "tcp_connect"])).toEqual(["ping", "tcp_connect", "disk_usage"]);
    expect(() => parseAllow(["ping,shell"])).toThrow(/unknown diagnostic "shell"/);
  });
});
