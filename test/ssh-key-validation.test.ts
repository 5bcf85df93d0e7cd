/**
 * SSH public keys in a client file, parsed as sshd parses them (app/config/ssh-key.ts). Real keys, made
 * with ssh-keygen here; each refusal class as a pair: the bad line with its message, the nearest good line
 * passing. `ssh-keygen -l` (OpenSSH's own parser) is the oracle for what decodes: every key we accept it
 * reads, and every line we refuse as not decoding it refuses too.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import example from "../app/clients/example.ts";
import { parsePublicKey } from "../app/config/ssh-key.ts";
import type { ClientConfig, EnvironmentConfig, SshKey } from "../app/config/types.ts";
import { FILE, problemsOf } from "./support/problems.ts";

const validEnv: EnvironmentConfig = example.environments.prod;
const withKeys = (sshKeys: SshKey[]): ClientConfig => ({ slug: "acme", environments: { prod: { ...validEnv, sshKeys } } });
/** A value as messages show it (app/config/errors.ts: JSON, cut at 80 characters). */
const shown = (value: string) => {
  const text = JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}…` : text;
};
const keyAt = (i: number) => `${FILE}: environments.prod.sshKeys[${i}]`;

let dir: string;
/** type → the .pub line ssh-keygen wrote. */
const keys: Record<string, string> = {};

function keygen(name: string, ...args: string[]): string {
  const file = join(dir, name);
  const result = spawnSync("ssh-keygen", ["-q", "-N", "", "-C", `${name}@pixelco.example`, "-f", file, ...args], { encoding: "utf8" });
  if (result.status !== 0) throw new Error(`ssh-keygen ${args.join(" ")}: ${result.stderr}`);
  return readFileSync(`${file}.pub`, "utf8").trim();
}

/** Does OpenSSH read this line as a public key? (`ssh-keygen -l` loads it as sshd loads authorized_keys.) */
function opensshReads(line: string): boolean {
  const file = join(dir, `probe-${Math.random().toString(36).slice(2)}.pub`);
  writeFileSync(file, `${line}\n`);
  return spawnSync("ssh-keygen", ["-l", "-f", file], { encoding: "utf8" }).status === 0;
}

/** The SSH wire format: length-prefixed strings. */
const sshString = (value: Buffer | string) => {
  const bytes = Buffer.from(value);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
};
const fields = (line: string): Buffer[] => {
  const blob = Buffer.from(line.split(" ")[1], "base64");
  const out: Buffer[] = [];
  for (let at = 0; at < blob.length; ) {
    const n = blob.readUInt32BE(at);
    out.push(blob.subarray(at + 4, at + 4 + n));
    at += 4 + n;
  }
  return out;
};
const line = (label: string, parts: (Buffer | string)[], comment = "jane@pixelco.example") =>
  `${label} ${Buffer.concat(parts.map(sshString)).toString("base64")} ${comment}`;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "kit-ssh-keys-"));
  keys.ed25519 = keygen("ed25519", "-t", "ed25519");
  keys.ecdsa256 = keygen("ecdsa256", "-t", "ecdsa", "-b", "256");
  keys.ecdsa384 = keygen("ecdsa384", "-t", "ecdsa", "-b", "384");
  keys.ecdsa521 = keygen("ecdsa521", "-t", "ecdsa", "-b", "521");
  keys.rsa1024 = keygen("rsa1024", "-t", "rsa", "-b", "1024");
  keys.rsa2048 = keygen("rsa2048", "-t", "rsa", "-b", "2048");
  keys.rsa3072 = keygen("rsa3072", "-t", "rsa", "-b", "3072");
  keys.ed25519b = keygen("ed25519b", "-t", "ed25519");
  keys.dsa = keygen("dsa", "-t", "dsa");
  // Security keys (FIDO) cannot be made without a token: built from the real keys' fields as OpenSSH writes
  // them (PROTOCOL.u2f: the key, then the application), and read back by ssh-keygen below.
  const [, ed] = fields(keys.ed25519);
  keys.skEd25519 = line("sk-ssh-ed25519@openssh.com", ["sk-ssh-ed25519@openssh.com", ed, "ssh:"]);
  const [, curve, point] = fields(keys.ecdsa256);
  keys.skEcdsa = line("sk-ecdsa-sha2-nistp256@openssh.com", ["sk-ecdsa-sha2-nistp256@openssh.com", curve, point, "ssh:"]);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("keys the kit takes", () => {
  test.each([
    ["Ed25519", "ed25519", "ssh-ed25519", 256],
    ["ECDSA P-256", "ecdsa256", "ecdsa-sha2-nistp256", 256],
    ["ECDSA P-384", "ecdsa384", "ecdsa-sha2-nistp384", 384],
    ["ECDSA P-521", "ecdsa521", "ecdsa-sha2-nistp521", 521],
    ["RSA 2048", "rsa2048", "ssh-rsa", 2048],
    ["RSA 3072", "rsa3072", "ssh-rsa", 3072],
    ["security key, Ed25519", "skEd25519", "sk-ssh-ed25519@openssh.com", 256],
    ["security key, ECDSA", "skEcdsa", "sk-ecdsa-sha2-nistp256@openssh.com", 256],
  ])("%s: parsed with its type and size, valid in a client file, and OpenSSH reads it", (_name, which, type, bits) => {
    expect(parsePublicKey(keys[which])).toMatchObject({ ok: true, type, bits });
    expect(problemsOf(withKeys([{ name: "jane", publicKey: keys[which] }]))).toEqual([]);
    expect(opensshReads(keys[which])).toBe(true);
  });

  test("the comment is optional and may hold spaces; surrounding whitespace (a pasted newline) is ignored", () => {
    const [type, base64] = keys.ed25519.split(" ");
    expect(parsePublicKey(`${type} ${base64}`)).toMatchObject({ ok: true, comment: "" });
    expect(parsePublicKey(`${type} ${base64} Jane Doe (laptop)`)).toMatchObject({ ok: true, comment: "Jane Doe (laptop)" });
    expect(problemsOf(withKeys([{ name: "jane", publicKey: `  ${keys.ed25519}\n` }]))).toEqual([]);
  });

  test("two people, two keys, two names: valid (the nearest good input to both duplicate rules)", () => {
    expect(problemsOf(withKeys([{ name: "jane", publicKey: keys.ed25519 }, { name: "joe", publicKey: keys.ed25519b }]))).toEqual([]);
  });
});

describe("keys the kit refuses, each beside its nearest good input", () => {
  const copyFix = "Fix: paste the .pub file's line again, unedited (cat ~/.ssh/id_ed25519.pub)";
  /** The bad line fails with exactly this message; the good one passes. `decodes`: whether OpenSSH reads the bad line. */
  const cases: [string, () => string, () => string, (bad: string) => string, boolean][] = [
    [
      "truncated (the last four characters lost in copying)",
      () => keys.ed25519.replace(/^(\S+ \S+)\S{4}/, "$1"),
      () => keys.ed25519,
      (bad) => `${shown(bad)} does not decode to a whole ssh-ed25519 key (a character lost or added in copying?). ${copyFix}`,
      false,
    ],
    [
      "one character lost in the middle",
      () => keys.rsa2048.replace(/^(\S+ .{100})./, "$1"),
      () => keys.rsa2048,
      (bad) => `${shown(bad)} does not decode to a whole ssh-rsa key (a character lost or added in copying?). ${copyFix}`,
      false,
    ],
    [
      "an RSA key cut short by whole fields (the modulus missing)",
      () => line("ssh-rsa", fields(keys.rsa2048).slice(0, 2)),
      () => keys.rsa2048,
      (bad) => `${shown(bad)} does not decode to a whole ssh-rsa key (a character lost or added in copying?). ${copyFix}`,
      false,
    ],
    [
      "labelled ssh-rsa, an Ed25519 key inside",
      () => keys.ed25519.replace(/^ssh-ed25519/, "ssh-rsa"),
      () => keys.ed25519,
      (bad) => `${shown(bad)} is labelled ssh-rsa, but the key in it is "ssh-ed25519". ${copyFix}`,
      false,
    ],
    [
      "labelled with the wrong curve (nistp384 on a P-256 key)",
      () => keys.ecdsa256.replace(/^ecdsa-sha2-nistp256/, "ecdsa-sha2-nistp384"),
      () => keys.ecdsa256,
      (bad) => `${shown(bad)} is labelled ecdsa-sha2-nistp384, but the key in it is "ecdsa-sha2-nistp256". ${copyFix}`,
      false,
    ],
    [
      "an ECDSA key whose inner curve name contradicts its type",
      () => line("ecdsa-sha2-nistp384", ["ecdsa-sha2-nistp384", "nistp256", fields(keys.ecdsa256)[2]]),
      () => keys.ecdsa384,
      (bad) => `${shown(bad)} does not decode to a whole ecdsa-sha2-nistp384 key (a character lost or added in copying?). ${copyFix}`,
      false,
    ],
    [
      "an ECDSA point not on its curve (one byte changed)",
      () => {
        const [type, curve, point] = fields(keys.ecdsa256);
        const moved = Buffer.from(point);
        moved[moved.length - 1] ^= 1;
        return line(type.toString(), [type, curve, moved]);
      },
      () => keys.ecdsa256,
      (bad) => `${shown(bad)} does not decode to a whole ecdsa-sha2-nistp256 key (a character lost or added in copying?). ${copyFix}`,
      false,
    ],
    [
      "an Ed25519 key of 31 bytes",
      () => line("ssh-ed25519", ["ssh-ed25519", fields(keys.ed25519)[1].subarray(1)]),
      () => keys.ed25519,
      (bad) => `${shown(bad)} does not decode to a whole ssh-ed25519 key (a character lost or added in copying?). ${copyFix}`,
      false,
    ],
    [
      "a security key without its application",
      () => line("sk-ssh-ed25519@openssh.com", ["sk-ssh-ed25519@openssh.com", fields(keys.ed25519)[1]]),
      () => keys.skEd25519,
      (bad) => `${shown(bad)} does not decode to a whole sk-ssh-ed25519@openssh.com key (a character lost or added in copying?). ${copyFix}`,
      false,
    ],
    [
      "bytes after the key",
      () => line("ssh-ed25519", [...fields(keys.ed25519), "extra"]),
      () => keys.ed25519,
      (bad) => `${shown(bad)} does not decode to a whole ssh-ed25519 key (a character lost or added in copying?). ${copyFix}`,
      false,
    ],
    [
      "a 1024-bit RSA key",
      () => keys.rsa1024,
      () => keys.rsa2048,
      (bad) => `${shown(bad)} is a 1024-bit RSA key; the kit takes RSA keys of at least 2048 bits. Fix: make a new key (ssh-keygen -t ed25519) and list that one`,
      // OpenSSH 9.2 still reads it: the refusal is the kit's policy, not a parse failure.
      true,
    ],
    [
      "an unknown key type (ssh-dss)",
      () => keys.dsa,
      () => keys.ed25519,
      (bad) =>
        `${shown(bad)} starts with "ssh-dss", not a key type the kit accepts (ssh-ed25519, sk-ssh-ed25519@openssh.com, ssh-rsa, ` +
        `ecdsa-sha2-nistp256, ecdsa-sha2-nistp384, ecdsa-sha2-nistp521, sk-ecdsa-sha2-nistp256@openssh.com). Fix: make a key with ssh-keygen -t ed25519`,
      // OpenSSH 9.2 still reads DSA keys; its server refuses them by default (PubkeyAcceptedAlgorithms), and so does the kit.
      true,
    ],
    [
      "the private key pasted instead",
      () => readFileSync(join(dir, "ed25519"), "utf8"),
      () => keys.ed25519,
      (bad) => `${shown(bad)} is not an OpenSSH public key line; paste the whole .pub file content ("ssh-ed25519 AAAA… name")`,
      // ssh-keygen -l reads a private key file too (it derives the public key); a client file must never hold one.
      true,
    ],
    [
      "an authorized_keys line with options",
      () => `from="203.0.113.10" ${keys.ed25519}`,
      () => keys.ed25519,
      (bad) => `${shown(bad)} is not an OpenSSH public key line; paste the whole .pub file content ("ssh-ed25519 AAAA… name")`,
      // OpenSSH reads authorized_keys syntax; the deploy writes those lines itself, and takes no options from a client file.
      true,
    ],
  ];

  test.each(cases)("%s: refused with its message; the nearest good key passes", (_name, bad, good, message, decodes) => {
    const badLine = bad();
    expect(problemsOf(withKeys([{ name: "jane", publicKey: badLine }]))).toEqual([`${keyAt(0)}.publicKey: ${message(badLine)}`]);
    expect(problemsOf(withKeys([{ name: "jane", publicKey: good() }]))).toEqual([]);
    // The parser agrees with OpenSSH's about what decodes.
    expect(opensshReads(badLine)).toBe(decodes);
    expect(opensshReads(good())).toBe(true);
  });

  test("a public key that is not a string is named, not a stack trace", () => {
    const bad = { name: "jane", publicKey: 42 } as unknown as SshKey;
    expect(problemsOf(withKeys([bad]))).toEqual([
      `${keyAt(0)}.publicKey: 42 is not an OpenSSH public key line; paste the whole .pub file content ("ssh-ed25519 AAAA… name")`,
    ]);
  });

  test("two keys under one name: the second is named, pointing at the first", () => {
    expect(problemsOf(withKeys([{ name: "jane", publicKey: keys.ed25519 }, { name: "jane", publicKey: keys.ed25519b }]))).toEqual([
      `${keyAt(1)}.name: "jane" is already the name of environments.prod.sshKeys[0]; give each key its own name (the name it is registered under in the DigitalOcean account or Hetzner project)`,
    ]);
  });

  test("one key under two names (the comment differs): the second is named, pointing at the first", () => {
    const again = keys.ed25519.replace(/ \S+$/, " jane@laptop");
    expect(again).not.toBe(keys.ed25519);
    expect(problemsOf(withKeys([{ name: "jane", publicKey: keys.ed25519 }, { name: "jane-laptop", publicKey: again }]))).toEqual([
      `${keyAt(1)}.publicKey: is the same key as environments.prod.sshKeys[0]; list each key once, under one name`,
    ]);
  });

  test("every problem in the list at once: a weak key, a mismatch and a duplicate name", () => {
    const problems = problemsOf(
      withKeys([
        { name: "jane", publicKey: keys.rsa1024 },
        { name: "joe", publicKey: keys.ed25519.replace(/^ssh-ed25519/, "ssh-rsa") },
        { name: "jane", publicKey: keys.ecdsa384 },
      ]),
    );
    expect(problems.map((p) => p.slice(0, p.indexOf(":", FILE.length + 2)))).toEqual([
      `${keyAt(0)}.publicKey`,
      `${keyAt(1)}.publicKey`,
      `${keyAt(2)}.name`,
    ]);
  });
});
