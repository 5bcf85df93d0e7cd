/**
 * An in-memory S3-compatible server (fauxqs) for the backup bucket. Litestream 0.3.13 replicates to and
 * restores from it with a path-style endpoint (s3rver does not work: see /work/shared/reference.md).
 *
 * fauxqs runs as a child process under Deno (it needs node:sqlite, which Node 20 lacks); it listens on the
 * address it is given and exits when the test process goes away (its stdin closes).
 */
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { join } from "node:path";
import { DENO_BIN, REPO_ROOT } from "./paths";
import { processIdentity, type Teardown } from "./teardown";

export interface S3Options {
  /** Address to listen on: 127.0.0.1 for host-side use, the lab network's host address for containers. */
  readonly host?: string;
  /** Bucket created at start. @default "kit-backups" */
  readonly bucket?: string;
}

export interface FakeS3 {
  /** Path-style endpoint, e.g. http://10.213.0.1:40123 (give it to Litestream with force-path-style). */
  readonly endpoint: string;
  readonly bucket: string;
  readonly region: string;
  /** fauxqs accepts any key pair; these are what the harness hands out. */
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** Keys under `prefix`, sorted (follows continuation tokens). */
  listKeys(prefix?: string): Promise<string[]>;
  /** An object's bytes; throws naming the key when it is missing. */
  getObject(key: string): Promise<Buffer>;
  putObject(key: string, body: Buffer | string): Promise<void>;
  /** Stops the server early (e.g. to test "S3 unreachable"); teardown stops it otherwise. */
  stop(): Promise<void>;
}

const STARTUP_TIMEOUT_MS = 60_000;

export async function startS3(teardown: Teardown, options: S3Options = {}): Promise<FakeS3> {
  const host = options.host ?? "127.0.0.1";
  const bucket = options.bucket ?? "kit-backups";
  const { port, stop } = await spawnFauxqs(teardown, host);
  const endpoint = `http://${host}:${port}`;

  const s3: FakeS3 = {
    endpoint,
    bucket,
    region: "us-east-1",
    accessKeyId: "kit-e2e",
    secretAccessKey: "kit-e2e-secret",
    listKeys: (prefix = "") => listKeys(endpoint, bucket, prefix),
    getObject: async (key) => {
      const res = await fetch(objectUrl(endpoint, bucket, key));
      if (!res.ok) throw new Error(`S3 GET s3://${bucket}/${key} failed: HTTP ${res.status}`);
      return Buffer.from(await res.arrayBuffer());
    },
    putObject: async (key, body) => {
      const res = await fetch(objectUrl(endpoint, bucket, key), { method: "PUT", body: typeof body === "string" ? body : new Uint8Array(body) });
      if (!res.ok) throw new Error(`S3 PUT s3://${bucket}/${key} failed: HTTP ${res.status} ${await res.text()}`);
    },
    stop,
  };
  const res = await fetch(`${endpoint}/${bucket}`, { method: "PUT" });
  if (!res.ok) throw new Error(`creating bucket ${bucket} on fauxqs failed: HTTP ${res.status} ${await res.text()}`);
  return s3;
}

async function spawnFauxqs(teardown: Teardown, host: string): Promise<{ port: number; stop: () => Promise<void> }> {
  const script = join(__dirname, "fauxqs-server.mjs");
  // cwd = repo root: Deno resolves the bare "fauxqs" import from the repo's package.json and node_modules.
  const child = spawn(DENO_BIN, ["run", "--no-lock", `--allow-net=${host}`, "--allow-read", "--allow-env", "--allow-sys", script, host], {
    cwd: REPO_ROOT,
    stdio: ["pipe", "pipe", "pipe"],
  });
  const identity = processIdentity(child.pid!);
  if (identity) teardown.track({ kind: "process", ...identity });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));

  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.stdin.end();
      child.kill("SIGTERM");
      await exited;
    }
  };
  teardown.defer("fauxqs", stop);

  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => fail(`did not report its port within ${STARTUP_TIMEOUT_MS / 1000} s`), STARTUP_TIMEOUT_MS);
    const fail = (why: string) => {
      clearTimeout(timer);
      reject(new Error(`fauxqs (S3 emulator) ${why}. Its stderr:\n${stderr}`));
    };
    child.once("exit", (code) => fail(`exited with code ${code} before listening`));
    createInterface({ input: child.stdout }).once("line", (line) => {
      clearTimeout(timer);
      try {
        resolve((JSON.parse(line) as { port: number }).port);
      } catch {
        fail(`printed something unexpected: ${line}`);
      }
    });
  });
  return { port, stop };
}

async function listKeys(endpoint: string, bucket: string, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const query = new URLSearchParams({ "list-type": "2", prefix, ...(token ? { "continuation-token": token } : {}) });
    const res = await fetch(`${endpoint}/${bucket}?${query}`);
    const xml = await res.text();
    if (!res.ok) throw new Error(`S3 ListObjectsV2 s3://${bucket}/${prefix} failed: HTTP ${res.status} ${xml}`);
    for (const match of xml.matchAll(/<Key>([^<]*)<\/Key>/g)) keys.push(unescapeXml(match[1]));
    token = /<IsTruncated>true<\/IsTruncated>/.test(xml) ? /<NextContinuationToken>([^<]*)</.exec(xml)?.[1] : undefined;
  } while (token);
  return keys.sort();
}

function objectUrl(endpoint: string, bucket: string, key: string): string {
  return `${endpoint}/${bucket}/${key.split("/").map(encodeURIComponent).join("/")}`;
}

function unescapeXml(text: string): string {
  return text.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, "&");
}
