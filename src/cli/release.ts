import { create, toJson } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Command } from "commander";
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { API as ReleasesAPI, ListResponseSchema, RolloutSchema, type Release } from "../../gen/releases/releases_pb.js";
import { isVersion, parseReleaseKeys, ReleaseError, releasePublicKeyText, type ReleaseManifest } from "../shared/release.js";
import { parseLabels } from "./agent.js";
import { addClientOptions, ClientError, daemonClient, runClient, type ClientFlags } from "./client.js";
import { formatBytes } from "./agents.js";
import { collect, formatTable } from "./util.js";

interface PublishFlags extends ClientFlags {
  key: string;
  version: string;
  minVersion: string;
  expires: string;
  nextKey?: string;
}

/** Writes a new Ed25519 key pair: `file` (the private key, PKCS#8 PEM, mode 0600) and `file`.pub (the public key, one line). */
export function writeKeyPair(file: string): string {
  for (const f of [file, `${file}.pub`]) if (existsSync(f)) throw new ClientError(`${f} exists: keygen never overwrites a key`);
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const pub = releasePublicKeyText(publicKey);
  writeFileSync(file, privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600, flag: "wx" });
  writeFileSync(`${file}.pub`, pub + "\n", { flag: "wx" });
  return pub;
}

/** A manifest for `bundle`, and its Ed25519 signature with `key`. */
export function signRelease(
  bundle: Uint8Array,
  key: KeyObject,
  fields: Omit<ReleaseManifest, "sha512" | "size">,
): { manifest: Buffer; signature: Buffer } {
  const manifest: ReleaseManifest = {
    version: fields.version,
    sha512: createHash("sha512").update(bundle).digest("hex"),
    size: bundle.length,
    minVersion: fields.minVersion,
    expires: fields.expires,
    ...(fields.nextKey ? { nextKey: fields.nextKey } : {}),
  };
  const bytes = Buffer.from(JSON.stringify(manifest));
  return { manifest: bytes, signature: sign(null, bytes, key) };
}

/** --expires: a number of days ("30d"), of hours ("12h"), or a time (RFC 3339), in the future. */
export function parseExpires(value: string, now = Date.now()): string {
  const relative = /^(\d+)([dh])$/.exec(value);
  const at = relative ? now + Number(relative[1]) * (relative[2] === "d" ? 86_400_000 : 3_600_000) : Date.parse(value);
  if (Number.isNaN(at)) throw new ClientError(`--expires "${value}" is neither a duration (30d, 12h) nor a time (2027-01-31T00:00:00Z)`);
  if (at <= now) throw new ClientError(`--expires "${value}" is not in the future: every agent would refuse the release`);
  return new Date(at).toISOString();
}

function readPrivateKey(file: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(readFileSync(file));
  } catch (err) {
    throw new ClientError(`--key ${file}: not a private key (${(err as Error).message})`);
  }
  if (key.asymmetricKeyType !== "ed25519")
    throw new ClientError(`--key ${file}: an Ed25519 key is needed (specta release keygen), not ${key.asymmetricKeyType}`);
  return key;
}

/** `specta release keygen|publish|list|rollout`: signed agent releases (releases.API). */
export function releaseCommand(program: Command): void {
  const release = program.command("release").description("sign agent releases, publish them to the daemon and roll them out (releases.API)");

  release
    .command("keygen")
    .description("write a new Ed25519 release key pair: FILE (private, keep it safe) and FILE.pub (for agents' --release-keys)")
    .argument("<file>", "where to write the private key")
    .action((file: string) => {
      try {
        process.stdout.write(writeKeyPair(file) + "\n");
        process.stderr.write(`wrote ${file} (private) and ${file}.pub (public: give it to agents with --release-keys)\n`);
      } catch (err) {
        process.stderr.write(`specta: ${(err as Error).message}\n`);
        process.exit(1);
      }
    });

  addClientOptions(
    release
      .command("publish")
      .description("sign an agent bundle (dist/agent.mjs of a build) and publish it to the daemon; nobody gets it until `specta release rollout`")
      .argument("<bundle>", "the agent bundle file")
      .requiredOption("--key <file>", "the private release key (specta release keygen)")
      .requiredOption("--version <version>", "the release's version, e.g. 0.2.0: agents install only newer ones")
      .option("--min-version <version>", "the oldest agent version that may update to it", "0.0.0")
      .option("--expires <when>", "when agents stop accepting it: 30d, 12h or an RFC 3339 time", "30d")
      .option("--next-key <file>", "a public key (.pub) that agents trust from this release on: key rotation"),
  ).action((bundleFile: string, flags: PublishFlags) =>
    runClient(flags, async (connection) => {
      for (const [flag, v] of [
        ["--version", flags.version],
        ["--min-version", flags.minVersion],
      ] as const) {
        if (!isVersion(v)) throw new ClientError(`${flag} "${v}" is not major.minor.patch`);
      }
      let nextKey: string | undefined;
      if (flags.nextKey) {
        try {
          [nextKey] = parseReleaseKeys(readFileSync(flags.nextKey, "utf8"));
        } catch (err) {
          throw new ClientError(`--next-key ${flags.nextKey}: ${err instanceof ReleaseError ? err.message : (err as Error).message}`);
        }
        if (!nextKey) throw new ClientError(`--next-key ${flags.nextKey} holds no key`);
      }
      const key = readPrivateKey(flags.key);
      const bundle = readFileSync(bundleFile);
      const signed = signRelease(bundle, key, {
        version: flags.version,
        minVersion: flags.minVersion,
        expires: parseExpires(flags.expires),
        ...(nextKey ? { nextKey } : {}),
      });
      const res = await daemonClient(ReleasesAPI, connection).publish({ ...signed, bundle });
      process.stdout.write(
        `published ${res.release?.version} (${formatBytes(BigInt(bundle.length))}, signed by ${releasePublicKeyText(createPublicKey(key))})\n`,
      );
    }),
  );

  addClientOptions(
    release.command("list").description("list the published releases and who gets them").option("--json", "print the ListResponse as JSON"),
  ).action((flags: ClientFlags & { json?: boolean }) =>
    runClient(flags, async (connection) => {
      const res = await daemonClient(ReleasesAPI, connection).list({});
      process.stdout.write(flags.json ? JSON.stringify(toJson(ListResponseSchema, res)) + "\n" : formatReleases(res.releases));
    }),
  );

  addClientOptions(
    release
      .command("rollout")
      .description("pick the agents that get a release: all, those with some labels, and a percentage of them (the same agents each time)")
      .argument("<version>", "the release")
      .option("--label <key=value>", "only agents with this label (repeatable; default all agents)", collect, undefined)
      .option("--percent <n>", "percentage of those agents, 0 to 100 (0 stops the rollout)", "100"),
  ).action((version: string, flags: ClientFlags & { label?: string[]; percent: string }) =>
    runClient(flags, async (connection) => {
      const percent = Number(flags.percent);
      if (!Number.isInteger(percent) || percent < 0 || percent > 100)
        throw new ClientError(`--percent "${flags.percent}" must be a whole number from 0 to 100`);
      let labels: Record<string, string>;
      try {
        labels = parseLabels(flags.label);
      } catch (err) {
        throw new ClientError((err as Error).message);
      }
      await daemonClient(ReleasesAPI, connection).setRollout({ version, rollout: create(RolloutSchema, { labels, percent }) });
      process.stderr.write(
        `release ${version} goes to ${percent}% of ${Object.keys(labels).length > 0 ? "the agents labelled " + flags.label?.join(",") : "all agents"}\n`,
      );
    }),
  );
}

function formatReleases(releases: Release[]): string {
  const when = (t: Release["expires"]) => (t ? timestampDate(t).toISOString() : "");
  return formatTable([
    ["VERSION", "SIZE", "MIN VERSION", "EXPIRES", "PUBLISHED", "ROLLOUT"],
    ...releases.map((r) => [
      r.version,
      formatBytes(r.size),
      r.minVersion,
      when(r.expires),
      when(r.published),
      r.rollout
        ? `${r.rollout.percent}% of ${
            Object.keys(r.rollout.labels).length > 0
              ? Object.entries(r.rollout.labels)
                  .map(([k, v]) => `${k}=${v}`)
                  .join(",")
              : "all"
          }`
        : "none",
    ]),
  ]);
}
