/**
 * The agent's self-update: asks its daemon now and then for the release assigned to it
 * (releases.API/Check), verifies the manifest's Ed25519 signature with the keys it trusts, then
 * the version (no downgrade, no expired manifest, its minimum version), fetches the bundle and
 * checks its size and SHA-512, installs it beside the running one, switches to it on trial and
 * resolves, so that the agent stops and its supervisor starts the new version
 * (src/cli/agent-supervisor.ts), which reports healthy or is rolled back. Every step is reported
 * to the daemon (releases.API/ReportUpdate) and shown in the inventory.
 */
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { API as ReleasesAPI, UpdateStep } from "../../gen/releases/releases_pb.js";
import type { Logger } from "../shared/log.js";
import { parseManifest, parseReleaseKeys, refusal, ReleaseError, signedBy, type ReleaseManifest } from "../shared/release.js";
import { installRelease, learntKeysFile, readCurrent, readRecord, replaceFile, writeCurrent, writeRecord } from "./release-state.js";

export interface UpdateOptions {
  /** Keys trusted besides those learnt through rotation (the built-in list and the trust file). */
  keys: readonly string[];
  /** How often to ask for a release. */
  intervalMs: number;
}

export interface UpdateLoopOptions extends UpdateOptions {
  transport: Transport;
  stateDir: string;
  /** The running agent's version. */
  running: string;
  log: Logger;
  signal: AbortSignal;
}

/** A release this agent must not install, with why: reported as REFUSED and never tried again. */
class Refused extends Error {}

/**
 * Runs until `signal` aborts (resolves undefined) or a release is installed and switched to:
 * then resolves with its version, and the agent must stop for its supervisor to start it.
 */
export async function runUpdateLoop(options: UpdateLoopOptions): Promise<string | undefined> {
  const { stateDir, running, log, signal } = options;
  const client = createClient(ReleasesAPI, options.transport);
  const report = async (version: string, step: UpdateStep, reason = "") => {
    await client.reportUpdate({ version, step, reason }, { signal, timeoutMs: 15_000 });
  };

  // A release on trial is healthy once it has told the daemon so: then the supervisor keeps it.
  let confirmed = false;
  let reported = false;
  while (!signal.aborted) {
    try {
      const current = readCurrent(stateDir);
      if (!confirmed && current?.trial && current.version === running) {
        await report(running, UpdateStep.HEALTHY);
        writeCurrent(stateDir, { ...current, trial: false });
        log.info({ version: running }, "update healthy");
      }
      confirmed = true;
      const record = readRecord(stateDir);
      if (!reported && record.report) {
        await report(record.report.version, UpdateStep[record.report.step], record.report.reason);
        const { report: _reported, ...rest } = readRecord(stateDir);
        writeRecord(stateDir, rest);
      }
      reported = true;
      const switched = await update(options, client, report);
      if (switched) return switched;
    } catch (err) {
      if (signal.aborted) break;
      const error = ConnectError.from(err);
      log.warn({ code: Code[error.code], reason: error.rawMessage }, "checking for an update failed; trying again later");
    }
    // Until the daemon has heard of a trial's health or a rollback, ask again soon.
    await sleep(confirmed && reported ? options.intervalMs : Math.min(options.intervalMs, 5_000), undefined, { signal }).catch(() => undefined);
  }
  return undefined;
}

/** One check: the version switched to, or undefined when there is nothing (new) to install. */
async function update(
  options: UpdateLoopOptions,
  client: ReturnType<typeof createClient<typeof ReleasesAPI>>,
  report: (version: string, step: UpdateStep, reason?: string) => Promise<void>,
): Promise<string | undefined> {
  const { stateDir, running, log, signal } = options;
  const offer = await client.check({}, { signal, timeoutMs: 15_000 });
  if (offer.manifest.length === 0) return undefined;
  let manifest: ReleaseManifest;
  try {
    manifest = parseManifest(offer.manifest);
  } catch (err) {
    // Without a version there is nothing to report it under.
    log.warn({ reason: (err as Error).message }, "the daemon offers a release whose manifest cannot be read");
    return undefined;
  }
  const { version } = manifest;
  // The release that runs (once updated to it), or one refused or rolled back before.
  if (version === running || readRecord(stateDir).skip[version] !== undefined) return undefined;
  try {
    const keys = trustedKeys(options);
    const signer = signedBy(offer.manifest, offer.signature, keys);
    if (!signer) throw new Refused(`the manifest of ${version} is not signed by a release key this agent trusts`);
    const refused = refusal(manifest, running, new Date());
    if (refused) throw new Refused(refused);
    log.info({ version }, "update offered; downloading it");
    const bundle = await fetchBundle(client, manifest, signal);
    installRelease(stateDir, version, bundle);
    // Rotation: a release signed with a trusted key may name the key of the releases after it.
    if (manifest.nextKey && !keys.includes(manifest.nextKey)) {
      replaceFile(learntKeysFile(stateDir), [...learntKeys(stateDir), manifest.nextKey].join("\n") + "\n");
      log.info({ version }, "the release names the next release key; trusting it from now on");
    }
    await report(version, UpdateStep.INSTALLED);
    const previous = readCurrent(stateDir)?.version;
    writeCurrent(stateDir, { version, ...(previous ? { previous } : {}), trial: true });
    await report(version, UpdateStep.RESTARTING).catch(() => undefined);
    log.info({ version, previous: previous ?? running }, "update installed; restarting into it");
    return version;
  } catch (err) {
    if (!(err instanceof Refused)) {
      // A download or a disk that failed: reported when the daemon can hear it, and tried again.
      await report(version, UpdateStep.FAILED, (err as Error).message.slice(0, 1000)).catch(() => undefined);
      throw err;
    }
    log.warn({ version, reason: err.message }, "update refused");
    const record = readRecord(stateDir);
    writeRecord(stateDir, { ...record, skip: { ...record.skip, [version]: err.message } });
    await report(version, UpdateStep.REFUSED, err.message);
    return undefined;
  }
}

/** The bundle, checked against the signed manifest: never more than its size, then its SHA-512. */
async function fetchBundle(
  client: ReturnType<typeof createClient<typeof ReleasesAPI>>,
  manifest: ReleaseManifest,
  signal: AbortSignal,
): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const hash = createHash("sha512");
  for await (const { chunk } of client.fetch({ version: manifest.version }, { signal, timeoutMs: 5 * 60_000 })) {
    size += chunk.length;
    if (size > manifest.size) throw new Refused(`the bundle of ${manifest.version} is larger than its signed manifest says (${manifest.size} bytes)`);
    hash.update(chunk);
    chunks.push(chunk);
  }
  if (size !== manifest.size || hash.digest("hex") !== manifest.sha512) {
    throw new Refused(`the bundle of ${manifest.version} does not match its signed manifest (size or SHA-512 differ)`);
  }
  return Buffer.concat(chunks);
}

function learntKeys(stateDir: string): string[] {
  const file = learntKeysFile(stateDir);
  if (!existsSync(file)) return [];
  try {
    return parseReleaseKeys(readFileSync(file, "utf8"));
  } catch (err) {
    if (err instanceof ReleaseError) return [];
    throw err;
  }
}

function trustedKeys(options: UpdateLoopOptions): string[] {
  return [...new Set([...options.keys, ...learntKeys(options.stateDir)])];
}
