/**
 * `specta silence add|ls|expire` as a user runs them: the built CLI (`npm run build` first;
 * `npm test` does it) in a child process, against a real daemon on a real PostgreSQL.
 */
import { describe, expect, it } from "vitest";
import { runSpecta, useDaemon } from "../../test/support/daemon.js";
import { silenceRequest } from "./silence.js";

describe("specta silence", () => {
  const daemon = useDaemon();
  const at = () => ["--server", daemon().url, "--data-dir", daemon().dataDir];

  it("adds a silence, lists it, expires it by a prefix of its id, and lists it again with --all", async () => {
    const added = await runSpecta(["silence", "add", "alertname=DiskFull", "host=~web-.*", "--for", "2h", "--comment", "disk swap", ...at()]);
    expect(added.stderr).toBe("");
    expect(added.code).toBe(0);
    const id = added.stdout.trim();
    expect(id).toMatch(/^[0-9a-f-]{36}$/);

    const ls = await runSpecta(["silence", "ls", ...at()]);
    expect(ls.code).toBe(0);
    expect(ls.stdout).toMatch(/^ID\s+STATE\s+MATCHERS\s+STARTS\s+ENDS\s+CREATED BY\s+COMMENT$/m);
    const row = ls.stdout.split("\n").find((l) => l.startsWith(id));
    expect(row).toMatch(/ active +\{alertname="DiskFull", host=~"web-\.\*"\} .* disk swap$/);

    const json = await runSpecta(["silence", "ls", "--json", ...at()]);
    const parsed = JSON.parse(json.stdout) as { silences: { id: string; comment: string; createdBy: string; ends: string; starts: string }[] };
    const silence = parsed.silences.find((s) => s.id === id);
    expect(silence?.comment).toBe("disk swap");
    expect(silence?.createdBy).not.toBe("");
    expect(Date.parse(silence!.ends) - Date.parse(silence!.starts)).toBe(2 * 3_600_000);

    const expired = await runSpecta(["silence", "expire", id.slice(0, 8), ...at()]);
    expect(expired).toMatchObject({ code: 0, stdout: `expired ${id.slice(0, 8)}\n` });
    expect((await runSpecta(["silence", "ls", ...at()])).stdout).not.toContain(id);
    expect((await runSpecta(["silence", "ls", "--all", ...at()])).stdout).toMatch(new RegExp(`^${id}\\s+expired`, "m"));
  });

  it("refuses a bad matcher or duration before calling, and reports the daemon's refusal", async () => {
    const badMatcher = await runSpecta(["silence", "add", "host", "--comment", "x", ...at()]);
    expect(badMatcher.code).not.toBe(0);
    expect(badMatcher.stderr).toContain('matcher "host" is not label=value');
    const noComment = await runSpecta(["silence", "add", "host=a", ...at()]);
    expect(noComment.code).not.toBe(0);
    expect(noComment.stderr).toContain("--comment");
    const badRegex = await runSpecta(["silence", "add", "host=~(", "--comment", "x", ...at()]);
    expect(badRegex.code).not.toBe(0);
    expect(badRegex.stderr).toMatch(/invalid|matcher on host/i);
    const unknown = await runSpecta(["silence", "expire", "ffffffff", ...at()]);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain("no silence");
  });

  it("builds the request: --for from --start, matchers parsed", () => {
    const now = Date.parse("2026-12-01T10:00:00Z");
    const req = silenceRequest(["a!=b", "c!~d.*"], { for: "30m", comment: "c", start: "2026-12-01T12:00:00Z" }, now);
    expect(req.silence.matchers.map((m) => m.value)).toEqual(["b", "d.*"]);
    expect(Number(req.silence.ends.seconds) * 1000).toBe(Date.parse("2026-12-01T12:30:00Z"));
    expect(() => silenceRequest(["a=b"], { for: "soon" }, now)).toThrow(/--for "soon"/);
  });
});
