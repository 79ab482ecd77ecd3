import { toJson } from "@bufbuild/protobuf";
import { timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Command } from "commander";
import { API as AlertsAPI, CreateSilenceResponseSchema, ListSilencesResponseSchema, type Silence } from "../../gen/alerts/alerts_pb.js";
import type { Matcher } from "../../gen/metrics/metrics_pb.js";
import { matcherText } from "../shared/alert-text.js";
import { parseDuration } from "../shared/duration.js";
import { addClientOptions, ClientError, daemonClient, runClient, type ClientFlags } from "./client.js";
import { parseMatcher, parseWhen } from "./query.js";
import { formatTable } from "./util.js";

interface AddFlags extends ClientFlags {
  for: string;
  comment?: string;
  start?: string;
  json?: boolean;
}

/** `specta silence add|ls|expire`: the command-line face of alerts.API's silences. */
export function silenceCommand(program: Command): void {
  const silence = program.command("silence").description("mute the notifications of matching alerts for a time (alerts.API's silences)");

  addClientOptions(
    silence
      .command("add")
      .description("create a silence of the alerts whose labels match all the matchers; prints its id")
      .argument("<matchers...>", 'label=value, label!=value, label=~regex or label!~regex, e.g. alertname=DiskFull host=~"web-.*"')
      .requiredOption("--comment <text>", "why, for people (1 to 500 characters)")
      .option("--for <duration>", "how long it lasts, e.g. 30m, 2h, 1d", "1h")
      .option("--start <time>", "when it starts: an RFC 3339 time (default now)")
      .option("--json", "print the CreateSilenceResponse as JSON"),
  ).action((texts: string[], flags: AddFlags) =>
    runClient(flags, async (connection) => {
      const request = silenceRequest(texts, flags, Date.now());
      const response = await daemonClient(AlertsAPI, connection).createSilence(request);
      process.stdout.write(flags.json ? JSON.stringify(toJson(CreateSilenceResponseSchema, response)) + "\n" : `${response.silence?.id}\n`);
    }),
  );

  addClientOptions(
    silence
      .command("ls")
      .description("list the silences in force and yet to start")
      .option("--all", "also those that ended")
      .option("--json", "print the ListSilencesResponse as JSON"),
  ).action((flags: ClientFlags & { all?: boolean; json?: boolean }) =>
    runClient(flags, async (connection) => {
      const response = await daemonClient(AlertsAPI, connection).listSilences({ includeExpired: flags.all === true });
      process.stdout.write(
        flags.json ? JSON.stringify(toJson(ListSilencesResponseSchema, response)) + "\n" : formatSilences(response.silences, Date.now()),
      );
    }),
  );

  addClientOptions(
    silence.command("expire").description("end a silence now").argument("<id>", "the silence's id or a unique prefix of it (see specta silence ls)"),
  ).action((id: string, flags: ClientFlags) =>
    runClient(flags, async (connection) => {
      await daemonClient(AlertsAPI, connection).expireSilence({ id });
      process.stdout.write(`expired ${id}\n`);
    }),
  );
}

/** The CreateSilence request of `specta silence add`. */
export function silenceRequest(texts: string[], flags: Pick<AddFlags, "for" | "comment" | "start">, nowMs: number) {
  const matchers = texts.map((text) => parseMatcher(text, "matcher"));
  const forMs = parseDuration(flags.for);
  if (forMs === undefined || forMs <= 0) throw new ClientError(`--for "${flags.for}" is not a duration such as 30m, 2h or 1d`);
  const starts = flags.start === undefined ? nowMs : parseWhen(flags.start, "--start", nowMs);
  return {
    silence: {
      matchers,
      starts: timestampFromMs(starts),
      ends: timestampFromMs(starts + forMs),
      comment: flags.comment ?? "",
    },
  };
}

/** Matchers as PromQL writes them: {alertname="DiskFull", host=~"web-.*"}. */
export function formatMatchers(matchers: readonly Matcher[]): string {
  return `{${matchers.map(matcherText).join(", ")}}`;
}

/** A table: id, state, matchers, start, end, who, comment. */
export function formatSilences(silences: readonly Silence[], nowMs: number): string {
  if (silences.length === 0) return "(no silences)\n";
  const when = (t: Silence["starts"]) =>
    t
      ? timestampDate(t)
          .toISOString()
          .replace(/\.\d+Z$/, "Z")
      : "";
  const state = (s: Silence) => {
    const ends = s.ends ? timestampDate(s.ends).getTime() : 0;
    const starts = s.starts ? timestampDate(s.starts).getTime() : 0;
    return ends <= nowMs ? "expired" : starts > nowMs ? "pending" : "active";
  };
  return formatTable([
    ["ID", "STATE", "MATCHERS", "STARTS", "ENDS", "CREATED BY", "COMMENT"],
    ...silences.map((s) => [s.id, state(s), formatMatchers(s.matchers), when(s.starts), when(s.ends), s.createdBy, s.comment]),
  ]);
}
