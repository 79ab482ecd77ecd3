import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";
import { ConfigError, type TlsConfig } from "../config/config.js";

/** A certificate and its private key, read from their files and checked to belong together. */
export interface TlsCertificate {
  cert: Buffer;
  key: Buffer;
  /** The leaf certificate's subject and expiry, for the log. */
  subject: string;
  validTo: string;
}

/**
 * Reads the daemon's certificate and key. A file that cannot be read, a certificate that is not
 * PEM and a key that is not the certificate's are configuration errors, said in one line; the
 * daemon refuses to start with them (and keeps its current pair when they come with a reload).
 */
export function readTlsCertificate({ certFile, keyFile }: TlsConfig): TlsCertificate {
  const read = (path: string, what: string) => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new ConfigError(`cannot read the TLS ${what} ${path}: ${(err as Error).message}`);
    }
  };
  const cert = read(certFile, "certificate");
  const key = read(keyFile, "key");
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch (err) {
    throw new ConfigError(`the TLS certificate ${certFile} is not a PEM certificate: ${(err as Error).message}`);
  }
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new ConfigError(`the TLS key ${keyFile} cannot serve the certificate ${certFile}: ${(err as Error).message}`);
  }
  return { cert, key, subject: leaf.subject.replace(/\n/g, ", "), validTo: leaf.validTo };
}
