import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { API as ReleasesAPI, ReleaseSchema, UpdateStep, type Release } from "../../gen/releases/releases_pb.js";
import { activeAgentLabels, recordUpdate } from "../fleet/inventory.js";
import type { Logger } from "../shared/log.js";
import { isVersion, parseManifest, ReleaseError } from "../shared/release.js";
import type { Db } from "../storage/database.js";
import { audited } from "../audit/declare.js";
import { callerOf, rules } from "../tokens/access.js";
import { assignedRelease, bundleChunk, insertRelease, listReleases, setRollout, type ReleaseInfo } from "./store.js";
import { createHash } from "node:crypto";

export interface ReleasesDeps {
  db: Db;
  log: Logger;
}

/** Who may call releases.API: admins publish and roll out, viewers look, agents fetch and report their own updates. */
export const releasesAccess = rules(ReleasesAPI, {
  publish: ["admin"],
  list: ["viewer", "admin"],
  setRollout: ["admin"],
  check: ["agent"],
  fetch: ["agent"],
  reportUpdate: ["agent"],
});

/** The writes of releases.API that the audit trail records: a release published and who gets it; agents' update reports. */
export const releasesAudit = audited(ReleasesAPI, { publish: {}, setRollout: {}, reportUpdate: {} });

const MiB = 1024 * 1024;

/** Limits of releases.API; Publish's request limit (server/request-limits.ts) is the bundle's plus room for the rest. */
export const releaseLimits = {
  /** The largest bundle: today's agent bundle is about 2 MiB. */
  maxBundleBytes: 32 * MiB,
  maxManifestBytes: 16 * 1024,
  /** Fetch sends the bundle in pieces of this size. */
  chunkBytes: 1 * MiB,
  maxReasonChars: 1000,
  maxLabels: 32,
  maxText: 255,
} as const;

/** releases.API: publish and roll out signed agent releases; agents check, fetch and report. */
export function releasesService({ db, log }: ReleasesDeps): ServiceImpl<typeof ReleasesAPI> {
  /** The calling agent's id and the release assigned to it. */
  const assigned = async (ctx: HandlerContext) => {
    const { agentId } = callerOf(ctx);
    if (!agentId) throw new ConnectError("only an agent's own credential may ask for its release", Code.PermissionDenied);
    const labels = await activeAgentLabels(db, agentId);
    if (!labels) throw new ConnectError("this agent was deregistered", Code.Unauthenticated);
    return { agentId, release: await assignedRelease(db, agentId, labels) };
  };

  return {
    async publish(req) {
      if (req.manifest.length > releaseLimits.maxManifestBytes) throw invalid(`the manifest is over ${releaseLimits.maxManifestBytes} bytes`);
      if (req.signature.length !== 64) throw invalid(`an Ed25519 signature has 64 bytes, this one ${req.signature.length}`);
      if (req.bundle.length > releaseLimits.maxBundleBytes) throw invalid(`the bundle is over ${releaseLimits.maxBundleBytes} bytes`);
      let manifest;
      try {
        manifest = parseManifest(req.manifest);
      } catch (err) {
        throw err instanceof ReleaseError ? invalid(err.message) : err;
      }
      if (req.bundle.length !== manifest.size) throw invalid(`the bundle has ${req.bundle.length} bytes, its manifest says ${manifest.size}`);
      if (createHash("sha512").update(req.bundle).digest("hex") !== manifest.sha512) throw invalid("the bundle's SHA-512 is not the manifest's");
      const stored = await insertRelease(db, {
        version: manifest.version,
        manifest: Buffer.from(req.manifest),
        signature: Buffer.from(req.signature),
        bundle: Buffer.from(req.bundle),
        sha512: manifest.sha512,
        size: manifest.size,
        min_version: manifest.minVersion,
        expires: new Date(manifest.expires),
      });
      if (!stored) throw new ConnectError(`release ${manifest.version} is published already: publish a new version`, Code.AlreadyExists);
      log.info({ version: manifest.version, size: manifest.size }, "release published");
      const release = (await listReleases(db)).find((r) => r.version === manifest.version);
      return { ...(release ? { release: toRelease(release) } : {}) };
    },

    async list() {
      return { releases: (await listReleases(db)).map(toRelease) };
    },

    async setRollout(req) {
      const version = checkVersion(req.version);
      const labels = req.rollout?.labels ?? {};
      const percent = req.rollout?.percent ?? 0;
      if (percent > 100) throw invalid(`percent must be 0 to 100, got ${percent}`);
      const entries = Object.entries(labels);
      if (entries.length > releaseLimits.maxLabels) throw invalid(`at most ${releaseLimits.maxLabels} labels, got ${entries.length}`);
      for (const [key, value] of entries) {
        if (key === "" || key.length > releaseLimits.maxText || value.length > releaseLimits.maxText) {
          throw invalid(
            `label "${key.slice(0, 40)}" must have a key of 1 to ${releaseLimits.maxText} characters and a value of at most ${releaseLimits.maxText}`,
          );
        }
      }
      if (!(await setRollout(db, version, labels, percent))) throw new ConnectError(`no release ${version}`, Code.NotFound);
      log.info({ version, labels, percent }, "release rollout set");
      return {};
    },

    async check(_req, ctx) {
      const { release } = await assigned(ctx);
      return release ? { manifest: release.manifest, signature: release.signature } : {};
    },

    async *fetch(req, ctx) {
      const version = checkVersion(req.version);
      const { release } = await assigned(ctx);
      if (release?.version !== version) throw new ConnectError(`release ${version} is not assigned to this agent`, Code.NotFound);
      for (let offset = 0; offset < release.size; offset += releaseLimits.chunkBytes) {
        ctx.signal.throwIfAborted();
        yield { chunk: await bundleChunk(db, version, offset, releaseLimits.chunkBytes) };
      }
    },

    async reportUpdate(req, ctx) {
      const { agentId } = callerOf(ctx);
      if (!agentId) throw new ConnectError("only an agent's own credential may report its update", Code.PermissionDenied);
      const version = checkVersion(req.version);
      if (req.step === UpdateStep.UNSPECIFIED || UpdateStep[req.step] === undefined) throw invalid(`step ${req.step} is not an update step`);
      if (req.reason.length > releaseLimits.maxReasonChars) throw invalid(`the reason is longer than ${releaseLimits.maxReasonChars} characters`);
      if (!(await recordUpdate(db, agentId, { version, step: UpdateStep[req.step], reason: req.reason }))) {
        throw new ConnectError("this agent was deregistered", Code.Unauthenticated);
      }
      log.info({ agentId, version, step: UpdateStep[req.step], reason: req.reason }, "agent update step");
      return {};
    },
  };
}

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

function checkVersion(version: string): string {
  if (!isVersion(version)) throw invalid(`version "${version.slice(0, 100)}" is not major.minor.patch`);
  return version;
}

function toRelease(r: ReleaseInfo): Release {
  return create(ReleaseSchema, {
    version: r.version,
    sha512: r.sha512,
    size: BigInt(r.size),
    minVersion: r.min_version,
    expires: timestampFromDate(r.expires),
    published: timestampFromDate(r.published),
    ...(r.rollout_labels !== null ? { rollout: { labels: r.rollout_labels, percent: r.rollout_percent } } : {}),
  });
}
