/**
 * The console's earlier runs, kept in localStorage so that they outlive the page and the tab:
 * the newest `maxRuns`, each output cut to `maxText` characters. Kept per signed-in name;
 * signing out forgets them.
 */
import { fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { CommandSchema, type Command } from "../../../gen/commands/commands_pb.js";

export const maxRuns = 20;
const maxText = 16_384;
const prefix = "specta.console.";

export interface Run {
  title: string;
  /** The states seen, with their times, as the page shows them. */
  timeline: string[];
  command: Command;
}

interface Stored {
  title: string;
  timeline: string[];
  command: JsonValue;
}

const keyOf = (name: string) => `${prefix}${name}`;

export function loadRuns(name: string): Run[] {
  try {
    const stored = JSON.parse(localStorage.getItem(keyOf(name)) ?? "[]") as Stored[];
    if (!Array.isArray(stored)) return [];
    return stored.slice(0, maxRuns).flatMap((s) => {
      try {
        return [
          { title: String(s.title), timeline: Array.isArray(s.timeline) ? s.timeline.map(String) : [], command: fromJson(CommandSchema, s.command) },
        ];
      } catch {
        return []; // written by another version of the page: left out
      }
    });
  } catch {
    return [];
  }
}

/** Stores `runs` (newest first), the newest `maxRuns` only, each output within its cap. */
export function saveRuns(name: string, runs: Run[]): void {
  const stored: Stored[] = runs.slice(0, maxRuns).map(({ title, timeline, command }) => {
    const json = toJson(CommandSchema, command) as { output?: { text?: string; data?: unknown; truncated?: boolean } };
    const output = json.output;
    if (output && ((output.text?.length ?? 0) > maxText || JSON.stringify(output.data ?? null).length > maxText)) {
      output.text = output.text?.slice(0, maxText);
      delete output.data;
      output.truncated = true;
    }
    return { title, timeline, command: json as JsonValue };
  });
  try {
    localStorage.setItem(keyOf(name), JSON.stringify(stored));
  } catch {
    // Storage full or disabled: the runs stay on the page until it is left.
  }
}

/** Forgets every signed-in name's runs (on sign-out). */
export function forgetRuns(): void {
  for (const key of Object.keys(localStorage)) if (key.startsWith(prefix)) localStorage.removeItem(key);
}
