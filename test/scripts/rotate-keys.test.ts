/**
 * scripts/rotate-keys.ts's state detection: from the client file's slots, the outputs' access_keys and the
 * key the server's s3.env and Litestream use, which steps are left — for every point a rotation can stop
 * at — and the refusals that keep it from opening a gap. The steps run for real (loopback sshd, Litestream,
 * the strict lab S3) in rotate-keys.int.test.ts.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AccessKeySlot } from "../../app/config/fields.ts";
import { REPO_ROOT } from "../../app/repo.ts";
import {
  actionTitle,
  type OutputKey,
  operatorInstructions,
  outputKeysOf,
  proveReplication,
  provenBy,
  readServerKeys,
  restartWithKey,
  type RotationAction,
  rotationActions,
  type RotationFacts,
} from "../../scripts/lib/rotate-keys-run.ts";

const A: OutputKey = { slot: "a", id: "AKIAAAAAAAAAAAAAAAAA", created: "2026-06-01T10:00:00Z" };
const B: OutputKey = { slot: "b", id: "AKIABBBBBBBBBBBBBBBB", created: "2026-12-03T09:00:00Z" };

const facts = (client: readonly AccessKeySlot[], outputs: readonly OutputKey[], serverKey: string, litestreamKey = serverKey, state = "active"): RotationFacts => ({
  stackName: "example-prod",
  clientFile: "app/clients/example.ts",
  environment: "prod",
  outputsFile: join(REPO_ROOT, "outputs", "example-prod.json"),
  clientSlots: client,
  outputKeys: outputs,
  serverKey,
  litestream: { state, key: litestreamKey },
});
/** The actions as short words: push b, restart b, prove b, deploy ["b"] (retire)… */
const words = (actions: readonly RotationAction[]) =>
  actions.map((a) => (a.kind === "deploy" ? `deploy ${JSON.stringify(a.slots)} (${a.why})` : `${a.kind} ${a.key.slot}`));

describe("where a rotation a → b stands, and what is left", () => {
  test.each<[string, RotationFacts, string[]]>([
    ["at rest on a: the free slot b is the operator's first step", facts(["a"], [A], A.id), [`deploy ["a","b"] (add)`]],
    ["client file edited, not deployed yet", facts(["a", "b"], [A], A.id), [`deploy ["a","b"] (apply)`]],
    ["b created by cdktf deploy: push, restart, prove, then retire a", facts(["a", "b"], [A, B], A.id), ["push b", "restart b", "prove b", `deploy ["b"] (retire)`]],
    ["stopped after the push, before Litestream restarted", facts(["a", "b"], [A, B], B.id, A.id), ["restart b", "prove b", `deploy ["b"] (retire)`]],
    ["stopped after the restart, before the proof", facts(["a", "b"], [A, B], B.id), ["prove b", `deploy ["b"] (retire)`]],
    ["retire edited, not deployed yet (the server uses b)", facts(["b"], [A, B], B.id), [`deploy ["b"] (apply)`]],
    ["done: at rest on b, the next rotation goes back to slot a", facts(["b"], [B], B.id), [`deploy ["b","a"] (add)`]],
    ["one key the server does not use (pushed by nobody): push, restart, prove", facts(["b"], [B], A.id), ["push b", "restart b", "prove b"]],
    ["a rotation given up before the push: dropping b is applied", facts(["a"], [A, B], A.id), [`deploy ["a"] (apply)`]],
  ])("%s", (_name, given, expected) => {
    expect(words(rotationActions(given))).toEqual(expected);
  });

  test("b → a works the same way round: the newest is the last listed", () => {
    expect(words(rotationActions(facts(["b", "a"], [B, { ...A, created: "2027-03-01T00:00:00Z" }], B.id)))).toEqual(["push a", "restart a", "prove a", `deploy ["a"] (retire)`]);
  });
});

describe("refusals: nothing that would leave the server without a working key", () => {
  test("a client file that drops the key the server still uses (retire before the push)", () => {
    expect(() => rotationActions(facts(["b"], [A, B], A.id))).toThrow(
      'app/clients/example.ts: environments.prod.backups.accessKeys is ["b"]: it drops slot a (AKIAAAAAAAAAAAAAAAAA), the key the server still replicates with; deploying it would stop the backups',
    );
    // The same while s3.env already has b but the running Litestream still has a.
    expect(() => rotationActions(facts(["b"], [A, B], B.id, A.id))).toThrow(/drops slot a .*still replicates with/);
    // Nearest valid: the server uses b.
    expect(() => rotationActions(facts(["b"], [A, B], B.id))).not.toThrow();
  });

  test("Litestream not running: no key can be proven, so nothing is done", () => {
    expect(() => rotationActions(facts(["a", "b"], [A, B], A.id, "", "inactive"))).toThrow(
      "Litestream is not running on the server of example-prod (inactive): replication is off, so no key can be proven",
    );
  });
});

describe("the operator's steps say exactly what to edit and run", () => {
  test("adding slot b", () => {
    const f = facts(["a"], [A], A.id);
    const [add] = rotationActions(f) as Extract<RotationAction, { kind: "deploy" }>[];
    expect(actionTitle(add, f)).toBe('new key in slot b: you set backups.accessKeys to ["a", "b"] and run cdktf deploy');
    expect(operatorInstructions(add, f)).toEqual([
      'in app/clients/example.ts, set environments.prod.backups.accessKeys to ["a", "b"] (this environment only), then:',
      "npx cdktf deploy example-prod --outputs-file outputs/example-prod.json --outputs-file-include-sensitive-outputs",
      "its plan creates aws_iam_access_key.Backups_BackupUserKeyB_… and updates outputs; the droplet's user data is ignored. Stop if it replaces anything.",
      "then run this again: npx zx scripts/rotate-keys.ts example-prod",
    ]);
  });

  test("retiring slot a", () => {
    const f = facts(["a", "b"], [A, B], B.id);
    const retire = rotationActions(f).at(-1) as Extract<RotationAction, { kind: "deploy" }>;
    expect(actionTitle(retire, f)).toBe('retire the old key (slot a): you set backups.accessKeys to ["b"] and run cdktf deploy');
    expect(operatorInstructions(retire, f)[2]).toBe("its plan destroys aws_iam_access_key.Backups_BackupUserKey_… and updates outputs; the droplet's user data is ignored. Stop if it replaces anything.");
  });
});

describe("the outputs file's access_keys", () => {
  let dir: string;
  beforeAll(() => (dir = mkdtempSync(join(tmpdir(), "rotate-outputs-"))));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (outputs: unknown) => {
    const path = join(dir, `${Math.random()}.json`);
    writeFileSync(path, JSON.stringify({ "example-prod": outputs }));
    return path;
  };

  test("read as cdktf writes it", () => {
    expect(outputKeysOf(file({ ipv4: "203.0.113.4", access_keys: [A, B] }), "example-prod")).toEqual([A, B]);
  });
  test("no outputs file: named, with the command that writes it", () => {
    expect(() => outputKeysOf(join(dir, "none.json"), "example-prod")).toThrow(`no outputs file ${join(dir, "none.json")}: the rotation reads the stack's keys (access_keys) from it`);
  });
  test("missing: written by an older kit; the fix rewrites it without changing a key", () => {
    const path = file({ ipv4: "203.0.113.4" });
    expect(() => outputKeysOf(path, "example-prod")).toThrow(`${path} has no access_keys output for example-prod: it was written by an older kit, or not by cdktf`);
  });
  test.each([[[]], [[A, B, A]], [[{ ...A, slot: "c" }]], [[{ ...A, id: "" }]], ["AKIA"]])("malformed: %j", (value) => {
    expect(() => outputKeysOf(file({ access_keys: value }), "example-prod")).toThrow(/access_keys is .*, not one or two \{slot, id, created\} entries of slots a\/b/);
  });
});

describe("the proof is this run's drill, and a passing one", () => {
  const report = (over: object) => `started=20261203T101500Z\nreport=${JSON.stringify({ at: "20261203T101501Z", ok: true, rpo_ms: 640, integrity: "ok", missing_tables: 0, ...over })}\n`;
  test.each<[string, string, string | undefined]>([
    ["a passing drill started after the push", report({}), undefined],
    ["no report", "started=20261203T101500Z\nreport=\n", "the drill wrote no report"],
    ["an older report (the drill died before writing)", report({ at: "20261203T091500Z" }), "the newest drill report is from 20261203T091500Z, before this run"],
    ["the sentinel never arrived", report({ ok: false, rpo_ms: null }), "the drill's sentinel never reached the replica"],
    ["restored but not intact", report({ ok: false, integrity: "row 3 missing from index" }), "the drill failed (integrity row 3 missing from index, 0 tables missing in the restore)"],
  ])("%s", (_name, stdout, why) => {
    expect(provenBy(stdout).why).toBe(why);
  });
});

test("the server steps pass shellcheck as sent, and never print the secret", () => {
  for (const built of [readServerKeys(), restartWithKey(B.id, "restart"), proveReplication("prove")]) {
    const check = spawnSync("shellcheck", ["--shell=bash", "--exclude=SC1090,SC1091", "-"], { input: built.script.text, encoding: "utf8" });
    expect(check.stdout).toBe("");
    expect(built.script.text).not.toMatch(/AWS_SECRET_ACCESS_KEY/);
  }
  expect(readServerKeys().readOnly).toBe(true);
});
