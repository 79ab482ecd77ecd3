/** The dashboard: sign-in, then fleet, host, alerts, instruments and console pages under one header. */
import { clearSession, createApi, loadSession, signIn } from "./api.js";
import { forgetRuns } from "./console-history.js";
import { h, replace } from "./dom.js";
import type { Page, PageContext } from "./page.js";
import { alertsPage } from "./pages/alerts.js";
import { consolePage } from "./pages/console.js";
import { hostPage } from "./pages/host.js";
import { instrumentsPage } from "./pages/instruments.js";
import { inventoryPage } from "./pages/inventory.js";

const root = document.getElementById("app")!;
let leave: AbortController | undefined;

const routes: Record<string, { page: Page; nav: string }> = {
  "": { page: inventoryPage, nav: "" },
  hosts: { page: hostPage, nav: "" },
  alerts: { page: alertsPage, nav: "alerts" },
  instruments: { page: instrumentsPage, nav: "instruments" },
  console: { page: consolePage, nav: "console" },
};

/** "#/hosts/abc?range=1h" → name "hosts", path ["abc"], params range=1h. */
function parseRoute(): { name: string; path: string[]; params: URLSearchParams } {
  const [route = "", query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const decode = (part: string) => {
    try {
      return decodeURIComponent(part);
    } catch {
      return part; // a malformed %-escape: taken as it is
    }
  };
  const [name = "", ...path] = route.split("/").filter(Boolean).map(decode);
  return { name, path, params: new URLSearchParams(query) };
}

function render(notice?: string): void {
  leave?.abort();
  leave = new AbortController();
  const session = loadSession();
  if (!session) {
    renderSignIn(notice);
    return;
  }
  const api = createApi(session.token, (message) => {
    clearSession();
    forgetRuns();
    render(`Signed out: ${message}.`);
  });
  const route = parseRoute();
  const known = routes[route.name] ?? routes[""]!;
  const link = (href: string, label: string, nav: string) => h("a", { href, "aria-current": known.nav === nav ? "page" : false }, label);
  const main = h("main", {});
  replace(
    root,
    h(
      "header",
      {},
      h("a", { class: "brand", href: "#/" }, "Specta"),
      h(
        "nav",
        {},
        link("#/", "Fleet", ""),
        link("#/alerts", "Alerts", "alerts"),
        link("#/instruments", "Instruments", "instruments"),
        link("#/console", "Console", "console"),
      ),
      h(
        "div",
        { class: "who" },
        h("span", { class: `role role-${session.role}`, title: `signed in as ${session.name}` }, `${session.name} · ${session.role}`),
        h("button", { type: "button", onclick: () => (clearSession(), forgetRuns(), render("Signed out.")) }, "Sign out"),
      ),
    ),
    main,
  );
  const ctx: PageContext = {
    api,
    session,
    signal: leave.signal,
    path: route.path,
    params: route.params,
    setParam(name, value) {
      route.params.set(name, value);
      const base = location.hash.split("?")[0] || "#/";
      history.replaceState(null, "", `${base}?${route.params.toString()}`);
    },
  };
  known.page(main, ctx);
}

function renderSignIn(notice?: string): void {
  const input = h("input", {
    type: "password",
    name: "token",
    id: "token",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "specta_…",
    required: true,
  });
  const message = h("p", { class: "error", role: "alert", hidden: !notice }, notice ?? "");
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "signin" },
    h("h1", {}, "Specta"),
    h("label", { for: "token" }, "Token"),
    input,
    h(
      "p",
      { class: "hint" },
      "The admin token is admin.token in the daemon's data directory (/var/lib/specta as root, else ~/.local/share/specta; specta token show-admin prints it), or a viewer token: ",
      h("code", {}, "specta token create --role viewer"),
      " prints one. It is kept for this browser tab only.",
    ),
    button,
    message,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    button.disabled = true;
    message.hidden = true;
    signIn(input.value).then(
      () => render(),
      (err: unknown) => {
        message.textContent = (err as Error).message;
        message.hidden = false;
        button.disabled = false;
      },
    );
  });
  replace(root, form);
  input.focus();
}

window.addEventListener("hashchange", () => render());
render();
