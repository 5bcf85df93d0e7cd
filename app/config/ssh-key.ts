/**
 * OpenSSH public key lines (`<type> <base64> [comment]`), parsed as sshd parses them: the base64 must decode
 * to the key blob of the type the line names (RFC 4253 §6.6, RFC 5656 §3.1, RFC 8709, PROTOCOL.u2f), and the
 * key itself must load (node:crypto checks that an EC point is on its curve). A key copied with a character
 * missing, a label edited by hand or a weak RSA key is named here, not at the first failed login.
 */
import { createPublicKey } from "node:crypto";

/** The key types the kit takes, with the curve an ECDSA type names. */
const TYPES = {
  "ssh-ed25519": { kind: "ed25519" },
  "sk-ssh-ed25519@openssh.com": { kind: "ed25519", security: true },
  "ssh-rsa": { kind: "rsa" },
  "ecdsa-sha2-nistp256": { kind: "ecdsa", curve: "nistp256", jwk: "P-256" },
  "ecdsa-sha2-nistp384": { kind: "ecdsa", curve: "nistp384", jwk: "P-384" },
  "ecdsa-sha2-nistp521": { kind: "ecdsa", curve: "nistp521", jwk: "P-521" },
  "sk-ecdsa-sha2-nistp256@openssh.com": { kind: "ecdsa", curve: "nistp256", jwk: "P-256", security: true },
} as const satisfies Record<string, { kind: string; curve?: string; jwk?: string; security?: boolean }>;

export type KeyType = keyof typeof TYPES;
export const KEY_TYPES = Object.keys(TYPES) as KeyType[];

/** RSA keys below this are refused (NIST SP 800-131A; ssh-keygen's own default is 3072). */
export const MIN_RSA_BITS = 2048;

export type ParsedKey =
  | { readonly ok: true; readonly type: KeyType; readonly bits: number; readonly comment: string }
  | { readonly ok: false; readonly why: "shape" | "type" | "base64" | "blob" | "mismatch" | "weak"; readonly label?: string; readonly inside?: string; readonly bits?: number };

/** Reads the SSH wire format's length-prefixed strings; undefined once the blob runs short. */
class Reader {
  private at = 0;
  private readonly blob: Buffer;
  constructor(blob: Buffer) {
    this.blob = blob;
  }
  string(): Buffer | undefined {
    if (this.at + 4 > this.blob.length) return undefined;
    const length = this.blob.readUInt32BE(this.at);
    if (this.at + 4 + length > this.blob.length) return undefined;
    const value = this.blob.subarray(this.at + 4, this.at + 4 + length);
    this.at += 4 + length;
    return value;
  }
  get done(): boolean {
    return this.at === this.blob.length;
  }
}

const b64url = (bytes: Buffer) => bytes.toString("base64url");
/** An mpint without its sign byte. */
const unsigned = (mpint: Buffer) => (mpint[0] === 0 ? mpint.subarray(1) : mpint);

/** Loads the key from the blob's fields; the key's size in bits, or undefined if it does not load. */
function loadKey(type: KeyType, reader: Reader): number | undefined {
  const spec = TYPES[type];
  try {
    if (spec.kind === "ed25519") {
      const key = reader.string();
      if (key?.length !== 32) return undefined;
      createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: b64url(key) }, format: "jwk" });
      return 256;
    }
    if (spec.kind === "rsa") {
      const [e, n] = [reader.string(), reader.string()];
      if (!e || !n || n.length === 0) return undefined;
      const modulus = unsigned(n);
      createPublicKey({ key: { kty: "RSA", e: b64url(unsigned(e)), n: b64url(modulus) }, format: "jwk" });
      return modulus.length * 8 - Math.clz32(modulus[0]) + 24;
    }
    const [curve, point] = [reader.string(), reader.string()];
    if (curve?.toString("latin1") !== spec.curve || !point || point[0] !== 4 || point.length % 2 !== 1) return undefined;
    const half = (point.length - 1) / 2;
    const [x, y] = [point.subarray(1, 1 + half), point.subarray(1 + half)];
    createPublicKey({ key: { kty: "EC", crv: spec.jwk, x: b64url(x), y: b64url(y) }, format: "jwk" });
    return half * 8 - (spec.curve === "nistp521" ? 7 : 0);
  } catch {
    return undefined;
  }
}

/** Parses one public key line (surrounding whitespace ignored). */
export function parsePublicKey(line: string): ParsedKey {
  const match = /^(\S+) ([A-Za-z0-9+/]+={0,2})(?: ([^\n\r]*))?$/.exec(line.trim());
  if (!match) return { ok: false, why: "shape" };
  const [, label, base64, comment = ""] = match;
  if (!(label in TYPES)) return { ok: false, why: "type", label };
  const type = label as KeyType;
  const blob = Buffer.from(base64, "base64");
  // Node skips what is not base64; a key with a character lost in copying re-encodes differently.
  if (blob.toString("base64") !== base64) return { ok: false, why: "base64", label };
  const reader = new Reader(blob);
  const inside = reader.string()?.toString("latin1");
  if (inside === undefined) return { ok: false, why: "blob", label };
  if (inside !== type) return { ok: false, why: "mismatch", label, inside };
  const bits = loadKey(type, reader);
  // Security keys end with the application (usually "ssh:").
  if ("security" in TYPES[type] && reader.string() === undefined) return { ok: false, why: "blob", label };
  if (bits === undefined || !reader.done) return { ok: false, why: "blob", label };
  if (TYPES[type].kind === "rsa" && bits < MIN_RSA_BITS) return { ok: false, why: "weak", label, bits };
  return { ok: true, type, bits, comment };
}

/** The key's base64 blob: the same key under two names is the same blob. */
export const keyBlob = (line: string): string => line.trim().split(/\s+/)[1] ?? "";
