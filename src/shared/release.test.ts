import { generateKeyPairSync, sign } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  compareVersions,
  isVersion,
  parseManifest,
  parseReleaseKeys,
  refusal,
  releasePublicKeyText,
  signedBy,
  type ReleaseManifest,
} from "./release.js";

const manifest: ReleaseManifest = { version: "0.2.0", sha512: "ab".repeat(64), size: 10, minVersion: "0.1.0", expires: "2027-01-01T00:00:00.000Z" };
const bytes = Buffer.from(JSON.stringify(manifest));

describe("release manifests", () => {
  it("order versions as semantic versioning does", () => {
    const sorted = ["1.0.0", "0.10.0", "0.2.0", "1.0.0-rc.1", "1.0.0-beta", "1.0.0-rc.10", "1.0.0-rc.2", "0.2.1"].sort(compareVersions);
    expect(sorted).toEqual(["0.2.0", "0.2.1", "0.10.0", "1.0.0-beta", "1.0.0-rc.1", "1.0.0-rc.2", "1.0.0-rc.10", "1.0.0"]);
    expect(isVersion("1.2")).toBe(false);
    expect(isVersion("v1.2.3")).toBe(false);
  });

  it("are read field by field, each mistake named", () => {
    expect(parseManifest(bytes)).toEqual(manifest);
    const bad = (fields: Record<string, unknown>) => () => parseManifest(Buffer.from(JSON.stringify({ ...manifest, ...fields })));
    expect(() => parseManifest(Buffer.from("{"))).toThrow("the manifest is not JSON");
    expect(bad({ version: "latest" })).toThrow("the manifest's version is not major.minor.patch");
    expect(bad({ sha512: "ab" })).toThrow("the manifest's sha512 is not 128 hex digits");
    expect(bad({ size: -1 })).toThrow("the manifest's size is not a positive integer");
    expect(bad({ expires: "soon" })).toThrow("the manifest's expires is not a time");
    expect(bad({ nextKey: "abc" })).toThrow(/is not a release public key/);
  });

  it("are trusted only with the signature of a listed key", () => {
    const trusted = generateKeyPairSync("ed25519");
    const other = generateKeyPairSync("ed25519");
    const keys = parseReleaseKeys(`# release keys\n${releasePublicKeyText(trusted.publicKey)}\n\n`);
    expect(signedBy(bytes, sign(null, bytes, trusted.privateKey), keys)).toBe(keys[0]);
    expect(signedBy(bytes, sign(null, bytes, other.privateKey), keys)).toBeUndefined();
    const altered = Buffer.from(JSON.stringify({ ...manifest, minVersion: "0.0.0" }));
    expect(signedBy(altered, sign(null, bytes, trusted.privateKey), keys)).toBeUndefined();
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 });
    expect(() => parseReleaseKeys(releasePublicKeyText(rsa.publicKey))).toThrow("a release key must be Ed25519, not rsa");
  });

  it("refuse downgrades, expired manifests and agents older than the minimum version", () => {
    const now = new Date("2026-12-01T00:00:00Z");
    expect(refusal(manifest, "0.1.0", now)).toBeUndefined();
    expect(refusal(manifest, "0.2.0", now)).toBe("version 0.2.0 is not newer than the running 0.2.0: no downgrade");
    expect(refusal(manifest, "0.3.0", now)).toBe("version 0.2.0 is not newer than the running 0.3.0: no downgrade");
    expect(refusal(manifest, "0.1.0", new Date("2027-01-01T00:00:00Z"))).toBe("the manifest of 0.2.0 expired at 2027-01-01T00:00:00.000Z");
    expect(refusal(manifest, "0.0.9", now)).toBe("version 0.2.0 needs at least 0.1.0 to update from, this is 0.0.9");
  });
});
