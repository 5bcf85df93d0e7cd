/**
 * scripts/rotate-keys.ts end to end on loopback: the script's own function over the real SSH runner (sshd)
 * against a LocalKit server (Litestream 0.3.13, sqlite3) replicating a 120 MiB database to the strict lab
 * S3 (lab/s3/process.ts: SigV4, IAM's CreateAccessKey/DeleteAccessKey). The test plays the operator: its
 * `cdktf deploy` is the lab's IAM call plus the outputs file cdktf would write. Under steady writes (an app
 * process on Deno's SQLite), a → b and back b → a, the second one resumed after a push that stopped before
 * Litestream restarted: after each, the old key is refused (InvalidAccessKeyId), Litestream never once
 * used a deleted key, and every acknowledged row is in a restore made with the new key.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AccessKeySlot } from "../../app/config/fields.ts";
import { LAYOUT } from "../../cloud-init/layout.ts";
import { serverFiles } from "../../cloud-init/server-files.ts";
import { concreteServerValues, REPO_ROOT } from "../../lab/environments.ts";
import { DENO, labAccess, LocalKit, localEnvironment } from "../../lab/local/local-kit.ts";
import { startSshd, type TestSshd } from "../../lab/local/sshd.ts";
import { s3Request } from "../../lab/s3/client.ts";
import type { LabUser } from "../../lab/s3/policy.ts";
import { startKitLabS3Process, type LabS3Process } from "../../lab/s3/process.ts";
import { executedTitles, plannedTitles } from "../../scripts/lib/cli.ts";
import { type RotateResult, rotateKeys } from "../../scripts/lib/rotate-keys-run.ts";
import type { ServerPaths } from "../../scripts/lib/server-steps.ts";
import { SshRunner } from "../../scripts/lib/ssh.ts";
import { resolveTarget } from "../../scripts/lib/target.ts";

const env = localEnvironment("rotate");
const STACK = env.stackName;
let lab: LabS3Process;
let sshd: TestSshd;
let kit: LocalKit;
let paths: ServerPaths;
/** The operator's machine: outputs file, known_hosts, SSH sockets; and the stand-in service manager. */
let outside: string;
let outputsFile: string;
/** Which key each slot holds (what Terraform's state would know). */
const keys = new Map<AccessKeySlot, LabUser>();

/**
 * This machine runs no systemd: the kit's PATH gets a systemctl for the two units a rotation touches, as
 * systemd runs them — litestream.service a process with s3.env as its environment (EnvironmentFile), read
 * when it starts; restore-drill.service the drill script in the foreground, with s3.env too. Other units
 * are inactive; enabling and reloading are no-ops; anything else is refused.
 */
function serviceManager(bin: string, run: string): void {
  mkdirSync(bin, { recursive: true });
  mkdirSync(run, { recursive: true });
  writeFileSync(
    join(bin, "systemctl"),
    `#!/bin/bash
set -euo pipefail
. ${kit.kitEnvFile}
pid() { cat "${run}/$1.pid" 2>/dev/null || true; }
alive() { [ -n "$(pid "$1")" ] && kill -0 "$(pid "$1")" 2>/dev/null; }
launch() {
  case $1 in
    litestream.service) (set -a; . "$S3_CREDENTIALS_FILE"; exec setsid litestream replicate -config "$LITESTREAM_CONFIG" >>"${run}/litestream.log" 2>&1 </dev/null) &
      echo $! >"${run}/$1.pid" ;;
    restore-drill.service) (set -a; . "$S3_CREDENTIALS_FILE"; set +a; exec ${kit.path("libDir")}/restore-drill.sh) ;;
    *) echo "systemctl (local kit): no unit $1" >&2; exit 5 ;;
  esac
}
halt() { if alive "$1"; then local p; p=$(pid "$1"); kill "$p"; while kill -0 "$p" 2>/dev/null; do sleep 0.05; done; fi; rm -f "${run}/$1.pid"; }
cmd=$1; shift
case $cmd in
  start) for u in "$@"; do alive "$u" || launch "$u"; done ;;
  stop) for u in "$@"; do halt "$u"; done ;;
  restart) for u in "$@"; do halt "$u"; launch "$u"; done ;;
  try-restart) for u in "$@"; do if alive "$u"; then halt "$u"; launch "$u"; fi; done ;;
  is-active) if alive "$1"; then echo active; else echo inactive; exit 3; fi ;;
  show) u=\${!#}; if alive "$u"; then pid "$u"; else echo 0; fi ;;
  enable|daemon-reload|reset-failed) ;;
  *) echo "systemctl (local kit): $cmd is not supported here" >&2; exit 1 ;;
esac
`,
  );
  chmodSync(join(bin, "systemctl"), 0o755);
}
const systemctl = (...args: string[]) => kit.bash(`. ${kit.kitEnvFile}\nsystemctl ${args.join(" ")}`);

/** What `cdktf deploy --outputs-file … --outputs-file-include-sensitive-outputs` writes for these slots. */
function writeOutputs(slots: readonly AccessKeySlot[]): void {
  const newest = keys.get(slots[slots.length - 1])!;
  const access_keys = slots.map((slot) => ({ slot, id: keys.get(slot)!.accessKeyId, created: new Date().toISOString() }));
  const outputs = { ipv4: "127.0.0.1", ssh_user: sshd.user, bucket: env.names.bucket, region: env.backups.region, access_keys, access_key_id: newest.accessKeyId, secret_access_key: newest.secretAccessKey };
  writeFileSync(outputsFile, JSON.stringify({ [STACK]: outputs }));
}

/** The operator's `cdktf deploy` of backups.accessKeys = `slots`: IAM creates or deletes keys, outputs rewritten. */
async function cdktfDeploy(slots: readonly AccessKeySlot[]): Promise<void> {
  for (const slot of slots) if (!keys.has(slot)) keys.set(slot, await lab.createAccessKey(STACK));
  for (const [slot, key] of keys) {
    if (slots.includes(slot)) continue;
    await lab.deleteAccessKey(STACK, key.accessKeyId);
    keys.delete(slot);
  }
  writeOutputs(slots);
}

/** One run of the script (its function, as rotate-keys.ts calls it) with the client file's slots; stderr captured. */
async function rotate(slots: readonly AccessKeySlot[], dryRun = false): Promise<{ result?: RotateResult; error?: Error; stderr: string }> {
  const target = resolveTarget({ ...env, backups: { ...env.backups, accessKeys: slots } }, {
    outputs: outputsFile, host: "127.0.0.1", port: sshd.port, identity: sshd.identity, knownHosts: join(outside, "known_hosts"), s3Endpoint: lab.endpoint,
  });
  const runner = new SshRunner(target.ssh, { ...target.sshSettings, controlDir: join(outside, "ctl") });
  let stderr = "";
  const spy = jest.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  try {
    return { result: await rotateKeys({ target, runner, paths, dryRun }), stderr };
  } catch (error) {
    return { error: error as Error, stderr };
  } finally {
    spy.mockRestore();
    await runner.close();
  }
}

/** Every file under the kit's tree, with its mode and sha256; not the database directory (the writer and Litestream write there). */
function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(dir, { recursive: true }) as string[]) {
    const path = join(dir, name);
    if (path.startsWith(kit.path("dbDir")) || lstatSync(path).isDirectory()) continue;
    out[name] = `${(lstatSync(path).mode & 0o7777).toString(8)} ${createHash("sha256").update(readFileSync(path)).digest("hex")}`;
  }
  return out;
}

/** The key id the running Litestream has in its environment, and the one in s3.env. */
async function serverKeys(): Promise<{ litestream: string; file: string }> {
  const pid = (await systemctl("show", "-p", "MainPID", "--value", "litestream.service")).stdout.trim();
  const environ = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
  const file = readFileSync(kit.path("s3CredentialsFile"), "utf8");
  return { litestream: environ.find((l) => l.startsWith("AWS_ACCESS_KEY_ID="))!.slice(18), file: /^AWS_ACCESS_KEY_ID=(.*)$/m.exec(file)![1] };
}

/** ListObjectsV2 on the environment's prefix, signed with `key`. */
const listWith = (key: LabUser) =>
  s3Request(lab.endpoint, lab.caFile, { ...key, region: env.backups.region }, "GET", `/${env.names.bucket}?list-type=2&prefix=${encodeURIComponent(`${env.names.bucketPrefix}/`)}`);

/** An app process writing one row per 10 ms through Deno's SQLite (the app's settings), printing each committed id. */
function startWriter(): { child: ChildProcess; acked: number[] } {
  const acked: number[] = [];
  const code = `import { openDatabase } from ${JSON.stringify(join(REPO_ROOT, "test/fixtures/app/db.ts"))};
const db = openDatabase(${JSON.stringify(kit.dbFile)});
const insert = db.prepare("INSERT INTO rows (value) VALUES (?)");
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
while (true) {
  console.log(Number(insert.run(crypto.randomUUID()).lastInsertRowid));
  await new Promise((r) => setTimeout(r, 10));
}`;
  const child = spawn(DENO, ["eval", "--ext=ts", code], { env: { ...process.env, DENO_NO_UPDATE_CHECK: "1" }, stdio: ["ignore", "pipe", "inherit"] });
  let pending = "";
  child.stdout!.on("data", (d: Buffer) => {
    const lines = (pending + d.toString()).split("\n");
    pending = lines.pop()!;
    acked.push(...lines.map(Number));
  });
  return { child, acked };
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  [lab, sshd] = await Promise.all([startKitLabS3Process([env]), startSshd()]);
  kit = new LocalKit(labAccess(lab, env), env, { drillWaitSeconds: 10 });
  keys.set("a", lab.users.get(STACK)!);
  outside = mkdtempSync(join(tmpdir(), "kit-rotate-"));
  outputsFile = join(outside, "outputs.json");
  serviceManager(join(outside, "bin"), join(outside, "run"));
  writeFileSync(kit.kitEnvFile, `${readFileSync(kit.kitEnvFile, "utf8")}PATH=${join(outside, "bin")}:$PATH\n`);
  paths = { kitEnvFile: kit.kitEnvFile, libDir: kit.path("libDir"), caddyfile: join(kit.root, "Caddyfile"), deployLock: join(kit.root, "run", "deploy.lock") };
  writeFileSync(paths.caddyfile, `:80 {\n\treverse_proxy 127.0.0.1:${env.app.port}\n}\n`);
  writeFileSync(kit.path("bootstrapDoneFile"), "/srv/app/releases/first\n");
  // 120 MiB of client data before Litestream starts (its first snapshot is a multipart upload).
  kit.sql(kit.dbFile, "PRAGMA journal_mode=WAL; CREATE TABLE rows(id INTEGER PRIMARY KEY, value TEXT NOT NULL);" +
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30000) INSERT INTO rows(value) SELECT hex(randomblob(2048)) FROM n;");
  await systemctl("start", "litestream.service");
  writeOutputs(["a"]);
}, 120_000);
afterAll(async () => {
  if (kit) await systemctl("stop", "litestream.service");
  await kit?.cleanup();
  await Promise.all([lab?.stop(), sshd?.stop()]);
  if (outside) rmSync(outside, { recursive: true, force: true });
});

test("rotation a → b and back under steady writes: no gap, the old key refused, no acknowledged row missing from the replica", async () => {
  const writer = startWriter();
  const started = Date.now();
  const timings: string[] = [];
  try {
    // At rest on a: the run says so and names the operator's first step; nothing else is planned.
    const atRest = await rotate(["a"]);
    expect(atRest.result).toMatchObject({ rotating: false, waitingFor: { why: "add", slots: ["a", "b"] } });
    expect(atRest.stderr).toContain(`npx cdktf deploy ${STACK} --outputs-file ${outputsFile} --outputs-file-include-sensitive-outputs`);

    // Step 1 (the operator): slot b added and deployed.
    await cdktfDeploy(["a", "b"]);
    // The dry run reads only: the kit's tree and the lab's keys are as they were; its steps are the run's.
    const before = tree(kit.root);
    const dry = await rotate(["a", "b"], true);
    expect(dry.error).toBeUndefined();
    expect(tree(kit.root)).toEqual(before);
    expect((await lab.accessKeys(STACK)).map((k) => k.accessKeyId)).toEqual([keys.get("a")!.accessKeyId, keys.get("b")!.accessKeyId]);
    const planned = plannedTitles(dry.stderr);
    expect(planned.slice(3)).toEqual([
      "take the deploy lock",
      `push the key of slot b (${keys.get("b")!.accessKeyId}) to ${LAYOUT.s3CredentialsFile}`,
      `restart Litestream with the key of slot b (${keys.get("b")!.accessKeyId})`,
      `prove replication with the key of slot b (${keys.get("b")!.accessKeyId}) (restore drill: a row written now is restored from the bucket)`,
      'retire the old key (slot a): you set backups.accessKeys to ["b"] and run cdktf deploy',
      "release the deploy lock",
    ]);
    // Steps 2–4, then it stops at the operator's step 5.
    let t = Date.now();
    const run = await rotate(["a", "b"]);
    timings.push(`push + restart + proof: ${((Date.now() - t) / 1000).toFixed(1)} s (drill RPO ${run.result?.rpoMs} ms)`);
    expect(run.error).toBeUndefined();
    expect(executedTitles(run.stderr)).toEqual(planned);
    expect(run.result).toMatchObject({ rotating: true, waitingFor: { why: "retire", slots: ["b"] } });
    expect(await serverKeys()).toEqual({ litestream: keys.get("b")!.accessKeyId, file: keys.get("b")!.accessKeyId });
    expect(readFileSync(kit.path("s3CredentialsFile"), "utf8")).toBe(serverFiles(env, concreteServerValues(env, { s3Credentials: keys.get("b")! })).find((f) => f.path === LAYOUT.s3CredentialsFile)!.content);

    // Step 5 (the operator): slot a retired; its key is refused from then on, and the run finds the rotation done.
    const oldKey = keys.get("a")!;
    await cdktfDeploy(["b"]);
    const probe = await listWith(oldKey);
    expect(probe.status).toBe(403);
    expect(probe.text).toContain("<Code>InvalidAccessKeyId</Code>");
    expect((await listWith(keys.get("b")!)).status).toBe(200);
    const done = await rotate(["b"]);
    expect(done.result).toMatchObject({ rotating: false, waitingFor: { why: "add", slots: ["b", "a"] } });
    expect(executedTitles(done.stderr)).toEqual(plannedTitles((await rotate(["b"], true)).stderr));

    // b → a, where a run stopped after its push: s3.env holds the new key, Litestream still runs with b.
    await cdktfDeploy(["b", "a"]);
    // Retiring b before the new key is in use is refused, and changes nothing.
    const early = await rotate(["a"]);
    expect(early.error?.message).toMatch(/backups\.accessKeys is \["a"\]: it drops slot b \(AKIA\w+\), the key the server still replicates with/);
    const newA = keys.get("a")!;
    writeFileSync(kit.path("s3CredentialsFile"), serverFiles(env, concreteServerValues(env, { s3Credentials: newA })).find((f) => f.path === LAYOUT.s3CredentialsFile)!.content);
    const resumedPlan = plannedTitles((await rotate(["b", "a"], true)).stderr).slice(3);
    expect(resumedPlan).toEqual([
      "take the deploy lock",
      `restart Litestream with the key of slot a (${newA.accessKeyId})`,
      `prove replication with the key of slot a (${newA.accessKeyId}) (restore drill: a row written now is restored from the bucket)`,
      'retire the old key (slot b): you set backups.accessKeys to ["a"] and run cdktf deploy',
      "release the deploy lock",
    ]);
    t = Date.now();
    const resumed = await rotate(["b", "a"]);
    timings.push(`resumed restart + proof: ${((Date.now() - t) / 1000).toFixed(1)} s`);
    expect(resumed.error).toBeUndefined();
    expect(executedTitles(resumed.stderr).slice(3)).toEqual(resumedPlan);
    expect((await serverKeys()).litestream).toBe(newA.accessKeyId);
    const retiredB = keys.get("b")!;
    await cdktfDeploy(["a"]);
    expect((await listWith(retiredB)).text).toContain("<Code>InvalidAccessKeyId</Code>");
    expect((await rotate(["a"])).result).toMatchObject({ rotating: false });
    await sleep(1500); // writes after the last rotation
  } finally {
    writer.child.kill("SIGTERM");
    await new Promise((r) => writer.child.once("exit", r));
  }
  // Litestream uploads what is pending on SIGTERM; then the replica is restored with the current key.
  await systemctl("stop", "litestream.service");
  const restored = join(outside, "restored.sqlite3");
  const key = keys.get("a")!;
  const restore = spawnSync("litestream", ["restore", "-config", kit.path("litestreamConfig"), "-o", restored, kit.dbFile], {
    env: { ...kit.env, AWS_ACCESS_KEY_ID: key.accessKeyId, AWS_SECRET_ACCESS_KEY: key.secretAccessKey }, encoding: "utf8", timeout: 120_000,
  });
  expect(restore.status).toBe(0);
  expect(kit.sql(restored, "PRAGMA integrity_check")).toBe("ok");
  const ids = new Set(kit.sql(restored, "SELECT id FROM rows").split("\n").map(Number));
  expect(writer.acked.length).toBeGreaterThan(500);
  expect(writer.acked.filter((id) => !ids.has(id))).toEqual([]);
  expect(kit.sql(restored, "SELECT count(*) FROM rows")).toBe(kit.sql(kit.dbFile, "SELECT count(*) FROM rows"));
  // No gap: Litestream never sent a request with a deleted key (the two refusals are the probes above).
  const refused = (await lab.errors()).filter((e) => e.code === "InvalidAccessKeyId" || e.code === "AccessDenied");
  expect(refused).toHaveLength(2);
  process.stderr.write(`rotate-keys: ${writer.acked.length} rows acknowledged during two rotations in ${((Date.now() - started) / 1000).toFixed(1)} s, all in the replica; ${timings.join("; ")}\n`);
}, 300_000);
