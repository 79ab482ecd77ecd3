import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { createSecureContext, rootCertificates, type SecureContext } from "node:tls";

/**
 * Where Linux distributions keep their trusted CA certificates in one file (Debian and Ubuntu,
 * Fedora and RHEL, openSUSE, Alpine), as Go's crypto/x509 looks for them. Node trusts only the
 * Mozilla list compiled into it unless told otherwise, not CAs an administrator added to the system.
 */
const systemBundles = [
  "/etc/ssl/certs/ca-certificates.crt",
  "/etc/pki/tls/certs/ca-bundle.crt",
  "/etc/ssl/ca-bundle.pem",
  "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
  "/etc/ssl/cert.pem",
];

/** A CA file that cannot be used, said in one line. */
export class TrustError extends Error {
  override name = "TrustError";
}

/**
 * What the agent and the CLI trust when they call an https:// daemon: the certificates of
 * `caFile` (PEM: the CA that signed the daemon's certificate) when one is given, else Node's
 * built-in roots and the system's store. One context, made once, serves every connection.
 */
export function trustedCertificates(caFile: string | undefined): SecureContext {
  if (caFile === undefined) {
    const system = systemBundles.find((file) => existsSync(file));
    return createSecureContext({ ca: [...rootCertificates, ...(system ? [readFileSync(system, "utf8")] : [])] });
  }
  let text: string;
  try {
    text = readFileSync(caFile, "utf8");
  } catch (err) {
    throw new TrustError(`cannot read the CA file ${caFile}: ${(err as Error).message}`);
  }
  const certificates = text.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
  if (certificates.length === 0) throw new TrustError(`the CA file ${caFile} holds no PEM certificate`);
  for (const pem of certificates) {
    try {
      new X509Certificate(pem);
    } catch (err) {
      throw new TrustError(`the CA file ${caFile} holds a certificate that cannot be read: ${(err as Error).message}`);
    }
  }
  return createSecureContext({ ca: certificates });
}

/**
 * What to trust of `server`: for an https:// one, trustedCertificates(caFile); for an http:// one
 * nothing, and a CA file given for it is a mistake (no TLS would be used): TrustError.
 */
export function trustForServer(server: string, caFile: string | undefined): SecureContext | undefined {
  if (server.startsWith("https://")) return trustedCertificates(caFile);
  if (caFile !== undefined) throw new TrustError(`--ca (SPECTA_CA) ${caFile} is for https:// servers, but the server is ${server}`);
  return undefined;
}

/** OpenSSL's and Node's codes for a server certificate that the client does not trust or that does not name the server. */
const untrustedCodes = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_SIGNATURE_FAILURE",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/** The first error in `err`'s chain of causes whose code is one of `codes` (a bounded walk: a chain may loop). */
export function causeWithCode(err: unknown, codes: ReadonlySet<string>): NodeJS.ErrnoException | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 10 && e instanceof Error; depth++, e = e.cause) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== undefined && codes.has(code)) return e;
  }
  return undefined;
}

/** Why the server's certificate was not trusted (not signed by a trusted CA, expired, not naming the server), if that is why `err` happened. */
export function untrustedCertificate(err: unknown): Error | undefined {
  return causeWithCode(err, untrustedCodes);
}
