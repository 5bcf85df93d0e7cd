/**
 * The backup user's least-privilege policy and the bucket's TLS-only policy, proven through the kit's own
 * programs against the lab S3, which evaluates the stack's own policies (stacks/backup-bucket.ts
 * `backupPolicies`) with a real IAM evaluator on every request and logs which statement decided.
 *
 * Allowed with exactly the environment's key: Litestream's replicate and restore, restore-on-boot and
 * restore.ts --local (restore-on-boot.int, restore.int), the drill (drill.int), and here the fallback
 * backup's upload. Refused here, each with S3's answer, its request id, and the deciding statement: the
 * key on another environment's replica (read and write), listing outside its prefix, every plain-HTTP
 * request, and a wrong secret or unknown key (replication fails, nothing of it reaches the bucket).
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { ResolvedEnvironment } from "../../app/config/types.ts";
import { labAccess, LocalKit, localEnvironments, type S3Access } from "../../lab/local/local-kit.ts";
import { s3Request } from "../../lab/s3/client.ts";
import type { Decision } from "../../lab/s3/policy.ts";
import { startKitLabS3Process, type LabS3Process } from "../../lab/s3/process.ts";
import { text } from "../../lab/s3/xml.ts";
import { OpsError } from "../../scripts/lib/errors.ts";
import { restoreLocal } from "../../scripts/lib/restore-run.ts";
import { leastPrivilegeProblems, principalOf, USER_POLICY } from "./support/iam.ts";
import { localTarget, trustLabCa } from "./support/local-target.ts";

/** `own` is the environment whose key is tried; `other` is a neighbour with a replica of its own. */
const [own, other] = localEnvironments(["own", "other"]);
/** restore-on-boot gives up in seconds here: 2 attempts, 1 s apart. */
const FAST = { restoreAttempts: 2, restoreRetrySeconds: 1, restoreAttemptSeconds: 30 };
const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

let lab: LabS3Process;
const kits: LocalKit[] = [];
let ownKit: LocalKit;

/** A kit "server" of `env` reaching S3 as `access` says. */
async function newKit(access: S3Access, env: ResolvedEnvironment, extra: Record<string, string | number> = {}): Promise<LocalKit> {
  const kit = new LocalKit(access, env, { ...FAST, ...extra });
  kits.push(kit);
  return kit;
}

const seed = (kit: LocalKit) => kit.sql(kit.dbFile, "PRAGMA journal_mode=WAL; CREATE TABLE rows(id INTEGER PRIMARY KEY, body TEXT); INSERT INTO rows(body) VALUES ('a'),('b'),('c');");

/** The keys under `prefix` in `env`'s bucket, listed with `env`'s own key. */
async function keysUnder(env: ResolvedEnvironment, prefix: string): Promise<string[]> {
  const user = lab.users.get(env.stackName)!;
  const listed = await s3Request(lab.endpoint, lab.caFile, { ...user, region: env.backups.region }, "GET", `/${env.names.bucket}?list-type=2&prefix=${encodeURIComponent(prefix)}`);
  expect([listed.status, text(listed.text, "IsTruncated")]).toEqual([200, "false"]);
  return [...listed.text.matchAll(/<Key>([^<]+)<\/Key>/g)].map((m) => m[1]);
}

async function decisionOf(requestId: string): Promise<Decision | undefined> {
  return (await lab.decisions()).find((d) => d.requestId === requestId);
}

/** aws-sdk-go's form of S3's answer, as Litestream logs it: `Code: Message\n\tstatus code: 403, request id: …`. */
const S3_ANSWER = /\b([A-Z][a-z]+(?:[A-Z][a-z]*)+): ([^\n"]*?)(?:\\n|\n)(?:\\t|\s)*status code: (\d+), request id: ([0-9A-F]{16})/;

/** Waits until Litestream's replicator has logged S3's refusal; returns it and the generation it tried. */
async function refusalLogged(kit: LocalKit): Promise<{ code: string; status: number; requestId: string; generation: string }> {
  for (const until = Date.now() + 20_000; Date.now() < until; await new Promise((r) => setTimeout(r, 200))) {
    const said = kit.replicatorOutput();
    const answer = S3_ANSWER.exec(said);
    const generation = /msg="sync: new generation".* generation=([0-9a-f]{16})/.exec(said);
    if (answer && generation) return { code: answer[1], status: Number(answer[3]), requestId: answer[4], generation: generation[1] };
  }
  throw new Error(`Litestream logged no refusal within 20 s; it said:\n${kit.replicatorOutput().slice(-3000)}`);
}

/** The implicit deny of another environment's key: no statement of its policy allows it, none denies it. */
const implicitlyDenied = (action: string, resource: string) => ({ principal: principalOf(own), action, resource, result: "ImplicitlyDenied", decidedBy: [] });

beforeAll(async () => {
  lab = await startKitLabS3Process([own, other], { plainHttp: true });
  // Both environments live: each replicates its database with its own key.
  ownKit = await newKit(labAccess(lab, own), own);
  const otherKit = await newKit(labAccess(lab, other), other);
  seed(ownKit);
  seed(otherKit);
  await Promise.all([ownKit.startReplication(), otherKit.startReplication()]);
  await otherKit.stopReplication();
});
afterAll(async () => {
  for (const kit of kits) await kit.cleanup();
  await lab?.stop();
});

test("the fallback backup (fallback-backup.sh, s3-put.sh's curl) uploads its checked copy with exactly the environment's key", async () => {
  const ran = await ownKit.script("fallback-backup.sh");
  expect(ran.stderr).toBe("");
  expect(ran.status).toBe(0);
  const [, file, key] = /kit: uploaded (\S+) to s3:\/\/[^/]+\/(\S+)/.exec(ran.stdout)!;
  expect(key).toBe(`${own.names.bucketPrefix}/fallback/${file.split("/").pop()}`);
  const user = lab.users.get(own.stackName)!;
  const stored = await s3Request(lab.endpoint, lab.caFile, { ...user, region: own.backups.region }, "GET", `/${own.names.bucket}/${key}`);
  expect(sha256(stored.body)).toBe(sha256(readFileSync(file)));
  const put = (await lab.decisions()).filter((d) => d.action === "s3:PutObject" && d.resource.endsWith(key));
  expect(put).toEqual([expect.objectContaining({ result: "Allowed", decidedBy: [{ policy: USER_POLICY, sid: "ReadWriteThisEnvironmentOnly", effect: "Allow" }] })]);
  expect(put[0].context["aws:UserAgent"]).toMatch(/^curl\//);
  expect(leastPrivilegeProblems(await lab.decisions(), own)).toEqual([]);
});

describe("this environment's key on another environment's replica", () => {
  let thief: LocalKit;
  beforeAll(async () => {
    // A server of `own` pointed at `other`'s bucket and prefix: every path is other's, the key is own's.
    thief = await newKit(labAccess(lab, own), other);
  });

  test("read: restore-on-boot.sh is refused (AccessDenied on listing it) and starts nothing; a GetObject of its snapshot is refused", async () => {
    const ran = await thief.script("restore-on-boot.sh");
    expect(ran.status).toBe(1);
    expect(ran.stderr).toContain("kit: refusing to start the app on an empty database");
    const [, code, , status, requestId] = S3_ANSWER.exec(ran.stderr)!;
    expect([code, status]).toEqual(["AccessDenied", "403"]);
    expect(await decisionOf(requestId)).toMatchObject(implicitlyDenied("s3:ListBucket", `arn:aws:s3:::${other.names.bucket}`));
    // The objects themselves: other's snapshot, by its key (listed with other's own key).
    const snapshot = (await keysUnder(other, `${other.names.bucketPrefix}/litestream/`)).find((k) => k.includes("/snapshots/"))!;
    const get = await s3Request(lab.endpoint, lab.caFile, { ...lab.users.get(own.stackName)!, region: other.backups.region }, "GET", `/${other.names.bucket}/${snapshot}`);
    expect([get.status, text(get.text, "Code")]).toEqual([403, "AccessDenied"]);
    expect(text(get.text, "RequestId")).toBe(get.headers["x-amz-request-id"]);
    expect(await decisionOf(text(get.text, "RequestId")!)).toMatchObject(implicitlyDenied("s3:GetObject", `arn:aws:s3:::${other.names.bucket}/${snapshot}`));
  });

  test("write: the fallback upload into its prefix is refused (403, nothing stored); Litestream cannot replicate into it", async () => {
    seed(thief);
    const before = await keysUnder(other, `${other.names.bucketPrefix}/`);
    const ran = await thief.script("fallback-backup.sh");
    expect(ran.status).toBe(22); // curl --fail: HTTP 403
    expect(ran.stderr).toContain("The requested URL returned error: 403");
    const name = /kit: wrote \S+\/(app-\S+\.sqlite3\.gz)/.exec(ran.stdout)![1];
    const refused = (await lab.errors()).find((e) => e.method === "PUT" && e.url === `/${other.names.bucket}/${other.names.bucketPrefix}/fallback/${name}`)!;
    expect(refused.code).toBe("AccessDenied");
    expect(await decisionOf(refused.requestId)).toMatchObject(implicitlyDenied("s3:PutObject", `arn:aws:s3:::${other.names.bucket}/${other.names.bucketPrefix}/fallback/${name}`));

    await thief.startReplication({ wait: false });
    const logged = await refusalLogged(thief);
    await thief.stopReplication();
    expect([logged.code, logged.status]).toEqual(["AccessDenied", 403]);
    expect(await decisionOf(logged.requestId)).toMatchObject({ ...implicitlyDenied("s3:ListBucket", `arn:aws:s3:::${other.names.bucket}`) });
    expect(await keysUnder(other, `${other.names.bucketPrefix}/`)).toEqual(before);
  });
});

test("listing outside its prefix: restore.ts --local on a replica path outside it is refused; the same key lists its own prefix", async () => {
  const untrust = trustLabCa(lab.caFile);
  const target = (replicaPath: string) => localTarget(ownKit, { replicaPath });
  try {
    // The bucket's top level (a replica_path without the environment's prefix).
    const error = await restoreLocal(target("litestream"), join(ownKit.root, "outside.sqlite3")).catch((e) => e);
    expect(error).toBeInstanceOf(OpsError);
    expect(error.message).toMatch(/^S3 refused the credentials \(seen from this machine\): .*AccessDenied/);
    const outside = (await lab.decisions()).filter((d) => d.principal === principalOf(own) && d.context["s3:prefix"]?.startsWith("litestream/"));
    expect(outside.length).toBeGreaterThan(0);
    for (const d of outside) expect(d).toMatchObject(implicitlyDenied("s3:ListBucket", `arn:aws:s3:::${own.names.bucket}`));

    const checked = await restoreLocal(target(ownKit.path("litestreamPrefix")), join(ownKit.root, "inside.sqlite3"));
    expect(checked.tables.get("rows")?.restored).toBe(3);
    const inside = (await lab.decisions()).filter((d) => d.principal === principalOf(own) && d.context["s3:prefix"]?.startsWith(`${own.names.bucketPrefix}/litestream/`));
    expect(inside.at(-1)).toMatchObject({ result: "Allowed", decidedBy: [{ policy: USER_POLICY, sid: "ListThisEnvironmentOnly", effect: "Allow" }] });
  } finally {
    untrust();
  }
});

test("plain HTTP, right key: replication, the fallback upload and the restore on boot are each refused by the bucket policy's DenyInsecureTransport", async () => {
  const byTlsOnly = (requestId: string) => ({
    requestId,
    principal: principalOf(own),
    result: "ExplicitlyDenied",
    context: expect.objectContaining({ "aws:SecureTransport": "false" }),
    decidedBy: [{ policy: `bucket policy of ${own.names.bucket}`, sid: "DenyInsecureTransport", effect: "Deny" }],
  });
  const plain = await newKit(labAccess(lab, own, "http"), own);
  expect(plain.path("s3Endpoint")).toMatch(/^http:\/\//);
  seed(plain);

  await plain.startReplication({ wait: false });
  const logged = await refusalLogged(plain);
  await plain.stopReplication();
  expect([logged.code, logged.status]).toEqual(["AccessDenied", 403]);
  expect(await decisionOf(logged.requestId)).toMatchObject(byTlsOnly(logged.requestId));
  expect((await keysUnder(own, `${own.names.bucketPrefix}/`)).filter((k) => k.includes(logged.generation))).toEqual([]);

  const upload = await plain.script("fallback-backup.sh");
  expect(upload.status).toBe(22);
  const name = /kit: wrote \S+\/(app-\S+\.sqlite3\.gz)/.exec(upload.stdout)![1];
  // By its whole path: the cross-environment test's refused upload can carry the same one-second stamp.
  const refused = (await lab.errors()).find((e) => e.method === "PUT" && e.url === `/${own.names.bucket}/${own.names.bucketPrefix}/fallback/${name}`)!;
  expect(refused.code).toBe("AccessDenied");
  expect(await decisionOf(refused.requestId)).toMatchObject({ ...byTlsOnly(refused.requestId), action: "s3:PutObject" });
  expect(await keysUnder(own, `${own.names.bucketPrefix}/fallback/${name}`)).toEqual([]);

  const replacement = await newKit(labAccess(lab, own, "http"), own);
  const boot = await replacement.script("restore-on-boot.sh");
  expect(boot.status).toBe(1);
  expect(boot.stderr).toContain("kit: refusing to start the app on an empty database");
  const [, code, , , requestId] = S3_ANSWER.exec(boot.stderr)!;
  expect(code).toBe("AccessDenied");
  expect(await decisionOf(requestId)).toMatchObject({ ...byTlsOnly(requestId), action: "s3:ListBucket" });
});

test.each([
  ["a wrong secret", "SignatureDoesNotMatch", (a: S3Access) => ({ ...a, secretAccessKey: `${a.secretAccessKey.slice(0, -4)}XXXX` })],
  ["an unknown access key", "InvalidAccessKeyId", (a: S3Access) => ({ ...a, accessKeyId: "AKIANOSUCHKEY0000000" })],
])("%s: replication fails, Litestream logs %s with the request id, the lab refused before any policy, nothing of it is stored", async (_what, code, spoil) => {
  const kit = await newKit(spoil(labAccess(lab, own)), own);
  seed(kit);
  await kit.startReplication({ wait: false });
  const logged = await refusalLogged(kit);
  await kit.stopReplication();
  expect([logged.code, logged.status]).toEqual([code, 403]);
  expect((await lab.errors()).filter((e) => e.requestId === logged.requestId)).toEqual([expect.objectContaining({ code })]);
  // Authentication failed: no statement was evaluated for the request.
  expect(await decisionOf(logged.requestId)).toBeUndefined();
  expect((await keysUnder(own, `${own.names.bucketPrefix}/litestream/generations/${logged.generation}`))).toEqual([]);
});
