/**
 * The release keys every agent trusts without a trust file (--release-keys): the public keys
 * (releasePublicKeyText, src/shared/release.ts) of the project's own release signing. None is
 * published yet, so agents trust only the keys their operator gives them, and those learnt
 * through rotation.
 */
export const builtInReleaseKeys: readonly string[] = [];
