import { execFileSync, spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { serverFiles, templateValues } from "../../cloud-init/server-files";
import { envQuote, renderTemplate, type TemplateValue } from "../../cloud-init/template";
import { concreteServerValues, REPO_ROOT, shippedEnvironment } from "../environments";

export const LITESTREAM_DIR = join(REPO_ROOT, "node_modules", "@flydotio", "litestream-linux-x64");
export const DENO = join(REPO_ROOT, "node_modules", ".bin", "deno");

export interface Fauxqs {
  readonly endpoint: string;
  stop(): Promise<void>;
}

/** fauxqs (S3-compatible, in memory) on a free loopback port, with the given buckets. */
export async function startFauxqs(buckets: readonly string[]): Promise<Fauxqs> {
  const child = spawn(DENO, ["run", "-A", join(__dirname, "fauxqs-server.mjs"), ...buckets], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, DENO_NO_UPDATE_CHECK: "1" },
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = "";
    let err = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d;
      const match = /\{"port":(\d+)\}/.exec(out);
      if (match) resolve(Number(match[1]));
    });
    child.stderr!.on("data", (d: Buffer) => (err += d));
    child.once("exit", (code) => reject(new Error(`fauxqs exited (${code}): ${err}`)));
    setTimeout(() => reject(new Error(`fauxqs did not start in 30 s: ${err}`)), 30_000).unref();
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stop: () => stopChild(child),
  };
}

export interface Ran {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function run(command: string, args: readonly string[], env: NodeJS.ProcessEnv, input?: string): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(command, [...args], { env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d));
    child.stderr.on("data", (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.once("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
    // A child that exits before reading all of its stdin closes the pipe: the write fails with EPIPE, which
    // without a handler is an uncaught error that fails the test. The child's exit status tells what happened.
    child.stdin.on("error", () => undefined);
    child.stdin.end(input ?? "");
  });
}

async function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

/**
 * A kit "server" in a temp dir: kit.env, litestream.yml and the server scripts rendered from the real
 * templates with every path moved under the temp dir, the current user as the app user, a real
 * `litestream replicate` against fauxqs. What runs here is the same text that runs on a server.
 */
export class LocalKit {
  readonly root: string;
  readonly values: Record<string, TemplateValue>;
  readonly kitEnvFile: string;
  readonly dbFile: string;
  readonly env: NodeJS.ProcessEnv;
  private replicator?: ChildProcess;

  constructor(fauxqs: Fauxqs, bucket: string, extra: Record<string, TemplateValue> = {}) {
    this.root = mkdtempSync(join(tmpdir(), "kit-local-"));
    const env = shippedEnvironment("example-prod");
    const base = templateValues(env, concreteServerValues(env, { bucket, s3Endpoint: fauxqs.endpoint }));
    const dir = (name: string) => {
      const path = join(this.root, name);
      mkdirSync(path, { recursive: true });
      return path;
    };
    this.kitEnvFile = join(dir("etc"), "kit.env");
    this.dbFile = join(dir("data/db"), "app.sqlite3");
    this.values = {
      ...base,
      appUser: userInfo().username,
      dbDir: join(this.root, "data/db"),
      dbFile: this.dbFile,
      backupDir: dir("data/backups"),
      asideDir: dir("data/aside"),
      scratchDir: dir("data/scratch"),
      drillDir: dir("data/drills"),
      releasesDir: dir("srv/releases"),
      slotsDir: dir("srv/slots"),
      stateDir: dir("state"),
      bootstrapDoneFile: join(this.root, "state/bootstrap-done"),
      litestreamConfig: join(this.root, "etc/litestream.yml"),
      s3CredentialsFile: join(this.root, "etc/s3.env"),
      kitEnvFile: this.kitEnvFile,
      libDir: dir("lib"),
      ...extra,
    };
    // Over the loopback sshd the steps source this file: it also puts the repo's litestream on PATH.
    writeFileSync(this.kitEnvFile, `${renderTemplate("config/kit.env", this.values, envQuote)}PATH=${LITESTREAM_DIR}:$PATH\n`);
    writeFileSync(String(this.values.litestreamConfig), renderTemplate("config/litestream.yml", this.values));
    writeFileSync(String(this.values.s3CredentialsFile), "AWS_ACCESS_KEY_ID=test-key\nAWS_SECRET_ACCESS_KEY=test-secret\n", { mode: 0o600 });
    // The server scripts exactly as serverFiles renders them, with this kit's values.
    for (const file of serverFiles(env, concreteServerValues(env))) {
      if (!file.path.startsWith(`/usr/local/lib/kit/`)) continue;
      const name = file.path.split("/").pop()!;
      const path = join(String(this.values.libDir), name);
      writeFileSync(path, renderTemplate(`scripts/${name}`, this.values));
      chmodSync(path, 0o755);
    }
    this.env = {
      ...process.env,
      PATH: `${LITESTREAM_DIR}:${process.env.PATH}`,
      AWS_ACCESS_KEY_ID: "test-key",
      AWS_SECRET_ACCESS_KEY: "test-secret",
    };
  }

  path(name: string): string {
    return String(this.values[name]);
  }

  sql(db: string, query: string): string {
    return execFileSync("sqlite3", ["-cmd", ".timeout 5000", db, query], { encoding: "utf8" }).trim();
  }

  /** Runs bash text (a builder's script) with this kit's environment; the event loop keeps running. */
  bash(script: string, args: readonly string[] = []): Promise<Ran> {
    return run("bash", ["-s", "--", ...args], this.env, script);
  }

  /** Runs one of the rendered server scripts. */
  script(name: string, args: readonly string[] = []): Promise<Ran> {
    return run(join(this.path("libDir"), name), args, this.env);
  }

  litestream(args: readonly string[]): SpawnSyncReturns<string> {
    return spawnSync("litestream", [...args], { encoding: "utf8", env: this.env, timeout: 60_000 });
  }

  /** Starts `litestream replicate` and waits until the replica holds a generation. */
  async startReplication(): Promise<void> {
    this.replicator = spawn("litestream", ["replicate", "-config", this.path("litestreamConfig")], { env: this.env, stdio: "ignore" });
    for (let i = 0; i < 100; i++) {
      const out = this.litestream(["snapshots", "-config", this.path("litestreamConfig"), this.dbFile]).stdout;
      if (out.trim().split("\n").length > 1) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error("litestream did not write a snapshot within 10 s");
  }

  /** SIGTERM: Litestream flushes pending WAL, then exits. */
  async stopReplication(): Promise<void> {
    await stopChild(this.replicator);
    this.replicator = undefined;
  }

  async cleanup(): Promise<void> {
    await this.stopReplication();
    rmSync(this.root, { recursive: true, force: true });
  }
}
