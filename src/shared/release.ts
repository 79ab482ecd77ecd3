import { createPublicKey, verify, type KeyObject } from "node:crypto";

/**
 * A release's manifest (releases.API/Publish), the JSON whose bytes its Ed25519 signature covers:
 * the daemon stores and serves those bytes as they were signed, and agents verify them before
 * they read a field.
 */
export interface ReleaseManifest {
  /** The release's version, e.g. "0.2.0". */
  version: string;
  /** SHA-512 of the bundle, hex. */
  sha512: string;
  /** The bundle's size in bytes. */
  size: number;
  /** The oldest agent version that may update to it. */
  minVersion: string;
  /** RFC 3339; agents refuse the release after it. */
  expires: string;
  /** A public key (releasePublicKeyText) that agents trust from this release on: key rotation. */
  nextKey?: string;
}

/** A manifest or key that cannot be used, said in one line. */
export class ReleaseError extends Error {
  override name = "ReleaseError";
}

const versionPattern = /^(\d{1,9})\.(\d{1,9})\.(\d{1,9})(?:-([0-9A-Za-z.-]{1,64}))?$/;

/** Whether `version` is major.minor.patch with an optional pre-release, as package.json's. */
export function isVersion(version: string): boolean {
  return versionPattern.test(version);
}

/** Orders versions as semantic versioning does (a pre-release before its release); both must be isVersion. */
export function compareVersions(a: string, b: string): number {
  const [, ...pa] = versionPattern.exec(a) ?? [];
  const [, ...pb] = versionPattern.exec(b) ?? [];
  for (let i = 0; i < 3; i++) {
    const d = Number(pa[i]) - Number(pb[i]);
    if (d !== 0) return Math.sign(d);
  }
  const [preA, preB] = [pa[3], pb[3]];
  if (preA === preB) return 0;
  if (preA === undefined) return 1;
  if (preB === undefined) return -1;
  const [x, y] = [preA.split("."), preB.split(".")];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const [p, q] = [x[i]!, y[i]!];
    if (p === q) continue;
    const [np, nq] = [/^\d+$/.test(p), /^\d+$/.test(q)];
    if (np && nq) return Math.sign(Number(p) - Number(q));
    if (np !== nq) return np ? -1 : 1;
    return p < q ? -1 : 1;
  }
  return Math.sign(x.length - y.length);
}

/** A public key as agents' trust files and manifests carry it: base64 of its SPKI DER, one line. */
export function releasePublicKeyText(key: KeyObject): string {
  return key.export({ type: "spki", format: "der" }).toString("base64");
}

/** The Ed25519 public key of releasePublicKeyText's form. */
export function parseReleasePublicKey(text: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(text.trim(), "base64"), format: "der", type: "spki" });
  } catch {
    throw new ReleaseError(`"${text.slice(0, 60)}" is not a release public key (base64 of an Ed25519 SPKI)`);
  }
  if (key.asymmetricKeyType !== "ed25519") throw new ReleaseError(`a release key must be Ed25519, not ${key.asymmetricKeyType}`);
  return key;
}

/** The keys of a trust file: one releasePublicKeyText per line; blank lines and # comments are skipped. */
export function parseReleaseKeys(text: string): string[] {
  const keys = text
    .split("\n")
    .map((line) => line.replace(/#.*/, "").trim())
    .filter((line) => line !== "");
  for (const key of keys) parseReleasePublicKey(key);
  return keys;
}

/** Reads a manifest's fields; ReleaseError names what is wrong. It says nothing of its signature. */
export function parseManifest(bytes: Uint8Array): ReleaseManifest {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch {
    throw new ReleaseError("the manifest is not JSON");
  }
  const m = value as Partial<Record<keyof ReleaseManifest, unknown>>;
  if (typeof m !== "object" || m === null) throw new ReleaseError("the manifest is not a JSON object");
  if (typeof m.version !== "string" || !isVersion(m.version)) throw new ReleaseError("the manifest's version is not major.minor.patch");
  if (typeof m.minVersion !== "string" || !isVersion(m.minVersion)) throw new ReleaseError("the manifest's minVersion is not major.minor.patch");
  if (typeof m.sha512 !== "string" || !/^[0-9a-f]{128}$/.test(m.sha512)) throw new ReleaseError("the manifest's sha512 is not 128 hex digits");
  if (typeof m.size !== "number" || !Number.isSafeInteger(m.size) || m.size <= 0)
    throw new ReleaseError("the manifest's size is not a positive integer");
  if (typeof m.expires !== "string" || Number.isNaN(Date.parse(m.expires))) throw new ReleaseError("the manifest's expires is not a time");
  if (m.nextKey !== undefined) {
    if (typeof m.nextKey !== "string") throw new ReleaseError("the manifest's nextKey is not a key");
    parseReleasePublicKey(m.nextKey);
  }
  return m as ReleaseManifest;
}

/** The first of `keys` (releasePublicKeyText) whose signature `signature` is of `manifest`; undefined when none. */
export function signedBy(manifest: Uint8Array, signature: Uint8Array, keys: readonly string[]): string | undefined {
  return keys.find((key) => {
    try {
      return verify(null, manifest, parseReleasePublicKey(key), signature);
    } catch {
      return false;
    }
  });
}

/**
 * Why an agent at `running` must not install the release of `manifest` at `now` (no downgrade,
 * nor the same version again, no expired manifest, its minimum version respected); undefined when
 * it may. The signature is checked before, the bundle's digest after.
 */
export function refusal(manifest: ReleaseManifest, running: string, now: Date): string | undefined {
  if (compareVersions(manifest.version, running) <= 0) return `version ${manifest.version} is not newer than the running ${running}: no downgrade`;
  if (Date.parse(manifest.expires) <= now.getTime()) return `the manifest of ${manifest.version} expired at ${manifest.expires}`;
  if (compareVersions(running, manifest.minVersion) < 0)
    return `version ${manifest.version} needs at least ${manifest.minVersion} to update from, this is ${running}`;
  return undefined;
}
