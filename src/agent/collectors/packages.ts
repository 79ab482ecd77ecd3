/**
 * The host's installed packages, for the agent's inventory (agent.API/Register's packages, read at
 * start and nightly; an inventory, not series). One process per read, execFile, no shell:
 * `dpkg-query` (Debian, Ubuntu), or `rpm -qa` (Fedora, RHEL, SUSE); on Alpine apk's own database
 * file (/lib/apk/db/installed) is read, no process. The first manager whose database exists wins.
 * Undefined when the host has none of them.
 */
import { stat } from "node:fs/promises";
import { readOptional, runTool } from "./util.js";

export interface InstalledPackage {
  name: string;
  version: string;
  arch: string;
}

export interface InstalledPackages {
  manager: "dpkg" | "rpm" | "apk";
  /** Sorted by name, then version. */
  packages: InstalledPackage[];
}

/** Most packages sent (agent.API's limit). */
export const maxPackages = 20_000;

export async function installedPackages(
  signal: AbortSignal,
  options: { root?: string; dpkgQuery?: string; rpm?: string } = {},
): Promise<InstalledPackages | undefined> {
  const root = options.root ?? "";
  const exists = (path: string) =>
    stat(`${root}${path}`).then(
      () => true,
      () => false,
    );
  const tool = { timeoutMs: 60_000, maxBytes: 32 * 2 ** 20 };
  let found: InstalledPackages | undefined;
  if (await exists("/var/lib/dpkg/status")) {
    const text = await runTool(
      options.dpkgQuery ?? "dpkg-query",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's format syntax
      ["-W", "-f=${db:Status-Abbrev}\\t${Package}\\t${Version}\\t${Architecture}\\n"],
      signal,
      tool,
    );
    found = { manager: "dpkg", packages: parseDpkgQuery(text) };
  } else if ((await exists("/var/lib/rpm")) || (await exists("/usr/lib/sysimage/rpm"))) {
    const text = await runTool(options.rpm ?? "rpm", ["-qa", "--qf", "%{NAME}\\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\\t%{ARCH}\\n"], signal, tool);
    found = { manager: "rpm", packages: parseRpmQuery(text) };
  } else {
    const db = await readOptional(`${root}/lib/apk/db/installed`, signal);
    if (db !== undefined) found = { manager: "apk", packages: parseApkInstalled(db) };
  }
  if (!found) return undefined;
  found.packages.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.version < b.version ? -1 : a.version > b.version ? 1 : 0));
  found.packages.length = Math.min(found.packages.length, maxPackages);
  return found;
}

/** dpkg-query -W lines "status\tname\tversion\tarch"; only installed ones ("ii", "hi": held). */
export function parseDpkgQuery(text: string): InstalledPackage[] {
  const out: InstalledPackage[] = [];
  for (const line of text.split("\n")) {
    const [status, name, version, arch] = line.split("\t");
    if (!status || !name || status.trim()[1] !== "i") continue;
    out.push({ name, version: version ?? "", arch: arch ?? "" });
  }
  return out;
}

/** rpm -qa lines "name\tepoch:version-release\tarch"; the epoch only when it is not 0, as rpm prints versions. */
export function parseRpmQuery(text: string): InstalledPackage[] {
  const out: InstalledPackage[] = [];
  for (const line of text.split("\n")) {
    const [name, version, arch] = line.split("\t");
    if (!name || version === undefined) continue;
    // gpg-pubkey entries are keys rpm keeps in its database, not software.
    if (name === "gpg-pubkey") continue;
    out.push({ name, version: version.replace(/^0:/, ""), arch: arch === "(none)" ? "" : (arch ?? "") });
  }
  return out;
}

/** apk's database: records separated by blank lines, "P:" name, "V:" version, "A:" architecture. */
export function parseApkInstalled(text: string): InstalledPackage[] {
  const out: InstalledPackage[] = [];
  for (const record of text.split(/\n\n+/)) {
    const field = (key: string) => new RegExp(`^${key}:(.*)$`, "m").exec(record)?.[1] ?? "";
    const name = field("P");
    if (name) out.push({ name, version: field("V"), arch: field("A") });
  }
  return out;
}
