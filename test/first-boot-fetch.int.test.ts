/**
 * The user data's fetcher (cloud-init/templates/first-boot/fetch-server-files.sh) run with bash against the
 * strict lab S3 child (HTTPS with the lab CA, SigV4, the stack's own least-privilege policy): it downloads
 * the first-boot bundle object with the environment's backup key and writes it only when its sha256 is the
 * one in the user data; a tampered, missing or refused object fails naming the object, S3's answer and what
 * to do, and nothing of it runs. Paths are moved under a temp dir; everything else is as rendered.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { parse } from "yaml";
import { firstBootObject, type FirstBootObject } from "../cloud-init/bundle.ts";
import { LAYOUT } from "../cloud-init/layout.ts";
import { FIRST_BOOT_FETCHER_TEMPLATE, fetcherValues, renderFirstBoot } from "../cloud-init/render.ts";
import { renderTemplate } from "../cloud-init/template.ts";
import { base64, concreteServerValues } from "../lab/environments.ts";
import { labAccess, localEnvironments } from "../lab/local/local-kit.ts";
import { s3Request } from "../lab/s3/client.ts";
import { startKitLabS3Process, type LabS3Process } from "../lab/s3/process.ts";

const [env] = localEnvironments(["firstboot"]);
let lab: LabS3Process;
let root: string;
let access: ReturnType<typeof labAccess>;

beforeAll(async () => {
  lab = await startKitLabS3Process([env]);
  access = labAccess(lab, env);
  root = mkdtempSync(join(tmpdir(), "kit-first-boot-"));
}, 60_000);
afterAll(async () => {
  await lab?.stop();
  rmSync(root, { recursive: true, force: true });
});

const server = (secretAccessKey = access.secretAccessKey) =>
  concreteServerValues(env, { s3Endpoint: access.endpoint, s3Credentials: { accessKeyId: access.accessKeyId, secretAccessKey } });

async function put(key: string, body: Buffer): Promise<void> {
  const answer = await s3Request(access.endpoint, access.caFile!, { ...access, region: env.backups.region }, "PUT", `/${env.names.bucket}/${key}`, { body });
  if (answer.status !== 200) throw new Error(`PUT ${key}: HTTP ${answer.status} ${answer.text}`);
}

interface Fetched {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** The checked bundle, if the fetcher wrote it. */
  readonly bundle?: string;
}

/** The fetcher as the user data carries it, its paths under `dir`, trying S3 for `seconds`. */
async function fetchBundle(name: string, bundle: FirstBootObject, { seconds = 4, secret }: { seconds?: number; secret?: string } = {}): Promise<Fetched> {
  const dir = join(root, name);
  mkdirSync(join(dir, "run"), { recursive: true });
  const values = server(secret);
  writeFileSync(join(dir, "s3.env"), `AWS_ACCESS_KEY_ID=${values.s3Credentials.accessKeyId}\nAWS_SECRET_ACCESS_KEY=${values.s3Credentials.secretAccessKey}\n`, { mode: 0o600 });
  const script = join(dir, "fetch.sh");
  const target = join(dir, "run", "server-files.sh");
  writeFileSync(
    script,
    renderTemplate(FIRST_BOOT_FETCHER_TEMPLATE, {
      ...fetcherValues(env, values, undefined, bundle),
      s3CredentialsFile: join(dir, "s3.env"),
      runDir: join(dir, "run"),
      firstBootBundle: target,
      firstBootFetchSeconds: seconds,
    }),
  );
  return new Promise((resolve, reject) => {
    const child = spawn("bash", [script], { env: { ...process.env, CURL_CA_BUNDLE: access.caFile } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.once("error", reject);
    child.once("close", (status) => resolve({ status, stdout, stderr, bundle: existsSync(target) ? readFileSync(target, "utf8") : undefined }));
  });
}

const boot = () => renderFirstBoot(env, server(), { base64 });

test("the fetcher in the user data is the template rendered with the bundle's key and sha256", () => {
  const { userData, bundle } = boot();
  const entry = parse(userData).write_files.find((f: { path: string }) => f.path === LAYOUT.firstBootFetcher);
  expect(entry.content).toBe(renderTemplate(FIRST_BOOT_FETCHER_TEMPLATE, fetcherValues(env, server(), undefined, bundle)));
  expect(entry.content).toContain(bundle.sha256);
});

test("the object as uploaded: downloaded over TLS with the backup key, its sha256 checked, written for runcmd", async () => {
  const { bundle } = boot();
  await put(bundle.key, bundle.gzip);
  const run = await fetchBundle("good", bundle);
  expect(run.stderr).toBe("");
  expect(run.status).toBe(0);
  expect(run.bundle).toBe(bundle.script);
  expect(run.stdout).toContain(`s3://${env.names.bucket}/${bundle.key} matches its sha256 ${bundle.sha256}`);
  // Every request was the backup user's, allowed by the statement meant for it, over TLS.
  const decisions = (await lab.decisions()).filter((d) => JSON.stringify(d).includes("first-boot"));
  expect(decisions.length).toBeGreaterThan(0);
  expect(JSON.stringify(decisions)).not.toMatch(/"Deny"|implicitDeny/i);
}, 60_000);

test("a tampered object is refused with both hashes and what to do; nothing of it is written or run", async () => {
  const { bundle } = boot();
  const marker = join(root, "tampered-ran");
  const tampered = `${bundle.script}touch ${marker}\n`;
  await put(bundle.key, gzipSync(tampered));
  const run = await fetchBundle("tampered", bundle);
  expect(run.status).toBe(1);
  expect(run.bundle).toBeUndefined();
  expect(existsSync(marker)).toBe(false);
  expect(run.stderr).toContain(`REFUSED s3://${env.names.bucket}/${bundle.key}: its content's sha256 is `);
  expect(run.stderr).toContain(`this server's user data expects ${bundle.sha256}. Nothing from it ran.`);
  expect(run.stderr).toContain("list-object-versions");
  // Not gzip at all: refused the same way.
  await put(bundle.key, Buffer.from(bundle.script));
  const plain = await fetchBundle("not-gzip", bundle);
  expect(plain.status).toBe(1);
  expect(plain.bundle).toBeUndefined();
  expect(plain.stderr).toContain(`REFUSED s3://${env.names.bucket}/${bundle.key}: not a gzip file`);
  await put(bundle.key, bundle.gzip);
}, 60_000);

test("a missing object: retried with backoff, then a failure naming the bucket, the key, HTTP 404 NoSuchKey and what to check", async () => {
  const missing = firstBootObject(env.names.bucketPrefix, env.stackName, []);
  const started = Date.now();
  const run = await fetchBundle("missing", missing, { seconds: 4 });
  expect(run.status).toBe(1);
  expect(run.bundle).toBeUndefined();
  expect(run.stderr).toContain(`s3://${env.names.bucket}/${missing.key}: HTTP 404, S3 error NoSuchKey; trying again in 2 s`);
  expect(run.stderr).toMatch(new RegExp(`FAILED: could not download s3://${env.names.bucket}/${missing.key} after [2-9] tries in 4 s: HTTP 404, S3 error NoSuchKey\\.`));
  expect(run.stderr).toContain(`aws s3api head-object --bucket ${env.names.bucket} --key ${missing.key}`);
  expect(Date.now() - started).toBeLessThan(15_000);
}, 60_000);

test("a refused key: S3's error code, never the secret", async () => {
  const { bundle } = boot();
  const wrong = "wrongwrongwrongwrongwrongwrongwrongwrong";
  const run = await fetchBundle("refused", bundle, { seconds: 2, secret: wrong });
  expect(run.status).toBe(1);
  expect(run.bundle).toBeUndefined();
  expect(run.stderr).toContain("HTTP 403, S3 error SignatureDoesNotMatch");
  expect(`${run.stdout}${run.stderr}`).not.toContain(wrong);
  expect(`${run.stdout}${run.stderr}`).not.toContain(access.secretAccessKey);
}, 60_000);
