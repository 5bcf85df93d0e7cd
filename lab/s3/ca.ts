/**
 * A throwaway certificate authority and a server certificate for the lab's S3, made with the `openssl`
 * CLI at start. Clients trust the lab by its CA file alone (Go: SSL_CERT_FILE, curl: --cacert,
 * Node: `ca`), never by turning verification off: a client that skips verification proves nothing.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface LabCertificates {
  /** PEM of the lab CA: hand this path to clients. */
  readonly caFile: string;
  readonly key: Buffer;
  readonly cert: Buffer;
}

/** Writes ca.pem, ca.key, server.pem, server.key into `dir` for the given host names and IPs. */
export function makeCertificates(dir: string, names: readonly string[] = ["localhost"], ips: readonly string[] = ["127.0.0.1"]): LabCertificates {
  const at = (name: string) => join(dir, name);
  const openssl = (args: string[]) => execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
  // EC keys: made in milliseconds, unlike RSA, so every test run can have its own CA.
  openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", at("ca.key")]);
  openssl(["req", "-x509", "-new", "-key", at("ca.key"), "-sha256", "-days", "2", "-subj", "/CN=kit lab S3 CA",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", at("ca.pem")]);
  openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", at("server.key")]);
  openssl(["req", "-new", "-key", at("server.key"), "-subj", "/CN=kit lab S3", "-out", at("server.csr")]);
  // Go refuses a certificate without subjectAltName; list every name and address clients use.
  const san = [...names.map((n) => `DNS:${n}`), ...ips.map((ip) => `IP:${ip}`)].join(",");
  writeFileSync(at("server.ext"), `subjectAltName=${san}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`);
  openssl(["x509", "-req", "-in", at("server.csr"), "-CA", at("ca.pem"), "-CAkey", at("ca.key"), "-CAcreateserial",
    "-days", "2", "-sha256", "-extfile", at("server.ext"), "-out", at("server.pem")]);
  return { caFile: at("ca.pem"), key: readFileSync(at("server.key")), cert: readFileSync(at("server.pem")) };
}
