/**
 * The lab S3 as a child process (lab/s3/process.ts over lab/s3/main.ts): it serves a synchronous client
 * (what an in-process server could not), its decisions and errors come back from the child's log files,
 * IAM key calls cross its control channel, a bad option is refused with a message naming it, and stop()
 * or a closed stdin (the parent gone) leaves no process behind.
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { REPO_ROOT } from "../app/repo.ts";
import { shippedEnvironment } from "../lab/environments.ts";
import { s3Request } from "../lab/s3/client.ts";
import { startKitLabS3Process, type LabS3Process } from "../lab/s3/process.ts";
import { text } from "../lab/s3/xml.ts";

const MAIN = join(REPO_ROOT, "lab/s3/main.ts");
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("the lab S3 as a child process", () => {
  const prod = shippedEnvironment("example-prod");
  const staging = shippedEnvironment("example-staging");
  let lab: LabS3Process;

  beforeAll(async () => {
    lab = await startKitLabS3Process([prod, staging], { plainHttp: true });
  });
  afterAll(async () => {
    await lab?.stop();
  });

  const creds = (keys: { accessKeyId: string; secretAccessKey: string }) => ({ ...keys, region: prod.backups.region });
  const key = `${prod.names.bucketPrefix}/process-test`;

  test("serves a signed PUT and a synchronous curl GET; each decision and error is read back", async () => {
    const user = lab.users.get("example-prod")!;
    expect(user.userName).toBe(prod.names.iamUser);
    const put = await s3Request(lab.endpoint, lab.caFile, creds(user), "PUT", `/${prod.names.bucket}/${key}`, { body: "from the parent" });
    expect(put.status).toBe(200);
    // execFileSync blocks this process: only a server in another process can answer it.
    const got = execFileSync("curl", ["--silent", "--show-error", "--fail-with-body", "--cacert", lab.caFile, "--aws-sigv4", `aws:amz:${prod.backups.region}:s3`,
      "--user", `${user.accessKeyId}:${user.secretAccessKey}`, "--header", "x-amz-content-sha256: UNSIGNED-PAYLOAD", `${lab.endpoint}/${prod.names.bucket}/${key}`], { encoding: "utf8", timeout: 30_000 });
    expect(got).toBe("from the parent");

    const elsewhere = await s3Request(lab.endpoint, lab.caFile, creds(user), "PUT", `/${prod.names.bucket}/${staging.names.bucketPrefix}/x`, { body: "x" });
    expect([elsewhere.status, text(elsewhere.text, "Code")]).toEqual([403, "AccessDenied"]);
    const decisions = await lab.decisions();
    expect(decisions.find((d) => d.requestId === put.headers["x-amz-request-id"])).toMatchObject({ action: "s3:PutObject", result: "Allowed" });
    expect(decisions.find((d) => d.requestId === elsewhere.headers["x-amz-request-id"])).toMatchObject({ action: "s3:PutObject", result: "ImplicitlyDenied", decidedBy: [] });
    expect(decisions.filter((d) => d.action === "s3:GetObject" && d.result === "Allowed")).toHaveLength(1);
    expect((await lab.errors()).find((e) => e.requestId === elsewhere.headers["x-amz-request-id"])).toMatchObject({ code: "AccessDenied", method: "PUT" });

    const plain = await s3Request(lab.httpEndpoint!, lab.caFile, creds(user), "GET", `/${prod.names.bucket}/${key}`);
    expect([plain.status, text(plain.text, "Code")]).toEqual([403, "AccessDenied"]);
  });

  test("IAM keys over the control channel: a second key works, a third is refused, a deleted key is refused", async () => {
    const first = lab.users.get("example-prod")!;
    const second = await lab.createAccessKey("example-prod");
    expect(second.accessKeyId).toMatch(/^AKIA[0-9A-F]{16}$/);
    expect((await s3Request(lab.endpoint, lab.caFile, creds(second), "GET", `/${prod.names.bucket}/${key}`)).text).toBe("from the parent");
    await expect(lab.createAccessKey("example-prod")).rejects.toThrow(/LimitExceeded.*AccessKeysPerUser: 2/);
    expect((await lab.accessKeys("example-prod")).map((k) => k.accessKeyId)).toEqual([first.accessKeyId, second.accessKeyId]);
    await lab.deleteAccessKey("example-prod", second.accessKeyId);
    const retired = await s3Request(lab.endpoint, lab.caFile, creds(second), "GET", `/${prod.names.bucket}/${key}`);
    expect([retired.status, text(retired.text, "Code")]).toEqual([403, "InvalidAccessKeyId"]);
    await expect(lab.deleteAccessKey("example-prod", second.accessKeyId)).rejects.toThrow(/NoSuchEntity/);
    await expect(lab.accessKeys("nope-prod")).rejects.toThrow(/no backup user for nope-prod/);
  });

  test("stop() ends the process; the decisions stay readable", async () => {
    const pid = lab.pid;
    expect(alive(pid)).toBe(true);
    const before = (await lab.decisions()).length;
    await lab.stop();
    expect(alive(pid)).toBe(false);
    expect(existsSync(lab.caFile)).toBe(false);
    expect((await lab.decisions()).length).toBe(before);
    await expect(lab.createAccessKey("example-prod")).rejects.toThrow(/stopped/);
  });
});

describe("lab/s3/main.ts on its own", () => {
  test("an unknown stack: exit 2, the value and the known stacks named, no stack trace", () => {
    const run = spawnSync(process.execPath, ["--import", "tsx", MAIN, "--stack", "nope-prod"], { cwd: REPO_ROOT, encoding: "utf8", timeout: 60_000 });
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/--stack nope-prod: no shipped client environment has that stack name \(known: .*example-prod/);
    expect(run.stderr).not.toMatch(/\n\s+at /);
    expect(run.stdout).toBe("");
  });

  test("an options file that is not JSON is named, with the fix", () => {
    const run = spawnSync(process.execPath, ["--import", "tsx", MAIN, "--options", __filename], { cwd: REPO_ROOT, encoding: "utf8", timeout: 60_000 });
    expect(run.status).toBe(2);
    expect(run.stderr).toContain(`--options ${__filename}: is not JSON`);
  });

  test("stops when its stdin closes (the parent is gone), removing its files", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", MAIN, "--stack", "example-prod"], { cwd: REPO_ROOT, stdio: ["pipe", "pipe", "inherit"] });
    const line = await new Promise<string>((resolve) => createInterface({ input: child.stdout }).once("line", resolve));
    const ready = JSON.parse(line) as { endpoint: string; caFile: string; users: Record<string, unknown> };
    expect(ready.endpoint).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(Object.keys(ready.users)).toEqual(["example-prod"]);
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    child.stdin.end();
    expect(await exited).toBe(0);
    expect(alive(child.pid!)).toBe(false);
    expect(existsSync(ready.caFile)).toBe(false);
  });
});
