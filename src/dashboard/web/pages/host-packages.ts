/**
 * A host's installed packages, as its agent last registered them (agent.API/List with
 * with_packages): an inventory read at the agent's start and nightly, not series. Thousands per
 * host, so the table shows the first ones and a search, and all of them on request.
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Packages } from "../../../../gen/agent/agent_pb.js";
import { h, replace } from "../dom.js";
import { formatAgo, plural } from "../format.js";
import { panel } from "./host-panels.js";

/** Rows shown before "Show all": enough to look around, few enough to draw at once. */
const shownAtFirst = 50;

export function packagesPanel(): { element: HTMLElement; draw(packages: Packages | undefined): void } {
  const { element, note, table } = panel("packages", "Installed packages");
  const search = h("input", { type: "search", placeholder: "Search packages", "aria-label": "search packages", hidden: true });
  const more = h("button", { type: "button", class: "show-all", hidden: true });
  note.after(search);
  element.append(more);
  let all: Packages["packages"] = [];
  let showAll = false;

  const drawRows = () => {
    const text = search.value.trim().toLowerCase();
    const matching = text ? all.filter((p) => p.name.toLowerCase().includes(text)) : all;
    const shown = showAll ? matching : matching.slice(0, shownAtFirst);
    replace(
      table,
      h("thead", {}, h("tr", {}, ...["Name", "Version", "Arch"].map((c) => h("th", { scope: "col" }, c)))),
      h(
        "tbody",
        {},
        ...shown.map((p) => h("tr", {}, h("td", {}, p.name), h("td", {}, p.version), h("td", {}, p.arch || "–"))),
        text && matching.length === 0 ? h("tr", {}, h("td", { class: "empty", colspan: 3 }, `No package matches “${search.value.trim()}”.`)) : null,
      ),
    );
    table.hidden = all.length === 0;
    more.hidden = shown.length === matching.length;
    more.textContent = `Show all ${matching.length}`;
  };
  search.addEventListener("input", drawRows);
  more.addEventListener("click", () => {
    showAll = true;
    drawRows();
  });

  return {
    element,
    draw(packages) {
      all = packages?.packages ?? [];
      search.hidden = all.length === 0;
      note.textContent =
        packages === undefined || all.length === 0
          ? "The agent has sent no package list: it reads dpkg's, rpm's or apk's at its start and nightly, on hosts that have one."
          : `${plural(all.length, "package")} (${packages.manager})${packages.collected ? `, read ${formatAgo(timestampMs(packages.collected))}` : ""}.`;
      drawRows();
    },
  };
}
