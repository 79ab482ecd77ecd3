/** logs: journald through journalctl when it works, else the syslog files. */
import type { JsonObject } from "@bufbuild/protobuf";
import { open } from "node:fs/promises";
import { findProgram, runProgram } from "./process.js";
import { failed, remainingMs, succeeded, type DiagnosticResult, type RunContext } from "./result.js";
import type { ValidDiagnostic } from "../../shared/diagnostics.js";

type LogsArgs = Extract<ValidDiagnostic, { kind: "logs" }>;

export const severityNames = ["emergency", "alert", "critical", "error", "warning", "notice", "info", "debug"] as const;

export interface LogEntry {
  /** ISO 8601. */
  time: string;
  /** Syslog severity name, or null when the source does not say. */
  severity: string | null;
  unit: string;
  message: string;
}

const defaultLogFiles = ["/var/log/syslog", "/var/log/messages"];
/** How much of the end of a syslog file is read at most. */
const syslogTailBytes = 32 * 2 ** 20;

export async function runLogs(args: LogsArgs, ctx: RunContext): Promise<DiagnosticResult> {
  const notes: string[] = [];
  if (ctx.journalctl !== false) {
    const journalctl = ctx.journalctl ?? (await findProgram("journalctl"));
    if (journalctl) {
      const fromJournal = await readJournal(journalctl, args, ctx);
      if (fromJournal.ok && fromJournal.entries.length > 0) return render(fromJournal.entries, "journal", args, ctx, fromJournal.truncated);
      if (ctx.timedOut()) return failed("timed out reading the journal");
      // An empty journal (no journald on this host, or nothing matched): the syslog files may know more.
      if (fromJournal.ok) {
        const fromFiles = await readSyslogFiles(ctx.logFiles ?? defaultLogFiles, args, notes);
        return render(fromFiles?.entries ?? [], fromFiles?.file ?? "journal", args, ctx, false);
      }
      notes.push(fromJournal.reason);
    }
  }
  const files = ctx.logFiles ?? defaultLogFiles;
  const fromFiles = await readSyslogFiles(files, args, notes);
  if (fromFiles) return render(fromFiles.entries, fromFiles.file, args, ctx, false);
  return failed(`no system log found: neither the journal nor ${files.join(" or ")} could be read${notes.length ? ` (${notes.join("; ")})` : ""}`);
}

/** The first syslog file that exists, read and filtered; undefined when none does. */
async function readSyslogFiles(files: string[], args: LogsArgs, notes: string[]): Promise<{ file: string; entries: LogEntry[] } | undefined> {
  for (const file of files) {
    try {
      return { file, entries: await readSyslog(file, args) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") notes.push(`${file}: ${(err as Error).message}`);
    }
  }
  return undefined;
}

function render(entries: LogEntry[], source: string, args: LogsArgs, ctx: RunContext, cutAlready: boolean): DiagnosticResult {
  // Newest last; when over the cap, the oldest entries go first.
  let list = entries.slice(-args.limit);
  let truncated = cutAlready;
  const line = (e: LogEntry) => `${e.time} ${e.severity ?? "-"} ${e.unit || "-"}: ${e.message}\n`;
  let size = list.reduce((n, e) => n + Buffer.byteLength(line(e)) + Buffer.byteLength(JSON.stringify(e)), 0);
  let drop = 0;
  while (size > ctx.capBytes && drop < list.length) {
    const e = list[drop]!;
    size -= Buffer.byteLength(line(e)) + Buffer.byteLength(JSON.stringify(e));
    drop++;
  }
  if (drop > 0) {
    list = list.slice(drop);
    truncated = true;
  }
  const data: JsonObject = { source, entries: list.map((e) => ({ ...e })) };
  return succeeded(list.map(line).join(""), data, truncated);
}

type JournalResult = { ok: true; entries: LogEntry[]; truncated: boolean } | { ok: false; reason: string };

async function readJournal(journalctl: string, args: LogsArgs, ctx: RunContext): Promise<JournalResult> {
  const argv = [
    "--no-pager",
    "-o",
    "json",
    "--output-fields=MESSAGE,PRIORITY,_SYSTEMD_UNIT,SYSLOG_IDENTIFIER,_COMM",
    "-p",
    String(args.priority),
    "--since",
    `@${Math.floor(args.sinceMs / 1000)}`,
    "-n",
    String(args.limit),
  ];
  if (args.unit) argv.push("-u", args.unit);
  let result;
  try {
    // JSON lines are several times the size of the text made from them.
    result = await runProgram(journalctl, argv, { timeoutMs: remainingMs(ctx), capBytes: ctx.capBytes * 8, signal: ctx.signal });
  } catch (err) {
    return { ok: false, reason: `journalctl: ${(err as Error).message}` };
  }
  if (result.timedOut || result.aborted) return { ok: false, reason: "journalctl did not finish" };
  if (!result.truncated && result.code !== 0) return { ok: false, reason: `journalctl failed: ${result.stderr.trim().split("\n")[0] ?? ""}` };
  if (result.stdout.trim() === "" && /no journal files/i.test(result.stderr)) return { ok: false, reason: "no journal files" };
  const lines = result.stdout.split("\n");
  // A cut run ends in a partial line.
  if (result.truncated) lines.pop();
  const entries: LogEntry[] = [];
  for (const text of lines) {
    if (!text.trim()) continue;
    let record: Record<string, unknown>;
    try {
      record = JSON.parse(text) as Record<string, unknown>;
    } catch {
      continue;
    }
    const micros = Number(record.__REALTIME_TIMESTAMP);
    const priority = Number(record.PRIORITY);
    entries.push({
      time: Number.isFinite(micros) ? new Date(Math.floor(micros / 1000)).toISOString() : "",
      severity: Number.isInteger(priority) && priority >= 0 && priority <= 7 ? severityNames[priority]! : null,
      unit: str(record._SYSTEMD_UNIT) || str(record.SYSLOG_IDENTIFIER) || str(record._COMM),
      message: str(record.MESSAGE),
    });
  }
  return { ok: true, entries, truncated: result.truncated };
}

/** journald gives a field as a string, or as an array of bytes when it is not valid UTF-8. */
function str(value: unknown): string {
  if (typeof value === "string") return value;
  if (Array.isArray(value) && value.every((b) => typeof b === "number")) return Buffer.from(value as number[]).toString("utf8");
  return "";
}

const months: Record<string, number> = { Jan: 0, Feb: 1, Mar: 2, Apr: 3, May: 4, Jun: 5, Jul: 6, Aug: 7, Sep: 8, Oct: 9, Nov: 10, Dec: 11 };
const rfc3339 = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))\s+(.*)$/;
const bsd = /^([A-Z][a-z]{2})\s+(\d{1,2})\s+(\d{2}):(\d{2}):(\d{2})\s+(.*)$/;
const tagged = /^(\S+)\s+([^\s:[]+)(?:\[\d+\])?:\s?(.*)$/;

/** Parses one syslog line (RFC 3339 or BSD timestamp, optional <PRI>); undefined when it is not one. */
export function parseSyslogLine(line: string, now = new Date()): (LogEntry & { ms: number; priority: number | null }) | undefined {
  let rest = line;
  let priority: number | null = null;
  const pri = /^<(\d{1,3})>/.exec(rest);
  if (pri) {
    priority = Number(pri[1]) & 7;
    rest = rest.slice(pri[0].length);
  }
  let ms: number;
  const iso = rfc3339.exec(rest);
  if (iso) {
    ms = Date.parse(iso[1]!);
    rest = iso[2]!;
  } else {
    const b = bsd.exec(rest);
    if (!b || months[b[1]!] === undefined) return undefined;
    const at = new Date(now.getFullYear(), months[b[1]!]!, Number(b[2]), Number(b[3]), Number(b[4]), Number(b[5]));
    // No year in the line: a date ahead of now is from last year.
    if (at.getTime() > now.getTime() + 86_400_000) at.setFullYear(at.getFullYear() - 1);
    ms = at.getTime();
    rest = b[6]!;
  }
  if (!Number.isFinite(ms)) return undefined;
  const t = tagged.exec(rest);
  return {
    ms,
    priority,
    time: new Date(ms).toISOString(),
    severity: priority === null ? null : severityNames[priority]!,
    unit: t ? t[2]! : "",
    message: t ? t[3]! : rest.replace(/^\S+\s+/, ""),
  };
}

async function readSyslog(file: string, args: LogsArgs): Promise<LogEntry[]> {
  const handle = await open(file, "r");
  let text: string;
  try {
    const { size } = await handle.stat();
    const start = Math.max(0, size - syslogTailBytes);
    const buffer = Buffer.alloc(size - start);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, start);
    text = buffer.subarray(0, bytesRead).toString("utf8");
    // Reading from the middle: the first line is partial.
    if (start > 0) text = text.slice(text.indexOf("\n") + 1);
  } finally {
    await handle.close();
  }
  const unitName = args.unit.replace(/\.service$/, "");
  const now = new Date();
  const entries: LogEntry[] = [];
  for (const line of text.split("\n")) {
    if (!line) continue;
    const entry = parseSyslogLine(line, now);
    if (!entry) continue;
    if (entry.ms < args.sinceMs) continue;
    if (entry.priority !== null && entry.priority > args.priority) continue;
    if (args.unit && entry.unit !== unitName && entry.unit !== args.unit) continue;
    entries.push({ time: entry.time, severity: entry.severity, unit: entry.unit, message: entry.message });
  }
  return entries.slice(-args.limit);
}
