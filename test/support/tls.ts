/**
 * Throwaway certificates for the TLS tests, made with Debian's openssl: a CA and a server
 * certificate it signed for 127.0.0.1 and localhost, and a second CA with a server certificate
 * of its own (a daemon the first CA does not vouch for).
 */
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./daemon.js";

export interface TestCertificates {
  /** The CA that signed `cert`. */
  ca: string;
  cert: string;
  key: string;
  /** Another CA, and a server certificate and key that it signed. */
  otherCa: string;
  otherCert: string;
  otherKey: string;
  remove(): void;
}

function openssl(cwd: string, args: string[]): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

/** A CA (`name.ca.pem`) and a server certificate (`name.pem`, `name.key`) that it signed. */
function issue(dir: string, name: string): void {
  const key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  openssl(dir, [
    "req",
    "-x509",
    ...key,
    "-keyout",
    `${name}.ca.key`,
    "-out",
    `${name}.ca.pem`,
    "-days",
    "2",
    "-subj",
    `/CN=Specta test CA ${name}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign",
  ]);
  openssl(dir, ["req", ...key, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", "/CN=localhost"]);
  writeFileSync(join(dir, `${name}.ext`), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n");
  openssl(dir, [
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    `${name}.ca.pem`,
    "-CAkey",
    `${name}.ca.key`,
    "-CAcreateserial",
    "-days",
    "2",
    "-out",
    `${name}.pem`,
    "-extfile",
    `${name}.ext`,
  ]);
}

export function makeTestCertificates(): TestCertificates {
  const dir = tempDir("specta-tls-");
  issue(dir.path, "server");
  issue(dir.path, "other");
  const file = (name: string) => join(dir.path, name);
  return {
    ca: file("server.ca.pem"),
    cert: file("server.pem"),
    key: file("server.key"),
    otherCa: file("other.ca.pem"),
    otherCert: file("other.pem"),
    otherKey: file("other.key"),
    remove: dir.remove,
  };
}
