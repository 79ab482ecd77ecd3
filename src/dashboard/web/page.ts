/** What every page gets, and the helpers they share. */
import type { Api, Session } from "./api.js";
import { describeError, isCancel } from "./api.js";
import { h } from "./dom.js";
import { ranges } from "./queries.js";

export interface PageContext {
  api: Api;
  session: Session;
  /** Aborted when the page is left: timers stop and calls in flight are cancelled. */
  signal: AbortSignal;
  /** The route's parts after its name, e.g. ["<agent id>"] for #/hosts/<agent id>. */
  path: string[];
  /** The route's query, e.g. range=1h. */
  params: URLSearchParams;
  /** Changes the route's query without leaving the page's history entry. */
  setParam(name: string, value: string): void;
}

export type Page = (root: HTMLElement, ctx: PageContext) => void;

/** Runs `work` now and then `ms` after each run ends, until `signal` aborts. */
export function every(ms: number, signal: AbortSignal, work: () => Promise<void>): void {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const run = async () => {
    try {
      await work();
    } catch (err) {
      if (!isCancel(err)) console.error(err);
    } finally {
      if (!signal.aborted) timer = setTimeout(run, ms);
    }
  };
  signal.addEventListener("abort", () => clearTimeout(timer), { once: true });
  void run();
}

/**
 * Wraps a page's refresh so that runs never overlap, and a call during a run (a new range
 * picked, say) is not lost: it runs once more right after.
 */
export function serially(work: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  let again = false;
  const run = async (): Promise<void> => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        await work();
      } while (again);
    })().finally(() => (running = undefined));
    return running;
  };
  return run;
}

/** A line that says what went wrong with the last refresh, or nothing when it went right. */
export function statusLine(): { element: HTMLElement; show(err: unknown): void; clear(): void } {
  const element = h("p", { class: "error", role: "alert", hidden: true });
  return {
    element,
    show(err) {
      if (isCancel(err)) return;
      element.textContent = describeError(err);
      element.hidden = false;
    },
    clear() {
      element.hidden = true;
    },
  };
}

/** Buttons for 15m … 7d; the choice is kept in the route (range=…). */
export function rangePicker(ctx: PageContext, onChange: (name: string) => void): { element: HTMLElement; current(): string } {
  let current = ctx.params.get("range") ?? "1h";
  if (!(current in ranges)) current = "1h";
  const buttons = Object.keys(ranges).map((name) =>
    h(
      "button",
      {
        type: "button",
        "aria-pressed": String(name === current),
        onclick: () => {
          current = name;
          for (const b of buttons) b.setAttribute("aria-pressed", String(b.textContent === name));
          ctx.setParam("range", name);
          onChange(name);
        },
      },
      name,
    ),
  );
  return { element: h("div", { class: "range", role: "group", "aria-label": "time range" }, ...buttons), current: () => current };
}
